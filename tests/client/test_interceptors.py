"""Client interceptors: around every call of the four kinds, in order, able to change metadata,
messages and the outcome's view, to fail a call before it leaves, and to observe its end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.client import Channel, ClientCall, ClientInterceptor
from greeter.server import Server, current_rpc
from greeter.services.greeter import Greeter

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]


class SeesMetadata(Greeter):
    """Greeter that answers with the x-token it received."""

    async def say_hello(self, message: HelloRequest) -> HelloReply:
        token = current_rpc().metadata.get("x-token", "none")
        return HelloReply(message=f"Hello {message.name} ({token})")


@pytest_asyncio.fixture
async def target() -> AsyncIterator[str]:
    async with Server([SeesMetadata()], port=0) as server:
        yield f"127.0.0.1:{server.port}"


class Recorder(ClientInterceptor):
    def __init__(self, name: str, trail: list[str]) -> None:
        self.name, self.trail = name, trail
        self.ended: list[tuple[str, Status | None, int, int]] = []

    async def start(self, call: ClientCall[Any, Any]) -> None:
        self.trail.append(f"{self.name}.start")
        call.metadata.append(("x-token", self.name))

    def send(self, call: ClientCall[Any, Any], message: Any) -> Any:
        self.trail.append(f"{self.name}.send")
        return HelloRequest(name=message.name.upper(), count=message.count)

    def receive(self, call: ClientCall[Any, Any], message: Any) -> Any:
        self.trail.append(f"{self.name}.receive")
        return message

    def end(self, call: ClientCall[Any, Any]) -> None:
        self.trail.append(f"{self.name}.end")
        assert call.duration is not None and call.duration > 0
        self.ended.append((call.path, call.status, call.messages_sent, call.messages_received))


async def test_interceptors_run_in_order_around_every_kind(target: str) -> None:
    trail: list[str] = []
    outer, inner = Recorder("outer", trail), Recorder("inner", trail)
    async with Channel(target, interceptors=[outer, inner]) as channel:
        stub = GreeterStub(channel)
        reply = await stub.say_hello(HelloRequest(name="ada"))
        assert reply.message == "Hello ADA (outer)"  # the first x-token the server sees
        assert trail == [
            "outer.start",
            "inner.start",
            "outer.send",
            "inner.send",
            "inner.receive",
            "outer.receive",
            "inner.end",
            "outer.end",
        ]
        replies = [r.message async for r in stub.lots_of_replies(HelloRequest(name="b", count=2))]
        assert replies == ["Hello B #1", "Hello B #2"]
        names = [HelloRequest(name="x"), HelloRequest(name="y")]
        assert (await stub.lots_of_greetings(names)).message == "Hello X, Y"
        bidi = [r.message async for r in stub.bidi_hello([HelloRequest(name="p")])]
        assert bidi == ["Hello P"]
    assert outer.ended == [
        ("/greet.Greeter/SayHello", Status.OK, 1, 1),
        ("/greet.Greeter/LotsOfReplies", Status.OK, 1, 2),
        ("/greet.Greeter/LotsOfGreetings", Status.OK, 2, 1),
        ("/greet.Greeter/BidiHello", Status.OK, 1, 1),
    ]


class Denies(ClientInterceptor):
    async def start(self, call: ClientCall[Any, Any]) -> None:
        raise GRPCError(Status.PERMISSION_DENIED, "no token")


async def test_an_interceptor_fails_a_call_before_it_leaves(target: str) -> None:
    trail: list[str] = []
    recorder = Recorder("seen", trail)
    async with Channel(target, interceptors=[Denies(), recorder]) as channel:
        with pytest.raises(GRPCError) as caught:
            await GreeterStub(channel).say_hello(HelloRequest(name="z"))
    assert (caught.value.status, caught.value.message) == (Status.PERMISSION_DENIED, "no token")
    assert trail == ["seen.end"]  # never started, never sent; its end is still observed
    assert recorder.ended == [("/greet.Greeter/SayHello", Status.PERMISSION_DENIED, 0, 0)]
