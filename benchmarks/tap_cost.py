"""What the wire tap costs: unary throughput with no tap code, with the tap off, with it on.

Usage: .venv/bin/python benchmarks/tap_cost.py [--baseline REF] [--requests N] [--rounds R]

"No tap code" is the server from git REF (default: the last commit before the core got its byte
observer), checked out into a temporary git worktree; "tap off" and "tap on" are this checkout,
the latter with a Tap per connection writing JSON Lines to /dev/null. All three run in one
invocation, interleaved over several rounds, under benchmarks/run.py's unary h2load load
(-c 4 -m 16 by default); the script prints the best req/s of each and the ratios. A script, not
a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path

from run import ROOT, Load, free_port, h2load, loads, stop, wait_listening

BASELINE_REF = "441c381"  # "connection: one helper asks the client to stop...": no tap code yet

SERVER = """
import asyncio, sys
sys.path.insert(0, {root!r})
from greeter.server import Server
try:
    from greeter.services.greeter import Greeter
except ImportError:  # the baseline predates the layer folders
    from greeter.service import Greeter
tap = None
if {tap_on}:
    from greeter.tap import TapFactory, TraceWriter
    from greeter.tap.resolve import MessageTypes
    sink = TraceWriter(open("/dev/null", "w"), format="jsonl")
    tap = TapFactory(sink, types=MessageTypes.from_services([Greeter()]))
async def main():
    kwargs = {{"tap": tap}} if tap is not None else {{}}
    async with Server([Greeter()], port={port}, **kwargs):
        await asyncio.Event().wait()
asyncio.run(main())
"""


def measure(root: Path, tap_on: bool, load: Load, requests: int, directory: Path) -> float:
    """Unary req/s of one server (this checkout or the baseline), after a warm-up run."""
    port = free_port()
    source = SERVER.format(root=str(root), tap_on=tap_on, port=port)
    process = subprocess.Popen([sys.executable, "-c", source], cwd=root, start_new_session=True)
    try:
        wait_listening(port)
        h2load(port, load, load.probe, directory)  # warm-up
        return h2load(port, load, requests, directory).rate
    finally:
        stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE_REF, help="git ref without tap code")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    best: dict[str, float] = {"no tap code": 0.0, "tap off": 0.0, "tap on": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
            check=True, capture_output=True,
        )  # fmt: skip
        try:
            unary = next(load for load in loads() if load.key == "unary_4")
            load = dataclasses.replace(unary, clients=args.clients, streams=args.streams)
            requests = max(args.clients, args.requests // args.clients * args.clients)
            for _ in range(args.rounds):
                for name, root, tap_on in (
                    ("no tap code", baseline, False),
                    ("tap off", ROOT, False),
                    ("tap on", ROOT, True),
                ):
                    rate = measure(root, tap_on, load, requests, Path(tmp))
                    best[name] = max(best[name], rate)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                check=False, capture_output=True,
            )  # fmt: skip
    base = best["no tap code"]
    print(f"{'server':<12} {'unary req/s':>12} {'vs no tap code':>15}")
    for name, rate in best.items():
        print(f"{name:<12} {rate:>12.0f} {rate / base:>14.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
