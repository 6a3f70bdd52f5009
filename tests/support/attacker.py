"""Shared pieces of the abuse suite: the server subprocess, a raw attacker, memory, a polite client.

Not a test module. Each abuse test starts its own greeter server as a subprocess
(tests/abuse/serve.py, with the ServerConfig the attack needs), so the memory it reads from
/proc/<pid>/status is the server's alone. The pieces:

- `AbuseRun` (from the `abuse` fixture in conftest.py): the server, a well-behaved grpcio client
  that keeps calling SayHello in a thread while the attack runs (`with run.attack(): ...`), the
  memory before and after, the server's log, and the checks every attack shares: the polite
  client was served during and after the attack, VmHWM grew less than MEMORY_BOUND_MIB, and the
  server printed no traceback.
- `Attacker`: a raw HTTP/2 connection on a blocking socket (hyperframe + hpack), sending whatever
  bytes a test builds, with a reader thread that records every frame the server sends. The
  reader never writes (so a burst on the main thread never interleaves with it); the handshake's
  SETTINGS ACK is sent from the constructor.

Every wait is bounded by a timeout, every loop by a count and a deadline; only 127.0.0.1 is used.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

from gen.greet import HelloRequest
from greeter.tap.records import error_code_name as error_name
from tests.peers import REPO_ROOT, GrpcioGreeter, ServerProcess, grpcio_channel
from tests.server.rawclient import grpc_message, request_headers

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_SIZE = 9
MAX_FRAME_PAYLOAD = 16_384
WAIT = 5.0
"""Default bound, in seconds, of every wait in this module."""
MEMORY_BOUND_MIB = 30.0
"""Largest VmHWM growth an attack may cause: the whole server starts at about 30 MiB."""

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
BIDI_HELLO = "/greet.Greeter/BidiHello"

Header = tuple[str, str]


# ------------------------------------------------------------------------------- /proc readers


@dataclass(frozen=True)
class MemorySample:
    """A process's resident set now and at its peak (VmRSS, VmHWM), in KiB."""

    rss_kib: int
    hwm_kib: int

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024

    @property
    def hwm_mib(self) -> float:
        return self.hwm_kib / 1024


