"""An asyncio raw HTTP/2 client for protocol-precise server tests: every frame visible.

Not a test module. The wire pieces (preface, request headers, message framing, frame builders,
the frame reader and the per-stream `StreamResult`) are tests.support.h2peer's; this module is
the asyncio transport: one TCP connection, a background task that reads it, and explicit flow
control. The client advertises ``initial_window_size`` and, with ``auto_window_update=False``,
sends no WINDOW_UPDATE at all until the test calls :meth:`RawClient.open_window`. It answers
the server's SETTINGS and (unless ``ack_pings=False``) PINGs, and never closes itself on GOAWAY.
Every wait is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import hpack
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from greeter.wire.framing import encode_message
from tests.support.h2peer import (
    CANCEL,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_WINDOW,
    SAY_HELLO,
    WAIT,
    FrameReader,
    Header,
    StreamResult,
    StreamResults,
    WireFrame,
    client_preface,
    data_frame,
    header_frames,
    ping_frame,
    request_headers,
    rst_frame,
    settings_ack,
    window_update_frame,
)

READ_SIZE = 64 * 1024


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
        self._encoder = hpack.Encoder()
        self._frame_reader = FrameReader()
        self._results = StreamResults()
        self._next_stream_id = 1
        self.streams: dict[int, StreamResult] = self._results.streams
        self._done: dict[int, asyncio.Future[StreamResult]] = {}
        self.frames: list[Frame] = []
        """Every frame received, in order."""
        self.goaways: list[GoAwayFrame] = []
        self.goaway_received = asyncio.Event()
        self.settings_received = asyncio.Event()
        self.eof = asyncio.Event()
        """The server closed the connection (or it broke)."""
        self._progress = asyncio.Event()
        """Set after every received frame; see wait_until."""
        self.server_settings: dict[int, int] = {}
        self._ping_waiters: dict[bytes, asyncio.Future[None]] = {}
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
        settings = {
            SettingsFrame.ENABLE_PUSH: 0,
            SettingsFrame.INITIAL_WINDOW_SIZE: initial_window_size,
        }
        writer.write(client_preface(settings))
        client._task = asyncio.create_task(client._read_loop())
        await asyncio.wait_for(client.settings_received.wait(), WAIT)
        return client

    # -- sending ---------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Bytes as they are (frames from tests.support.h2peer, or anything at all)."""
        self._writer.write(data)

    def write_frame(self, frame: Frame) -> None:
        self._writer.write(frame.serialize())

    def start_request(
        self,
        path: str = SAY_HELLO,
        *,
        extra: Sequence[Header] = (),
        headers: Sequence[Header] | None = None,
        end_stream: bool = False,
    ) -> int:
        """Open a stream (HEADERS, CONTINUATION if needed) with h2peer.request_headers plus
        `extra`; `headers` replaces the whole block."""
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        block = list(headers) if headers is not None else request_headers(path, metadata=extra)
        self._results.open(stream_id)
        self._done[stream_id] = asyncio.get_running_loop().create_future()
        self._send_windows[stream_id] = self._remote_initial_window
        encoded = self._encoder.encode(block)
        self.write(
            header_frames(
                stream_id, encoded, end_stream=end_stream, max_frame_size=self._max_frame_size
            )
        )
        return stream_id

    async def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """Send `data` as DATA frames within the server's windows; b"" sends one empty frame."""
        if not data:
            self.write(data_frame(stream_id, b"", end_stream))
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
            self.write(data_frame(stream_id, bytes(chunk), end_stream and not view))

    async def send_message(
        self, stream_id: int, payload: bytes, *, compressed: bool = False, end_stream: bool = False
    ) -> None:
        """One Length-Prefixed-Message; `compressed` sets its flag (the payload is as given)."""
        await self.send_data(
            stream_id, encode_message(payload, compressed=compressed), end_stream=end_stream
        )

    async def end_stream(self, stream_id: int) -> None:
        """Half-close with an empty DATA frame carrying END_STREAM."""
        await self.send_data(stream_id, b"", end_stream=True)

    def reset(self, stream_id: int, error_code: int = CANCEL) -> None:
        self.write(rst_frame(stream_id, error_code))

    async def ping(self, opaque: bytes = b"rawping!", timeout: float = WAIT) -> None:
        """Send a PING and wait for its ACK: a full round trip through the server's loop."""
        waiter = asyncio.get_running_loop().create_future()
        self._ping_waiters[opaque] = waiter
        self.write(ping_frame(opaque))
        await asyncio.wait_for(waiter, timeout)

    def open_window(self, increment: int = 16 * 1024 * 1024) -> None:
        """Grow the connection window and every open stream's window; acknowledge from now on."""
        self.auto_window_update = True
        self.write(window_update_frame(0, increment))
        for stream_id, result in self.streams.items():
            if not result.finished:
                self.write(window_update_frame(stream_id, increment))
        self.unacknowledged = 0
        self._unacknowledged_streams.clear()

    async def unary(
        self,
        path: str = SAY_HELLO,
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
        """Wait until the stream finished (END_STREAM, RST_STREAM or connection lost)."""
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
            while data := await self._reader.read(READ_SIZE):
                for wire in self._frame_reader.feed(data):
                    self.frames.append(wire.frame)
                    self._on_frame(wire)
                    self._progress.set()
        except ConnectionError:
            pass
        finally:
            self.eof.set()
            self._progress.set()
            for result in self._results.connection_lost():
                self._finish(result)

    def _on_frame(self, wire: WireFrame) -> None:
        finished = self._results.on_frame(wire)
        if finished is not None:
            self._finish(finished)
        frame = wire.frame
        if isinstance(frame, DataFrame):
            self._on_data(frame)
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
                self.write(ping_frame(frame.opaque_data, ack=True))
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
        self.write(settings_ack())
        self._window_changed.set()
        self.settings_received.set()

    def _on_data(self, frame: DataFrame) -> None:
        """Flow control of received DATA: return the bytes at once, or count them."""
        length = frame.flow_controlled_length
        if not length:
            return
        if self.auto_window_update:
            self.write(window_update_frame(0, length))
            if "END_STREAM" not in frame.flags:
                self.write(window_update_frame(frame.stream_id, length))
        else:
            self.unacknowledged += length
            self._unacknowledged_streams[frame.stream_id] = (
                self._unacknowledged_streams.get(frame.stream_id, 0) + length
            )

    def _finish(self, result: StreamResult) -> None:
        done = self._done.get(result.stream_id)
        if done is not None and not done.done():
            done.set_result(result)

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
