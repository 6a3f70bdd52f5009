"""Where greeter's server spends its time under unary load: the shares docs/performance.md quotes.

Usage: .venv/bin/python benchmarks/profile_server.py [--profiler both|py-spy|cprofile]
                                                     [--load unary_4] [--seconds S] [--no-doc]

Starts greeter's benchmark server (benchmarks/servers.py, default settings, tap off) as a
subprocess, drives it with the same h2load command as benchmarks/run.py's figure of that name
(every request checked), and profiles the server meanwhile:

- py-spy (default) samples the running process from outside (little overhead, so the shares are
  those of the real run); `py-spy record --format raw` gives whole stacks;
- cProfile instruments every call inside the server (slower, but exact call counts).

It prints two tables of shares of the server's busy time (time not spent waiting in the event
loop's poll): *self* time by package (the innermost Python frame of each sample: C functions
count for the Python function that called them), and *inclusive* time of the stages of the
unary path (a sample counts for every stage on its stack), and writes them into
docs/performance.md between its profile markers (unless --no-doc). A script, not a test.
"""

from __future__ import annotations

import argparse
import collections
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    PYTHON,
    ROOT,
    free_port,
    h2load,
    loads,
    machine_lines,
    stop,
    update_section,
    wait_listening,
)

BEGIN, END = "<!-- profile:begin -->", "<!-- profile:end -->"

PACKAGES = (
    ("greeter/core/", "greeter.core"),
    ("greeter/server/", "greeter.server"),
    ("greeter/wire/", "greeter.wire"),
    ("greeter/services/", "greeter.services (the handlers)"),
    ("/h2/", "h2"),
    ("/hpack/", "hpack"),
    ("/hyperframe/", "hyperframe"),
    ("/betterproto2/", "betterproto2"),
    ("/asyncio/", "asyncio"),
)
"""Path fragment -> package; the first match names a frame's package."""

STAGES = (
    # Since greeter/core/frame_reader.py and frame_writer.py, HEADERS and DATA frames skip h2's
    # frame methods: the core's own receive_data and send_* are where the time shows.
    ("receive_data (all of receiving)", "receive_data", "/core/frame_reader.py"),
    ("  HPACK decode of request headers", "decode", "/hpack_cache.py"),
    ("send_headers (response headers, trailers)", "send_headers", "/core/frame_writer.py"),
    ("send_data (response messages)", "send_data", "/core/frame_writer.py"),
    ("request decode (wire/codec.py)", "decode", "/wire/codec.py"),
    ("reply encode (wire/codec.py)", "encode", "/wire/codec.py"),
    ("the handler (Greeter.say_hello)", "say_hello", "greeter/services/"),
    ("socket writes (transport.write)", "write", "asyncio/selector_events.py"),
)
"""(label, function name or "" for any, path fragment): the inclusive stages reported."""

PY_SPY = shutil.which("py-spy", path=str(Path(PYTHON).parent)) or shutil.which("py-spy") or "py-spy"
"""py-spy from the project's .venv (the dev extra installs it), else from PATH."""

IDLE = ("select", "poll")
"""The event loop's wait: cProfile's entry for epoll.poll; py-spy omits idle samples itself."""


def package_of(path: str) -> str:
    for fragment, name in PACKAGES:
        if fragment in path:
            return name
    return "other Python" if path.endswith(".py") else "C builtins, frozen modules"


Frame = tuple[str, str]
"""(function name, file path)."""


def stage_hit(stack: Iterable[Frame], name: str, fragment: str) -> bool:
    # py-spy qualifies methods with their class (H2Connection.receive_data); cProfile does not.
    return any(
        (not name or function.rpartition(".")[2] == name) and fragment in path
        for function, path in stack
    )


# --- py-spy ------------------------------------------------------------------------------------

RAW_FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>[^()]*?)(?::\d+)?\)$")


def py_spy_samples(raw: str) -> list[tuple[list[Frame], int]]:
    """Stacks (outermost first) and sample counts from `py-spy record --format raw`."""
    samples = []
    for line in raw.splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text:
            continue
        frames = []
        for part in stack_text.split(";"):
            match = RAW_FRAME.match(part)
            frames.append((match["function"], match["path"]) if match else (part, ""))
        samples.append((frames, int(count)))
    return samples


def py_spy_shares(raw: str) -> tuple[dict[str, float], dict[str, float]]:
    samples = py_spy_samples(raw)
    total = sum(count for _, count in samples) or 1
    by_package: collections.Counter[str] = collections.Counter()
    by_stage: collections.Counter[str] = collections.Counter()
    for stack, count in samples:
        by_package[package_of(stack[-1][1])] += count
        for label, name, fragment in STAGES:
            if stage_hit(stack, name, fragment):
                by_stage[label] += count
    return (
        {name: count / total for name, count in by_package.items()},
        {label: by_stage[label] / total for label, _, _ in STAGES},
    )


