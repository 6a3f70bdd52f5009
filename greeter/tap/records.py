"""Records the wire tap emits: small frozen dataclasses, one per observed event.

Every record carries ``connection_id``, ``direction``, ``timestamp`` and ``wall`` so that
records of all layers correlate. ``direction`` is seen from the tapped endpoint: ``"in"`` is what
it received, ``"out"`` what it sent. ``timestamp`` is the tap clock (``time.monotonic`` by
default) read when the chunk that completed the record was fed, so every record decoded from one
chunk shares it; ``wall`` (the last field of every record) is the UTC wall clock read at the same
moment, in seconds since the Unix epoch (``time.time`` by default; None when a record was built
without one).

Frame records keep the frame header fields (``type``, ``flags``, ``raw_flags``, ``stream_id``,
``length``) for every frame and fill only the payload fields that belong to the frame's type;
the others stay ``None`` (or ``0`` for ``padding``). Field by type:

======================  ====================================================================
type                    fields set
======================  ====================================================================
DATA                    ``data`` (payload without padding), ``padding``
HEADERS                 ``priority`` if the PRIORITY flag is set, ``padding``, ``headers`` if
                        END_HEADERS is set (the HPACK-decoded list of the whole block)
CONTINUATION            ``headers`` on the CONTINUATION that carries END_HEADERS
PUSH_PROMISE            ``promised_stream_id``, ``padding``, ``headers`` as for HEADERS
PRIORITY                ``priority``
RST_STREAM              ``error_code``
SETTINGS                ``settings`` (``()`` for an ACK), in wire order, duplicates kept
PING                    ``ping_data`` (8 bytes); ACK in ``flags``
GOAWAY                  ``last_stream_id``, ``error_code``, ``debug_data``
WINDOW_UPDATE           ``window_increment``
UNKNOWN(0xNN)           ``payload`` (the raw frame payload); ``flags`` is ``()``
======================  ====================================================================

Names follow RFC 9113: frame types (``"HEADERS"``), flags (``"END_STREAM"``, ``"ACK"``,
``"END_HEADERS"``, ``"PADDED"``, ``"PRIORITY"``, in bit order), settings
(``"MAX_CONCURRENT_STREAMS"``; RFC 8441/9218 ids too; others as ``"0xNN"``) and error codes
(``"REFUSED_STREAM"``; others as ``"0xNN"``). Header names and values are decoded as UTF-8;
bytes that are not valid UTF-8 appear as ``\\xNN`` escapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

Direction = Literal["in", "out"]

FRAME_TYPES: dict[int, str] = {
    0x0: "DATA",
    0x1: "HEADERS",
    0x2: "PRIORITY",
    0x3: "RST_STREAM",
    0x4: "SETTINGS",
    0x5: "PUSH_PROMISE",
    0x6: "PING",
    0x7: "GOAWAY",
    0x8: "WINDOW_UPDATE",
    0x9: "CONTINUATION",
}

SETTINGS_NAMES: dict[int, str] = {
    0x1: "HEADER_TABLE_SIZE",
    0x2: "ENABLE_PUSH",
    0x3: "MAX_CONCURRENT_STREAMS",
    0x4: "INITIAL_WINDOW_SIZE",
    0x5: "MAX_FRAME_SIZE",
    0x6: "MAX_HEADER_LIST_SIZE",
    0x8: "ENABLE_CONNECT_PROTOCOL",  # RFC 8441
    0x9: "NO_RFC7540_PRIORITIES",  # RFC 9218
}

ERROR_CODES: dict[int, str] = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}


def hex_id(value: int) -> str:
    """The spelling of an unnamed code: ``0x0a``, ``0xff``, ``0x1234``."""
    return f"0x{value:02x}"


def frame_type_name(frame_type: int) -> str:
    """RFC 9113 name of a frame type, or ``UNKNOWN(0xNN)``."""
    name = FRAME_TYPES.get(frame_type)
    return name if name is not None else f"UNKNOWN({hex_id(frame_type)})"


def setting_name(setting_id: int) -> str:
    """Registered name of a setting identifier, or ``0xNN``."""
    return SETTINGS_NAMES.get(setting_id) or hex_id(setting_id)


def error_code_name(code: int) -> str:
    """RFC 9113 name of an error code, or ``0xNN``."""
    return ERROR_CODES.get(code) or hex_id(code)


@dataclass(frozen=True, slots=True)
class Priority:
    """The priority fields of a PRIORITY frame or of a HEADERS frame with the PRIORITY flag."""

    depends_on: int
    weight: int
    """The wire value plus one (1..256), as RFC 9113 section 5.3.2 defines it."""
    exclusive: bool


@dataclass(frozen=True, slots=True)
class PrefaceRecord:
    """The 24-byte client connection preface (``PRI * HTTP/2.0...``) was seen."""

    layer: ClassVar[str] = "frame"

    connection_id: int
    direction: Direction
    timestamp: float
    wall: float | None = None


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One HTTP/2 frame; see the module docstring for which fields each type fills."""

    layer: ClassVar[str] = "frame"

    connection_id: int
    direction: Direction
    timestamp: float
    stream_id: int
    type: str
    flags: tuple[str, ...]
    raw_flags: int
    """The flags byte as sent, defined bits or not."""
    length: int
    """Payload length from the frame header (padding included): what flow control counts."""
    headers: tuple[tuple[str, str], ...] | None = None
    settings: tuple[tuple[str, int], ...] | None = None
    window_increment: int | None = None
    error_code: str | None = None
    last_stream_id: int | None = None
    debug_data: bytes | None = None
    ping_data: bytes | None = None
    data: bytes | None = None
    padding: int = 0
    """Padding bytes after the payload (the Pad Length value; the Pad Length octet not counted)."""
    priority: Priority | None = None
    promised_stream_id: int | None = None
    payload: bytes | None = None
    wall: float | None = None


