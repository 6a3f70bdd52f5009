"""The trace switches of the `greeter` command, run as subprocesses against real servers.

`hello --trace` keeps the reply on stdout and writes the client side of the exchange to stderr;
`serve --trace-file` writes a JSONL trace that read_jsonl parses after the server stopped;
`proxy` relays a call and prints its trace. Every subprocess has a timeout; servers are waited
for on their start-up line, never slept for.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from greeter.tap.jsonl import read_jsonl
from tests.support.peers import REPO_ROOT, spawn_greeter_server, spawn_proxy

pytestmark = pytest.mark.timeout(30)


def greeter(*args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    """Run `python -m greeter ARGS` from the repo root; its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "greeter", *args],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_hello_trace_goes_to_stderr_and_the_reply_to_stdout() -> None:
    """The default text view shows each fact once: the RPC and its messages, not the frames
    that carried them (issue 11 item 7)."""
    with spawn_greeter_server() as server:
        done = greeter("hello", "Ada", "--trace", "--target", server.target)
        frames = greeter(
            "hello", "Ada", "--trace", "--trace-view", "frames", "--target", server.target
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello Ada\n"
    layers = Counter(line.split()[5] for line in done.stderr.splitlines() if line[:1].isdigit())
    assert layers == {"conn": 3, "rpc": 2, "msg": 2}, done.stderr  # open, 2 GOAWAYs; start, end
    assert "greet.HelloReply" in done.stderr
    assert "greet.HelloRequest" in done.stderr
    assert "HEADERS" not in done.stderr
    assert frames.returncode == 0, frames.stderr
    layers = Counter(line.split()[5] for line in frames.stderr.splitlines() if line[:1].isdigit())
    assert set(layers) == {"frame", "conn"}, frames.stderr
    assert "frame HEADERS" in frames.stderr
    assert "greet.HelloReply" not in frames.stderr


def test_live_filters_by_status_and_peer_and_the_summary_on_stop() -> None:
    """`--trace-status error` keeps only the failing RPC (held until its end, every record of
    it); `--trace-peer` traces no connection of another peer; the summary follows at stop."""
    with spawn_greeter_server(
        "--trace", "--trace-status", "error", "--trace-view", "all"
    ) as server:
        assert greeter("hello", "Ed", "--target", server.target).returncode == 0
        check = ("grpc.health.v1.Health/Check", '{"service": "nope"}')
        assert greeter("call", server.target, *check).returncode == 64 + 5
        server.wait_for_line(r"rpc +end /grpc.health.v1.Health/Check NOT_FOUND", timeout=10)
    output = "\n".join(server.lines())
    assert "SayHello" not in output
    assert "rpc   start /grpc.reflection" not in output
    assert "frame HEADERS" in output and "msg   grpc.health.v1.HealthCheckRequest" in output
    summary = output[output.index("trace summary:") :].splitlines()
    assert summary[2].split()[:3] == ["/grpc.health.v1.Health/Check", "NOT_FOUND", "1"]
    with spawn_greeter_server("--trace", "--trace-peer", "10.*") as server:
        assert greeter("hello", "Flo", "--target", server.target).returncode == 0
    output = "\n".join(server.lines())
    assert " c1 " not in output
    assert "connections: 0" in output


def test_bad_trace_options_are_one_line_and_exit_2() -> None:
    cases = {
        ("--trace-status", "SOMETIMES"): "argument --trace-status: status 'SOMETIMES': "
        "expected one of OK, CANCELLED,",
        ("--trace-min-duration", "soon"): "argument --trace-min-duration: 'soon': expected "
        "seconds, or with a unit: 1.5, 1.5s, 250ms",
        ("--trace-view", "rpcs", "--trace-layer", "rpc"): "serve: --trace-view and "
        "--trace-layer: choose one",
        ("--trace-view", "messages", "--trace-frame", "PING"): "serve: --trace-frame PING: the "
        "messages view shows no frames (use --trace-view frames or all)",
    }
    for args, message in cases.items():
        done = greeter("serve", "--trace", *args)
        assert done.returncode == 2, done
        assert message in done.stderr.splitlines()[-1], done.stderr
        assert "Traceback" not in done.stderr


def test_hello_trace_file_is_jsonl_by_default_and_replays(tmp_path: Path) -> None:
    trace = tmp_path / "client.jsonl"
    with spawn_greeter_server() as server:
        done = greeter("hello", "Bo", "--trace-file", str(trace), "--target", server.target)
        replayed = greeter("replay", str(trace), "--target", server.target)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello Bo\n"
    records = list(read_jsonl(trace))
    starts = [r for r in records if r["layer"] == "rpc" and r["event"] == "start"]
    assert [(r["direction"], r["method"]) for r in starts] == [("out", "/greet.Greeter/SayHello")]
    # A client-side trace: the requests are the "out" messages.
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "1 matched, 0 differ, 0 skipped" in replayed.stdout


def test_serve_trace_file_jsonl_parses_after_shutdown(tmp_path: Path) -> None:
    trace = tmp_path / "server.jsonl"
    args = ("--trace", "--trace-format", "jsonl", "--trace-file", str(trace))
    with spawn_greeter_server(*args) as server:
        done = greeter("hello", "Cy", "--target", server.target)
        assert done.returncode == 0, done.stderr
    assert server.proc.returncode == 0
    records = list(read_jsonl(trace))
    ends = [r for r in records if r["layer"] == "rpc" and r["event"] == "end"]
    assert [(r["method"], r["status"]) for r in ends] == [("/greet.Greeter/SayHello", 0)]
    types = {r.get("type") for r in records if r["layer"] == "frame"}
    assert {"HEADERS", "DATA", "SETTINGS"} <= types
    replies = [r for r in records if r["layer"] == "message" and r["direction"] == "out"]
    assert replies[0]["message_type"] == "greet.HelloReply"


def test_proxy_command_relays_and_traces() -> None:
    with spawn_greeter_server() as server, spawn_proxy(server.target) as proxy:
        done = greeter("hello", "Di", "--target", proxy.target)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "Hello Di\n"
        proxy.wait_for_line(r"greet\.HelloReply", timeout=5)
    assert proxy.proc.returncode == 0
    output = "\n".join(proxy.lines())
    assert f"-> {server.target}" in output
    assert "rpc   start /greet.Greeter/SayHello" in output
    assert "trace summary:" in output
    assert "Traceback" not in output


GOLDEN_TRACE = REPO_ROOT / "tests" / "tap" / "golden" / "canned.jsonl"


def test_trace_summary_command_with_filters(tmp_path: Path) -> None:
    done = greeter("trace", "summary", str(GOLDEN_TRACE), "--status", "error", "--method", "*/Say*")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["method", "status", "count"]
    assert [line.split()[:3] for line in lines[1:2]] == [
        ["/greet.Greeter/SayHello", "NOT_FOUND", "1"]
    ]
    assert lines[2] == "connections: 1"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"v":1,"layer":"rpc"}\n')
    broken = tmp_path / "broken.jsonl"
    broken.write_text("not json\n")
    for path in (tmp_path / "missing.jsonl", bad, broken):
        failed = greeter("trace", "summary", str(path))
        assert failed.returncode == 1
        assert len(failed.stderr.splitlines()) == 1, failed.stderr
        assert str(path) in failed.stderr