def read_memory(pid: int) -> MemorySample:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])  # "  51234 kB"
    return MemorySample(rss_kib=values["VmRSS"], hwm_kib=values["VmHWM"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / 100  # USER_HZ is 100 on Linux


def server_holds_connection(pid: int, server_port: int, client_port: int) -> bool:
    """Whether process `pid` still has an fd on its end of the TCP connection to `client_port`."""
    wanted = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if (parts[1], parts[2]) == wanted:
            inodes.add(parts[9])
    if not inodes:
        return False
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue
        if str(target).startswith("socket:[") and str(target)[8:-1] in inodes:
            return True
    return False


def poll_proc(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Re-check a /proc condition every `interval` s for up to `timeout` s (nothing to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# -------------------------------------------------------------------------- server subprocess


@contextmanager
def abuse_server(
    *,
    limits: dict[str, Any] | None = None,
    timeouts: dict[str, Any] | None = None,
    max_connections: int | None = 1000,
    ready_timeout: float = 20,
    stop_timeout: float = 10,
) -> Iterator[ServerProcess]:
    """Run tests/abuse/serve.py with this ServerConfig; yield it once it logged its address."""
    spec = {"limits": limits or {}, "timeouts": timeouts or {}, "max_connections": max_connections}
    argv = [sys.executable, "-m", "tests.abuse.serve", json.dumps(spec)]
    process = ServerProcess(argv, cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        match = process.wait_for_line(r"serving .* on (\S+):(\d+)", ready_timeout)
        process.target = f"{match.group(1)}:{match.group(2)}"
        yield process
    except BaseException:
        with suppress(AssertionError):  # the body's own failure is the one worth seeing
            process.stop(stop_timeout)
        raise
    process.stop(stop_timeout)


# --------------------------------------------------------------------------------- raw attacker


@dataclass
class StreamView:
    """What the server sent on one stream."""

    headers: list[Header] | None = None
    trailers: list[Header] | None = None
    data: bytearray = field(default_factory=bytearray)
    data_frames: int = 0
    reset_code: int | None = None
    ended: bool = False


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
        self.encoder = Encoder()
        self._decoder = Decoder()
        self._decoder.max_header_list_size = 1 << 20
        self.frames: list[Frame] = []
        self.streams: dict[int, StreamView] = {}
        self.received_bytes = 0
        self.eof = False
        self.eof_at: float | None = None
        self.eof_error: str | None = None
        self.opened_at = time.monotonic()
        self._buffer = bytearray()
        self._header_block: tuple[HeadersFrame, bytearray] | None = None
        self._next_stream_id = 1
        self._changed = threading.Condition()
        self._stopped = False
        self._reader: threading.Thread | None = None
        if handshake:
            self.send(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())
            self._read_until(lambda: self._server_settings() is not None, timeout)
            if self._server_settings() is None:
                raise AssertionError(f"no SETTINGS from the server within {timeout} s")
            self.send(settings_ack())
            if connection_window:
                self.send(WindowUpdateFrame(0, window_increment=connection_window).serialize())
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
        """A HEADERS frame opening a gRPC request (HPACK state advances: send it, in order).

        `headers` replaces the default request header block entirely.
        """
        sid = self.new_stream_id() if stream_id is None else stream_id
        with self._changed:
            self.streams.setdefault(sid, StreamView())
        block_headers = request_headers(path, list(extra)) if headers is None else headers
        block = self.encoder.encode(block_headers)
        frame = HeadersFrame(sid, block)
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        return sid, frame.serialize()

    def unary(self, name: str, *, timeout: float = WAIT) -> StreamView:
        """One SayHello on this connection; the complete response."""
        sid, headers = self.request(SAY_HELLO)
        self.send(headers + data_frame(sid, grpc_message(bytes(HelloRequest(name=name))), True))
        self.wait_for(lambda: self.streams[sid].ended, timeout, f"SayHello on stream {sid}")
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
            self._feed(data)

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
            self._changed.notify_all()

    def _feed(self, data: bytes) -> None:
        with self._changed:
            self.received_bytes += len(data)
            self._buffer += data
            while len(self._buffer) >= FRAME_HEADER_SIZE:
                frame, length = Frame.parse_frame_header(memoryview(self._buffer[:9]))
                if len(self._buffer) < FRAME_HEADER_SIZE + length:
                    break
                frame.parse_body(memoryview(bytes(self._buffer[9 : 9 + length])))
                del self._buffer[: 9 + length]
                self.frames.append(frame)
                self._on_frame(frame)
            self._changed.notify_all()

    def _on_frame(self, frame: Frame) -> None:
        view = self.streams.get(frame.stream_id)
        if isinstance(frame, DataFrame) and view is not None:
            view.data += frame.data
            view.data_frames += 1
            view.ended = view.ended or "END_STREAM" in frame.flags
        elif isinstance(frame, RstStreamFrame) and view is not None:
            view.reset_code = frame.error_code
            view.ended = True
        elif isinstance(frame, HeadersFrame | ContinuationFrame):
            if isinstance(frame, HeadersFrame):
                self._header_block = (frame, bytearray(frame.data))
            elif self._header_block is not None:
                self._header_block[1].extend(frame.data)
            if "END_HEADERS" not in frame.flags or self._header_block is None:
                return
            first, block = self._header_block
            self._header_block = None
            decoded = [(str(k), str(v)) for k, v in self._decoder.decode(bytes(block))]
            view = self.streams.get(first.stream_id)
            if view is None:
                return
            if view.headers is None:
                view.headers = decoded
            else:
                view.trailers = decoded
            if "END_STREAM" in first.flags:
                if view.trailers is None:
                    view.trailers = decoded  # Trailers-Only
                view.ended = True

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
            f"GOAWAY({error_name(g.error_code)}, last={g.last_stream_id}, {g.additional_data!r})"
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


# ------------------------------------------------------------------------------ frame builders


def settings_ack() -> bytes:
    frame = SettingsFrame(0)
    frame.flags.add("ACK")
    return frame.serialize()


def ping_frame(opaque: bytes = b"\0" * 8) -> bytes:
    return PingFrame(0, opaque_data=opaque).serialize()


def data_frame(stream_id: int, data: bytes, end_stream: bool = False) -> bytes:
    frame = DataFrame(stream_id, data)
    if end_stream:
        frame.flags.add("END_STREAM")
    return frame.serialize()


def rst_frame(stream_id: int, error_code: int = CANCEL) -> bytes:
    return RstStreamFrame(stream_id, error_code=error_code).serialize()


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return WindowUpdateFrame(stream_id, window_increment=increment).serialize()


def hello_message(name: str = "x", count: int = 0) -> bytes:
    """A Length-Prefixed HelloRequest."""
    return grpc_message(bytes(HelloRequest(name=name, count=count)))


# ----------------------------------------------------------------------------- polite client


@dataclass(frozen=True)
class Call:
    started: float
    ended: float
    error: str | None


class WellBehavedClient:
    """A grpcio channel calling SayHello: once at will, or in a loop on a thread while attacked."""

    MAX_CALLS = 5_000
    PAUSE = 0.005
    """Seconds between background calls (pacing, not synchronisation)."""

    def __init__(self, target: str) -> None:
        self._stack = ExitStack()
        self.greeter: GrpcioGreeter = self._stack.enter_context(
            grpcio_channel(target, ready_timeout=WAIT)
        )
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def call(self, name: str = "polite") -> None:
        reply = self.greeter.say_hello(HelloRequest(name=name), timeout=WAIT)
        assert reply.message == f"Hello {name}", reply

    def _loop(self, deadline: float) -> None:
        while not self._stop.is_set() and len(self.calls) < self.MAX_CALLS:
            if time.monotonic() > deadline:
                break
            started = time.monotonic()
            error = None
            try:
                self.call()
            except Exception as exc:  # recorded; the test reports it
                error = f"{type(exc).__name__}: {exc}"
            self.calls.append(Call(started, time.monotonic(), error))
            self._stop.wait(self.PAUSE)

    def start(self, seconds: float = 30) -> None:
        self._stop.clear()
        self.calls = []
        deadline = time.monotonic() + seconds
        self._thread = threading.Thread(target=self._loop, args=(deadline,), daemon=True)
        self._thread.start()

    def stop(self) -> list[Call]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(WAIT + 1)
            assert not self._thread.is_alive(), "the well-behaved client's call is stuck"
        return self.calls

    def close(self) -> None:
        self._stop.set()
        self._stack.close()


# ------------------------------------------------------------------------------------ the run


@dataclass
class AttackRecord:
    """One attack's numbers, for the suite's summary table."""

    name: str
    before: MemorySample | None = None
    after: MemorySample | None = None
    seconds: float = 0.0
    polite_calls: int = 0
    polite_during: int = 0
    outcome: str = ""

    @property
    def growth_mib(self) -> float:
        if self.before is None or self.after is None:
            return float("nan")
        return (self.after.hwm_kib - self.before.hwm_kib) / 1024

    def row(self) -> str:
        if self.before is None or self.after is None:
            return f"{self.name:<34} (no memory sample) {self.outcome}"
        return (
            f"{self.name:<34} rss {self.before.rss_mib:6.1f} -> {self.after.rss_mib:6.1f} MiB"
            f"  hwm {self.before.hwm_mib:6.1f} -> {self.after.hwm_mib:6.1f} MiB"
            f" (+{self.growth_mib:5.1f})  {self.seconds:5.2f} s"
            f"  polite {self.polite_during}/{self.polite_calls} during  {self.outcome}"
        )


class AbuseRun:
    """One attack against one server subprocess, with the shared checks (see the module doc)."""

    def __init__(self, server: ServerProcess, record: AttackRecord) -> None:
        self.server = server
        self.record = record
        self.pid = server.proc.pid
        self.port = int(server.target.rpartition(":")[2])
        self.polite = WellBehavedClient(server.target)
        self.polite.call("warm-up")
        self._attackers: list[Attacker] = []
        self._window: tuple[float, float] | None = None

    def attacker(self, **options: Any) -> Attacker:
        attacker = Attacker(self.port, **options)
        self._attackers.append(attacker)
        return attacker

    @contextmanager
    def attack(self, *, polite_seconds: float = 30) -> Iterator[None]:
        """The attack's window: memory sampled around it, the polite client calling throughout."""
        self.record.before = read_memory(self.pid)
        self.polite.start(polite_seconds)
        started = time.monotonic()
        try:
            yield
        finally:
            ended = time.monotonic()
            self._window = (started, ended)
            self.record.seconds = ended - started
            calls = self.polite.stop()
            self.record.after = read_memory(self.pid)
        self.record.polite_calls = len(calls)
        during = [c for c in calls if c.started <= ended and c.ended >= started]
        self.record.polite_during = sum(1 for c in during if c.error is None)
        failed = [c.error for c in calls if c.error is not None]
        assert not failed, f"the well-behaved client failed during the attack: {failed[:3]}"
        assert self.record.polite_during >= 1, "no well-behaved call overlapped the attack"

    def expect_log(self, attacker: Attacker | None, pattern: str, timeout: float = WAIT) -> str:
        """The server's log line matching `pattern` (naming `attacker`'s port if given)."""
        if attacker is not None:
            pattern = rf"(?=.*\b{attacker.port}\b).*{pattern}"
        return self.server.wait_for_line(re.compile(pattern, re.IGNORECASE), timeout).string

    def finish(self) -> None:
        """The checks after the attack: polite client still served, memory bounded, no traceback."""
        for attacker in self._attackers:
            attacker.close()
        self.polite.call("after")
        self.polite.close()
        lines = self.server.lines()
        tracebacks = [i for i, line in enumerate(lines) if "Traceback" in line]
        assert not tracebacks, "server printed a traceback:\n" + "\n".join(
            lines[tracebacks[0] : tracebacks[0] + 30]
        )
        if self.record.before is not None and self.record.after is not None:
            growth = self.record.growth_mib
            assert growth < MEMORY_BOUND_MIB, (
                f"server VmHWM grew {growth:.1f} MiB during the attack"
                f" ({self.record.before} -> {self.record.after})"
            )

    def close(self) -> None:
        for attacker in self._attackers:
            attacker.close()
        self.polite.close()
