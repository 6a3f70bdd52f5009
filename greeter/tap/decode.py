"""Message layer of the wire tap: a gRPC message's bytes -> a dataclass, wire fields, or an error.

No function here raises on hostile bytes (errors come back as values).

Three views, best first: the message class of the route and direction
(:func:`greeter.wire.codec.decode`, strict); else schema-free wire fields like
``protoc --decode_raw``; else only the bytes and why they could not be read.

Schema-free nesting: a LEN value is shown as nested fields when it parses cleanly as protobuf
and does not look like text (valid UTF-8 whose characters are all printable stays bytes), up to
:data:`MAX_DEPTH` levels. protoc --decode_raw has no text rule and shows ``b"hi"`` as field 13 =
105; the rule keeps most strings strings while a nested message, whose tags and lengths are
control bytes for small field numbers and sizes, still nests.
"""

from __future__ import annotations

from typing import Any

from greeter.tap.records import RawField
from greeter.tap.resolve import MessageTypes
from greeter.wire import codec, protowire
from greeter.wire.errors import WireFormatError
from greeter.wire.metadata import decode_metadata_value

MAX_DEPTH = 32
"""Deepest nesting of LEN values and groups decoded as fields; deeper values stay bytes."""

RawValue = int | bytes | tuple[RawField, ...]


def decode_raw(data: bytes, depth: int = MAX_DEPTH) -> tuple[RawField, ...]:
    """The wire fields of ``data``; raise WireFormatError if it is not protobuf."""
    fields: list[RawField] = []
    for field in protowire.iter_fields(data):
        value: RawValue = field.value
        if isinstance(value, bytes) and depth > 1:
            # A group's contents were validated by iter_fields; a LEN value may be anything.
            group = field.wire_type == protowire.SGROUP
            value = decode_raw(value, depth - 1) if group else _nested(value, depth - 1)
        fields.append(RawField(field.number, field.wire_type, value))
    return tuple(fields)


def _nested(value: bytes, depth: int) -> RawValue:
    """``value`` as nested fields if it looks like a message (module docstring), else itself."""
    if not value or _looks_like_text(value):
        return value
    try:
        return decode_raw(value, depth)
    except WireFormatError:
        return value


def _looks_like_text(value: bytes) -> bool:
    try:
        return value.decode("utf-8").isprintable()
    except UnicodeDecodeError:
        return False


def decode_payload(
    message_type: type[Any] | None, data: bytes
) -> tuple[object | None, tuple[RawField, ...] | None, str | None]:
    """(decoded, fields, error) for one message: see the module docstring.

    When ``message_type`` rejects the bytes, ``error`` says so and ``fields`` still shows them
    if they are protobuf at all.
    """
    error = None
    if message_type is not None:
        try:
            return codec.decode(message_type, data), None, None
        except Exception as exc:  # betterproto2 raises assorted errors on corrupt input
            error = f"not a valid {message_type.__name__}: {exc}"
    try:
        return None, decode_raw(data), error
    except WireFormatError as exc:
        return None, None, error or f"not protobuf: {exc}"


def decode_status_details(
    value: str, types: MessageTypes | None
) -> tuple[tuple[str, object], ...] | None:
    """grpc-status-details-bin (base64 google.rpc.Status) -> (type_url, detail) per detail.

    A detail is decoded with the class its type URL names when ``types`` knows it, else shown as
    wire fields (or its bytes). None when the value is not base64 or not a google.rpc.Status;
    the trailers' frame record still shows it. google/rpc/status.proto: details = 3 repeated
    google.protobuf.Any {type_url = 1, value = 2}; code (1) and message (2) repeat grpc-status
    and grpc-message, which the RPC record already carries.
    """
    try:
        raw = decode_metadata_value("grpc-status-details-bin", value)
        assert isinstance(raw, bytes)
        return tuple(
            _any(field.value, types)
            for field in protowire.iter_fields(raw)
            if field.number == 3 and isinstance(field.value, bytes)
        )
    except ValueError:  # bad base64, or a WireFormatError
        return None


def _any(data: bytes, types: MessageTypes | None) -> tuple[str, object]:
    """One google.protobuf.Any: (type_url, decoded detail, wire fields or bytes)."""
    url = ""
    payload = b""
    for field in protowire.iter_fields(data):
        if field.number == 1 and isinstance(field.value, bytes):
            url = field.value.decode("utf-8", "backslashreplace")
        elif field.number == 2 and isinstance(field.value, bytes):
            payload = field.value
    message_type = types.by_url(url) if types is not None else None
    decoded, fields, _ = decode_payload(message_type, payload)
    if decoded is not None:
        return url, decoded
    return url, fields if fields is not None else payload
