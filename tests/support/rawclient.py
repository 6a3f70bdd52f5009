"""A raw HTTP/2 client for protocol-precise server tests: every frame visible, nothing validated.

Not a test module. Built on hyperframe and hpack rather than h2 because tests must send what a
well-behaved client never would (GET, ``te: gzip``, zero-length DATA, more streams than the server
advertised, message prefixes without bodies) and must see every frame the server sends (GOAWAY,
RST_STREAM codes, a stalled flow-control window). h2's client state machine would refuse some of
those sends and closes itself on the first GOAWAY.

Flow control is explicit: the client advertises ``initial_window_size`` and, with
``auto_window_update=False``, sends no WINDOW_UPDATE at all until the test calls
:meth:`RawClient.open_window`. Every wait is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hpack import Decoder, Encoder
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

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME_SIZE = 16_384
FRAME_HEADER_SIZE = 9
WAIT = 5.0
"""Default upper bound, in seconds, of every wait in this module."""

# RFC 9113 §7 error codes used by the tests.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
REFUSED_STREAM = 0x7
CANCEL = 0x8

Header = tuple[str, str]


def grpc_message(payload: bytes, *, compressed: bool = False) -> bytes:
    """One gRPC Length-Prefixed-Message: flag byte, 4-byte big-endian length, payload."""
    return struct.pack(">BI", int(compressed), len(payload)) + payload


def split_messages(data: bytes) -> list[bytes]:
    """The payloads of consecutive Length-Prefixed-Messages (compressed flag ignored)."""
    messages = []
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos + 1)
        messages.append(data[pos + 5 : pos + 5 + length])
        pos += 5 + length
    if pos != len(data):
        raise ValueError("trailing bytes after the last message")
    return messages


def request_headers(
    path: str = "/greet.Greeter/SayHello", extra: Sequence[Header] = ()
) -> list[Header]:
    """A well-formed gRPC request header block, plus `extra` fields."""
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *extra,
    ]


@dataclass
class StreamResult:
    """What the server sent on one stream, filled in as frames arrive."""

    stream_id: int
    headers: list[Header] | None = None
    trailers: list[Header] | None = None
    """The header block that ended the stream; the same list as `headers` for Trailers-Only."""
    data: bytearray = field(default_factory=bytearray)
    data_frames: int = 0
    reset_code: int | None = None
    ended: bool = False
    """END_STREAM received."""
    connection_lost: bool = False

    @property
    def finished(self) -> bool:
        return self.ended or self.reset_code is not None or self.connection_lost

    def header(self, name: str) -> str | None:
        return _lookup(self.headers, name)

    def trailer(self, name: str) -> str | None:
        return _lookup(self.trailers, name)

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
        return split_messages(bytes(self.data))


def _lookup(block: list[Header] | None, name: str) -> str | None:
    for key, value in block or ():
        if key == name:
            return value
    return None


class RawClient:
    """One HTTP/2 connection to the server under test, read by a background task."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        initial_window_size: int,
        auto_window_update: bool,
        ack_pings: bool,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.initial_window_size = initial_window_size
        self.auto_window_update = auto_window_update
        self.ack_pings = ack_pings
        self._encoder = Encoder()
        self._decoder = Decoder()
        self._next_stream_id = 1
        self.streams: dict[int, StreamResult] = {}
        self._done: dict[int, asyncio.Future[StreamResult]] = {}
        self.frames: list[Frame] = []
        """Every frame received, in order."""
        self.goaways: list[GoAwayFrame] = []
        self.goaway_received = asyncio.Event()
        self.settings_received = asyncio.Event()
        self.eof = asyncio.Event()
        self._progress = asyncio.Event()
        """Set after every received frame; see wait_until."""
        """The server closed the connection (or it broke)."""
        self.server_settings: dict[int, int] = {}
        self._ping_waiters: dict[bytes, asyncio.Future[None]] = {}
        self._header_block: tuple[HeadersFrame, bytearray] | None = None
        # Our send windows (the server's receive windows).
        self._remote_initial_window = DEFAULT_WINDOW
        self._max_frame_size = DEFAULT_MAX_FRAME_SIZE
        self._connection_send_window = DEFAULT_WINDOW
        self._send_windows: dict[int, int] = {}
        self._window_changed = asyncio.Event()
        # Received flow-controlled bytes not yet returned with WINDOW_UPDATE.
        self.unacknowledged = 0
        self._unacknowledged_streams: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        port: int,
        host: str = "127.0.0.1",
        *,
        initial_window_size: int = DEFAULT_WINDOW,
        auto_window_update: bool = True,
        ack_pings: bool = True,
    ) -> RawClient:
        """Connect, send the preface and SETTINGS, and wait for the server's SETTINGS."""
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(
            reader,
            writer,
            initial_window_size=initial_window_size,
            auto_window_update=auto_window_update,
            ack_pings=ack_pings,
        )
        settings = SettingsFrame(
            0,
            settings={
                SettingsFrame.ENABLE_PUSH: 0,
                SettingsFrame.INITIAL_WINDOW_SIZE: initial_window_size,
            },
        )
        writer.write(PREFACE + settings.serialize())
        client._task = asyncio.create_task(client._read_loop())
        await asyncio.wait_for(client.settings_received.wait(), WAIT)
        return client

    # -- sending ---------------------------------------------------------------------------------

    def write_frame(self, frame: Frame) -> None:
        self._writer.write(frame.serialize())

    def start_request(
        self,
        path: str = "/greet.Greeter/SayHello",
        *,
        extra: Sequence[Header] = (),
        headers: Sequence[Header] | None = None,
        end_stream: bool = False,
    ) -> int:
        """Open a stream with a HEADERS frame; `headers` replaces the default block entirely."""
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        block = list(headers) if headers is not None else request_headers(path, extra)
        encoded = self._encoder.encode(block)
        if len(encoded) > self._max_frame_size:
            raise ValueError("header block needs CONTINUATION frames; not supported")
        frame = HeadersFrame(stream_id, encoded)
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        self.streams[stream_id] = StreamResult(stream_id)
        self._done[stream_id] = asyncio.get_running_loop().create_future()
        self._send_windows[stream_id] = self._remote_initial_window
        self.write_frame(frame)
        return stream_id

    async def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """Send `data` as DATA frames within the server's windows; b"" sends one empty frame."""
        if not data:
            self._write_data(stream_id, b"", end_stream)
            return
        view = memoryview(data)
        while view:
            room = min(
                self._max_frame_size,
                self._connection_send_window,
                self._send_windows.get(stream_id, DEFAULT_WINDOW),
            )
            if room <= 0:
                self._window_changed.clear()
                await asyncio.wait_for(self._window_changed.wait(), WAIT)
                continue
            chunk, view = view[:room], view[room:]
            self._connection_send_window -= len(chunk)
            self._send_windows[stream_id] = self._send_windows.get(stream_id, 0) - len(chunk)
            self._write_data(stream_id, bytes(chunk), end_stream and not view)

    def _write_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        frame = DataFrame(stream_id, data)
        if end_stream:
            frame.flags.add("END_STREAM")
        self.write_frame(frame)

    async def send_message(
        self, stream_id: int, payload: bytes, *, compressed: bool = False, end_stream: bool = False
    ) -> None:
        await self.send_data(
            stream_id, grpc_message(payload, compressed=compressed), end_stream=end_stream
        )

    async def end_stream(self, stream_id: int) -> None:
        """Half-close with an empty DATA frame carrying END_STREAM."""
        await self.send_data(stream_id, b"", end_stream=True)

    def reset(self, stream_id: int, error_code: int = CANCEL) -> None:
        self.write_frame(RstStreamFrame(stream_id, error_code=error_code))

    async def ping(self, opaque: bytes = b"rawping!", timeout: float = WAIT) -> None:
        """Send a PING and wait for its ACK: a full round trip through the server's loop."""
        waiter = asyncio.get_running_loop().create_future()
        self._ping_waiters[opaque] = waiter
        self.write_frame(PingFrame(0, opaque_data=opaque))
        await asyncio.wait_for(waiter, timeout)

    def open_window(self, increment: int = 16 * 1024 * 1024) -> None:
        """Grow the connection window and every open stream's window; acknowledge from now on."""
        self.auto_window_update = True
        self.write_frame(WindowUpdateFrame(0, window_increment=increment))
        for stream_id, result in self.streams.items():
            if not result.finished:
                self.write_frame(WindowUpdateFrame(stream_id, window_increment=increment))
        self.unacknowledged = 0
        self._unacknowledged_streams.clear()

    async def unary(
        self,
        path: str = "/greet.Greeter/SayHello",
        payload: bytes = b"",
        *,
        extra: Sequence[Header] = (),
        timeout: float = WAIT,
    ) -> StreamResult:
        """One request message then END_STREAM; the complete response."""
        stream_id = self.start_request(path, extra=extra)
        await self.send_message(stream_id, payload, end_stream=True)
        return await self.wait(stream_id, timeout)

    # -- receiving -------------------------------------------------------------------------------

    async def wait(self, stream_id: int, timeout: float = WAIT) -> StreamResult:
        """Wait until the stream ended (END_STREAM, RST_STREAM or connection lost)."""
        return await asyncio.wait_for(asyncio.shield(self._done[stream_id]), timeout)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        """Wait until `predicate()` holds, re-checking after every received frame."""
        async with asyncio.timeout(timeout):
            while not predicate():
                if self.eof.is_set():
                    raise ConnectionError("connection closed while waiting")
                self._progress.clear()
                await self._progress.wait()

    async def wait_closed_by_server(self, timeout: float = WAIT) -> None:
        await asyncio.wait_for(self.eof.wait(), timeout)

    async def _read_loop(self) -> None:
        try:
            while True:
                head = await self._reader.readexactly(FRAME_HEADER_SIZE)
                frame, length = Frame.parse_frame_header(memoryview(head))
                body = await self._reader.readexactly(length) if length else b""
                frame.parse_body(memoryview(body))
                self.frames.append(frame)
                self._on_frame(frame)
                self._progress.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.eof.set()
            self._progress.set()
            for stream_id, result in self.streams.items():
                if not result.finished:
                    result.connection_lost = True
                    self._finish(stream_id)

    def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, DataFrame):
            self._on_data(frame)
        elif isinstance(frame, HeadersFrame | ContinuationFrame):
            self._on_header_fragment(frame)
        elif isinstance(frame, RstStreamFrame):
            result = self.streams.get(frame.stream_id)
            if result is not None:
                result.reset_code = frame.error_code
                self._finish(frame.stream_id)
        elif isinstance(frame, SettingsFrame):
            self._on_settings(frame)
        elif isinstance(frame, WindowUpdateFrame):
            if frame.stream_id == 0:
                self._connection_send_window += frame.window_increment
            else:
                self._send_windows[frame.stream_id] = (
                    self._send_windows.get(frame.stream_id, 0) + frame.window_increment
                )
            self._window_changed.set()
        elif isinstance(frame, PingFrame):
            if "ACK" in frame.flags:
                waiter = self._ping_waiters.pop(bytes(frame.opaque_data), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif self.ack_pings:
                ack = PingFrame(0, opaque_data=frame.opaque_data)
                ack.flags.add("ACK")
                self.write_frame(ack)
        elif isinstance(frame, GoAwayFrame):
            self.goaways.append(frame)
            self.goaway_received.set()

    def _on_settings(self, frame: SettingsFrame) -> None:
        if "ACK" in frame.flags:
            return
        for code, value in frame.settings.items():
            self.server_settings[code] = value
            if code == SettingsFrame.INITIAL_WINDOW_SIZE:
                delta = value - self._remote_initial_window
                self._remote_initial_window = value
                for stream_id in self._send_windows:
                    self._send_windows[stream_id] += delta
            elif code == SettingsFrame.MAX_FRAME_SIZE:
                self._max_frame_size = value
        ack = SettingsFrame(0)
        ack.flags.add("ACK")
        self.write_frame(ack)
        self._window_changed.set()
        self.settings_received.set()

    def _on_data(self, frame: DataFrame) -> None:
        result = self.streams.get(frame.stream_id)
        if result is not None:
            result.data += frame.data
            result.data_frames += 1
        length = frame.flow_controlled_length
        if length:
            if self.auto_window_update:
                self.write_frame(WindowUpdateFrame(0, window_increment=length))
                if "END_STREAM" not in frame.flags:
                    self.write_frame(WindowUpdateFrame(frame.stream_id, window_increment=length))
            else:
                self.unacknowledged += length
                self._unacknowledged_streams[frame.stream_id] = (
                    self._unacknowledged_streams.get(frame.stream_id, 0) + length
                )
        if "END_STREAM" in frame.flags and result is not None:
            result.ended = True
            self._finish(frame.stream_id)

    def _on_header_fragment(self, frame: HeadersFrame | ContinuationFrame) -> None:
        if isinstance(frame, HeadersFrame):
            self._header_block = (frame, bytearray(frame.data))
        else:
            assert self._header_block is not None, "CONTINUATION without HEADERS"
            self._header_block[1].extend(frame.data)
        if "END_HEADERS" not in frame.flags:
            return
        first, block = self._header_block
        self._header_block = None
        decoded = [(str(k), str(v)) for k, v in self._decoder.decode(bytes(block))]
        result = self.streams.get(first.stream_id)
        if result is None:
            return
        end = "END_STREAM" in first.flags
        if result.headers is None:
            result.headers = decoded
            if end:
                result.trailers = decoded
        else:
            result.trailers = decoded
        if end:
            result.ended = True
            self._finish(first.stream_id)

    def _finish(self, stream_id: int) -> None:
        done = self._done.get(stream_id)
        if done is not None and not done.done():
            done.set_result(self.streams[stream_id])

    # -- closing ---------------------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the TCP connection at once, without GOAWAY (a client that vanished)."""
        self._writer.transport.abort()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), WAIT)

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
