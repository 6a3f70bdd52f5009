"""The trace switches of the `greeter` command, run as subprocesses against real servers.

`hello --trace` keeps the reply on stdout and writes the client side of the exchange to stderr;
`serve --trace-file` writes a JSONL trace that read_jsonl parses after the server stopped;
`proxy` relays a call and prints its trace. Every subprocess has a timeout; servers are waited
for on their start-up line, never slept for.
"""

from __future__ import annotations

import subprocess
import sys
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
    with spawn_greeter_server() as server:
        done = greeter("hello", "Ada", "--trace", "--target", server.target)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello Ada\n"
    assert "HEADERS" in done.stderr
    assert "greet.HelloReply" in done.stderr
    assert "greet.HelloRequest" in done.stderr


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
    assert "HEADERS" in output
    assert "Traceback" not in output
