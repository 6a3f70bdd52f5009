"""What the wire tap costs: unary throughput of one commit with the tap off and with it on.

Usage: .venv/bin/python benchmarks/tap_cost.py [--requests N] [--rounds R] [--no-doc]

Both servers are this checkout, started the same way; the tap is chosen at run time: "tap off"
is `Server(...)` with no tap (what benchmarks/run.py measures), "tap on" adds a Tap per
connection writing every layer as JSON Lines to /dev/null. They run interleaved over several
rounds under benchmarks/run.py's unary h2load load (-c 4 -m 16 by default, every request
checked, responses sampled byte for byte); the script prints the best req/s of each and the
ratio, and writes that report into docs/performance.md between its tap-cost markers (unless
--no-doc). A script, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path

from run import (
    ROOT,
    Load,
    free_port,
    h2load,
    loads,
    machine_lines,
    stop,
    update_section,
    wait_listening,
)
from sampler import ResponseSampler

BEGIN, END = "<!-- tap-cost:begin -->", "<!-- tap-cost:end -->"

SERVER = """
import asyncio, sys
sys.path.insert(0, {root!r})
from greeter.server import Server
from greeter.services.greeter import Greeter
tap = None
if {tap_on}:
    from greeter.tap import TapFactory, TraceWriter
    from greeter.tap.resolve import MessageTypes
    sink = TraceWriter(open("/dev/null", "w"), format="jsonl")
    tap = TapFactory(sink, types=MessageTypes.from_services([Greeter()]))
async def main():
    async with Server([Greeter()], port={port}, tap=tap):
        await asyncio.Event().wait()
asyncio.run(main())
"""


def measure(tap_on: bool, load: Load, requests: int, directory: Path) -> float:
    """Unary req/s of this checkout's server with the tap off or on, after a warm-up run."""
    port = free_port()
    source = SERVER.format(root=str(ROOT), tap_on=tap_on, port=port)
    process = subprocess.Popen([sys.executable, "-c", source], cwd=ROOT, start_new_session=True)
    try:
        wait_listening(port)
        h2load(port, load, load.probe, directory)  # warm-up
        with ResponseSampler(port, load.method, load.body, load.reply):
            return h2load(port, load, requests, directory).rate
    finally:
        stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true", help="print only; leave the docs alone")
    args = parser.parse_args()
    best = {"tap off": 0.0, "tap on": 0.0}
    unary = next(load for load in loads() if load.key == "unary_4")
    load = dataclasses.replace(unary, clients=args.clients, streams=args.streams)
    requests = max(args.clients, args.requests // args.clients * args.clients)
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, so_far in best.items():
                rate = measure(name == "tap on", load, requests, Path(tmp))
                best[name] = max(so_far, rate)
    base = best["tap off"]
    lines = [
        *machine_lines(),
        f"- load: h2load `-c {args.clients} -m {args.streams}` unary SayHello, -n {requests}, "
        f"best of {args.rounds} interleaved rounds",
        "",
        "| server | unary req/s | vs tap off |",
        "| --- | --- | --- |",
        *(
            f"| {name} | {rate:,.0f} | {rate / base:.2f}\N{MULTIPLICATION SIGN} |"
            for name, rate in best.items()
        ),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_doc:
        update_section(text, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
