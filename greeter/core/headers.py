"""gRPC header rules of both roles, as pure functions over HPACK header lists.

The server role validates requests (`parse_request`) and builds response blocks; the client role
builds request blocks (`request_headers`) and classifies response blocks (`parse_response`,
`call_status`). h2's own header validation is switched off (see greeter.core.config): h2 turns
malformed headers into a *connection* error, while RFC 9113 §8.1.1 makes them a *stream* error,
so the rules live here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TypeVar

from grpclib.const import Status

from greeter.core.events import Metadata
from greeter.wire import compression, metadata
from greeter.wire.errors import MalformedHeadersError, RejectedRequestError

HeaderList = list[tuple[bytes, bytes]]
HeaderFields = tuple[tuple[bytes, bytes], ...]
"""An immutable header list (a cache key, or fields shared between calls)."""

GRPC_CONTENT_TYPES = frozenset({"application/grpc", "application/grpc+proto"})
REQUEST_PSEUDO_HEADERS = frozenset({":method", ":scheme", ":authority", ":path"})
# RFC 9113 §8.2.2: connection-specific fields make a request malformed.
CONNECTION_SPECIFIC = frozenset(
    {"connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade"}
)


class RequestHead:
    """What the core needs of a validated request; built by `parse_request`, read-only after it
    (one head is shared by every request that sent the same header list)."""

    __slots__ = (
        "accept_encoding",
        "authority",
        "content_type",
        "encoding",
        "metadata",
        "path",
        "timeout",
        "user_agent",
    )

    def __init__(self) -> None:
        self.path = ""
        self.authority: str | None = None
        self.content_type = ""
        self.timeout: float | None = None
        self.encoding = compression.IDENTITY
        self.accept_encoding = ""
        """The request's grpc-accept-encoding: what the client can decompress ("" when absent)."""
        self.user_agent: str | None = None
        self.metadata: Metadata = ()