@dataclass(frozen=True, slots=True)
class DecodeErrorRecord:
    """The bytes of this direction stopped making sense; the decoder ignores the rest.

    ``offset`` counts bytes of this direction from the first byte fed (preface included) to the
    start of the frame (or preface) that failed; it is -1 for an internal error of the tap, after
    which the tap emits nothing more.
    """

    layer: ClassVar[str] = "frame"

    connection_id: int
    direction: Direction
    timestamp: float
    reason: str
    offset: int
    stream_id: int = 0
    wall: float | None = None


@dataclass(frozen=True, slots=True)
class RawField:
    """One protobuf wire field of a message whose type is unknown (``protoc --decode_raw``).

    ``value`` is an int (VARINT, I64, I32), the field's bytes (LEN) or, for a LEN value that
    itself parses as protobuf, a tuple of nested fields.
    """

    number: int
    wire_type: int
    value: int | bytes | tuple[RawField, ...]


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One gRPC Length-Prefixed-Message, reassembled from the DATA frames of a stream.

    Decoded three ways, best first: ``decoded`` (the message dataclass for the route and
    direction, when the tap knows the service), else ``fields`` (wire fields, schema-free),
    else only ``data`` with ``error`` saying why it could not be decoded. ``error`` is also set
    next to ``fields`` when the known message class rejected the bytes, and alone (``data``
    empty) when the stream's messages could not be framed: a bad prefix or a stream ending
    inside a message; decoding of that stream and direction stops there.
    """

    layer: ClassVar[str] = "message"

    connection_id: int
    direction: Direction
    timestamp: float
    stream_id: int
    method: str | None
    """The RPC's :path, when its request headers were seen."""
    index: int
    """1-based position of this message in its stream and direction."""
    compressed: bool
    length: int
    """Message-Length from the 5-byte prefix (compressed size when compressed)."""
    encoding: str
    """The stream's grpc-encoding for this direction (``identity`` when absent)."""
    data: bytes
    """The message bytes, decompressed."""
    decoded: object | None = None
    fields: tuple[RawField, ...] | None = None
    error: str | None = None
    size: int | None = None
    """Size of the whole message once decompressed (``len(data)`` unless ``data`` was cut to the
    tap's body limit); None when decompression stopped at the tap's message limit."""
    wall: float | None = None


RpcEvent = Literal["start", "end"]


