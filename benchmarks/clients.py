"""greeter's client side by side with grpclib's Channel and grpc.aio: one command, one table.

Usage: .venv/bin/python benchmarks/clients.py [--quick] [--doc docs/performance.md | --out FILE]

One server for every client, and one that is never the bottleneck: nginx with its Lua module
serving greet.Greeter's SayHello and LotsOfReplies (benchmarks/nginx_greeter.py says why it and
not a gRPC server: those spend more CPU per call than the clients being compared), a subprocess
on loopback. Needs the Debian packages nginx and libnginx-mod-http-lua, and h2load
(nghttp2-client); the script says what to install when one is missing. Each client runs in a
subprocess of its own (this script with --client NAME) and drives, through the same betterproto2
stub where it has one (greeter's Channel, grpclib's Channel) or grpc.aio's generic calls with the
same messages, and once more grpc.aio with greet.proto's messages as protoc generates them
("grpc.aio+protoc": google protobuf's C parser, grpc.aio at its fastest; generated at run time by
grpcio-tools, a dev dependency):

- unary SayHello calls/s with 1 call in flight on one channel;
- unary SayHello calls/s with 64 calls in flight on one channel;
- LotsOfReplies (count 10,000) messages/s received, one call at a time.

Every reply is checked (the server echoes the request: "Hello x"; the count and the last reply
of a stream), so a fast wrong answer cannot win. Rounds are interleaved and each figure keeps its
best round (see run.py).

The report shows that the server is not what limits a figure, from measurements of this run:
the server's capacity on one connection (h2load, 1 and 64 in flight, and LotsOfReplies) against
the fastest client's rate (at least HEADROOM times), and the server's CPU share (its process's
CPU time over the figure's wall time; at most SERVER_CPU_LIMIT of a core) while each client runs
each figure, beside the client process's share and the rest of the machine's (other load makes
a round suspect); the report says when either bound is missed. The report goes between the
client-benchmark markers of docs/performance.md (a quick run writes no page unless --doc names
one). A script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nginx_greeter
from run import (
    DOC,
    PYTHON,
    TIMES,
    Load,
    calibrate,
    environment,
    free_port,
    grpc_frame,
    h2load,
    replace_section,
    stop,
    table,
    wait_listening,
)

from gen.greet import GreeterStub, HelloReply, HelloRequest

BEGIN = "<!-- client-benchmark:begin -->"
END = "<!-- client-benchmark:end -->"
CLIENTS = ("greeter", "grpclib", "grpc.aio", "grpc.aio+protoc")
FIGURES = (
    ("unary_1", "unary, 1 in flight (calls/s)"),
    ("unary_64", "unary, 64 in flight (calls/s)"),
    ("stream", "LotsOfReplies received (msg/s)"),
)
IN_FLIGHT = 64
REPLIES = 10_000
NAME = "x"
TARGETS = [
    (f"1 in flight ≥ 1.2{TIMES} grpc.aio", "unary_1", "grpc.aio", 1.2),
    (f"1 in flight ≥ 1.3{TIMES} grpclib", "unary_1", "grpclib", 1.3),
    (f"64 in flight ≥ 1.0{TIMES} grpc.aio", "unary_64", "grpc.aio", 1.0),
    (f"64 in flight ≥ 1.5{TIMES} grpclib", "unary_64", "grpclib", 1.5),
    (f"streaming receive ≥ 1.2{TIMES} grpclib", "stream", "grpclib", 1.2),
]
HEADROOM = 3.0
"""The server's capacity must be at least this many times the fastest client's rate ..."""
SERVER_CPU_LIMIT = 0.5
"""... and its CPU share during every client figure at most this (of one core)."""
CPU_PARTS = ("client", "server", "other")

Call = Callable[[Any], Awaitable[Any]]
Stream = Callable[[Any], Any]


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (its threads included), from the scheduler's ns."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def machine_busy_seconds() -> float:
    """CPU time all cores have spent busy (not idle, not waiting on I/O) since boot."""
    fields = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


# --- the client side (one subprocess per client) -------------------------------------------------


async def timed(seconds: float, concurrency: int, call: Call, request_type: Any) -> float:
    """Calls/s of `concurrency` loops calling SayHello for `seconds`."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            reply = await call(request_type(name=NAME))
            assert reply.message == f"Hello {NAME}", reply
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def streamed(seconds: float, stream: Stream, request_type: Any) -> float:
    """LotsOfReplies messages/s received, one call after another for `seconds`."""
    received = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        count = 0
        last = None
        async for last in stream(request_type(name=NAME, count=REPLIES)):  # noqa: B007
            count += 1
        assert count == REPLIES, count
        assert last is not None and last.message == f"Hello {NAME} #{REPLIES}", last
        received += count
    return received / (time.perf_counter() - started)


