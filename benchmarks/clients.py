"""greeter's client side by side with grpclib's Channel and grpc.aio: one command, one table.

Usage: .venv/bin/python benchmarks/clients.py [--quick] [--doc docs/performance.md | --out FILE]

One server for every client: grpc.aio (C-core) serving greet.Greeter (benchmarks/servers.py), a
subprocess on loopback, so the server is never the Python being measured. Each client runs in a
subprocess of its own (this script with --client NAME) and drives, through the same betterproto2
stub where it has one (greeter's Channel, grpclib's Channel) or grpc.aio's generic calls with the
same messages:

- unary SayHello calls/s with 1 call in flight on one channel;
- unary SayHello calls/s with 64 calls in flight on one channel;
- LotsOfReplies (count 10,000) messages/s received, one call at a time.

Every reply is checked ("Hello x" / the count), so a fast wrong answer cannot win. Rounds are
interleaved and each figure keeps its best round (see run.py). The report goes between the
client-benchmark markers of docs/performance.md (a quick run writes no page unless --doc names
one). A script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from run import (
    DOC,
    PYTHON,
    ROOT,
    TIMES,
    environment,
    free_port,
    replace_section,
    stop,
    table,
    wait_listening,
)

from gen.greet import GreeterStub, HelloReply, HelloRequest

BEGIN = "<!-- client-benchmark:begin -->"
END = "<!-- client-benchmark:end -->"
CLIENTS = ("greeter", "grpclib", "grpc.aio")
FIGURES = (
    ("unary_1", "unary, 1 in flight (calls/s)"),
    ("unary_64", "unary, 64 in flight (calls/s)"),
    ("stream", "LotsOfReplies received (msg/s)"),
)
IN_FLIGHT = 64
REPLIES = 10_000
TARGETS = [
    (f"1 in flight ≥ 1.2{TIMES} grpc.aio", "unary_1", "grpc.aio", 1.2),
    (f"1 in flight ≥ 1.3{TIMES} grpclib", "unary_1", "grpclib", 1.3),
    (f"64 in flight ≥ 1.0{TIMES} grpc.aio", "unary_64", "grpc.aio", 1.0),
    (f"64 in flight ≥ 1.5{TIMES} grpclib", "unary_64", "grpclib", 1.5),
    (f"streaming receive ≥ 1.2{TIMES} grpclib", "stream", "grpclib", 1.2),
]

Call = Callable[[HelloRequest], Awaitable[HelloReply]]
Stream = Callable[[HelloRequest], Any]


# --- the client side (one subprocess per client) -------------------------------------------------


async def timed(seconds: float, concurrency: int, call: Call) -> float:
    """Calls/s of `concurrency` loops calling SayHello for `seconds`."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            reply = await call(HelloRequest(name="x"))
            assert reply.message == "Hello x", reply
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def streamed(seconds: float, stream: Stream) -> float:
    """LotsOfReplies messages/s received, one call after another for `seconds`."""
    received = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        count = 0
        async for _ in stream(HelloRequest(name="s", count=REPLIES)):
            count += 1
        assert count == REPLIES, count
        received += count
    return received / (time.perf_counter() - started)


async def measure_client(name: str, port: int, seconds: float) -> dict[str, float]:
    if name == "grpc.aio":
        import grpc  # noqa: PLC0415 (each client imports only its stack)

        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as aio:
            unary = aio.unary_unary(
                "/greet.Greeter/SayHello",
                request_serializer=bytes,
                response_deserializer=HelloReply.FromString,
            )
            server_stream = aio.unary_stream(
                "/greet.Greeter/LotsOfReplies",
                request_serializer=bytes,
                response_deserializer=HelloReply.FromString,
            )
            return await figures(seconds, unary, server_stream)
    if name == "grpclib":
        from grpclib.client import Channel as GrpclibChannel  # noqa: PLC0415

        channel: Any = GrpclibChannel("127.0.0.1", port)
    else:
        from greeter.client import Channel  # noqa: PLC0415

        channel = Channel(f"127.0.0.1:{port}")
    stub = GreeterStub(channel)
    try:
        return await figures(seconds, stub.say_hello, stub.lots_of_replies)
    finally:
        channel.close()


async def figures(seconds: float, unary: Call, stream: Stream) -> dict[str, float]:
    await timed(min(seconds, 0.5), 4, unary)  # warm-up: connection, caches
    return {
        "unary_1": await timed(seconds, 1, unary),
        "unary_64": await timed(seconds, IN_FLIGHT, unary),
        "stream": await streamed(seconds, stream),
    }


# --- the harness -------------------------------------------------------------------------------


def run_client(name: str, port: int, seconds: float) -> dict[str, float]:
    command = [PYTHON, __file__, "--client", name, "--port", str(port)]
    command += ["--seconds", str(seconds)]
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=seconds * 20 + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} client failed: {done.stderr.strip()[-500:]}")
    result: dict[str, float] = json.loads(done.stdout)
    return result


def report(best: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    mode = "quick, 1 round" if args.quick else f"full, best of {args.rounds} rounds"
    lines = [
        *environment(args)[:-1],  # its last line describes run.py's h2load mode
        f"- mode: {mode}, ~{args.seconds:g} s per figure after a warm-up; one channel per client",
        "- server: grpc.aio (benchmarks/servers.py grpc-aio), its own process",
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
        for other in ("grpclib", "grpc.aio")
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
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round (development)")
    parser.add_argument("--doc", type=Path, help="page whose client-benchmark section gets it")
    parser.add_argument("--out", type=Path, help="write the report to this standalone file")
    parser.add_argument("--rounds", type=int, help="rounds per figure (default 3; quick: 1)")
    parser.add_argument("--seconds", type=float, help="seconds per figure (default 3; quick 0.5)")
    parser.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (0.5 if args.quick else 3.0)
    if args.client is not None:  # one client's figures, as JSON on stdout
        print(json.dumps(asyncio.run(measure_client(args.client, args.port, args.seconds))))
        return 0
    page = args.doc if args.doc is not None else (None if args.quick or args.out else DOC)
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, str(ROOT / "benchmarks" / "servers.py"), "grpc-aio", "--port", str(port)],
        start_new_session=True,
    )
    best: dict[str, dict[str, float]] = {name: {} for name in CLIENTS}
    try:
        wait_listening(port)
        for round_number in range(1, args.rounds + 1):
            for name in CLIENTS:
                print(f"round {round_number}: {name}", file=sys.stderr, flush=True)
                for key, value in run_client(name, port, args.seconds).items():
                    best[name][key] = max(best[name].get(key, 0.0), value)
    finally:
        stop(server)
    text = report(best, args)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    if page is not None:
        page.write_text(replace_section(page.read_text(), text, BEGIN, END))
        print(f"updated {page} between {BEGIN} and {END}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
