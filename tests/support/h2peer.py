"""The raw HTTP/2 test peer: the client's half of the wire, shared by every raw test transport.

Not a test module. Tests must send what a well-behaved client never would (GET, ``te: gzip``,
empty DATA, floods, more streams than allowed) and must see every frame the server sends, so the
peer is built on hyperframe and hpack with no HTTP/2 state machine of its own. This module owns
the wire pieces; the transports only move bytes:

- `tests.support.core_pair`: in memory, joined to the sans-IO core (``RawPair``; ``Pair`` drives
  a real h2 client and reads the core's frames with `FrameReader`);
- `tests.support.rawclient`: an asyncio socket client with explicit flow control (``RawClient``);
- `tests.support.attacker`: a blocking socket with a reader thread that never writes
  (``Attacker``).

What is here: the client preface, `request_headers` (every field replaceable or removable, so a
test can break the block), gRPC message framing through greeter.wire.framing, frame builders
(SETTINGS, PING, DATA, RST_STREAM, WINDOW_UPDATE, HEADERS with CONTINUATION), `FrameReader`
(splits a byte stream into frames, reassembles HEADERS + CONTINUATION and HPACK-decodes the
block), and `StreamResult`, what the server sent on one stream, kept up to date by
`StreamResults`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from gen.greet import HelloRequest
from greeter.wire.framing import MessageDecoder, encode_message

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface (RFC 9113 §3.4); a SETTINGS frame must follow it."""
FRAME_HEADER_SIZE = 9
DEFAULT_WINDOW = 65_535
"""SETTINGS_INITIAL_WINDOW_SIZE and the connection window before any update."""
DEFAULT_MAX_FRAME_SIZE = 16_384
"""SETTINGS_MAX_FRAME_SIZE before any update: the largest frame payload a peer must accept."""
MAX_HEADER_LIST_SIZE = 1 << 20
"""The largest decoded header block `FrameReader` accepts (hpack's own default is 64 KiB)."""
WAIT = 5.0
"""Default bound, in seconds, of every wait of the socket transports."""

# RFC 9113 §7 error codes.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

SAY_HELLO = "/greet.Greeter/SayHello"
LOTS_OF_REPLIES = "/greet.Greeter/LotsOfReplies"
LOTS_OF_GREETINGS = "/greet.Greeter/LotsOfGreetings"
BIDI_HELLO = "/greet.Greeter/BidiHello"

Header = tuple[str, str]
Headers = list[Header]


# -- what the client sends -------------------------------------------------------------------------


def request_headers(
    path: str | None = SAY_HELLO,
    *,
    method: str | None = "POST",
    scheme: str | None = "http",
    authority: str | None = "localhost",
    content_type: str | None = "application/grpc",
    te: str | None = "trailers",
    timeout: str | None = None,
    encoding: str | None = None,
    metadata: Iterable[Header] = (),
) -> Headers:
    """A gRPC request header block: pseudo-headers, content-type, te, then `metadata`.

    Every field is replaceable and can be left out (None), so a test can break the block;
    `timeout` and `encoding` add grpc-timeout and grpc-encoding. The fields are str: hpack and h2
    encode them as UTF-8.
    """
    fields: Headers = []
    for name, value in (
        (":method", method),
        (":scheme", scheme),
        (":path", path),
        (":authority", authority),
        ("content-type", content_type),
        ("te", te),
        ("grpc-timeout", timeout),
        ("grpc-encoding", encoding),
    ):
        if value is not None:
            fields.append((name, value))
    fields.extend(metadata)
    return fields


def hello_message(name: str = "x", count: int = 0) -> bytes:
    """A Length-Prefixed HelloRequest."""
    return encode_message(bytes(HelloRequest(name=name, count=count)))


def client_preface(settings: Mapping[int, int] | None = None) -> bytes:
    """The connection preface and the client's first SETTINGS frame (empty by default)."""
    return PREFACE + settings_frame(settings)


def settings_frame(settings: Mapping[int, int] | None = None) -> bytes:
    return SettingsFrame(0, settings=dict(settings or {})).serialize()


def settings_ack() -> bytes:
    frame = SettingsFrame(0)
    frame.flags.add("ACK")
    return frame.serialize()


def ping_frame(opaque: bytes = b"\0" * 8, *, ack: bool = False) -> bytes:
    frame = PingFrame(0, opaque_data=opaque)
    if ack:
        frame.flags.add("ACK")
    return frame.serialize()


