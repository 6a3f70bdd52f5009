"""Fixtures shared by suites in several folders: greeter's CLI server, one for the session, and
a port that refuses connections, and the session's throwaway PKI (`certs`, tests/support/pki.py).

`greeter_process` runs `python -m greeter serve --port 0` (the real command line) for every test
that only needs Greeter and Health served (grpcio and grpc-js clients in tests/server/interop,
greeter's own `hello` in tests/client, reflection in tests/services). On teardown it must exit 0
on SIGTERM and must never have logged a traceback.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support.peers import ServerProcess, spawn_greeter_server
from tests.support.pki import Certs, make_certs


@pytest.fixture(scope="session")
def greeter_process() -> Iterator[ServerProcess]:
    """greeter's CLI server, shared by every test that only needs Greeter and Health."""
    with spawn_greeter_server() as process:
        yield process
    output = process.lines()
    assert process.proc.returncode == 0, "\n".join(output)
    assert not [line for line in output if "Traceback" in line], "\n".join(output)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port where connecting is refused: bound by this test and never listening, for
    the whole test, so nothing else can take it (a port closed before use could be reused by any
    process by the time the test connects)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def greeter_target(greeter_process: ServerProcess) -> str:
    """The CLI server's target, "127.0.0.1:PORT"."""
    return greeter_process.target


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server and a client certificate (PEM files), made once per session."""
    return make_certs(tmp_path_factory.mktemp("pki"))
