"""`greeter serve --workers N` and `--loop` (greeter.server.workers), through the CLI.

The command runs as a subprocess. Every wait is bounded and event-driven:
log lines through ServerProcess.wait_for_line, process exits through pidfds (Linux), never sleeps.
uvloop is an optional extra (`greeter[fast]`, installed by the dev setup): the test that needs it
skips only outside that setup, and the one that needs it absent hides it from its subprocess.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from gen.greet import HelloRequest
from greeter.server.workers import uvloop_installed
from tests.support.peers import (
    GREETER_SERVING_LINE,
    REPO_ROOT,
    ServerProcess,
    assert_one_line_failure,
    grpcio_channel,
    run_greeter,
    spawn_greeter_server,
)

pytestmark = pytest.mark.timeout(60)

STOP_TIMEOUT = 20.0
SERVER_ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
CALLS = 20
# A channel of its own per call: grpcio otherwise shares one connection among equal channels.
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)


@pytest.fixture
def two_workers() -> Iterator[ServerProcess]:
    with spawn_greeter_server("--workers", "2", stop_timeout=STOP_TIMEOUT) as process:
        yield process


@contextmanager
def verbose_server(*extra: str) -> Iterator[ServerProcess]:
    """`python -m greeter -v serve --port 0 EXTRA` (debug logging names the event loop); SIGTERM
    on exit, which it must survive with status 0."""
    argv = [sys.executable, "-m", "greeter", "-v", "serve", "--host", "127.0.0.1", "--port", "0"]
    process = ServerProcess([*argv, *extra], cwd=REPO_ROOT, env=SERVER_ENV)
    try:
        match = process.wait_for_line(GREETER_SERVING_LINE, 20)
        process.target = f"{match.group(1)}:{match.group(2)}"
        yield process
    finally:
        status = process.stop(STOP_TIMEOUT)
    assert status == 0, process.lines()
    assert not [line for line in process.lines() if "Traceback" in line], process.lines()


def worker_pids(parent: int) -> list[int]:
    """Pids of `parent`'s children that are greeter workers (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # exited meanwhile
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and b"--worker-fd" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def wait_all_exited(pids: list[int], timeout: float) -> None:
    """Wait until every pid has exited (pidfds turn readable at exit); fail after `timeout`."""
    pidfds = []
    for pid in pids:
        try:
            pidfds.append(os.pidfd_open(pid))
        except ProcessLookupError:  # already gone
            continue
    try:
        pending = list(pidfds)
        while pending:
            readable, _, _ = select.select(pending, [], [], timeout)
            assert readable, f"workers {pids} still running {timeout} s later"
            pending = [fd for fd in pending if fd not in readable]
    finally:
        for fd in pidfds:
            os.close(fd)


