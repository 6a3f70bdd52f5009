"""Fixtures for in-process server tests: a Server on port 0 in the test's own event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from grpclib.client import Channel
from grpclib.health.service import Health

from gen.greet import GreeterStub
from greeter.server import Server, ServerConfig
from greeter.services.greeter import Greeter
from tests.support.probe import Probe
from tests.support.rawclient import RawClient


@pytest_asyncio.fixture
async def probe() -> Probe:
    return Probe()


@pytest_asyncio.fixture
async def server(probe: Probe) -> AsyncIterator[Server]:
    # A short grace period: a test that leaves an RPC hanging must not slow the suite down.
    config = ServerConfig(grace_period=0.5)
    async with Server([Greeter(), Health(), probe], port=0, config=config) as running:
        yield running


@pytest_asyncio.fixture
async def channel(server: Server) -> AsyncIterator[Channel]:
    chan = Channel("127.0.0.1", server.port)
    try:
        yield chan
    finally:
        chan.close()


@pytest_asyncio.fixture
async def stub(channel: Channel) -> GreeterStub:
    return GreeterStub(channel)


@pytest_asyncio.fixture
async def raw(server: Server) -> AsyncIterator[RawClient]:
    client = await RawClient.connect(server.port)
    try:
        yield client
    finally:
        await client.close()
