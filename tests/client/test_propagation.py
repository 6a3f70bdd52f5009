"""Deadline and cancellation propagation (greeter.client.propagation) across two servers.

Both servers run in-process. The client calls the front server's SayHello; its handler calls the
back server's SayHello through greeter's Channel (propagating by default, or opted out with
``propagate=False``, or grpclib's Channel, which knows nothing of handlers); the back handler
records the deadline it was given and waits until released or cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import cast

import pytest
import pytest_asyncio
from grpclib.client import Channel as GrpclibChannel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import Deadline

from gen.greet import GreeterBase, GreeterStub, HelloReply, HelloRequest
from greeter.client.channel import Channel
from greeter.client.propagation import inherited_deadline
from greeter.server import Server
from greeter.server.context import current_rpc

BOUND = 5.0


class Back(GreeterBase):
    """Records its deadline; answers once `release` is set; records being cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.remaining: float | None = None

    async def say_hello(self, message: HelloRequest) -> HelloReply:
        deadline = current_rpc().deadline
        self.remaining = None if deadline is None else deadline.time_remaining()
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return HelloReply(message="back " + message.name)


class Front(GreeterBase):
    """Forwards SayHello to the back server through `channel`."""

    def __init__(self, channel: Channel | GrpclibChannel, timeout: float | None = None) -> None:
        self.back = GreeterStub(cast(GrpclibChannel, channel))
        self.timeout = timeout

    async def say_hello(self, message: HelloRequest) -> HelloReply:
        reply = await self.back.say_hello(message, timeout=self.timeout)
        return HelloReply(message="front " + reply.message)


@contextlib.asynccontextmanager
async def servers(
    channel_kind: str = "greeter", *, timeout: float | None = None
) -> AsyncIterator[tuple[Back, GreeterStub]]:
    """The back server, the front server calling it through a `channel_kind` channel ("greeter",
    "propagate=False" or "grpclib"), and a client stub for the front."""
    back = Back()
    async with Server([back], port=0) as back_server:
        target = f"127.0.0.1:{back_server.port}"
        channel: Channel | GrpclibChannel
        if channel_kind == "grpclib":
            channel = GrpclibChannel("127.0.0.1", back_server.port)
        else:
            channel = Channel(target, propagate=channel_kind == "greeter")
        async with Server([Front(channel, timeout)], port=0) as front_server:
            client = GrpclibChannel("127.0.0.1", front_server.port)
            try:
                yield back, GreeterStub(client)
            finally:
                client.close()
                channel.close()


@pytest_asyncio.fixture
async def propagating() -> AsyncIterator[tuple[Back, GreeterStub]]:
    async with servers() as pair:
        yield pair


@pytest.mark.asyncio
async def test_handler_deadline_reaches_the_downstream_call(
    propagating: tuple[Back, GreeterStub],
) -> None:
    back, front = propagating
    call = asyncio.create_task(front.say_hello(HelloRequest(name="Ada"), timeout=3.0))
    await asyncio.wait_for(back.started.wait(), BOUND)
    assert back.remaining is not None
    assert 2.0 < back.remaining <= 3.0
    back.release.set()
    assert (await asyncio.wait_for(call, BOUND)).message == "front back Ada"


@pytest.mark.asyncio
async def test_expired_handler_deadline_cancels_the_downstream_handler(
    propagating: tuple[Back, GreeterStub],
) -> None:
    back, front = propagating
    # grpclib's client (the outer caller) raises TimeoutError when its own deadline fires first.
    with pytest.raises((TimeoutError, GRPCError)) as caught:
        # 1 s, not less: on a loaded machine the call must still reach the back server in time.
        await asyncio.wait_for(front.say_hello(HelloRequest(name="Ada"), timeout=1.0), BOUND)
    if isinstance(caught.value, GRPCError):
        assert caught.value.status is Status.DEADLINE_EXCEEDED
    assert back.remaining is not None
    assert back.remaining <= 1.0
    await asyncio.wait_for(back.cancelled.wait(), BOUND)


