"""Issue 12's scenario: a thousand idle connections no longer lock a new client out.

`greeter serve` with its defaults, under a file-descriptor limit of 1,024 (a common default):
its connection cap follows the limit (1,024 less 64 = 960). A thousand clients connect, finish
the HTTP/2 handshake and stay idle; a new client is still served, because at the cap the
connection idle longest is closed (GOAWAY) to make room. Before, the cap was a fixed 1,000 and
a full cap refused the newcomer.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import sys

import pytest

from tests.support.h2peer import client_preface
from tests.support.peers import REPO_ROOT, ServerProcess, run_greeter, stopped_after, wait_serving

pytestmark = pytest.mark.timeout(120)

IDLE = 1_000
SERVER_FD_LIMIT = 1_024
CAP = SERVER_FD_LIMIT - 64


def test_a_thousand_idle_connections_do_not_lock_out_a_new_client() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = IDLE + 256  # the idle sockets and everything else this test process holds
    if soft < needed:
        assert hard == resource.RLIM_INFINITY or hard >= needed, f"RLIMIT_NOFILE hard {hard}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    limited = ["prlimit", f"--nofile={SERVER_FD_LIMIT}:"]  # the soft limit only
    argv = [
        *limited,
        sys.executable,
        "-m",
        "greeter",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ]
    server = ServerProcess(argv, cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    with stopped_after(server, 10), contextlib.ExitStack() as idle:
        wait_serving(server, 20)
        host, port = server.target.rsplit(":", 1)
        for _ in range(IDLE):
            conn = idle.enter_context(socket.create_connection((host, int(port)), timeout=10))
            conn.sendall(client_preface())  # the handshake done, no RPC: idle
        done = run_greeter("hello", "newcomer", "--target", server.target)
        assert done.stdout.strip() == "Hello newcomer", done.stderr
        server.wait_for_line(rf"connection cap \({CAP}\) reached: idle for", 10)
        assert not any("too many connections" in line for line in server.lines())