def _split(headers: HeaderList) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Split pseudo-headers from regular fields, enforcing RFC 9113 §8.2 and §8.3 field rules."""
    pseudo: dict[str, str] = {}
    regular: list[tuple[str, str]] = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        if not name or name != name.lower():
            raise MalformedHeadersError(f"header name {name!r} is empty or not lower-case")
        if b"\x00" in raw_value or b"\r" in raw_value or b"\n" in raw_value:
            raise MalformedHeadersError(f"header {name!r} carries NUL, CR or LF")
        if name[0] == ":":
            if regular:
                raise MalformedHeadersError(f"pseudo-header {name} after a regular header")
            if name not in REQUEST_PSEUDO_HEADERS or name in pseudo:
                raise MalformedHeadersError(f"unknown or repeated pseudo-header {name}")
            pseudo[name] = value
        elif name in CONNECTION_SPECIFIC or (name == "te" and value != "trailers"):
            raise MalformedHeadersError(f"connection-specific header {name}: {value}")
        else:
            regular.append((name, value))
    for required in (":method", ":scheme", ":path"):
        if not pseudo.get(required):
            raise MalformedHeadersError(f"missing pseudo-header {required}")
    return pseudo, regular


def _apply_field(
    head: RequestHead, name: str, value: str, custom: list[tuple[str, str | bytes]]
) -> None:
    if name == "content-type":
        head.content_type = value
    elif name == "grpc-timeout":
        try:
            head.timeout = metadata.parse_timeout(value)
        except ValueError:
            # PROTOCOL-HTTP2.md leaves this open; grpc-go and C-core answer INTERNAL.
            raise RejectedRequestError(
                Status.INTERNAL, f"malformed grpc-timeout: {value!r}"
            ) from None
    elif name == "grpc-encoding":
        head.encoding = value
    elif name == "grpc-accept-encoding":
        head.accept_encoding = value
    elif name == "user-agent":
        head.user_agent = value
        custom.append((name, value))
    elif not metadata.is_reserved_header(name):
        try:
            custom.append((name, metadata.decode_metadata_value(name, value)))
        except ValueError:
            raise RejectedRequestError(Status.INTERNAL, f"malformed {name} value") from None


MAX_CACHED_HEADS = 256
"""Distinct valid header lists of each kind (request heads, response heads, trailers)
remembered process-wide before that cache starts over (lists that differ per call, such as
those carrying grpc-timeout, would otherwise grow it)."""
_request_heads: dict[HeaderFields, RequestHead] = {}
_response_heads: dict[tuple[HeaderFields, bool], ResponseHead] = {}
_trailers: dict[HeaderFields, CallStatus] = {}

K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: dict[K, V], key: K, value: V) -> V:
    """Keep `value` under `key`, starting the cache over when it is full."""
    if len(cache) >= MAX_CACHED_HEADS:
        cache.clear()
    cache[key] = value
    return value


def parse_request(headers: HeaderList) -> RequestHead:
    """Validate a request header list; raise Malformed- or RejectedRequestError, else describe it.

    Clients send the same header list for every call of a method (C-core, grpc-go and greeter's
    client do, once their HPACK tables are warm), and validating it field by field was the
    largest share of greeter's own per-RPC work; a valid list's head is therefore built once and
    shared (nothing modifies a RequestHead after this). Invalid lists are checked every time.
    """
    key = tuple(headers)
    head = _request_heads.get(key)
    if head is None:
        head = _remember(_request_heads, key, _parse_request(headers))
    return head


def _parse_request(headers: HeaderList) -> RequestHead:
    """`parse_request` without the cache.

    A missing `te` is accepted: PROTOCOL-HTTP2.md requires clients to send it to detect
    incompatible proxies, but grpc-go and C-core serve requests without it, and refusing them
    would only break curl-style clients. A `te` with another value is malformed (RFC 9113 §8.2.2).
    """
    pseudo, regular = _split(headers)
    if pseudo[":method"] != "POST":
        raise RejectedRequestError(Status.UNIMPLEMENTED, "gRPC requires method POST", 405)
    head = RequestHead()
    head.path = pseudo[":path"]
    head.authority = pseudo.get(":authority")
    custom: list[tuple[str, str | bytes]] = []
    for name, value in regular:
        _apply_field(head, name, value, custom)
    media_type = head.content_type.split(";", 1)[0].strip().lower()
    if media_type not in GRPC_CONTENT_TYPES:
        raise RejectedRequestError(
            Status.INTERNAL, f"invalid gRPC request content-type {head.content_type!r}", 415
        )
    if not compression.is_supported(head.encoding):
        raise RejectedRequestError(
            Status.UNIMPLEMENTED, f"grpc-encoding {head.encoding!r} is not supported"
        )
    head.metadata = tuple(custom)
    return head


# Response compression preference: gzip first (every gRPC implementation reads it), then deflate.
RESPONSE_ENCODING_PREFERENCE = (compression.GZIP, compression.DEFLATE)


def response_encoding(accept_encoding: str) -> str:
    """The grpc-encoding for a response, chosen once per RPC from the request's accept list.

    compression.md: a server compresses only with an encoding the client listed in
    grpc-accept-encoding; gzip is preferred, then deflate, else identity (no compression).
    """
    accepted = {token.strip().lower() for token in accept_encoding.split(",")}
    for encoding in RESPONSE_ENCODING_PREFERENCE:
        if encoding in accepted:
            return encoding
    return compression.IDENTITY


def encode_metadata(pairs: Iterable[tuple[str, str | bytes]]) -> HeaderList:
    """Custom metadata to header fields; reserved or invalid keys are refused with ValueError."""
    fields: HeaderList = []
    for key, value in pairs:
        metadata.validate_metadata_key(key)
        if metadata.is_reserved_header(key):
            raise ValueError(f"metadata key {key!r} is reserved for the transport")
        fields.append((key.encode(), metadata.encode_metadata_value(key, value).encode()))
    return fields


def response_headers(
    custom: Iterable[tuple[str, str | bytes]] = (), encoding: str = compression.IDENTITY
) -> HeaderList:
    """Response-Headers (PROTOCOL-HTTP2.md "Responses"): status, content-type, then metadata.

    `grpc-encoding` is sent only when the response compresses (an encoding other than identity).
    """
    fields: HeaderList = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    if encoding != compression.IDENTITY:
        fields.append((b"grpc-encoding", encoding.encode()))
    fields.append((b"grpc-accept-encoding", compression.ACCEPT_ENCODING.encode()))
    fields.extend(encode_metadata(custom))
    return fields


def trailers(
    status: Status,
    message: str = "",
    custom: Iterable[tuple[str, str | bytes]] = (),
    details: bytes | None = None,
) -> HeaderList:
    """Trailers: grpc-status, the percent-encoded grpc-message, status details, then metadata."""
    fields: HeaderList = [(b"grpc-status", str(status.value).encode())]
    if message:
        fields.append((b"grpc-message", metadata.encode_grpc_message(message).encode()))
    if details is not None:
        encoded = metadata.encode_metadata_value("grpc-status-details-bin", details)
        fields.append((b"grpc-status-details-bin", encoded.encode()))
    fields.extend(encode_metadata(custom))
    return fields


def trailers_only(
    status: Status,
    message: str = "",
    custom: Iterable[tuple[str, str | bytes]] = (),
    details: bytes | None = None,
) -> HeaderList:
    """Trailers-Only: one HEADERS frame with END_STREAM carrying the status (PROTOCOL-HTTP2.md)."""
    return [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-accept-encoding", compression.ACCEPT_ENCODING.encode()),
        *trailers(status, message, custom, details),
    ]


def http_error_headers(http_status: int, status: Status, message: str) -> HeaderList:
    """Headers for a request refused at the HTTP layer (405, 415), sent with a short text body.

    The grpc-status stays so that a gRPC client can report the precise reason; the text body
    tells a human with curl what went wrong.
    """
    return [
        (b":status", str(http_status).encode()),
        (b"content-type", b"text/plain; charset=utf-8"),
        *trailers(status, message),
    ]


# -- the client role: request blocks out, response blocks in ------------------------------------

# doc/http-grpc-status-mapping.md: the status of a response without grpc-status, by HTTP status.
HTTP_TO_GRPC_STATUS = {
    400: Status.INTERNAL,
    401: Status.UNAUTHENTICATED,
    403: Status.PERMISSION_DENIED,
    404: Status.UNIMPLEMENTED,
    429: Status.UNAVAILABLE,
    502: Status.UNAVAILABLE,
    503: Status.UNAVAILABLE,
    504: Status.UNAVAILABLE,
}


def request_headers(
    path: str,
    authority: str,
    *,
    scheme: str = "http",
    timeout: float | None = None,
    encoding: str = compression.IDENTITY,
    user_agent: str | None = None,
    previous_attempts: int = 0,
    custom: Iterable[tuple[str, str | bytes]] = (),
) -> HeaderList:
    """Request-Headers (PROTOCOL-HTTP2.md "Requests"): pseudo-headers, te, the call's settings,
    then custom metadata (reserved or invalid keys are refused with ValueError)."""
    fields = list(_request_head(path, authority, scheme))
    if timeout is not None:
        fields.append((b"grpc-timeout", metadata.encode_timeout(timeout).encode()))
    fields += _request_settings(encoding, user_agent)
    if previous_attempts:
        fields.append((b"grpc-previous-rpc-attempts", str(previous_attempts).encode()))
    if custom:
        fields += encode_metadata(custom)
    return fields


# A client sends the same fields on every call of a method: encoded once (bounded caches).


@functools.lru_cache(maxsize=256)
def plain_request_headers(
    path: str, authority: str, scheme: str, encoding: str, user_agent: str | None
) -> HeaderFields:
    """`request_headers` of a call without timeout, retries or metadata, as one shared tuple:
    the HPACK encoder keeps the block of a tuple it has encoded (greeter.core.hpack_cache)."""
    return _request_head(path, authority, scheme) + _request_settings(encoding, user_agent)


@functools.lru_cache(maxsize=256)
def _request_head(path: str, authority: str, scheme: str) -> HeaderFields:
    return (
        (b":method", b"POST"),
        (b":scheme", scheme.encode()),
        (b":path", path.encode()),
        (b":authority", authority.encode()),
        (b"te", b"trailers"),
        (b"content-type", b"application/grpc"),
    )


@functools.lru_cache(maxsize=64)
def _request_settings(encoding: str, user_agent: str | None) -> HeaderFields:
    fields: HeaderList = []
    if encoding != compression.IDENTITY:
        fields.append((b"grpc-encoding", encoding.encode()))
    fields.append((b"grpc-accept-encoding", compression.ACCEPT_ENCODING.encode()))
    if user_agent:
        fields.append((b"user-agent", user_agent.encode()))
    return tuple(fields)


class CallStatus:
    """How a call ended, as the response said (or as its absence implies)."""

    __slots__ = ("details", "message", "metadata", "retry_pushback", "status")

    def __init__(
        self,
        status: Status,
        message: str = "",
        metadata: Metadata = (),
        details: bytes | None = None,
        retry_pushback: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.metadata = metadata
        """Trailing metadata (custom fields only)."""
        self.details = details
        """grpc-status-details-bin, decoded from base64: a serialized google.rpc.Status."""
        self.retry_pushback = retry_pushback
        """grpc-retry-pushback-ms as sent (gRFC A6): the server's word on retrying."""