# --- cProfile ----------------------------------------------------------------------------------


def cprofile_shares(stats_file: Path) -> tuple[dict[str, float], dict[str, float]]:
    stats = pstats.Stats(str(stats_file)).stats  # type: ignore[attr-defined]
    idle = sum(
        entry[2]
        for (path, _, function), entry in stats.items()
        if path == "~" and all(word in function for word in IDLE)
    )
    busy = sum(entry[2] for entry in stats.values()) - idle
    by_package: collections.Counter[str] = collections.Counter()
    by_stage: collections.Counter[str] = collections.Counter()
    for (path, _, function), (_, _, self_time, inclusive, _) in stats.items():
        if path == "~" and all(word in function for word in IDLE):
            continue
        by_package[package_of(path)] += self_time
        for label, name, fragment in STAGES:
            # A function's cumulative time already holds its callees; for a whole package ("")
            # the functions' own times are summed instead, so nested calls count once.
            if name and function == name and fragment in path:
                by_stage[label] += inclusive
            elif not name and fragment in path:
                by_stage[label] += self_time
    return (
        {name: value / busy for name, value in by_package.items()},
        {label: by_stage[label] / busy for label, _, _ in STAGES},
    )


# --- the run -----------------------------------------------------------------------------------


def profile(profiler: str, load_key: str, seconds: float, directory: Path) -> str:
    load = next(load for load in loads() if load.key == load_key)
    port = free_port()
    stats_file = directory / "server.pstats"
    command = [PYTHON, str(HERE / "servers.py"), "greeter", "--port", str(port)]
    if profiler == "cprofile":
        command += ["--cprofile", str(stats_file)]
    server = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    try:
        wait_listening(port)
        h2load(port, load, load.probe, directory)  # warm-up, also the rate for sizing the run
        started = time.monotonic()
        probe = h2load(port, load, load.probe * 4, directory)
        requests = max(load.clients, int(probe.rate * seconds) // load.clients * load.clients)
        elapsed = time.monotonic() - started
        log(f"probe {probe.rate:,.0f} req/s in {elapsed:.1f} s; profiling {requests} requests")
        if profiler == "py-spy":
            raw_file = directory / "server.raw"
            spy = subprocess.Popen(
                [
                    *(PY_SPY, "record", "--pid", str(server.pid), "--format", "raw"),
                    *(
                        "--rate",
                        "250",
                        "--output",
                        str(raw_file),
                        "--nonblocking",
                        "--full-filenames",
                    ),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(1.0)  # py-spy attaches before the load starts (a setup wait, not a sync)
            run = h2load(port, load, requests, directory)
            spy.send_signal(subprocess.signal.SIGINT)
            _, error = spy.communicate(timeout=60)
            if not raw_file.exists():
                raise RuntimeError(f"py-spy wrote nothing: {error.decode(errors='replace')}")
            package_shares, stage_shares = py_spy_shares(raw_file.read_text())
        else:
            run = h2load(port, load, requests, directory)
    finally:
        stop(server)
    if profiler == "cprofile":
        package_shares, stage_shares = cprofile_shares(stats_file)
    return report(profiler, load.heading, run.rate, package_shares, stage_shares)


def report(
    profiler: str,
    heading: str,
    rate: float,
    package_shares: dict[str, float],
    stage_shares: dict[str, float],
) -> str:
    lines = [
        f"{profiler}, {heading} (h2load): {rate:,.0f} req/s while profiled",
        "",
        "| self time by package | share of busy time |",
        "| --- | --- |",
    ]
    for name, share in sorted(package_shares.items(), key=lambda item: -item[1]):
        lines.append(f"| {name} | {share:.0%} |")
    lines += ["", "| stage (inclusive) | share of busy time |", "| --- | --- |"]
    lines += [f"| {label} | {share:.0%} |" for label, share in stage_shares.items()]
    return "\n".join(lines)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profiler", choices=("both", "py-spy", "cprofile"), default="both", help="default: both"
    )
    parser.add_argument("--load", default="unary_4", choices=[load.key for load in loads()])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-doc", action="store_true", help="print only; leave the docs alone")
    args = parser.parse_args()
    profilers = ["py-spy", "cprofile"] if args.profiler == "both" else [args.profiler]
    for tool in ("h2load", *([PY_SPY] if "py-spy" in profilers else [])):
        if not shutil.which(tool):
            print(f"{tool} not found (h2load: apt-get install nghttp2-client)", file=sys.stderr)
            return 2
    sections = [*machine_lines()]
    for profiler in profilers:
        with tempfile.TemporaryDirectory() as directory:
            sections += ["", profile(profiler, args.load, args.seconds, Path(directory))]
    text = "\n".join(sections) + "\n"
    print(text)
    if not args.no_doc:
        update_section(text, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
