"""How `greeter serve` runs: on which event loop (--loop), and in how many processes (--workers).

No protocol logic and no argparse here: greeter.cli hands in the worker command line and gets back
an exit status.

--workers N: the parent listens on the port and accepts; each worker is
`python -m greeter ARGS --port PORT --worker-fd FD --worker-index I`, the ordinary serve path
with `Server(listen=False)`, and the parent hands it every Nth accepted connection over their
socketpair (SCM_RIGHTS): round-robin, as Node's cluster module does. The kernel's own spreading
(SO_REUSEPORT, one listener per worker) hashes each connection's addresses, and gRPC clients
hold few long-lived connections: with 4 connections and 2 workers one worker got 3 or all 4 of
them in most runs, and served them at the speed of one process.

Parent and worker share that socketpair. The worker sends one line, "ready SERVING-LINE" (once
its signal handlers are installed) or "failed MESSAGE" (why it could not start); the parent logs
the serving line once, when every worker is ready, and only then starts accepting (connections
wait in the backlog until then). On SIGINT/SIGTERM the parent sends SIGTERM to every worker
(each does its graceful shutdown: drain delay, GOAWAY, grace period), goes on handing
connections to them for the drain delay, then hands over what the backlog holds and closes the
listener (greeter.server.backlog: a queued connection is served, not reset), and kills workers
still running after the grace period plus STOP_MARGIN. The socketpair is also the worker's
lifeline: EOF from the parent (it was killed) shuts the worker down as SIGTERM would. Workers
run in their own process groups, so a terminal's Ctrl-C reaches the parent only.
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

from greeter.server.backlog import take_backlog
from greeter.server.listeners import listen_errors_named
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
_HANDED_AT_ONCE = 64
"""Connections a worker takes from its link in one read (one marker byte each)."""
_BACKLOG = 1024
"""The parent's listen() backlog: connections wait there while the workers start."""


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

    def ready(self, line: str, adopt: Callable[[socket.socket], None]) -> None:
        """Report `line` (the serving line) to the parent after this turn of the running loop;
        from then on each connection the parent hands over goes to `adopt`.

        Deferred so that the serve path installs its SIGTERM handler first: the parent may send
        SIGTERM as soon as it reads "ready". From then on the parent's EOF means SIGTERM.
        """
        loop = asyncio.get_running_loop()
        loop.call_soon(self._announce, loop, line, adopt)

    def failed(self, message: str) -> None:
        """Tell the parent why this worker could not serve (it logs the first such message)."""
        self._send("failed", message)

    def _announce(
        self, loop: asyncio.AbstractEventLoop, line: str, adopt: Callable[[socket.socket], None]
    ) -> None:
        self._send("ready", line)
        self._sock.setblocking(False)
        loop.add_reader(self._sock.fileno(), self._receive, loop, adopt)

    def _receive(
        self, loop: asyncio.AbstractEventLoop, adopt: Callable[[socket.socket], None]
    ) -> None:
        """Connections from the parent (a byte with a descriptor each), or its EOF."""
        try:
            data, fds, _, _ = socket.recv_fds(self._sock, _HANDED_AT_ONCE, _HANDED_AT_ONCE)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        for fd in fds:
            adopt(socket.socket(fileno=fd))
        if not data:
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


_LISTENER = "listener"
"""The selector's mark on the parent's listening sockets (workers' links carry their _Worker)."""