def data_frame(stream_id: int, data: bytes, end_stream: bool = False) -> bytes:
    frame = DataFrame(stream_id, data)
    if end_stream:
        frame.flags.add("END_STREAM")
    return frame.serialize()


def rst_frame(stream_id: int, error_code: int = CANCEL) -> bytes:
    return RstStreamFrame(stream_id, error_code=error_code).serialize()


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return WindowUpdateFrame(stream_id, window_increment=increment).serialize()


def header_frames(
    stream_id: int,
    block: bytes,
    *,
    end_stream: bool = False,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> bytes:
    """An encoded header block as HEADERS, plus CONTINUATION frames when it exceeds a frame."""
    chunks = [block[i : i + max_frame_size] for i in range(0, len(block), max_frame_size)]
    chunks = chunks or [b""]
    first = HeadersFrame(stream_id, chunks[0])
    if end_stream:
        first.flags.add("END_STREAM")
    frames: list[HeadersFrame | ContinuationFrame] = [first]
    frames += [ContinuationFrame(stream_id, chunk) for chunk in chunks[1:]]
    frames[-1].flags.add("END_HEADERS")
    return b"".join(frame.serialize() for frame in frames)


# -- what the client reads -------------------------------------------------------------------------


@dataclass
class WireFrame:
    """One frame as read from the wire, parsed by hyperframe."""

    frame: Frame
    raw: bytes
    headers: Headers | None = None
    """On the frame that ends a header block (HEADERS or its last CONTINUATION): the block,
    HPACK-decoded (latin-1, so every byte survives)."""
    block_start: HeadersFrame | None = None
    """On that same frame: the HEADERS frame that began the block (its stream and END_STREAM)."""

    @property
    def stream_id(self) -> int:
        return int(self.frame.stream_id)

    def summary(self) -> tuple[Any, ...]:
        """A comparable tuple: the frame type and the fields a test asserts on."""
        f = self.frame
        end = "END_STREAM" in f.flags
        if isinstance(f, HeadersFrame | ContinuationFrame):
            return ("HEADERS", self.headers, end)
        if isinstance(f, DataFrame):
            return ("DATA", bytes(f.data), end)
        if isinstance(f, RstStreamFrame):
            return ("RST_STREAM", f.error_code)
        if isinstance(f, WindowUpdateFrame):
            return ("WINDOW_UPDATE", f.window_increment)
        if isinstance(f, GoAwayFrame):
            return ("GOAWAY", f.last_stream_id, f.error_code)
        if isinstance(f, PingFrame):
            return ("PING", bytes(f.opaque_data), "ACK" in f.flags)
        if isinstance(f, SettingsFrame):
            return ("SETTINGS", dict(f.settings), "ACK" in f.flags)
        return (type(f).__name__,)


def as_text(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Header fields as (str, str); values are latin-1 so every byte survives."""
    return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in headers]


class FrameReader:
    """Splits one direction's bytes into frames, in any chunking; decodes each header block.

    The reader keeps its own HPACK decoder, so it must see every frame of its direction in order.
    A header block is reassembled from HEADERS and its CONTINUATION frames and decoded when
    END_HEADERS arrives; a CONTINUATION that continues nothing is an AssertionError.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = MAX_HEADER_LIST_SIZE
        self._block: tuple[HeadersFrame, bytearray] | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back for the next `feed`."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[WireFrame]:
        """The frames `data` completes, in order (a partial frame waits for more bytes)."""
        self._buffer += data
        frames: list[WireFrame] = []
        while len(self._buffer) >= FRAME_HEADER_SIZE:
            header = memoryview(bytes(self._buffer[:FRAME_HEADER_SIZE]))
            frame, length = Frame.parse_frame_header(header)
            if len(self._buffer) < FRAME_HEADER_SIZE + length:
                break
            raw = bytes(self._buffer[: FRAME_HEADER_SIZE + length])
            del self._buffer[: FRAME_HEADER_SIZE + length]
            frame.parse_body(memoryview(raw[FRAME_HEADER_SIZE:]))
            wire = WireFrame(frame, raw)
            if isinstance(frame, HeadersFrame | ContinuationFrame):
                self._add_fragment(wire, frame)
            frames.append(wire)
        return frames

    def _add_fragment(self, wire: WireFrame, frame: HeadersFrame | ContinuationFrame) -> None:
        if isinstance(frame, HeadersFrame):
            self._block = (frame, bytearray(frame.data))
        else:
            assert self._block is not None, f"CONTINUATION without HEADERS: {frame}"
            self._block[1].extend(frame.data)
        if "END_HEADERS" in frame.flags:
            assert self._block is not None
            start, block = self._block
            self._block = None
            wire.block_start = start
            wire.headers = as_text(self._decoder.decode(bytes(block), raw=True))


def grpc_messages(data: bytes) -> list[bytes]:
    """The payloads of the Length-Prefixed-Messages in a stream's DATA bytes.

    AssertionError when the bytes end inside a message or a message is compressed (these test
    peers never ask for compressed responses; decode such DATA with greeter.wire.framing).
    """
    decoder = MessageDecoder(2**32)
    messages = decoder.feed(data)
    assert decoder.buffered == 0, "the DATA ends inside a message"
    assert not any(m.compressed for m in messages), "a compressed message"
    return [m.payload for m in messages]


def lookup(block: Sequence[Header] | None, name: str) -> str | None:
    """The first value of `name` in a header block (None when absent or no block)."""
    for key, value in block or ():
        if key == name:
            return value
    return None


@dataclass
class StreamResult:
    """What the server sent on one stream, filled in as its frames arrive (see StreamResults)."""

    stream_id: int
    headers: Headers | None = None
    trailers: Headers | None = None
    """The header block that ended the stream; the same list as `headers` for Trailers-Only."""
    data: bytearray = field(default_factory=bytearray)
    data_frames: int = 0
    reset_code: int | None = None
    """The error code of the server's RST_STREAM."""
    ended: bool = False
    """END_STREAM received."""
    connection_lost: bool = False
    """The connection closed before the stream finished."""

    @property
    def finished(self) -> bool:
        """Nothing more will arrive: END_STREAM, RST_STREAM or the connection is gone."""
        return self.ended or self.reset_code is not None or self.connection_lost

    def header(self, name: str) -> str | None:
        return lookup(self.headers, name)

    def trailer(self, name: str) -> str | None:
        return lookup(self.trailers, name)

    @property
    def http_status(self) -> int | None:
        value = self.header(":status")
        return None if value is None else int(value)

    @property
    def status(self) -> int | None:
        """grpc-status from the trailers (or the Trailers-Only block)."""
        value = self.trailer("grpc-status")
        return None if value is None else int(value)

    @property
    def message(self) -> str | None:
        return self.trailer("grpc-message")

    def messages(self) -> list[bytes]:
        """The response messages (see `grpc_messages`)."""
        return grpc_messages(bytes(self.data))


class StreamResults:
    """The `StreamResult` of every stream a client opened, kept up to date frame by frame.

    Frames on streams the client did not `open` are ignored here (the transport still has them).
    """

    def __init__(self) -> None:
        self.streams: dict[int, StreamResult] = {}

    def open(self, stream_id: int) -> StreamResult:
        """The result of `stream_id`, created on first use."""
        return self.streams.setdefault(stream_id, StreamResult(stream_id))

    def on_frame(self, wire: WireFrame) -> StreamResult | None:
        """Apply one received frame; the stream's result if the stream is now finished.

        Everything the server sends on an opened stream is recorded, even after the stream
        finished, so a test can see a frame that should never have come.
        """
        frame = wire.frame
        if wire.block_start is not None:
            stream_id = wire.block_start.stream_id
            end = "END_STREAM" in wire.block_start.flags
        else:
            stream_id, end = frame.stream_id, "END_STREAM" in frame.flags
        result = self.streams.get(stream_id)
        if result is None:
            return None
        if wire.headers is not None:
            if result.headers is None:
                result.headers = wire.headers
                if end:  # Trailers-Only
                    result.trailers = wire.headers
            else:
                result.trailers = wire.headers
            result.ended = result.ended or end
        elif isinstance(frame, DataFrame):
            result.data += frame.data
            result.data_frames += 1
            result.ended = result.ended or end
        elif isinstance(frame, RstStreamFrame):
            result.reset_code = frame.error_code
        return result if result.finished else None

    def connection_lost(self) -> list[StreamResult]:
        """Mark every unfinished stream as lost with the connection; return those streams."""
        lost = [result for result in self.streams.values() if not result.finished]
        for result in lost:
            result.connection_lost = True
        return lost
