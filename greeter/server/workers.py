"""How `greeter serve` runs: on which event loop (--loop), and in how many processes (--workers).

No protocol logic and no argparse here: greeter.cli hands in the worker command line and gets back
an exit status.

--workers N: the parent binds nothing it serves on. With port 0 it only reserves a free port (a
bound, never listening SO_REUSEPORT socket, closed once every worker listens). Each worker is
`python -m greeter ARGS --port PORT --worker-fd FD --worker-index I`: the ordinary serve path
with `Server(reuse_port=True)`, so the kernel spreads new connections across the workers.

Parent and worker share a socketpair. The worker sends one line, "ready SERVING-LINE" (once its
signal handlers are installed) or "failed MESSAGE" (why it could not start, e.g. the port is
taken); the parent logs the serving line once, when every worker is ready. On SIGINT/SIGTERM the
parent sends SIGTERM to every worker (each does its graceful shutdown: GOAWAY, grace period) and
kills those still running after the grace period plus STOP_MARGIN. The socketpair is also the
worker's lifeline: EOF from the parent (it was killed) shuts the worker down as SIGTERM would.
Workers run in their own process groups, so a terminal's Ctrl-C reaches the parent only.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from greeter.server.signals import STOP_SIGNALS, take_held
from greeter.wire.ranges import Range, check_value

log = logging.getLogger("greeter")

LOOP_CHOICES = ("auto", "uvloop", "asyncio")
"""--loop: auto is uvloop when it is installed (the `fast` extra), else asyncio's own loop."""
START_TIMEOUT = 60.0
"""Seconds every worker gets to report ready (or failed) before the parent gives up."""
STOP_MARGIN = 5.0
"""Seconds past the grace period a worker gets to exit after SIGTERM before it is killed."""
WORKER_COUNT = Range(1, 256, integer=True)
"""--workers: a process per core is the point; the cap turns a typo (--workers 99999, which
would start that many interpreters) into a usage error."""
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


# ------------------------------------------------------------------------------- event loop


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The asyncio.Runner loop factory for --loop CHOICE; None means asyncio's default loop.

    "uvloop" (and "auto" when uvloop is installed) gives uvloop's; a missing uvloop for
    "uvloop" raises ImportError (the CLI checks uvloop_installed() first).
    """
    if choice == "asyncio" or (choice == "auto" and not uvloop_installed()):
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = importlib.import_module(
        "uvloop"
    ).new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """ "uvloop" or "asyncio": which implementation `loop` is."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


# ------------------------------------------------------------------------------ worker side


class WorkerLink:
    """A worker's end of its socketpair with the parent (--worker-fd)."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._sock.set_inheritable(False)

    def ready(self, line: str) -> None:
        """Report `line` (the serving line) to the parent after this turn of the running loop.

        Deferred so that the serve path installs its SIGTERM handler first: the parent may send
        SIGTERM as soon as it reads "ready". From then on the parent's EOF means SIGTERM.
        """
        loop = asyncio.get_running_loop()
        loop.call_soon(self._announce, loop, line)

    def failed(self, message: str) -> None:
        """Tell the parent why this worker could not serve (it logs the first such message)."""
        self._send("failed", message)

    def _announce(self, loop: asyncio.AbstractEventLoop, line: str) -> None:
        self._send("ready", line)
        loop.add_reader(self._sock.fileno(), self._parent_gone, loop)

    def _parent_gone(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self._sock.fileno())
        log.debug("the parent process is gone: shutting down")
        os.kill(os.getpid(), signal.SIGTERM)

    def _send(self, kind: str, text: str) -> None:
        with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
            self._sock.sendall(f"{kind} {' '.join(text.splitlines())}\n".encode())


# ------------------------------------------------------------------------------ parent side


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    link: socket.socket
    buffer: bytes = b""
    ready_line: str | None = None
    running: bool = True
    """False once the parent saw the worker's link close (it exited)."""


@contextlib.contextmanager
def _reserved_port(host: str) -> Iterator[socket.socket]:
    """A bound, never listening SO_REUSEPORT socket on a free port of `host`."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        yield sock


@contextlib.contextmanager
def _signals_to(wake: socket.socket) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM write to `wake` (and do nothing else); one held before
    (greeter.server.signals.HeldSignals) writes to it at once."""
    previous_fd = signal.set_wakeup_fd(wake.fileno(), warn_on_full_buffer=False)
    previous = {signum: signal.signal(signum, lambda *_: None) for signum in STOP_SIGNALS}
    if [signum for handler in previous.values() for signum in take_held(handler)]:
        wake.send(b"\0")
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)