async def measure_client(
    name: str, port: int, seconds: float, server_pid: int
) -> dict[str, dict[str, float]]:
    if name.startswith("grpc.aio"):
        import grpc  # noqa: PLC0415 (each client imports only its stack)

        request_type, reply_type = (
            (HelloRequest, HelloReply) if name == "grpc.aio" else protoc_messages()
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as aio:
            unary = aio.unary_unary(
                "/greet.Greeter/SayHello",
                request_serializer=request_type.SerializeToString,
                response_deserializer=reply_type.FromString,
            )
            server_stream = aio.unary_stream(
                "/greet.Greeter/LotsOfReplies",
                request_serializer=request_type.SerializeToString,
                response_deserializer=reply_type.FromString,
            )
            return await figures(seconds, unary, server_stream, server_pid, request_type)
    if name == "grpclib":
        from grpclib.client import Channel as GrpclibChannel  # noqa: PLC0415

        channel: Any = GrpclibChannel("127.0.0.1", port)
    else:
        from greeter.client import Channel  # noqa: PLC0415

        channel = Channel(f"127.0.0.1:{port}")
    stub = GreeterStub(channel)
    try:
        return await figures(
            seconds, stub.say_hello, stub.lots_of_replies, server_pid, HelloRequest
        )
    finally:
        channel.close()


def protoc_messages() -> tuple[Any, Any]:
    """greet.proto's HelloRequest and HelloReply as protoc generates them (google protobuf)."""
    from grpc_tools import protoc  # noqa: PLC0415 (only this client needs it)

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="greeter-protoc-") as out:
        arguments = ["protoc", f"-I{root}", f"--python_out={out}", str(root / "greet.proto")]
        if protoc.main(arguments) != 0:
            raise RuntimeError("protoc could not generate greet_pb2")
        sys.path.insert(0, out)
        import greet_pb2  # type: ignore[import-not-found]  # noqa: PLC0415 (generated above)

        sys.path.remove(out)
    return greet_pb2.HelloRequest, greet_pb2.HelloReply


async def figures(
    seconds: float, unary: Call, stream: Stream, server_pid: int, request_type: Any
) -> dict[str, dict[str, float]]:
    """Each figure's rate, with the CPU shares (of one core) of this process and the server's."""

    async def figure(run: Awaitable[float]) -> dict[str, float]:
        wall, mine, server = time.perf_counter(), time.process_time(), cpu_seconds(server_pid)
        machine = machine_busy_seconds()
        rate = await run
        wall = time.perf_counter() - wall
        client_cpu = (time.process_time() - mine) / wall
        server_cpu = (cpu_seconds(server_pid) - server) / wall
        machine_cpu = (machine_busy_seconds() - machine) / wall
        return {
            "rate": rate,
            "client_cpu": client_cpu,
            "server_cpu": server_cpu,
            "other_cpu": max(0.0, machine_cpu - client_cpu - server_cpu),
        }

    await timed(min(seconds, 0.5), 4, unary, request_type)  # warm-up: connection, caches
    return {
        "unary_1": await figure(timed(seconds, 1, unary, request_type)),
        "unary_64": await figure(timed(seconds, IN_FLIGHT, unary, request_type)),
        "stream": await figure(streamed(seconds, stream, request_type)),
    }


# --- the harness -------------------------------------------------------------------------------


def run_client(
    name: str, port: int, seconds: float, server_pid: int
) -> dict[str, dict[str, float]]:
    command = [PYTHON, __file__, "--client", name, "--port", str(port)]
    command += ["--seconds", str(seconds), "--server-pid", str(server_pid)]
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=seconds * 20 + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} client failed: {done.stderr.strip()[-500:]}")
    result: dict[str, dict[str, float]] = json.loads(done.stdout)
    return result


