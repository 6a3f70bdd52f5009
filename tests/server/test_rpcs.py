"""The product path: generated GreeterStub over grpclib's Channel against our server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.server import Server
from greeter.services.greeter import Greeter
from tests.support.probe import Probe, path

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]

STEP = 2.0
"""Upper bound of any single wait in this module, in seconds."""


async def test_say_hello(stub: GreeterStub) -> None:
    reply = await stub.say_hello(HelloRequest(name="World"), timeout=STEP)
    assert reply.message == "Hello World"


async def test_lots_of_replies(stub: GreeterStub) -> None:
    replies = [r.message async for r in stub.lots_of_replies(HelloRequest(name="Ann", count=5))]
    assert replies == [f"Hello Ann #{i}" for i in range(1, 6)]


async def test_lots_of_replies_count_zero_is_empty_and_ok(stub: GreeterStub) -> None:
    # grpclib raises GRPCError for any non-OK status, so an empty list means OK.
    replies = [r async for r in stub.lots_of_replies(HelloRequest(name="Ann", count=0))]
    assert replies == []


async def test_lots_of_greetings(stub: GreeterStub) -> None:
    names = [HelloRequest(name=n) for n in ("a", "b", "c")]
    reply = await stub.lots_of_greetings(names, timeout=STEP)
    assert reply.message == "Hello a, b, c"


async def test_bidi_hello_is_ping_pong(stub: GreeterStub) -> None:
    names = ["x", "y", "z"]
    arrived: asyncio.Queue[str] = asyncio.Queue()
    sent: list[str] = []

    async def requests() -> AsyncIterator[HelloRequest]:
        for name in names:
            sent.append(name)
            yield HelloRequest(name=name)
            # The next request is only produced once this one's reply is in.
            assert await asyncio.wait_for(arrived.get(), STEP) == f"Hello {name}"

    replies: list[str] = []
    async for reply in stub.bidi_hello(requests(), timeout=STEP * 3):
        # When a reply arrives, exactly the requests up to its own have been sent.
        assert sent == names[: len(replies) + 1]
        replies.append(reply.message)
        arrived.put_nowait(reply.message)
    assert replies == [f"Hello {n}" for n in names]


async def test_health_check(channel: Channel) -> None:
    health = HealthStub(channel)
    reply = await asyncio.wait_for(health.Check(HealthCheckRequest(service="")), STEP)
    assert reply.status == HealthCheckResponse.SERVING


async def test_large_messages_both_ways(stub: GreeterStub) -> None:
    name = "n" * int(3.9 * 1024 * 1024)
    reply = await stub.say_hello(HelloRequest(name=name), timeout=5.0)
    assert len(reply.message) == len(name) + len("Hello ")
    assert reply.message == "Hello " + name


async def test_custom_metadata_both_ways(channel: Channel, probe: Probe) -> None:
    sent_metadata: dict[str, str | bytes] = {"x-custom": "abc", "x-custom-bin": b"\x00\xffbin"}
    async with channel.request(
        path("Metadata"),
        Cardinality.UNARY_UNARY,
        HelloRequest,
        HelloReply,
        timeout=STEP,
        metadata=sent_metadata,
    ) as call:
        await call.send_message(HelloRequest(name="m"), end=True)
        await call.recv_initial_metadata()
        reply = await call.recv_message()
        await call.recv_trailing_metadata()
    assert reply is not None
    assert reply.message == "meta m"
    seen = dict(probe.seen_metadata)
    assert seen["x-custom"] == "abc"
    assert seen["x-custom-bin"] == b"\x00\xffbin"
    assert call.initial_metadata is not None
    assert call.trailing_metadata is not None
    assert call.initial_metadata["x-initial"] == "first"
    assert call.initial_metadata["x-initial-bin"] == b"\x00\x01\xfe\xff"
    assert call.trailing_metadata["x-trailer"] == "last"
    assert call.trailing_metadata["x-trailer-bin"] == b"\xff\x00"
    # The handler echoed the client's metadata back in its trailers.
    assert call.trailing_metadata["x-custom"] == "abc"
    assert call.trailing_metadata["x-custom-bin"] == b"\x00\xffbin"


async def test_embedding_explicit_start_stop() -> None:
    server = Server([Greeter()], port=0)
    await server.start()
    try:
        assert server.port > 0
        channel = Channel("127.0.0.1", server.port)
        try:
            reply = await GreeterStub(channel).say_hello(HelloRequest(name="e"), timeout=STEP)
        finally:
            channel.close()
        assert reply.message == "Hello e"
    finally:
        await asyncio.wait_for(server.stop(), STEP)
    with pytest.raises(RuntimeError):
        _ = server.port


async def test_embedding_async_with() -> None:
    async with Server([Greeter()], port=0) as server:
        port = server.port
        assert port > 0
        channel = Channel("127.0.0.1", port)
        try:
            reply = await GreeterStub(channel).say_hello(HelloRequest(name="w"), timeout=STEP)
        finally:
            channel.close()
    assert reply.message == "Hello w"
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), STEP)
