"""Behind an L4 balancer (nginx's stream module, round-robin per TCP connection): with
`max_connection_age` one client channel's calls spread over every instance within a few ages,
without it they stay on one; no call fails either way (gRFC A9, issue 12).

nginx runs as a subprocess of the test on loopback (Debian's nginx + libnginx-mod-stream,
installed by `make test`'s setup); three greeter servers run in-process, each answering with its
own name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.client import Channel
from greeter.server import Server, ServerConfig, Timeouts
from greeter.services.greeter import Greeter

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
CALLING = 3.0
"""Seconds of calls on one channel: six connection ages of 0.5 s."""


class Named(Greeter):
    def __init__(self, name: str) -> None:
        self.name = name

    async def say_hello(self, message: HelloRequest) -> HelloReply:
        return HelloReply(message=self.name)


@contextlib.contextmanager
def nginx_stream(backends: list[int], tmp_path: Path) -> Iterator[int]:
    """nginx balancing TCP connections round-robin over `backends`; yields its port.

    The test binds and listens on the port itself and hands the socket to nginx the way nginx
    hands sockets to its own new binary (the NGINX="fd;" environment variable), so the port is
    known without a race and accepts (into its backlog) before nginx runs: nothing to wait for.
    """
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists() and STREAM_MODULE.exists(), (
        "the L4 test needs nginx and its stream module: make setup installs them as root "
        "(apt-get install nginx libnginx-mod-stream)"
    )
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        upstreams = "\n".join(f"server 127.0.0.1:{p};" for p in backends)
        (tmp_path / "nginx.conf").write_text(
            f"load_module {STREAM_MODULE};\n"
            f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log notice;\n"
            "events {}\n"
            f"stream {{ upstream greeters {{ {upstreams} }}\n"
            f"  server {{ listen 127.0.0.1:{port}; proxy_pass greeters; }} }}\n"
        )
        fd = listener.fileno()
        process = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
            env={**os.environ, "NGINX": f"{fd};"},
            pass_fds=(fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)
        log = tmp_path / "error.log"
        assert "emerg" not in (log.read_text() if log.exists() else ""), log.read_text()


@contextlib.asynccontextmanager
async def instances(age: float | None) -> AsyncIterator[list[int]]:
    timeouts = Timeouts(max_connection_age=age, max_connection_age_grace=5.0)
    config = ServerConfig(timeouts=timeouts)
    servers = [Server([Named(f"instance {i}")], port=0, config=config) for i in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        for server in servers:
            await stack.enter_async_context(server)
        yield [server.port for server in servers]


async def calls_through(port: int) -> tuple[dict[str, int], int]:
    """Calls on one channel for CALLING seconds: how many each instance served, and failures."""
    served: dict[str, int] = {}
    failures = 0
    async with Channel(f"127.0.0.1:{port}") as channel:
        stub = GreeterStub(channel)
        stop = asyncio.get_running_loop().time() + CALLING
        while asyncio.get_running_loop().time() < stop:
            try:
                reply = await stub.say_hello(HelloRequest(name="x"), timeout=5)
            except Exception:  # counted: the assertion says how many
                failures += 1
                continue
            served[reply.message] = served.get(reply.message, 0) + 1
    return served, failures


@pytest.mark.parametrize("age", [0.5, None], ids=["max_connection_age", "no_age"])
async def test_connection_age_rebalances_behind_an_l4_balancer(
    age: float | None, tmp_path: Path
) -> None:
    async with instances(age) as backends:
        with nginx_stream(backends, tmp_path) as port:
            served, failures = await calls_through(port)
    assert failures == 0, served
    if age is None:
        assert len(served) == 1, served  # one long-lived connection, one instance
    else:
        assert len(served) == 3, served  # every instance, within a few ages