class ResponseHead:
    """What the client needs of a response's first header block; built by `parse_response`."""

    __slots__ = ("encoding", "end", "metadata")

    def __init__(self, encoding: str, metadata: Metadata, end: CallStatus | None) -> None:
        self.encoding = encoding
        """The response's grpc-encoding (identity when absent)."""
        self.metadata = metadata
        """Initial metadata (custom fields only)."""
        self.end = end
        """Set when this block ends the call: Trailers-Only, or a response that is not gRPC."""


def response_fields(block: HeaderList) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Pseudo-headers and regular fields of a response block (RFC 9113 §8.3.2: only :status)."""
    pseudo: dict[str, str] = {}
    regular: list[tuple[str, str]] = []
    for raw_name, raw_value in block:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        if not name or name != name.lower():
            raise MalformedHeadersError(f"response header name {name!r} is not lower-case")
        if name.startswith(":"):
            if name != ":status" or regular or name in pseudo:
                raise MalformedHeadersError(f"misplaced or unknown pseudo-header {name}")
            pseudo[name] = value
        else:
            regular.append((name, value))
    return pseudo, regular


def _custom(regular: Iterable[tuple[str, str]]) -> Metadata:
    custom: list[tuple[str, str | bytes]] = []
    for name, value in regular:
        if not metadata.is_reserved_header(name) or name == "user-agent":
            try:
                custom.append((name, metadata.decode_metadata_value(name, value)))
            except ValueError:
                continue  # a malformed -bin value is dropped, as grpc-go drops it
    return tuple(custom)


def call_status(regular: list[tuple[str, str]]) -> CallStatus:
    """The call's end from trailer fields: grpc-status, grpc-message, details, metadata.

    A missing or unparsable grpc-status is UNKNOWN (doc/http-grpc-status-mapping.md), as is a
    code outside the 17 gRPC defines (doc/statuscodes.md).
    """
    fields = dict(regular)
    raw = fields.get("grpc-status")
    message = metadata.decode_grpc_message(fields.get("grpc-message", ""))
    if raw is None:
        return CallStatus(Status.UNKNOWN, message or "missing grpc-status", _custom(regular))
    try:
        status = Status(int(raw))
    except ValueError:
        return CallStatus(Status.UNKNOWN, message or f"invalid grpc-status {raw!r}")
    details = None
    if "grpc-status-details-bin" in fields:
        try:
            decoded = metadata.decode_metadata_value(
                "grpc-status-details-bin", fields["grpc-status-details-bin"]
            )
        except ValueError:
            decoded = None
        details = decoded if isinstance(decoded, bytes) else None
    pushback = fields.get("grpc-retry-pushback-ms")
    return CallStatus(status, message, _custom(regular), details, pushback)


def parse_trailers(block: HeaderList) -> CallStatus:
    """The call's end from its trailers; MalformedHeadersError for a block no trailers may be.

    Servers end every call of a kind with the same block (``grpc-status: 0``), so a valid
    block's status is built once and shared (a CallStatus is never modified).
    """
    key = tuple(block)
    end = _trailers.get(key)
    if end is None:
        try:
            pseudo, regular = response_fields(block)
        except MalformedHeadersError as exc:
            raise MalformedHeadersError(f"malformed trailers: {exc}") from None
        if pseudo:
            raise MalformedHeadersError("trailers carry a pseudo-header")
        end = _remember(_trailers, key, call_status(regular))
    return end


def parse_response(block: HeaderList, *, ends_stream: bool) -> ResponseHead:
    """Classify a response's first header block (PROTOCOL-HTTP2.md "Responses").

    A non-200 `:status` or a content-type that is not gRPC ends the call at once with the
    status doc/http-grpc-status-mapping.md names (UNKNOWN for a 200 that is not gRPC), unless
    the block carries a grpc-status (Trailers-Only), which then wins. Raises
    MalformedHeadersError for a block no HTTP/2 response may have. A valid block's head is
    built once and shared, as for `parse_request`.
    """
    key = (tuple(block), ends_stream)
    head = _response_heads.get(key)
    if head is None:
        head = _remember(_response_heads, key, _parse_response(block, ends_stream))
    return head


def _parse_response(block: HeaderList, ends_stream: bool) -> ResponseHead:
    """`parse_response` without the cache."""
    pseudo, regular = response_fields(block)
    if ":status" not in pseudo:
        raise MalformedHeadersError("response without :status")
    fields = dict(regular)
    has_status = "grpc-status" in fields
    if ends_stream or has_status:
        end: CallStatus | None = call_status(regular)
    else:
        end = None
    http_status = pseudo[":status"]
    media_type = fields.get("content-type", "").split(";", 1)[0].strip().lower()
    if not has_status and http_status != "200":
        code = int(http_status) if http_status.isdigit() else 0
        status = HTTP_TO_GRPC_STATUS.get(code, Status.UNKNOWN)
        end = CallStatus(status, f"HTTP status {http_status} (not a gRPC response)")
    elif not has_status and media_type not in GRPC_CONTENT_TYPES:
        end = CallStatus(Status.UNKNOWN, f"invalid gRPC response content-type {media_type!r}")
    encoding = fields.get("grpc-encoding", compression.IDENTITY)
    return ResponseHead(encoding, _custom(regular), end)