def _listen(host: str, port: int) -> list[socket.socket]:
    """Non-blocking listening sockets on every address of `host`, as asyncio's create_server
    binds them (SO_REUSEADDR; IPv6 only on an IPv6 socket), all on one port (0: a free one).
    Errors are one-line OSErrors naming the host or the address."""
    with listen_errors_named(host):
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _, found_address in dict.fromkeys(found):
            address = found_address
            sock = socket.socket(family, kind, proto)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(listeners) > 1:  # the free port the first address got
                address = (address[0], listeners[0].getsockname()[1], *address[2:])
            try:
                sock.bind(address)
            except OSError as exc:  # asyncio's wording, which a single server reports
                text = f"error while attempting to bind on address {address!r}: "
                raise OSError(exc.errno, text + str(exc.strerror).lower()) from None
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners


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
    """Starts `count` workers, each `python -m greeter ARGV --port ...`, logs their serving line
    once, stops them on a signal: `Supervisor(argv, count=N, ...).run()` is the exit status."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        count: int,
        host: str,
        port: int,
        grace: float,
        drain_delay: float = 0.0,
    ):
        check_value("workers", count, WORKER_COUNT)
        self.argv = list(argv)
        self.count = count
        self.host = host
        self.port = port
        self.grace = grace
        self.drain_delay = drain_delay
        """Seconds the parent goes on accepting after a stop signal, as each worker serves on."""
        self.workers: list[_Worker] = []
        self.failure: str | None = None
        self._selector = selectors.DefaultSelector()
        self._listeners: list[socket.socket] = []
        self._turn = 0
        """Round-robin position: the worker the next accepted connection goes to."""

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
            self._listeners = _listen(self.host, self.port)
            for listener in self._listeners:
                stack.enter_context(listener)
            self.port = self._listeners[0].getsockname()[1]
            stack.callback(self._reap_all)
            for index in range(1, self.count + 1):
                self._start(index)
            return self._supervise(wake)

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
        ours.setblocking(False)  # a worker that stops reading must not stall the parent
        worker = _Worker(index, process, ours)
        self.workers.append(worker)
        self._selector.register(ours, selectors.EVENT_READ, worker)
        log.debug("worker %d: pid %d", index, process.pid)

    def _supervise(self, wake: socket.socket) -> int:
        serving = False
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            timeout = None if serving else max(0.0, deadline - time.monotonic())
            events = self._selector.select(timeout)
            if not events and not serving:
                self.failure = f"the workers did not start within {START_TIMEOUT:.0f} s"
            for key, _ in events:
                if self._handle(key, serving):
                    return self._stop(quiet=not serving)
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
                for listener in self._listeners:  # what waited in the backlog goes out now
                    self._selector.register(listener, selectors.EVENT_READ, _LISTENER)
                log.info("%s", self.workers[0].ready_line)

    def _handle(self, key: selectors.SelectorKey, serving: bool) -> bool:
        """One ready selector key: connections to accept, a worker's lines or exit; True for a
        stop signal (read off the wake socket)."""
        if key.data is _LISTENER:
            self._accept(key.fileobj)  # type: ignore[arg-type]
        elif isinstance(key.data, _Worker):
            self._read(key.data, serving)
        else:
            with contextlib.suppress(BlockingIOError):
                key.fileobj.recv(64)  # type: ignore[union-attr]
            return True
        return False

    def _accept(self, listener: socket.socket) -> None:
        """Accept every waiting connection and hand each to a worker."""
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # reset by the peer while queued: nothing to serve
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: out of room for now
                log.warning("cannot accept a connection: %s", exc)
                time.sleep(0.1)  # as asyncio's accept loop, rather than spin on the listener
                return
            with conn:
                self._hand(conn)

    def _hand(self, conn: socket.socket) -> None:
        """Pass `conn` to the next running worker (round-robin); the parent's copy is closed by
        the caller."""
        running = [worker for worker in self.workers if worker.running]
        for _ in running:
            worker = running[self._turn % len(running)]
            self._turn += 1
            try:
                socket.send_fds(worker.link, [b"c"], [conn.fileno()])
                return
            except OSError:  # its link is full (the worker is stuck) or closed: the next one
                continue
        log.warning("no worker took a connection: closed")

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
        self._close_listeners(hand_over=not quiet)
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

    def _close_listeners(self, *, hand_over: bool) -> None:
        """Stop accepting: with `hand_over`, after the drain delay (the workers serve on for as
        long, so new connections still reach them) and after handing over what the backlog
        holds (it would be reset by the close)."""
        if hand_over:
            until = time.monotonic() + self.drain_delay
            while (remaining := until - time.monotonic()) > 0:
                for key, _ in self._selector.select(remaining):
                    # Another stop signal changes nothing: the workers already have theirs.
                    self._handle(key, serving=True)
        for listener in self._listeners:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(listener)
            if hand_over:
                for conn in take_backlog(listener):
                    with conn:
                        self._hand(conn)
            listener.close()

    def _reap_all(self) -> None:
        """Last resort (an exception in the parent): no worker outlives it."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
            worker.link.close()
