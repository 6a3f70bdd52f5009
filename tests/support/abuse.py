"""The abuse suite's machinery: a server subprocess per attack, /proc readers, a polite client.

Not a test module. Each abuse test starts its own greeter server as a subprocess
(tests/support/abuse_serve.py, with the ServerConfig the attack needs), so the memory it reads
from /proc/<pid>/status is the server's alone. The pieces:

- `AbuseRun` (from the `abuse` fixture in tests/server/abuse/conftest.py): the server, a
  well-behaved grpcio client that keeps calling SayHello in a thread while the attack runs
  (`with run.attack(): ...`), the memory before and after, the server's log, and the checks every
  attack shares: the polite client was served during and after the attack, the server printed
  no traceback, and VmHWM grew less than the attack's `MemoryBound`.
- `MemoryBound`: each attack states what it would make a server without its defence hold
  (computed from the attack: its bytes, streams or replies) and what the defence still admits;
  the bound is the admitted bytes over a noise floor, and it must be at most half the cost, so
  that the missing defence would break it. An attack whose cost is below that (it spends CPU,
  output, file descriptors or time, not memory) says so with `NotAMemoryAttack` and gets no
  memory assertion: a bound it could never exceed would test nothing. The measured growth of
  every attack with its defence switched off is in docs/security.md.
- `run.attacker(...)`: a raw HTTP/2 connection, tests.support.attacker.Attacker.

Every wait is bounded by a timeout, every loop by a count and a deadline; only 127.0.0.1 is used.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen.greet import HelloRequest
from tests.support.attacker import Attacker
from tests.support.h2peer import WAIT
from tests.support.peers import (
    GREETER_SERVING_LINE,
    REPO_ROOT,
    GrpcioGreeter,
    ServerProcess,
    grpcio_channel,
    stopped_after,
)

MIB = 1024 * 1024
FLOOR_MIB = 4.0
"""VmHWM growth any attack may cause: a defended attack grows it by up to 2 MiB (allocator arenas,
the polite client's calls, the streams admitted before a budget fires); twice that."""
STREAM_STATE = 2 * 1024
"""Server memory per open stream (its handler task, stream state and h2's stream): measured 2.3
to 3.2 KiB per stream with the stream defences off (docs/security.md)."""


@dataclass(frozen=True)
class MemoryBound:
    """What an attack may add to the server's peak memory (VmHWM), from what it could cost."""

    cost: int
    """Bytes a server without the defence would hold: computed from the attack."""
    basis: str
    """How `cost` follows from the attack (for the summary table)."""
    admitted: int = 0
    """Bytes the defence still lets the attack make the server hold."""

    def __post_init__(self) -> None:
        assert self.cost >= 2 * self.mib * MIB, (
            f"a bound of {self.mib:.1f} MiB for an attack that could cost {self.cost_mib:.1f} MiB"
            " without its defence could not fail: make the attack bigger, or NotAMemoryAttack"
        )

    @property
    def mib(self) -> float:
        return FLOOR_MIB + self.admitted / MIB

    @property
    def cost_mib(self) -> float:
        return self.cost / MIB

    def describe(self) -> str:
        return f"bound {self.mib:.1f} of {self.cost_mib:.0f} MiB ({self.basis})"


@dataclass(frozen=True)
class NotAMemoryAttack:
    """An attack that costs a server CPU, output, file descriptors or time, not memory."""

    why: str

    def describe(self) -> str:
        return f"no memory bound: {self.why}"


Memory = MemoryBound | NotAMemoryAttack


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
    """Run tests/support/abuse_serve.py with this ServerConfig; yield it once it logged its
    address."""
    spec = {"limits": limits or {}, "timeouts": timeouts or {}, "max_connections": max_connections}
    argv = [sys.executable, "-m", "tests.support.abuse_serve", json.dumps(spec)]
    process = ServerProcess(argv, cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    with stopped_after(process, stop_timeout):
        match = process.wait_for_line(GREETER_SERVING_LINE, ready_timeout)
        process.target = f"{match.group(1)}:{match.group(2)}"
        yield process


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
        self._first_call = threading.Event()
        self._thread: threading.Thread | None = None

    def call(self, name: str = "polite") -> None:
        reply = self.greeter.say_hello(HelloRequest(name=name), timeout=WAIT)
        assert reply.message == f"Hello {name}", reply

    def _loop(self, deadline: float) -> None:
        while not self._stop.is_set() and len(self.calls) < self.MAX_CALLS:
            if time.monotonic() > deadline:
                break
            started = time.monotonic()
            self._first_call.set()
            error = None
            try:
                self.call()
            except Exception as exc:  # recorded; the test reports it
                error = f"{type(exc).__name__}: {exc}"
            self.calls.append(Call(started, time.monotonic(), error))
            self._stop.wait(self.PAUSE)

    def start(self, seconds: float = 30) -> None:
        """Call in a loop on a thread; returns once the first call is under way."""
        self._stop.clear()
        self._first_call.clear()
        self.calls = []
        deadline = time.monotonic() + seconds
        self._thread = threading.Thread(target=self._loop, args=(deadline,), daemon=True)
        self._thread.start()
        assert self._first_call.wait(WAIT), "the well-behaved client never started a call"

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
    memory: Memory
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
            f"  polite {self.polite_during}/{self.polite_calls} during  {self.outcome};"
            f" {self.memory.describe()}"
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
        # The window opens before the polite loop starts, and the loop's first call is under way
        # before the attack does anything: even an attack over in a millisecond overlaps a call.
        started = time.monotonic()
        self.polite.start(polite_seconds)
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
        bound = self.record.memory
        if isinstance(bound, MemoryBound) and self.record.before and self.record.after:
            growth = self.record.growth_mib
            assert growth < bound.mib, (
                f"server VmHWM grew {growth:.1f} MiB during the attack, over its {bound.describe()}"
                f" ({self.record.before} -> {self.record.after})"
            )

    def close(self) -> None:
        for attacker in self._attackers:
            attacker.close()
        self.polite.close()


AbuseFactory = Callable[..., AbstractContextManager[AbuseRun]]
"""The `abuse` fixture: `with abuse(memory=..., limits=..., timeouts=..., max_connections=N) as
run:`."""