@dataclass(frozen=True, slots=True)
class RpcRecord:
    """An RPC began (request headers seen) or ended (trailers, Trailers-Only or RST_STREAM).

    ``direction`` is that of the frame that caused the record. At ``end``, ``timings`` gives each
    milestone in seconds since ``start``: ``response_headers``, ``first_request``,
    ``last_request``, ``first_response``, ``last_response``, ``trailers`` (those that happened).
    """

    layer: ClassVar[str] = "rpc"

    connection_id: int
    direction: Direction
    timestamp: float
    stream_id: int
    event: RpcEvent
    method: str
    peer: str | None = None
    authority: str | None = None
    timeout: float | None = None
    """grpc-timeout in seconds (the deadline relative to ``start``)."""
    metadata: tuple[tuple[str, str], ...] = ()
    """Custom request metadata at ``start`` (secrets redacted), trailing metadata at ``end``."""
    status: int | None = None
    status_name: str | None = None
    status_message: str | None = None
    status_details: tuple[tuple[str, object], ...] | None = None
    """grpc-status-details-bin decoded: (type_url, decoded detail or raw fields) per detail;
    None when absent or not a valid google.rpc.Status (the trailers' frame record shows it)."""
    reset: str | None = None
    """RST_STREAM error code name when the stream was reset before its status was seen (a reset
    after the trailers shows only as a frame)."""
    requests: int = 0
    responses: int = 0
    timings: tuple[tuple[str, float], ...] = ()
    duration: float | None = None
    """At ``end``: seconds from ``start`` to this record."""
    request_bytes: int = 0
    response_bytes: int = 0
    """Bytes of the messages seen each way as framed on the wire (5-byte prefix plus
    Message-Length, compressed as sent)."""
    wall: float | None = None
    aborted: str | None = None
    """At ``end``, set when the RPC ended without a status: ``"reset"`` (RST_STREAM, see
    ``reset``), ``"cut"`` (the connection closed, or the stream was above a GOAWAY's last stream
    id; ``status_message`` says which) or ``"no status"`` (the response ended without one)."""


ConnectionEvent = Literal[
    "open", "window", "stall", "unstall", "ping_rtt", "goaway", "close", "transport"
]


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """Connection-level state: flow-control windows, stalls, PING round trips, GOAWAY, close.

    Windows are seen from the tapped endpoint: ``*_in`` is how much the peer may still send
    (our receive window), ``*_out`` how much we may still send. ``window`` records follow every
    DATA, WINDOW_UPDATE and SETTINGS that changes a window; ``stream_id`` 0 means only the
    connection windows changed. A ``stall`` is a window of a direction reaching zero or below
    (``direction`` is the blocked flow, ``stream_id`` 0 for the connection window); ``unstall``
    is its release, with ``duration``. ``ping_rtt`` has ``duration`` from PING to its ACK and
    the direction the PING went. ``open`` (the client preface) and ``close`` carry ``peer``;
    ``close`` has no direction. Window arithmetic and its approximation: greeter/tap/flow.py.

    ``transport`` (only when raw bytes are captured: greeter/tap/capture.py) comes first and
    names the socket: ``local`` and ``peer`` addresses, ``tls``, ``epoch`` (the wall clock at
    ``timestamp``) and as ``direction`` the way the connection was opened: ``"in"`` when the
    peer connected to the tapped endpoint, ``"out"`` when the endpoint connected to the peer.
    """

    layer: ClassVar[str] = "connection"

    connection_id: int
    direction: Direction | None
    timestamp: float
    stream_id: int
    event: ConnectionEvent
    connection_in: int | None = None
    connection_out: int | None = None
    stream_in: int | None = None
    stream_out: int | None = None
    duration: float | None = None
    error_code: str | None = None
    last_stream_id: int | None = None
    reason: str | None = None
    peer: str | None = None
    wall: float | None = None
    local: str | None = None
    """``transport``: the tapped endpoint's own address (``host:port``, or a Unix socket path)."""
    tls: bool | None = None
    """``transport``: the bytes travel inside TLS (the tap sees them decrypted)."""
    epoch: float | None = None
    """``transport``: seconds since the Unix epoch (``time.time()``) at ``timestamp``."""


@dataclass(frozen=True, slots=True)
class BytesRecord:
    """One chunk of raw bytes as the endpoint read (``"in"``) or wrote (``"out"``) it.

    Emitted only when raw bytes are captured (greeter/tap/capture.py), before the records the
    chunk decodes into: what a packet capture of the connection would carry (plaintext for TLS).
    """

    layer: ClassVar[str] = "bytes"

    connection_id: int
    direction: Direction
    timestamp: float
    data: bytes
    wall: float | None = None


Record = (
    FrameRecord
    | PrefaceRecord
    | DecodeErrorRecord
    | MessageRecord
    | RpcRecord
    | ConnectionRecord
    | BytesRecord
)
