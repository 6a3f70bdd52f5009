"""greeter side by side with grpclib, grpc.aio and a bare h2 loop: one command, one table.

Usage: .venv/bin/python benchmarks/run.py [--quick] [--doc docs/performance.md | --out FILE]

Starts each server in turn as a subprocess on loopback (greeter; greeter on uvloop when uvloop
is importable; `greeter serve --workers 2` when the CLI has --workers; grpclib and grpc.aio
serving the same Greeter semantics with the same betterproto2 messages; benchmarks/bare_h2.py,
the pure-Python ceiling), checks that it answers all four RPCs correctly, and drives it with
the same h2load (nghttp2-client) commands after a warm-up: unary SayHello req/s at three
concurrencies, p50/p99 latency at `-c 1 -m 1` (from h2load's per-request --log-file), and
messages/s for server streaming (LotsOfReplies, count 1000), client streaming (LotsOfGreetings,
100 messages in the request body) and bidi (BidiHello, 100 messages in the request body). Idle
memory: RSS growth of the server's processes per connection for 1,000 open HTTP/2 connections.

Rounds are interleaved (round 1 runs every server, then round 2, ...) and each figure keeps its
best round: on a shared, noisy machine interference only ever makes a run slower, so the best of
several runs is the least noisy estimate of what the server can do.

Prints the report (environment, figures, ratios, targets) and writes it into docs/performance.md,
between the marker comments BEGIN and END below, leaving the page's hand-written prose alone: this
script is the only producer of that table. A quick run (development numbers) writes no page unless
--doc names one; --out writes the report to a standalone Markdown file instead of a page. A
script, not a test; docs/performance.md explains what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from sampler import ResponseSampler  # noqa: E402

from gen.greet import HelloReply, HelloRequest  # noqa: E402 (the repository root first)

PYTHON = sys.executable
DOC = ROOT / "docs" / "performance.md"
BEGIN = "<!-- benchmark:begin -->"
END = "<!-- benchmark:end -->"
"""The lines around the generated section of a page; everything between them is replaced."""
TIMES = "\N{MULTIPLICATION SIGN}"
IDLE_CONNECTIONS = 1000
STREAM_MESSAGES = 100
"""Request messages per LotsOfGreetings / BidiHello request body."""
REPLY_COUNT = 1000
"""LotsOfReplies count."""


# --- what is measured ----------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One h2load command: a method, a request body, a concurrency."""

    key: str
    heading: str
    method: str
    body: bytes
    clients: int
    streams: int
    messages: int
    """Reply messages per request: the figure is req/s * messages (messages/s for streaming)."""
    reply: bytes
    """The exact response body per request: its length is checked against h2load's DATA byte
    count for every request, the bytes themselves on sampled responses (sampler.py)."""
    probe: int
    """Requests of the warm-up run (which also calibrates -n in the first round)."""
    latency: bool = False


