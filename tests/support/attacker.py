"""The abuse suite's raw HTTP/2 connection: a blocking socket and a reader thread that never writes.

Not a test module. The wire pieces (preface, request headers, frame builders, the frame reader
and the per-stream `StreamResult`) are tests.support.h2peer's; this module is the transport of
the attacks. The main thread sends whatever bytes a test builds, as fast as the kernel takes
them (`burst`); a reader thread records every frame the server sends and never writes, so a
burst never interleaves with anything else. The handshake's SETTINGS ACK is sent from the
constructor; after that nothing is answered unless the test sends it. Only 127.0.0.1 is used and
every wait is bounded by a timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

import hpack
from hyperframe.frame import Frame, GoAwayFrame, PingFrame, RstStreamFrame, SettingsFrame

from greeter.tap.records import error_code_name
from tests.support.h2peer import (
    SAY_HELLO,
    WAIT,
    FrameReader,
    Header,
    StreamResult,
    StreamResults,
    client_preface,
    data_frame,
    header_frames,
    hello_message,
    ping_frame,
    request_headers,
    settings_ack,
    window_update_frame,
)


class Attacker:
    """A raw HTTP/2 client connection to the server under attack (blocking socket + reader thread).

    With `handshake` (the default) the client preface and `settings` are sent, the server's
    SETTINGS awaited and acknowledged, and `connection_window` bytes added to the connection's
    receive window. With `read=False` nothing is read after the handshake until `start_reading`.
    """

    def __init__(
        self,
        port: int,
        *,
        handshake: bool = True,
        settings: dict[int, int] | None = None,
        connection_window: int = 1 << 30,
        read: bool = True,
        timeout: float = WAIT,
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.server_port = port
        self.port: int = self.sock.getsockname()[1]
        """The attacker's local port: the server's log lines name the peer by it."""
        self.encoder = hpack.Encoder()
        self.frames: list[Frame] = []
        self._frame_reader = FrameReader()
        self._results = StreamResults()
        self.streams: dict[int, StreamResult] = self._results.streams
        self.received_bytes = 0
        self.eof = False
        self.eof_at: float | None = None
        self.eof_error: str | None = None
        self.opened_at = time.monotonic()
        self._next_stream_id = 1
        self._changed = threading.Condition()
        self._stopped = False
        self._reader: threading.Thread | None = None
        if handshake:
            self.send(client_preface(settings))
            self._read_until(lambda: self._server_settings() is not None, timeout)
            if self._server_settings() is None:
                raise AssertionError(f"no SETTINGS from the server within {timeout} s")
            self.send(settings_ack())
            if connection_window:
                self.send(window_update_frame(0, connection_window))
        if read:
            self.start_reading()

    # -- sending ---------------------------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        """Send everything; False when the server has closed the connection (EPIPE, RST)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            return False
        return True

    def burst(
        self,
        frames: Iterable[bytes],
        *,
        max_frames: int,
        chunk: int = 64 * 1024,
        seconds: float = 10,
    ) -> int:
        """Send up to `max_frames` frames in chunks; stop early when the server has closed.

        Returns how many frames were handed to the kernel.
        """
        deadline = time.monotonic() + seconds
        pending: list[bytes] = []
        size = sent = 0
        for queued, frame in enumerate(frames):
            if queued >= max_frames:
                break
            pending.append(frame)
            size += len(frame)
            if size >= chunk:
                if self.eof or time.monotonic() > deadline or not self.send(b"".join(pending)):
                    return sent
                sent += len(pending)
                pending, size = [], 0
        if pending and not self.eof and self.send(b"".join(pending)):
            sent += len(pending)
        return sent

    def new_stream_id(self) -> int:
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        return stream_id

    def request(
        self,
        path: str = SAY_HELLO,
        *,
        extra: Iterable[Header] = (),
        headers: list[Header] | None = None,
        stream_id: int | None = None,
        end_stream: bool = False,
    ) -> tuple[int, bytes]:
        """The frames opening a gRPC request (HPACK state advances: send them, in order).

        h2peer.request_headers plus `extra`; `headers` replaces the block entirely.
        """
        sid = self.new_stream_id() if stream_id is None else stream_id
        with self._changed:
            self._results.open(sid)
        block = request_headers(path, metadata=extra) if headers is None else headers
        return sid, header_frames(sid, self.encoder.encode(block), end_stream=end_stream)

    def unary(self, name: str, *, timeout: float = WAIT) -> StreamResult:
        """One SayHello on this connection; the complete response."""
        sid, headers = self.request(SAY_HELLO)
        self.send(headers + data_frame(sid, hello_message(name), True))
        self.wait_for(lambda: self.streams[sid].finished, timeout, f"SayHello on stream {sid}")
        return self.streams[sid]

    def ping_round_trip(self, opaque: bytes = b"alive?!!", timeout: float = WAIT) -> None:
        """Send a PING and wait for its ACK: the server is reading and answering this connection."""
        self.send(ping_frame(opaque))
        self.wait_for(
            lambda: any(
                isinstance(f, PingFrame) and "ACK" in f.flags and f.opaque_data == opaque
                for f in self.frames
            ),
            timeout,
            "PING ACK",
        )

    # -- receiving -------------------------------------------------------------------------------

    def start_reading(self) -> None:
        if self._reader is None:
            self._reader = threading.Thread(
                target=self._read_loop, name=f"attacker-{self.port}", daemon=True
            )
            self._reader.start()

    def _read_loop(self) -> None:
        while not self._stopped:
            try:
                data = self.sock.recv(256 * 1024)
            except TimeoutError:
                continue
            except OSError as exc:
                self._set_eof(f"{type(exc).__name__}: {exc}")
                return
            if not data:
                self._set_eof(None)
                return
            try:
                self._feed(data)
            except Exception as exc:  # unreadable bytes from the server: stop, and say why
                self._set_eof(f"unreadable: {type(exc).__name__}: {exc}")
                return

    def _read_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Read on the calling thread (before the reader thread exists) until `predicate`."""
        deadline = time.monotonic() + timeout
        while not predicate() and not self.eof and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(64 * 1024)
            except TimeoutError:
                break
            except OSError as exc:
                self._set_eof(f"{type(exc).__name__}: {exc}")
                break
            if not data:
                self._set_eof(None)
                break
            self._feed(data)
        self.sock.settimeout(WAIT)

    def _set_eof(self, error: str | None) -> None:
        with self._changed:
            self.eof = True
            self.eof_at = time.monotonic()
            self.eof_error = error
            self._results.connection_lost()
            self._changed.notify_all()

    def _feed(self, data: bytes) -> None:
        with self._changed:
            self.received_bytes += len(data)
            try:
                for wire in self._frame_reader.feed(data):
                    self.frames.append(wire.frame)
                    self._results.on_frame(wire)
            finally:
                self._changed.notify_all()

    def _server_settings(self) -> SettingsFrame | None:
        for frame in self.frames:
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                return frame
        return None

    def frames_of(self, kind: type[Frame]) -> list[Any]:
        with self._changed:
            return [f for f in self.frames if isinstance(f, kind)]

    @property
    def goaways(self) -> list[GoAwayFrame]:
        return self.frames_of(GoAwayFrame)

    def resets(self) -> dict[int, int]:
        """stream id -> RST_STREAM error code, for every stream the server reset."""
        return {f.stream_id: f.error_code for f in self.frames_of(RstStreamFrame)}

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until `predicate()` holds (checked after every frame); AssertionError if not."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if self.eof or remaining <= 0:
                    why = "connection closed" if self.eof else f"nothing in {timeout} s"
                    raise AssertionError(f"waiting for {what}: {why}; {self.summary()}")
                self._changed.wait(remaining)

    def closed(self) -> bool:
        """The server closed the connection (EOF or reset)."""
        return self.eof

    def goaway_or_closed(self) -> bool:
        return self.eof or bool(self.goaways)

    def poll(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait up to `timeout` for `predicate()` (checked after every frame and at EOF)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if self.eof or remaining <= 0:
                    return predicate()
                self._changed.wait(remaining)
            return True

    def wait_goaway(self, timeout: float = WAIT) -> GoAwayFrame:
        """The server's GOAWAY (the first one), waiting for it and, after it, for EOF."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self.goaways and not self.eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
        goaways = self.goaways
        if not goaways:
            raise AssertionError(f"no GOAWAY within {timeout} s; {self.summary()}")
        return goaways[0]

    def wait_eof(self, timeout: float = WAIT) -> float:
        """Wait until the server closed the connection; seconds since the connection opened."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self.eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"connection still open after {timeout} s; {self.summary()}"
                    )
                self._changed.wait(remaining)
            assert self.eof_at is not None
            return self.eof_at - self.opened_at

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for frame in list(self.frames):
            counts[type(frame).__name__] = counts.get(type(frame).__name__, 0) + 1
        goaways = [
            f"GOAWAY({error_code_name(g.error_code)}, last={g.last_stream_id},"
            f" {g.additional_data!r})"
            for g in self.goaways
        ]
        return (
            f"received {self.received_bytes} bytes, frames {counts}, {goaways},"
            f" eof={self.eof} ({self.eof_error})"
        )

    def close(self) -> None:
        self._stopped = True
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self._reader is not None:
            self._reader.join(WAIT)
