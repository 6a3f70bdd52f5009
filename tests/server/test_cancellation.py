"""A client that goes away (RST_STREAM, cancel, deadline, lost connection) stops its handler."""

from __future__ import annotations

import asyncio

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.server import Server
from tests.support.h2peer import CANCEL
from tests.support.probe import Probe, path
from tests.support.rawclient import RawClient

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]

STEP = 2.0
PROMPT = 0.5
"""A concurrent unary call must be answered within this many seconds."""
CANCEL_BOUND = 1.0
"""A gone client's handler must be cancelled within this many seconds."""


def hello(name: str) -> bytes:
    return bytes(HelloRequest(name=name).SerializeToString())


async def timed_say_hello(port: int) -> float:
    """Latency of one SayHello on a fresh connection (connect included)."""
    loop = asyncio.get_running_loop()
    channel = Channel("127.0.0.1", port)
    try:
        started = loop.time()
        reply = await GreeterStub(channel).say_hello(HelloRequest(name="other"), timeout=STEP)
        elapsed = loop.time() - started
    finally:
        channel.close()
    assert reply.message == "Hello other"
    return elapsed


async def test_rst_stream_cancels_endless_handler_others_served(
    server: Server, raw: RawClient, probe: Probe
) -> None:
    stream_id = raw.start_request(path("Endless"))
    await raw.send_message(stream_id, hello("e"), end_stream=True)
    await asyncio.wait_for(probe.flowing.wait(), STEP)

    assert await timed_say_hello(server.port) < PROMPT
    assert not probe.finished.is_set(), "the endless handler stopped on its own"

    raw.reset(stream_id, CANCEL)
    await asyncio.wait_for(probe.cancelled.wait(), CANCEL_BOUND)
    assert await timed_say_hello(server.port) < PROMPT
    result = raw.streams[stream_id]
    assert result.trailers is None  # nothing is sent after the client's reset


async def test_grpclib_cancel_cancels_endless_handler_others_served(
    server: Server, channel: Channel, probe: Probe
) -> None:
    stop = asyncio.Event()
    received: list[str] = []
    async with channel.request(
        path("Endless"), Cardinality.UNARY_STREAM, HelloRequest, HelloReply
    ) as call:
        await call.send_message(HelloRequest(name="g"), end=True)

        async def consume() -> None:
            while not stop.is_set():
                reply = await call.recv_message()
                assert reply is not None
                received.append(reply.message)

        consumer = asyncio.create_task(consume())
        await asyncio.wait_for(probe.flowing.wait(), STEP)
        assert await timed_say_hello(server.port) < PROMPT
        assert not probe.finished.is_set(), "the endless handler stopped on its own"
        stop.set()
        await asyncio.wait_for(consumer, STEP)
        await asyncio.wait_for(call.cancel(), STEP)
        await asyncio.wait_for(probe.cancelled.wait(), CANCEL_BOUND)
    assert received[:3] == ["g 1", "g 2", "g 3"]
    assert await timed_say_hello(server.port) < PROMPT


async def test_deadline_exceeded_cancels_handler(raw: RawClient, probe: Probe) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await raw.unary(path("Forever"), hello("d"), extra=[("grpc-timeout", "100m")])
    elapsed = loop.time() - started
    assert result.status == Status.DEADLINE_EXCEEDED.value
    assert 0.09 <= elapsed < 1.0
    await asyncio.wait_for(probe.cancelled.wait(), CANCEL_BOUND)


async def test_connection_lost_cancels_handler(raw: RawClient, probe: Probe) -> None:
    stream_id = raw.start_request(path("Forever"))
    await raw.send_message(stream_id, hello("l"), end_stream=True)
    await asyncio.wait_for(probe.started.wait(), STEP)
    raw.abort()
    await asyncio.wait_for(probe.cancelled.wait(), CANCEL_BOUND)
