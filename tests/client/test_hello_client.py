"""greeter's own client, `python -m greeter hello NAME --target HOST:PORT`, against other servers.

The command runs as a subprocess (the real CLI path: argument parsing, grpclib Channel, the
generated betterproto2 stub) and must print the reply on stdout and exit 0; on failure it must
exit non-zero with exactly one line on stderr and no traceback.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.inprocess import AsSayHello, Probe, in_process_server
from tests.support.peers import assert_one_line_failure, grpc_js_server, grpcio_server, run_greeter

pytestmark = pytest.mark.timeout(30)


def run_hello(name: str, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_greeter("hello", name, "--target", target, *extra)


def assert_greeted(done: subprocess.CompletedProcess[str], name: str) -> None:
    assert (done.returncode, done.stdout) == (0, f"Hello {name}\n"), done
    assert "Traceback" not in done.stderr, done.stderr


@pytest.fixture(scope="module", params=["grpcio", "grpc-js"])
def peer_target(request: pytest.FixtureRequest) -> Iterator[str]:
    """A reference Greeter server: grpcio (C-core) in this process, or grpc-js in Node."""
    server = grpcio_server if request.param == "grpcio" else grpc_js_server
    with server() as target:
        yield target


@pytest.mark.parametrize("name", ["Ada", "Ada Lovelace", "Ünïcødé ✓"])
def test_hello_against_reference_server(peer_target: str, name: str) -> None:
    assert_greeted(run_hello(name, peer_target), name)


def test_hello_against_greeter_server(greeter_target: str) -> None:
    assert_greeted(run_hello("self", greeter_target), "self")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections (kernel backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_hello_refused_port_fails_with_one_line(refused_port: int) -> None:
    line = assert_one_line_failure(run_hello("Ada", f"127.0.0.1:{refused_port}"))
    expected = f"greeter: UNAVAILABLE: cannot connect to 127.0.0.1:{refused_port}: "
    assert line == expected + "Connection refused"


def test_hello_silent_server_times_out_with_one_line(silent_port: int) -> None:
    done = run_hello("Ada", f"127.0.0.1:{silent_port}", "--timeout", "0.5")
    line = assert_one_line_failure(done)
    assert "deadline" in line.lower(), line


@pytest.mark.asyncio
async def test_hello_error_status_fails_with_one_line() -> None:
    probe = Probe()
    async with in_process_server([AsSayHello(probe.not_found)], probe=probe) as running:
        done = await asyncio.to_thread(run_hello, "nope", running.target)
    line = assert_one_line_failure(done)
    assert "NOT_FOUND" in line, line
    assert "nope" in line, line