@pytest.mark.asyncio
async def test_cancelling_the_client_call_cancels_the_downstream_handler(
    propagating: tuple[Back, GreeterStub],
) -> None:
    back, front = propagating
    call = asyncio.create_task(front.say_hello(HelloRequest(name="Ada")))
    await asyncio.wait_for(back.started.wait(), BOUND)
    assert back.remaining is None  # no deadline anywhere: none invented
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call
    await asyncio.wait_for(back.cancelled.wait(), BOUND)


@pytest.mark.asyncio
async def test_an_earlier_explicit_timeout_wins() -> None:
    async with servers(timeout=1.0) as (back, front):
        call = asyncio.create_task(front.say_hello(HelloRequest(name="Ada"), timeout=30.0))
        await asyncio.wait_for(back.started.wait(), BOUND)
        assert back.remaining is not None
        assert back.remaining <= 1.0
        back.release.set()
        await asyncio.wait_for(call, BOUND)


@pytest.mark.parametrize("opt_out", ["propagate=False", "grpclib"])
@pytest.mark.asyncio
async def test_opting_out_keeps_the_call_s_own_deadline(opt_out: str) -> None:
    async with servers(opt_out) as (back, front):
        call = asyncio.create_task(front.say_hello(HelloRequest(name="Ada"), timeout=3.0))
        await asyncio.wait_for(back.started.wait(), BOUND)
        assert back.remaining is None
        back.release.set()
        assert (await asyncio.wait_for(call, BOUND)).message == "front back Ada"


class Spawner(GreeterBase):
    """Looks for its RPC from a task it spawns, and from a task started in a fresh context."""

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}

    async def say_hello(self, message: HelloRequest) -> HelloReply:
        async def probe() -> object:
            try:
                return current_rpc()
            except LookupError as exc:
                return exc

        rpc = current_rpc()
        self.seen["spawned"] = await asyncio.create_task(probe())
        fresh = contextvars.Context()
        self.seen["fresh"] = await asyncio.create_task(probe(), context=fresh)
        self.seen["rpc"] = rpc
        return HelloReply(message="ok")


@pytest.mark.asyncio
async def test_tasks_the_handler_spawns_see_its_rpc_a_fresh_context_does_not() -> None:
    """Deliberate: asyncio copies the context into new tasks, so `asyncio.gather` of downstream
    calls inherits the handler's deadline; only a task given a fresh context is outside."""
    spawner = Spawner()
    async with Server([spawner], port=0) as server, Channel(f"127.0.0.1:{server.port}") as ch:
        await asyncio.wait_for(GreeterStub(ch).say_hello(HelloRequest(name="x")), BOUND)
    assert spawner.seen["spawned"] is spawner.seen["rpc"]
    assert isinstance(spawner.seen["fresh"], LookupError)


@pytest.mark.asyncio
async def test_gathered_downstream_calls_inherit_the_deadline() -> None:
    back = Back()
    async with Server([back], port=0) as back_server:
        channel = Channel(f"127.0.0.1:{back_server.port}")
        stub = GreeterStub(channel)

        class Gatherer(GreeterBase):
            async def say_hello(self, message: HelloRequest) -> HelloReply:
                replies = await asyncio.gather(stub.say_hello(message), stub.say_hello(message))
                return HelloReply(message=" ".join(r.message for r in replies))

        async with (
            Server([Gatherer()], port=0) as front_server,
            Channel(f"127.0.0.1:{front_server.port}") as client,
        ):
            call = asyncio.create_task(
                GreeterStub(client).say_hello(HelloRequest(name="Ada"), timeout=3.0)
            )
            await asyncio.wait_for(back.started.wait(), BOUND)
            assert back.remaining is not None
            assert 2.0 < back.remaining <= 3.0
            back.release.set()
            assert (await asyncio.wait_for(call, BOUND)).message == "back Ada back Ada"
        channel.close()


def test_inherited_deadline_outside_a_handler() -> None:
    assert inherited_deadline() is None
    assert inherited_deadline(timeout=None, deadline=None) is None
    fixed = Deadline.from_timeout(10.0)
    assert inherited_deadline(deadline=fixed) is fixed
    earlier = inherited_deadline(timeout=1.0, deadline=fixed)
    assert earlier is not None
    assert earlier.time_remaining() <= 1.0