async def check_semantics(port: int) -> None:
    """The server's replies through grpclib's client: the echo, the stream, an empty stream."""
    from grpclib.client import Channel  # noqa: PLC0415 (only the check needs a client)

    channel = Channel("127.0.0.1", port)
    try:
        stub = GreeterStub(channel)
        reply = await stub.say_hello(HelloRequest(name="a"), timeout=10)
        many = stub.lots_of_replies(HelloRequest(name="b", count=3), timeout=10)
        replies = [r.message async for r in many]
        none = stub.lots_of_replies(HelloRequest(name="c", count=0), timeout=10)
        empty = [r.message async for r in none]
    finally:
        channel.close()
    got = (reply.message, replies, empty)
    want = ("Hello a", ["Hello b #1", "Hello b #2", "Hello b #3"], [])
    if got != want:
        raise RuntimeError(f"wrong replies: {got!r}, expected {want!r}")


def capacity(port: int, seconds: float, directory: Path) -> dict[str, float]:
    """The server's rates under h2load (C) on one connection, the clients' three loads."""
    request = grpc_frame(bytes(HelloRequest(name=NAME)))
    reply = grpc_frame(bytes(HelloReply(message=f"Hello {NAME}")))
    many = grpc_frame(bytes(HelloRequest(name=NAME, count=REPLIES)))
    replies = b"".join(
        grpc_frame(bytes(HelloReply(message=f"Hello {NAME} #{i}"))) for i in range(1, REPLIES + 1)
    )
    say_hello, lots_of_replies = "/greet.Greeter/SayHello", "/greet.Greeter/LotsOfReplies"
    loads = [
        Load("unary_1", "", say_hello, request, 1, 1, 1, reply, 2000),
        Load("unary_64", "", say_hello, request, 1, IN_FLIGHT, 1, reply, 20000),
        Load("stream", "", lots_of_replies, many, 1, 1, REPLIES, replies, 20),
    ]
    rates = {}
    for load in loads:
        probe = h2load(port, load, load.probe, directory)  # also the warm-up
        run = h2load(port, load, calibrate(load, probe.rate, seconds), directory)
        rates[load.key] = run.rate * load.messages
    return rates


def percent(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.0f} %"


def report(
    best: dict[str, dict[str, float]],
    cpu: dict[str, dict[str, dict[str, float]]],
    server_capacity: dict[str, float],
    args: argparse.Namespace,
) -> str:
    """The Markdown report: environment, rates, ratios, targets, the server's headroom."""
    mode = "quick, 1 round" if args.quick else f"full, best of {args.rounds} rounds"
    lines = [
        *environment(args)[:-1],  # its last line describes run.py's h2load mode
        f"- mode: {mode}, ~{args.seconds:g} s per figure after a warm-up; one channel per client",
        f"- server: {nginx_greeter.version()} (benchmarks/nginx_greeter.py), one process",
        "",
    ]
    rows = [
        [name] + [f"{best[name][key]:,.0f}" if key in best[name] else "—" for key, _ in FIGURES]
        for name in CLIENTS
        if name in best
    ]
    lines += table(["client", *(heading for _, heading in FIGURES)], rows)
    mine = best.get("greeter", {})
    ratio_rows = [
        [f"greeter / {other}"]
        + [
            f"{mine[key] / best[other][key]:.2f}{TIMES}"
            if key in mine and best[other].get(key)
            else "—"
            for key, _ in FIGURES
        ]
        for other in CLIENTS[1:]
        if other in best
    ]
    lines += ["", *table(["ratio", *(heading for _, heading in FIGURES)], ratio_rows)]
    target_rows = []
    for label, key, other, bound in TARGETS:
        if key in mine and best.get(other, {}).get(key):
            value = mine[key] / best[other][key]
            target_rows.append(
                [label, f"{value:.2f}{TIMES}", "yes" if value >= bound else "**no**"]
            )
    if target_rows:
        lines += ["", "Targets (greeter's client, this run):", ""]
        lines += table(["target", "greeter / other", "met"], target_rows)
    lines += ["", *headroom(best, cpu, server_capacity)]
    return "\n".join(lines) + "\n"