def grpc_frame(payload: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def loads() -> list[Load]:
    """The h2load commands every server gets, in the order they run."""
    hello = grpc_frame(bytes(HelloRequest(name="world")))
    hello_reply = grpc_frame(bytes(HelloReply(message="Hello world")))
    many = grpc_frame(bytes(HelloRequest(name="world", count=REPLY_COUNT)))
    many_replies = b"".join(
        grpc_frame(bytes(HelloReply(message=f"Hello world #{i}")))
        for i in range(1, REPLY_COUNT + 1)
    )
    names = ", ".join(["world"] * STREAM_MESSAGES)
    greetings_reply = grpc_frame(bytes(HelloReply(message=f"Hello {names}")))
    unary = "/greet.Greeter/SayHello"
    return [
        Load("unary_1", "unary c1 m1 req/s", unary, hello, 1, 1, 1, hello_reply, 400, True),
        Load("unary_4", "unary c4 m16 req/s", unary, hello, 4, 16, 1, hello_reply, 1024),
        Load("unary_16", "unary c16 m32 req/s", unary, hello, 16, 32, 1, hello_reply, 2048),
        Load(
            "server_stream",
            f"LotsOfReplies ({REPLY_COUNT}) msg/s",
            "/greet.Greeter/LotsOfReplies",
            many,
            4,
            1,
            REPLY_COUNT,
            many_replies,
            40,
        ),
        Load(
            "client_stream",
            f"LotsOfGreetings ({STREAM_MESSAGES}) msg/s",
            "/greet.Greeter/LotsOfGreetings",
            hello * STREAM_MESSAGES,
            4,
            1,
            STREAM_MESSAGES,
            greetings_reply,
            200,
        ),
        Load(
            "bidi",
            f"BidiHello ({STREAM_MESSAGES}) msg/s",
            "/greet.Greeter/BidiHello",
            hello * STREAM_MESSAGES,
            4,
            1,
            STREAM_MESSAGES,
            hello_reply * STREAM_MESSAGES,
            200,
        ),
    ]


@dataclass(frozen=True)
class Column:
    """One figure of the results table."""

    key: str
    heading: str
    higher_is_better: bool
    fmt: Callable[[float], str]


def columns(load_list: list[Load]) -> list[Column]:
    """The table's figures: the unary rates, the latencies, the streaming rates, memory."""

    def rate(value: float) -> str:
        return f"{value:,.0f}"

    def ms(value: float) -> str:
        return f"{value:.2f}"

    def kib(value: float) -> str:
        return f"{value:.1f}"

    result = [Column(load.key, load.heading, True, rate) for load in load_list[:3]]
    result += [
        Column("p50", "p50 ms (c1 m1)", False, ms),
        Column("p99", "p99 ms (c1 m1)", False, ms),
    ]
    result += [Column(load.key, load.heading, True, rate) for load in load_list[3:]]
    result.append(Column("memory", f"idle KiB/conn ({IDLE_CONNECTIONS:,})", False, kib))
    return result


@dataclass
class Contender:
    """A server under test: how to start it, and its best figures so far."""

    name: str
    command: list[str]
    settle: float = 0.0
    """Extra seconds after the port answers (other worker processes still starting)."""
    best: dict[str, float] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    """Calibrated h2load -n per load key."""
    errors: list[str] = field(default_factory=list)
    sampled: int = 0
    """Responses checked byte for byte (with grpc-status 0) during the timed runs."""

    def record(self, key: str, value: float, higher_is_better: bool) -> None:
        old = self.best.get(key)
        if old is None or (value > old if higher_is_better else value < old):
            self.best[key] = value


def contenders(selected: set[str] | None) -> list[Contender]:
    """Every server this machine can run, in table order."""
    servers = str(HERE / "servers.py")
    found = [Contender("greeter", [PYTHON, servers, "greeter", "--port"])]
    uvloop = subprocess.run([PYTHON, "-c", "import uvloop"], check=False, capture_output=True)
    if uvloop.returncode == 0:
        found.append(Contender("greeter (uvloop)", [PYTHON, servers, "greeter-uvloop", "--port"]))
    help_text = subprocess.run(
        [PYTHON, "-m", "greeter", "serve", "--help"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    if "--workers" in help_text:
        # The same loop as the "greeter" row, so the row shows what a second process adds.
        loop = ["--loop", "asyncio"] if "--loop" in help_text else []
        command = [PYTHON, "-m", "greeter", "serve", "--workers", "2", *loop, "--port"]
        found.append(Contender("greeter --workers 2", command, settle=1.5))
    found += [
        Contender("grpclib", [PYTHON, servers, "grpclib", "--port"]),
        Contender("grpc.aio", [PYTHON, servers, "grpc-aio", "--port"]),
        Contender("bare h2", [PYTHON, str(HERE / "bare_h2.py"), "--port"]),
    ]
    if selected is not None:
        unknown = selected - {c.name for c in found}
        if unknown:
            names = ", ".join(repr(c.name) for c in found)
            raise SystemExit(f"--servers: {', '.join(sorted(unknown))} not among {names}")
        found = [c for c in found if c.name in selected]
    return found


# --- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float = 20.0) -> None:
    """Return once a TCP connection to the port succeeds; RuntimeError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@dataclass
class Running:
    """A started server: its process (the leader of its own process group) and port."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path


@contextlib.contextmanager
def running(contender: Contender, directory: Path) -> Iterator[Running]:
    """Start the server, wait until it answers all four RPCs; always kill its process group."""
    port = free_port()
    log = directory / f"server-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*contender.command, str(port)],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: workers die with it
        )
    try:
        wait_listening(port)
        time.sleep(contender.settle)
        asyncio.run(check_semantics(port))
        yield Running(process, port, log)
    except Exception:
        print(log.read_text(errors="replace")[-2000:], file=sys.stderr)
        raise
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    for signum, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        try:
            process.wait(timeout=wait)
            if signum == signal.SIGTERM:  # the leader is gone; sweep any straggler
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue


async def check_semantics(port: int) -> None:
    """All four RPCs through grpclib's client, with the replies the contract fixes."""
    from grpclib.client import Channel  # noqa: PLC0415 (only the check needs a client)

    from gen.greet import GreeterStub  # noqa: PLC0415

    channel = Channel("127.0.0.1", port)
    try:
        stub = GreeterStub(channel)
        reply = await stub.say_hello(HelloRequest(name="a"), timeout=10)
        replies = [
            r.message
            async for r in stub.lots_of_replies(HelloRequest(name="a", count=3), timeout=10)
        ]
        names = [HelloRequest(name=n) for n in ("a", "b", "c")]
        greeting = await stub.lots_of_greetings(names, timeout=10)
        bidi = [r.message async for r in stub.bidi_hello(names, timeout=10)]
    finally:
        channel.close()
    got = (reply.message, replies, greeting.message, bidi)
    want = (
        "Hello a",
        ["Hello a #1", "Hello a #2", "Hello a #3"],
        "Hello a, b, c",
        ["Hello a", "Hello b", "Hello c"],
    )
    if got != want:
        raise RuntimeError(f"wrong replies: {got!r}, expected {want!r}")


# --- h2load ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class H2loadResult:
    rate: float
    """Requests per second, h2load's own figure."""
    seconds: float
    latencies_us: list[int]
    """Per-request times (microseconds), when the load asked for them."""


def h2load(port: int, load: Load, requests: int, directory: Path) -> H2loadResult:
    """One h2load run; raises unless every request succeeded with exactly the expected DATA."""
    body = directory / f"{load.key}.bin"
    if not body.exists():
        body.write_bytes(load.body)
    log_file = directory / f"{load.key}.log"
    command = [
        "h2load",
        *("-n", str(requests), "-c", str(load.clients), "-m", str(load.streams), "-t", "1"),
        *("-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers"),
        *([f"--log-file={log_file}"] if load.latency else []),
        f"http://127.0.0.1:{port}{load.method}",
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    output = result.stdout
    succeeded = re.search(r"(\d+) succeeded", output)
    finished = re.search(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s", output)
    data = re.search(r"\((\d+)\) data", output)
    if result.returncode != 0 or not succeeded or not finished or not data:
        raise RuntimeError(f"h2load failed ({result.returncode}):\n{output}\n{result.stderr}")
    if int(succeeded.group(1)) != requests:
        raise RuntimeError(f"h2load: {succeeded.group(1)} of {requests} succeeded:\n{output}")
    if int(data.group(1)) != requests * len(load.reply):
        raise RuntimeError(
            f"h2load: {data.group(1)} response DATA bytes, expected "
            f"{requests} * {len(load.reply)} (a gRPC error, or missing messages)"
        )
    scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6}[finished.group(2)]
    latencies: list[int] = []
    if load.latency:
        for line in log_file.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) == 3:
                latencies.append(int(fields[2]))
        log_file.unlink()
        if len(latencies) != requests:
            raise RuntimeError(f"h2load log: {len(latencies)} lines for {requests} requests")
    return H2loadResult(float(finished.group(3)), float(finished.group(1)) * scale, latencies)


def percentile(values: list[int], percent: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)])


