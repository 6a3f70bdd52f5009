"""Behind an L4 balancer (nginx's stream module, round-robin per TCP connection): with
`max_connection_age` one client channel's calls spread over every instance within a few ages,
without it they stay on one; no call fails either way (gRFC A9, issue 12).

nginx runs as a subprocess of the test on loopback (Debian's nginx + libnginx-mod-stream,
installed by `make test`'s setup) with docs/deploy.md's L4 configuration; three greeter servers
run in-process, each answering with its own name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.client import Channel
from greeter.server import Server, ServerConfig, Timeouts
from greeter.services.greeter import Greeter
from tests.support.nginx import documented_config, running_nginx

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

CALLING = 3.0
"""Seconds of calls on one channel: six connection ages of 0.5 s."""


def stream_config(backends: list[int]) -> Callable[[int], str]:
    """nginx's stream module balancing TCP connections round-robin over `backends`: the
    configuration docs/deploy.md shows."""
    return lambda port: documented_config("tests/server/test_l4_balancer.py", backends, port)


class Named(Greeter):
    def __init__(self, name: str) -> None:
        self.name = name

    async def say_hello(self, message: HelloRequest) -> HelloReply:
        return HelloReply(message=self.name)


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
        with running_nginx(tmp_path, stream_config(backends)) as port:
            served, failures = await calls_through(port)
    assert failures == 0, served
    if age is None:
        assert len(served) == 1, served  # one long-lived connection, one instance
    else:
        assert len(served) == 3, served  # every instance, within a few ages
