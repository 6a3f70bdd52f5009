"""RPC and message layers of the wire tap: one stream's headers and DATA -> rpc/message records.

Which side is which comes from the tap's role: requests travel in the *request direction*
(``"in"`` when the tapped endpoint is a server), responses the other way. An RPC starts at its
request headers (:meth:`Calls.start`, called by the tap for a new stream) and ends at the first
of: response HEADERS carrying ``grpc-status`` or END_STREAM (trailers, or Trailers-Only), or
RST_STREAM (gRPC doc/PROTOCOL-HTTP2.md). A reset after the end shows only as a frame.

Messages are reassembled per stream and direction with :class:`greeter.tap.reassembly.Reassembler`
(limit ``max_message_size``: by default :data:`MAX_MESSAGE_SIZE`, gRPC's default receive limit;
a server's trace uses its own receive limit), decompressed with the direction's ``grpc-encoding``
(bounded by the same limit, so tracing never inflates more than the endpoint itself accepts)
and decoded by :func:`greeter.tap.decode.decode_payload`. Bounds, so that a trace costs memory
in proportion to the limits and never to what a peer announces or its compression ratio:

- a message over the limit becomes a record with its length, its first ``max_body`` bytes and
  an ``error``; the messages after it are decoded as usual;
- a message that inflates beyond the limit becomes a record with its compressed bytes (at most
  ``max_body`` of them) and an ``error``;
- a message larger than ``max_body`` once decompressed is recorded with its ``size`` and its
  first ``max_body`` bytes, and not decoded (its decoded form would hold it all).

A bad Compressed-Flag or a stream that ends inside a message yields one MessageRecord with
``error`` and stops decoding that direction of that stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grpclib.const import Status

from greeter.tap.decode import decode_payload, decode_status_details
from greeter.tap.reassembly import Piece, Reassembler
from greeter.tap.records import (
    Direction,
    FrameRecord,
    MessageRecord,
    RawField,
    Record,
    RpcRecord,
)
from greeter.tap.resolve import MessageTypes
from greeter.wire import compression
from greeter.wire.errors import FramingError, MessageError
from greeter.wire.framing import PREFIX_SIZE
from greeter.wire.metadata import decode_grpc_message, is_reserved_header, parse_timeout

MAX_MESSAGE_SIZE = 4 * 1024 * 1024
"""Largest message (compressed or not) the tap reassembles and decompresses, by default."""
MILESTONES = (
    "response_headers",
    "first_request",
    "last_request",
    "first_response",
    "last_response",
    "trailers",
)
_STATUS_NAMES: dict[int | None, str] = {status.value: status.name for status in Status}
Headers = tuple[tuple[str, str], ...]


class _Call:
    """What the tap remembers of one RPC while its stream is open."""

    __slots__ = (
        "authority",
        "counts",
        "decoders",
        "encodings",
        "ended",
        "method",
        "milestones",
        "responding",
        "sizes",
        "start",
        "timeout",
        "types",
    )

    def __init__(
        self,
        method: str,
        start: float,
        types: tuple[type[Any], type[Any]] | None,
        max_message_size: int,
        max_body: int,
    ) -> None:
        self.method = method
        self.start = start
        self.types = types
        self.authority: str | None = None
        self.timeout: float | None = None
        self.encodings: dict[Direction, str] = {"in": "identity", "out": "identity"}
        self.decoders: dict[Direction, Reassembler | None] = {
            "in": Reassembler(max_message_size, max_body),
            "out": Reassembler(max_message_size, max_body),
        }
        self.counts: dict[Direction, int] = {"in": 0, "out": 0}
        self.sizes: dict[Direction, int] = {"in": 0, "out": 0}
        """Bytes of the messages seen each way, as framed (prefix + Message-Length)."""
        self.milestones: dict[str, float] = {}
        self.responding = False
        """Response-Headers were seen: the next response HEADERS are trailers."""
        self.ended = False

    def mark(self, milestone: str, now: float, *, first: bool = False) -> None:
        if not (first and milestone in self.milestones):
            self.milestones[milestone] = now

    def timings(self) -> tuple[tuple[str, float], ...]:
        """The milestones reached, in MILESTONES order, in seconds since the start."""
        return tuple(
            (name, self.milestones[name] - self.start)
            for name in MILESTONES
            if name in self.milestones
        )


def _timeout(value: str | None) -> float | None:
    try:
        return parse_timeout(value) if value is not None else None
    except ValueError:
        return None


def _status(value: str | None) -> int | None:
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


class Calls:
    """The open RPCs of one connection, keyed by stream id; emits message and rpc records."""

    __slots__ = (
        "_calls",
        "_connection_id",
        "_emit",
        "_max_body",
        "_max_message_size",
        "_peer",
        "_requests",
        "_responses",
        "_types",
    )

    def __init__(
        self,
        emit: Callable[[Record], None],
        *,
        connection_id: int,
        requests: Direction,
        peer: str | None,
        types: MessageTypes | None,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_body: int | None = None,
    ) -> None:
        self._emit = emit
        self._max_message_size = max_message_size
        self._max_body = max_message_size if max_body is None else max_body
        self._connection_id = connection_id
        self._requests: Direction = requests
        self._responses: Direction = "out" if requests == "in" else "in"
        self._peer = peer
        self._types = types
        self._calls: dict[int, _Call] = {}

    def start(self, record: FrameRecord, headers: Headers) -> None:
        """Request headers opened a stream: remember the RPC and emit ``start``."""
        fields = dict(headers)
        method = fields.get(":path", "")
        types = self._types.lookup(method) if self._types else None
        call = _Call(method, record.timestamp, types, self._max_message_size, self._max_body)
        call.authority = fields.get(":authority")
        call.timeout = _timeout(fields.get("grpc-timeout"))
        call.encodings[self._requests] = fields.get("grpc-encoding", compression.IDENTITY)
        self._calls[record.stream_id] = call
        self._emit(
            RpcRecord(
                self._connection_id,
                record.direction,
                record.timestamp,
                record.stream_id,
                "start",
                method,
                peer=self._peer,
                authority=call.authority,
                timeout=call.timeout,
                metadata=_custom(headers),
                wall=record.wall,
            )
        )

    def drop(self, stream_id: int) -> None:
        """The stream closed or is no longer tracked."""
        self._calls.pop(stream_id, None)

    def on_headers(self, record: FrameRecord, headers: Headers, end: bool) -> None:
        """A header block after the request headers: Response-Headers, trailers or noise."""
        call = self._calls.get(record.stream_id)
        if call is None or record.direction == self._requests:
            return  # request trailers carry nothing gRPC defines
        fields = dict(headers)
        if "grpc-status" in fields or end:
            call.mark("trailers", record.timestamp)
            self._end(call, record, fields, metadata=_custom(headers))
        elif not call.responding:
            call.responding = True
            call.encodings[record.direction] = fields.get("grpc-encoding", compression.IDENTITY)
            call.mark("response_headers", record.timestamp)

    def on_reset(self, record: FrameRecord) -> None:
        """RST_STREAM ends the RPC unless its status was already seen."""
        call = self._calls.get(record.stream_id)
        if call is not None:
            self._end(call, record, {}, reset=record.error_code)

    def on_data(self, record: FrameRecord, end: bool) -> None:
        """Reassemble the DATA payload into messages; END_STREAM of a response ends the RPC."""
        call = self._calls.get(record.stream_id)
        if call is None:
            return
        decoder = call.decoders[record.direction]
        if decoder is not None:
            self._reassemble(call, record, decoder, end)
        if end and record.direction == self._responses:
            self._end(call, record, {})  # no trailers: the response ended without a status

    def _reassemble(
        self, call: _Call, record: FrameRecord, decoder: Reassembler, end: bool
    ) -> None:
        try:
            framed = decoder.feed(record.data or b"")
        except FramingError as exc:
            self._fail(call, record, f"bad message prefix: {exc}", 0)
            return
        for message in framed:
            self._message(call, record, message)
        if end and decoder.buffered:
            reason = f"stream ended inside a message ({decoder.buffered} bytes buffered)"
            self._fail(call, record, reason, 0)

    def _fail(self, call: _Call, record: FrameRecord, error: str, length: int) -> None:
        """One MessageRecord saying why; decoding of this direction of the stream stops."""
        call.decoders[record.direction] = None
        self._emit_message(call, record, compressed=False, length=length, data=b"", error=error)

    def _message(self, call: _Call, record: FrameRecord, message: Piece) -> None:
        direction = record.direction
        data, error = message.payload, None
        size: int | None = message.length
        if message.cut:
            error = f"message of {message.length} bytes exceeds the limit {self._max_message_size}"
            size = None if message.compressed else size  # never inflated
        elif message.compressed:
            data, error = _decompress(call.encodings[direction], data, self._max_message_size)
            size = len(data) if error is None else None  # the payload was not inflated
        decoded = fields = None
        is_request = direction == self._requests
        if error is None and len(data) <= self._max_body:
            message_type = call.types[0 if is_request else 1] if call.types else None
            decoded, fields, error = decode_payload(message_type, data)
        kind = "request" if is_request else "response"
        call.mark(f"first_{kind}", record.timestamp, first=True)
        call.mark(f"last_{kind}", record.timestamp)
        call.sizes[direction] += PREFIX_SIZE + message.length
        self._emit_message(
            call,
            record,
            compressed=message.compressed,
            length=message.length,
            data=data[: self._max_body],
            decoded=decoded,
            fields=fields,
            error=error,
            size=size,
        )

    def _emit_message(
        self,
        call: _Call,
        record: FrameRecord,
        *,
        compressed: bool,
        length: int,
        data: bytes,
        decoded: object | None = None,
        fields: tuple[RawField, ...] | None = None,
        error: str | None = None,
        size: int | None = None,
    ) -> None:
        direction = record.direction
        call.counts[direction] += 1
        self._emit(
            MessageRecord(
                self._connection_id,
                direction,
                record.timestamp,
                record.stream_id,
                call.method,
                call.counts[direction],
                compressed,
                length,
                call.encodings[direction],
                data,
                decoded,
                fields,
                error,
                size,
                wall=record.wall,
            )
        )

    def cut(
        self,
        stream_id: int,
        direction: Direction,
        at: tuple[float, float | None],
        why: str,
    ) -> None:
        """The RPC on `stream_id` ended without status or reset (connection closed, or above a
        GOAWAY's last stream id) at `at` (timestamp, wall): an end record whose status message
        says so."""
        call = self._calls.pop(stream_id, None)
        if call is not None:
            self._end(call, None, {}, cut=(stream_id, direction, *at, f"cut: {why}"))

    def _end(
        self,
        call: _Call,
        record: FrameRecord | None,
        fields: dict[str, str],
        *,
        metadata: Headers = (),
        reset: str | None = None,
        cut: tuple[int, Direction, float, float | None, str] | None = None,
    ) -> None:
        if call.ended:
            return
        call.ended = True
        status = _status(fields.get("grpc-status"))
        aborted = None
        if status is None:
            aborted = "reset" if reset is not None else "cut" if cut is not None else "no status"
        message = fields.get("grpc-message")
        details = fields.get("grpc-status-details-bin")
        if record is not None:
            stream_id, direction = record.stream_id, record.direction
            timestamp, wall = record.timestamp, record.wall
            note = decode_grpc_message(message) if message is not None else None
        else:
            assert cut is not None
            stream_id, direction, timestamp, wall, note = cut
        self._emit(
            RpcRecord(
                self._connection_id,
                direction,
                timestamp,
                stream_id,
                "end",
                call.method,
                peer=self._peer,
                authority=call.authority,
                timeout=call.timeout,
                metadata=metadata,
                status=status,
                status_name=_STATUS_NAMES.get(status),
                status_message=note,
                status_details=(
                    decode_status_details(details, self._types) if details is not None else None
                ),
                reset=reset,
                requests=call.counts[self._requests],
                responses=call.counts[self._responses],
                timings=call.timings(),
                duration=timestamp - call.start,
                request_bytes=call.sizes[self._requests],
                response_bytes=call.sizes[self._responses],
                wall=wall,
                aborted=aborted,
            )
        )


def _custom(headers: Headers) -> Headers:
    """Custom metadata: every field the transport does not own (values as on the wire)."""
    return tuple((name, value) for name, value in headers if not is_reserved_header(name))


def _decompress(encoding: str, payload: bytes, limit: int) -> tuple[bytes, str | None]:
    """(decompressed, None), or (payload, why not)."""
    if encoding == compression.IDENTITY:
        return payload, "Compressed-Flag set without a grpc-encoding"
    if not compression.is_supported(encoding):
        return payload, f"unsupported grpc-encoding {encoding!r}"
    try:
        return compression.decompress(encoding, payload, limit), None
    except MessageError as exc:
        return payload, str(exc)