def headroom(
    best: dict[str, dict[str, float]],
    cpu: dict[str, dict[str, dict[str, float]]],
    server_capacity: dict[str, float],
) -> list[str]:
    """The evidence that the server limited no figure: capacity against the fastest client,
    and the server's CPU share (highest of any round) beside each client's own (best round)."""
    lines = ["The server's headroom (measured in this run):", ""]
    rows, problems = [], []
    for key, heading in FIGURES:
        fastest = max((rates[key] for rates in best.values() if key in rates), default=0.0)
        busiest = max(
            (shares[key]["server_highest"] for shares in cpu.values() if key in shares),
            default=0.0,
        )
        margin = server_capacity[key] / fastest if fastest else float("inf")
        rows.append(
            [
                heading,
                f"{server_capacity[key]:,.0f}",
                f"{fastest:,.0f}",
                f"{margin:.1f}{TIMES}",
                percent(busiest),
            ]
        )
        if margin < HEADROOM:
            problems.append(f"{heading}: capacity only {margin:.1f}{TIMES} the fastest client")
        if busiest > SERVER_CPU_LIMIT:
            problems.append(f"{heading}: the server used {percent(busiest)} of a core")
    lines += table(
        [
            "figure",
            "server capacity (h2load, 1 connection)",
            "fastest client",
            "capacity / fastest",
            "server CPU during clients, highest",
        ],
        rows,
    )
    lines += [
        "",
        "CPU during each figure's best round, in % of one core: the client process / the server "
        "/ every other process on the machine (more than a few % of other load makes the round "
        "suspect):",
        "",
    ]
    lines += table(
        ["client", *(heading for _, heading in FIGURES)],
        [
            [name]
            + [
                " / ".join(percent(cpu[name][key].get(part)) for part in CPU_PARTS)
                if key in cpu[name]
                else "—"
                for key, _ in FIGURES
            ]
            for name in CLIENTS
            if name in cpu
        ],
    )
    if problems:
        lines += ["", "**The server may have limited a figure**: " + "; ".join(problems) + "."]
    else:
        lines += [
            "",
            f"The server was not the bottleneck: its capacity is at least {HEADROOM:g}{TIMES} "
            f"the fastest client in every figure, and it never used more than "
            f"{percent(SERVER_CPU_LIMIT)} of a core while a client ran.",
        ]
    return lines


def rounds(
    port: int, server_pid: int, args: argparse.Namespace
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, float]]]]:
    """Every client once per round: each figure's best rate, the CPU shares of its best round,
    and the server's highest share in any round."""
    best: dict[str, dict[str, float]] = {name: {} for name in CLIENTS}
    cpu: dict[str, dict[str, dict[str, float]]] = {name: {} for name in CLIENTS}
    for round_number in range(1, args.rounds + 1):
        for name in CLIENTS:
            print(f"round {round_number}: {name}", file=sys.stderr, flush=True)
            for key, got in run_client(name, port, args.seconds, server_pid).items():
                shares = cpu[name].setdefault(key, {"server_highest": 0.0})
                shares["server_highest"] = max(shares["server_highest"], got["server_cpu"])
                if got["rate"] > best[name].get(key, 0.0):
                    best[name][key] = got["rate"]
                    shares["client"] = got["client_cpu"]
                    shares["server"] = got["server_cpu"]
                    shares["other"] = got["other_cpu"]
    return best, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round (development)")
    parser.add_argument("--doc", type=Path, help="page whose client-benchmark section gets it")
    parser.add_argument("--out", type=Path, help="write the report to this standalone file")
    parser.add_argument("--rounds", type=int, help="rounds per figure (default 3; quick: 1)")
    parser.add_argument("--seconds", type=float, help="seconds per figure (default 3; quick 0.5)")
    parser.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (0.5 if args.quick else 3.0)
    if args.client is not None:  # one client's figures, as JSON on stdout
        figures_ = measure_client(args.client, args.port, args.seconds, args.server_pid)
        print(json.dumps(asyncio.run(figures_)))
        return 0
    problem = nginx_greeter.missing()
    if problem is None and not shutil.which("h2load"):
        problem = "h2load not found: apt-get install nghttp2-client"
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    page = args.doc if args.doc is not None else (None if args.quick or args.out else DOC)
    with tempfile.TemporaryDirectory(prefix="greeter-clients-") as tmp:
        port = free_port()
        server = nginx_greeter.start(port, Path(tmp))
        try:
            wait_listening(port)
            asyncio.run(check_semantics(port))
            print("server capacity (h2load)", file=sys.stderr, flush=True)
            server_capacity = capacity(port, max(0.5, args.seconds / 3), Path(tmp))
            best, cpu = rounds(port, server.pid, args)
        except Exception:
            print(Path(tmp, "nginx.log").read_text(errors="replace")[-2000:], file=sys.stderr)
            raise
        finally:
            stop(server)
    text = report(best, cpu, server_capacity, args)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    if page is not None:
        page.write_text(replace_section(page.read_text(), text, BEGIN, END))
        print(f"updated {page} between {BEGIN} and {END}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