def established_by_worker(pids: list[int], port: int) -> dict[int, int]:
    """How many ESTABLISHED connections to local `port` each worker holds (/proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rpartition(":")[2], 16)
        if local_port == port and fields[3] == "01":  # 01: TCP_ESTABLISHED
            inodes.add(fields[9])
    counts = {}
    for pid in pids:
        links = (os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
        counts[pid] = sum(link.removeprefix("socket:[").rstrip("]") in inodes for link in links)
    return counts


def call(target: str, name: str) -> str:
    with grpcio_channel(target, options=OWN_CONNECTION) as greeter:
        reply = greeter.say_hello(HelloRequest(name=name), timeout=10)
    return str(reply.message)


def test_two_workers_are_dealt_the_connections_in_turn(two_workers: ServerProcess) -> None:
    serving = [line for line in two_workers.lines() if "serving" in line]
    assert len(serving) == 1, two_workers.lines()
    assert serving[0].endswith("(2 workers)"), serving
    pids = worker_pids(two_workers.proc.pid)
    assert len(pids) == 2, pids
    with ExitStack() as channels:
        stubs = [
            channels.enter_context(grpcio_channel(two_workers.target, options=OWN_CONNECTION))
            for _ in range(CALLS)
        ]
        for i, stub in enumerate(stubs):
            assert stub.say_hello(HelloRequest(name=f"n{i}"), timeout=10).message == f"Hello n{i}"
        port = int(two_workers.target.rpartition(":")[2])
        counts = established_by_worker(pids, port)
    # The parent deals connections round-robin: SO_REUSEPORT's hash gave one worker 3 or 4 of
    # 4 connections in most runs.
    assert sorted(counts.values()) == [CALLS // 2, CALLS // 2], counts


def test_sigterm_stops_every_worker_gracefully(two_workers: ServerProcess) -> None:
    pids = worker_pids(two_workers.proc.pid)
    assert len(pids) == 2, pids
    assert call(two_workers.target, "before") == "Hello before"
    assert two_workers.stop(STOP_TIMEOUT) == 0, two_workers.lines()
    wait_all_exited(pids, 1)
    lines = two_workers.lines()
    assert "greeter: shutting down 2 workers" in "\n".join(lines), lines
    assert lines[-1] == "greeter: stopped", lines
    assert not [line for line in lines if "Traceback" in line], lines


def test_a_dead_worker_is_logged_and_the_last_one_ends_the_server(
    two_workers: ServerProcess,
) -> None:
    first, second = worker_pids(two_workers.proc.pid)
    os.kill(first, signal.SIGKILL)
    two_workers.wait_for_line(rf"worker \d \(pid {first}\) exited unexpectedly .* 1 of 2", 10)
    assert call(two_workers.target, "survivor") == "Hello survivor"
    os.kill(second, signal.SIGKILL)
    assert two_workers.proc.wait(STOP_TIMEOUT) == 1
    two_workers.wait_for_line("all 2 workers exited", 1)


def test_workers_follow_a_killed_parent(two_workers: ServerProcess) -> None:
    pids = worker_pids(two_workers.proc.pid)
    assert len(pids) == 2, pids
    two_workers.proc.kill()
    wait_all_exited(pids, STOP_TIMEOUT)


def test_a_taken_port_fails_with_one_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run_greeter("serve", "--workers", "2", "--port", str(port))
    line = assert_one_line_failure(done)
    assert "address already in use" in line, line


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--uds", "greeter.sock"), "serve: --workers needs TCP"),
        (("--trace",), "serve: --trace needs --workers 1"),
        (("--port", "0", "--workers", "0"), "argument --workers: 0 is out of range"),
    ],
)
def test_workers_rejects_what_processes_cannot_share(extra: tuple[str, ...], message: str) -> None:
    done = run_greeter("serve", "--workers", "2", *extra)
    assert done.returncode == 2, done
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, done.stderr
    assert message in errors[0], errors


def test_loop_asyncio_serves() -> None:
    with verbose_server("--loop", "asyncio") as process:
        process.wait_for_line("event loop: asyncio$", 1)
        assert call(process.target, "a") == "Hello a"
    (serving,) = [line for line in process.lines() if "serving" in line]
    assert serving.endswith(process.target), serving


@pytest.mark.skipif(
    not uvloop_installed(), reason="uvloop is not installed (optional extra greeter[fast])"
)
def test_loop_uvloop_serves() -> None:
    with verbose_server("--loop", "uvloop", "--workers", "2") as process:
        for index in (1, 2):
            process.wait_for_line(rf"\[worker {index}\]: event loop: uvloop$", 1)
        assert call(process.target, "uv") == "Hello uv"


def test_loop_uvloop_without_uvloop_is_a_usage_error(tmp_path: Path) -> None:
    # sitecustomize runs at start-up: a None in sys.modules makes uvloop not importable (and
    # importlib.util.find_spec report it missing), as in an environment without the extra.
    (tmp_path / "sitecustomize.py").write_text('import sys\nsys.modules["uvloop"] = None\n')
    done = subprocess.run(
        [sys.executable, "-m", "greeter", "serve", "--loop", "uvloop"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done
    assert done.stderr.splitlines()[-1].endswith(
        "uvloop is not installed (pip install 'greeter[fast]')"
    ), done.stderr