class Supervisor:
    """Starts `count` workers from `argv`, logs their serving line once, stops them on a signal."""

    def __init__(self, argv: Sequence[str], *, count: int, host: str, port: int, grace: float):
        self.argv = list(argv)
        self.count = count
        self.host = host
        self.port = port
        self.grace = grace
        self.workers: list[_Worker] = []
        self.failure: str | None = None
        self._selector = selectors.DefaultSelector()

    def run(self) -> int:
        """Serve until SIGINT or SIGTERM; the exit status (0: every worker stopped cleanly)."""
        wake, wake_writer = socket.socketpair()
        with contextlib.ExitStack() as stack:
            for sock in (wake, wake_writer):
                stack.enter_context(sock)
                sock.setblocking(False)
            stack.enter_context(self._selector)
            stack.enter_context(_signals_to(wake_writer))
            self._selector.register(wake, selectors.EVENT_READ)
            reservation = None
            if self.port == 0:
                reservation = stack.enter_context(_reserved_port(self.host))
                self.port = reservation.getsockname()[1]
            stack.callback(self._reap_all)
            for index in range(1, self.count + 1):
                self._start(index)
            return self._supervise(wake, reservation)

    def _start(self, index: int) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            argv = [*self.argv, "--port", str(self.port)]
            argv += ["--worker-fd", str(theirs.fileno()), "--worker-index", str(index)]
            pythonpath = os.pathsep.join(
                filter(None, (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")))
            )
            process = subprocess.Popen(
                [sys.executable, "-m", "greeter", *argv],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env={**os.environ, "PYTHONPATH": pythonpath},
                process_group=0,  # a terminal's Ctrl-C is the parent's to handle
            )
        worker = _Worker(index, process, ours)
        self.workers.append(worker)
        self._selector.register(ours, selectors.EVENT_READ, worker)
        log.debug("worker %d: pid %d", index, process.pid)

    def _supervise(self, wake: socket.socket, reservation: socket.socket | None) -> int:
        serving = False
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            timeout = None if serving else max(0.0, deadline - time.monotonic())
            events = self._selector.select(timeout)
            if not events and not serving:
                self.failure = f"the workers did not start within {START_TIMEOUT:.0f} s"
            for key, _ in events:
                if key.fileobj is wake:
                    with contextlib.suppress(BlockingIOError):
                        wake.recv(64)
                    return self._stop(quiet=not serving)
                self._read(key.data, serving)
            if self.failure is not None:
                log.error("%s", self.failure)
                self._stop(quiet=True)
                return 1
            running = [worker for worker in self.workers if worker.running]
            if not running:
                log.error("all %d workers exited", self.count)
                return 1
            if not serving and all(worker.ready_line for worker in self.workers):
                serving = True
                if reservation is not None:
                    reservation.close()  # every worker listens: the port stays taken
                log.info("%s", self.workers[0].ready_line)

    def _read(self, worker: _Worker, serving: bool) -> None:
        try:
            data = worker.link.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._exited(worker, serving)
            return
        worker.buffer += data
        while b"\n" in worker.buffer:
            raw, _, worker.buffer = worker.buffer.partition(b"\n")
            kind, _, text = raw.decode(errors="replace").partition(" ")
            if kind == "ready":
                worker.ready_line = text
            elif kind == "failed" and self.failure is None:
                self.failure = text

    def _exited(self, worker: _Worker, serving: bool) -> None:
        worker.running = False
        self._selector.unregister(worker.link)
        worker.link.close()
        try:
            status: int | str = worker.process.wait(STOP_MARGIN)
        except subprocess.TimeoutExpired:  # closed its end but lingers: make it exit
            worker.process.kill()
            status = "killed"
        if not serving:
            if self.failure is None:
                self.failure = f"worker {worker.index} exited ({status}) before serving"
            return
        alive = sum(w.running for w in self.workers)
        log.warning(
            "worker %d (pid %d) exited unexpectedly (%s); %d of %d still serving",
            worker.index,
            worker.process.pid,
            status,
            alive,
            self.count,
        )

    def _stop(self, *, quiet: bool) -> int:
        """SIGTERM every running worker, wait grace + STOP_MARGIN, kill the rest.

        0 when every worker that was running exited 0 (or, before it was ready, of the SIGTERM).
        """
        running = [worker for worker in self.workers if worker.running]
        if not quiet:
            log.info(
                "shutting down %d workers: GOAWAY sent, in-flight RPCs get %.1f s",
                len(running),
                self.grace,
            )
        for worker in running:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace + STOP_MARGIN
        clean = True
        for worker in running:
            try:
                status = worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
                log.warning("worker %d did not stop in time: killed", worker.index)
                clean = False
                continue
            expected = (0,) if worker.ready_line else (0, -signal.SIGTERM)
            if status not in expected:
                # Quiet: stopping after a start failure, already reported in one line; the other
                # workers (failing alike, e.g. on a taken port) add nothing.
                if not quiet:
                    log.warning("worker %d exited with status %d", worker.index, status)
                clean = False
        if not quiet:
            log.info("stopped")
        return 0 if clean else 1

    def _reap_all(self) -> None:
        """Last resort (an exception in the parent): no worker outlives it."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
            worker.link.close()


def run_workers(argv: Sequence[str], *, count: int, host: str, port: int, grace: float) -> int:
    """Serve with `count` worker processes, each `python -m greeter ARGV --port ...`."""
    check_value("workers", count, WORKER_COUNT)
    return Supervisor(argv, count=count, host=host, port=port, grace=grace).run()