def calibrate(load: Load, rate: float, seconds: float) -> int:
    """Requests for a run of about `seconds` at `rate`, a multiple of the client count."""
    wanted = max(load.probe, int(rate * seconds))
    return max(load.clients, wanted // load.clients * load.clients)


# --- idle memory ---------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
FRAME_GOAWAY = 0x7
FRAME_SETTINGS = 0x4


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (a --workers server's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def rss_kib(pid: int) -> int:
    """VmRSS of the process and its descendants, KiB."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read one frame; return its type and flags."""
    header = await reader.readexactly(9)
    await reader.readexactly(int.from_bytes(header[:3], "big"))
    return header[3], header[4]


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def handshake(port: int, gate: asyncio.Semaphore) -> Connection:
    """Open a connection: preface + empty SETTINGS, read the server's SETTINGS, ACK it."""
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PREFACE + SETTINGS)
        while True:
            kind, flags = await read_frame(reader)
            if kind == FRAME_GOAWAY:
                raise RuntimeError("GOAWAY during the handshake")
            if kind == FRAME_SETTINGS and not flags & 1:
                break
        writer.write(SETTINGS_ACK)
        await writer.drain()
        return reader, writer


async def still_open(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """True unless the server closed the connection or sent GOAWAY (read for 1 s)."""
    deadline = asyncio.get_running_loop().time() + 1.0
    try:
        while True:
            timeout = deadline - asyncio.get_running_loop().time()
            kind, _ = await asyncio.wait_for(read_frame(reader), max(timeout, 0.001))
            if kind == FRAME_GOAWAY:
                return False
    except TimeoutError:
        return not writer.is_closing()
    except (asyncio.IncompleteReadError, OSError):
        return False


async def idle_memory(pid: int, port: int, count: int) -> float:
    """KiB of server RSS per open idle HTTP/2 connection; raises unless all `count` stay open."""
    await asyncio.sleep(0.5)  # the semantics check's connection is gone
    before = rss_kib(pid)
    gate = asyncio.Semaphore(50)  # below every server's listen backlog
    attempts = [asyncio.wait_for(handshake(port, gate), 30) for _ in range(count)]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    connections = [o for o in outcomes if isinstance(o, tuple)]
    try:
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise RuntimeError(f"{len(failures)} of {count} handshakes failed: {failures[0]!r}")
        await asyncio.sleep(1.0)
        after = rss_kib(pid)
        alive = await asyncio.gather(*(still_open(*connection) for connection in connections))
        if not all(alive):
            raise RuntimeError(f"the server closed {alive.count(False)} of {count} connections")
    finally:
        for _, writer in connections:
            writer.close()
    return (after - before) / count


# --- the run ---------------------------------------------------------------------------------


def raise_fd_limit(needed: int) -> None:
    """Room for the idle connections, in this process and the servers it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"ulimit -n: the hard limit {hard} is below the {needed} needed")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def measure(
    contender: Contender,
    *,
    load_list: list[Load],
    cols: dict[str, Column],
    args: argparse.Namespace,
    directory: Path,
) -> None:
    """One round for one server: start it, idle memory, every load (sampled), stop it."""
    with running(contender, directory) as server:
        # Every round, like every other figure: the lowest of the rounds is kept.
        try:
            per_connection = asyncio.run(
                idle_memory(server.process.pid, server.port, IDLE_CONNECTIONS)
            )
            contender.record("memory", per_connection, higher_is_better=False)
            log(f"{contender.name}: idle memory {per_connection:.1f} KiB/connection")
        except Exception as exc:
            contender.errors.append(f"idle memory: {exc}")
            log(f"{contender.name}: idle memory FAILED: {exc}")
        for load in load_list:
            try:
                probe = h2load(server.port, load, load.probe, directory)  # warm-up
                if load.key not in contender.requests:
                    contender.requests[load.key] = calibrate(load, probe.rate, args.seconds)
                with ResponseSampler(server.port, load.method, load.body, load.reply) as sample:
                    run = h2load(server.port, load, contender.requests[load.key], directory)
                contender.sampled += sample.checked
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                contender.errors.append(f"{load.heading}: {exc}")
                log(f"{contender.name}: {load.heading} FAILED: {exc}")
                continue
            value = run.rate * load.messages
            contender.record(load.key, value, cols[load.key].higher_is_better)
            note = ""
            if run.latencies_us:
                p50 = percentile(run.latencies_us, 50) / 1000
                p99 = percentile(run.latencies_us, 99) / 1000
                contender.record("p50", p50, higher_is_better=False)
                contender.record("p99", p99, higher_is_better=False)
                note = f", p50 {p50:.2f} ms, p99 {p99:.2f} ms"
            log(
                f"{contender.name}: {load.heading} {value:,.0f}{note} "
                f"(-n {contender.requests[load.key]}, {run.seconds:.1f} s)"
            )


def log(message: str) -> None:
    """Progress, on stderr (stdout carries the report)."""
    print(message, file=sys.stderr, flush=True)


# --- the report ------------------------------------------------------------------------------


def environment(args: argparse.Namespace) -> list[str]:
    """Date, machine, versions and mode, one Markdown line each."""
    mode = "quick, 1 round" if args.quick else f"full, best of {args.rounds} rounds"
    return [
        *machine_lines(),
        f"- mode: {mode}, ~{args.seconds:g} s per h2load run after a warm-up run, `-t 1`; "
        f"streaming loads `-c 4 -m 1`",
    ]


def machine_lines() -> list[str]:
    """Date, machine, versions and the commit measured: the head of every generated report."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = []
    for package in ("grpclib", "grpcio", "h2", "hpack", "betterproto2", "uvloop"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    h2load_version = subprocess.run(
        ["h2load", "--version"], check=False, capture_output=True, text=True
    )
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
    )
    dirty = subprocess.run(
        [*git, "status", "--porcelain"], check=False, capture_output=True, text=True
    )
    revision = commit.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    return [
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; {', '.join(versions)}; "
        f"{h2load_version.stdout.strip() or 'h2load ?'}; greeter at {revision}",
    ]


def table(headings: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(headings) + " |", "|" + " --- |" * len(headings)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def ratio(mine: float | None, theirs: float | None) -> str:
    """mine / theirs, or a dash when either figure is missing."""
    if mine is None or not theirs:
        return "—"
    return f"{mine / theirs:.2f}{TIMES}"


TARGETS = [
    (f"unary c4 m16 ≥ 1.2{TIMES} grpc.aio", "greeter", "unary_4", "grpc.aio", 1.2, True),
    (f"unary c16 m32 ≥ 1.2{TIMES} grpc.aio", "greeter", "unary_16", "grpc.aio", 1.2, True),
    (f"unary c4 m16 ≥ 2{TIMES} grpclib", "greeter", "unary_4", "grpclib", 2.0, True),
    (f"unary c16 m32 ≥ 2{TIMES} grpclib", "greeter", "unary_16", "grpclib", 2.0, True),
    (f"unary c4 m16 ≥ 1.0{TIMES} bare h2", "greeter", "unary_4", "bare h2", 1.0, True),
    (f"unary c16 m32 ≥ 1.0{TIMES} bare h2", "greeter", "unary_16", "bare h2", 1.0, True),
    ("p99 at c1 m1 ≤ grpc.aio's", "greeter", "p99", "grpc.aio", 1.0, False),
    ("idle memory per connection ≤ grpc.aio's", "greeter", "memory", "grpc.aio", 1.0, False),
    (
        f"LotsOfReplies msg/s ≥ 2.5{TIMES} grpc.aio",
        "greeter",
        "server_stream",
        "grpc.aio",
        2.5,
        True,
    ),
    (
        f"--workers 2 unary c4 m16 ≥ 1.8{TIMES} one worker",
        "greeter --workers 2",
        "unary_4",
        "greeter",
        1.8,
        True,
    ),
]
"""The targets of issue 14: (label, server, figure, other server, ratio bound, at least?)."""


def report(found: list[Contender], cols: list[Column], args: argparse.Namespace) -> str:
    """The Markdown report: environment, figures, ratios, targets, failures (no heading)."""
    by_name = {c.name: c for c in found}
    lines = [*environment(args), ""]
    rows = [
        [c.name] + [col.fmt(c.best[col.key]) if col.key in c.best else "—" for col in cols]
        for c in found
    ]
    lines += table(["server", *(col.heading for col in cols)], rows)
    sampled = ", ".join(f"{c.name} {c.sampled:,}" for c in found)
    lines += [
        "",
        "Responses checked during the timed runs (`:status` 200, the exact body, "
        f"`grpc-status: 0`; benchmarks/sampler.py): {sampled}.",
    ]
    greeter = by_name.get("greeter")
    pairs = [
        (f"{mine} / {other}", by_name[mine], by_name[other])
        for mine, other in (
            ("greeter", "grpclib"),
            ("greeter", "grpc.aio"),
            ("greeter", "bare h2"),
            ("greeter (uvloop)", "greeter"),
            ("greeter --workers 2", "greeter"),
        )
        if mine in by_name and other in by_name
    ]
    if pairs:
        lines += [
            "",
            "Ratios (for p50, p99 and memory lower is better: below 1x favours the first).",
            "",
        ]
        ratio_rows = [
            [label] + [ratio(a.best.get(col.key), b.best.get(col.key)) for col in cols]
            for label, a, b in pairs
        ]
        lines += table(["ratio", *(col.heading for col in cols)], ratio_rows)
    if greeter is not None:
        target_rows = []
        for label, name, key, other_name, bound, at_least in TARGETS:
            server, other = by_name.get(name), by_name.get(other_name)
            mine = server.best.get(key) if server else None
            theirs = other.best.get(key) if other else None
            if mine is None or not theirs:
                continue
            value = mine / theirs
            met = value >= bound if at_least else value <= bound
            target_rows.append([label, f"{value:.2f}{TIMES}", "yes" if met else "**no**"])
        if target_rows:
            lines += ["", "Targets (greeter, this run):", ""]
            lines += table(["target", "greeter / other", "met"], target_rows)
    failures = [f"- {c.name}: {error}" for c in found for error in c.errors]
    if failures:
        lines += ["", "Failures (their figures are missing or from fewer rounds):", "", *failures]
    return "\n".join(lines) + "\n"


def replace_section(page: str, text: str, begin: str = BEGIN, finish: str = END) -> str:
    """`page` with the lines between its `begin` and `finish` markers replaced by `text`."""
    start, end = page.find(begin), page.find(finish)
    if start < 0 or end < start or page.count(begin) != 1 or page.count(finish) != 1:
        raise ValueError(f"expected one {begin} line followed by one {finish} line")
    return page[: start + len(begin)] + "\n\n" + text.strip("\n") + "\n\n" + page[end:]


def update_section(text: str, begin: str, finish: str, page: Path = DOC) -> None:
    """Write `text` between the `begin` and `finish` markers of `page` (a generated section)."""
    page.write_text(replace_section(page.read_text(), text, begin, finish))
    log(f"updated {page} between {begin} and {finish}")


def target_page(args: argparse.Namespace) -> Path | None:
    """The page whose marked section gets the report: --doc, else docs/performance.md for a
    full run that writes no --out file; None for a quick run (its numbers stay out of the docs)."""
    if args.doc is not None:
        return Path(args.doc)
    if args.quick or args.out is not None:
        return None
    return DOC


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round (development)")
    parser.add_argument(
        "--doc",
        type=Path,
        help="page whose marked section gets the report "
        "(default: docs/performance.md, for a full run without --out)",
    )
    parser.add_argument("--out", type=Path, help="write the report to this standalone file")
    parser.add_argument("--rounds", type=int, help="rounds per figure (default 3; quick: 1)")
    parser.add_argument("--seconds", type=float, help="seconds per run (default 3.5; quick: 0.5)")
    parser.add_argument("--servers", help="comma-separated subset, e.g. 'greeter,grpc.aio'")
    parser.add_argument(
        "--servers-only",
        action="store_true",
        help="a full run writes only the server table (not the client, tap-cost and profile ones)",
    )
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (0.5 if args.quick else 3.5)
    if not shutil.which("h2load"):
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 1
    page = target_page(args)
    if page is not None:
        try:  # before minutes of measuring: the page must have its markers
            replace_section(page.read_text(), "")
        except (OSError, ValueError) as exc:
            print(f"{page}: {exc}", file=sys.stderr)
            return 1
    raise_fd_limit(IDLE_CONNECTIONS + 1024)
    # SIGTERM unwinds like Ctrl-C, so the finally clauses stop the running server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    selected = set(args.servers.split(",")) if args.servers else None
    found = contenders(selected)
    load_list = loads()
    cols = columns(load_list)
    by_key = {col.key: col for col in cols}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="greeter-bench-") as tmp:
        for round_number in range(1, args.rounds + 1):
            log(f"--- round {round_number} of {args.rounds}")
            for contender in found:
                try:
                    measure(
                        contender,
                        load_list=load_list,
                        cols=by_key,
                        args=args,
                        directory=Path(tmp),
                    )
                except Exception as exc:
                    contender.errors.append(f"round {round_number}: {exc}")
                    log(f"{contender.name}: round {round_number} FAILED: {exc}")
    text = report(found, cols, args)
    log(f"--- {time.monotonic() - started:.0f} s")
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("# Benchmark results\n\n" + text)
        log(f"wrote {args.out}")
    failed = any(c.errors for c in found)
    if page is not None:
        page.write_text(replace_section(page.read_text(), text))
        log(f"updated {page} between {BEGIN} and {END}")
    if page == DOC and not args.servers_only:
        failed |= not regenerate_the_other_sections(args.rounds)
    return 1 if failed else 0


COMPANIONS = ("clients.py", "tap_cost.py", "profile_server.py")
"""The scripts that write docs/performance.md's other generated sections, run by a full run so
that one command regenerates every figure of the page at one commit."""


def regenerate_the_other_sections(rounds: int) -> bool:
    """Run each companion script (it writes its own section); False if any failed."""
    ok = True
    for script in COMPANIONS:
        command = [PYTHON, str(HERE / script)]
        if script != "profile_server.py":
            command += ["--rounds", str(rounds)]
        log(f"--- {script}")
        if subprocess.run(command, cwd=ROOT, check=False).returncode != 0:
            log(f"{script} FAILED: its section of {DOC.name} is unchanged")
            ok = False
    return ok


if __name__ == "__main__":
    sys.exit(main())
