"""Server interceptors (greeter.server.interceptors) over the four RPC kinds, through greeter's
client: order, message replacement, ending with a status, outcomes, and failures; plus the two
documented examples (authentication by metadata, a per-method rate limit)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import Deadline

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.client import Channel
from greeter.server import RpcOutcome, Server, ServerInterceptor, ServerStream, current_rpc
from greeter.services.greeter import Greeter
from tests.support.probe import Probe, path

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]


class Recorder(ServerInterceptor):
    """Logs every hook as (name, event, detail) into a shared list; renames messages."""

    def __init__(self, name: str, log: list[tuple[str, str, Any]]) -> None:
        self.name = name
        self.log = log

    async def start(self, rpc: ServerStream[Any, Any]) -> None:
        assert current_rpc() is rpc
        self.log.append((self.name, "start", rpc.path))

    def receive(self, rpc: ServerStream[Any, Any], message: Any) -> Any:
        self.log.append((self.name, "receive", message.name))
        return HelloRequest(name=message.name + self.name, count=message.count)

    def send(self, rpc: ServerStream[Any, Any], message: Any) -> Any:
        self.log.append((self.name, "send", message.message))
        return HelloReply(message=message.message + "/" + self.name)

    def end(self, rpc: ServerStream[Any, Any], outcome: RpcOutcome) -> None:
        self.log.append((self.name, "end", outcome))


async def requests(*names: str) -> AsyncIterator[HelloRequest]:
    for name in names:
        yield HelloRequest(name=name)


async def test_hooks_nest_over_the_four_kinds() -> None:
    log: list[tuple[str, str, Any]] = []
    interceptors = [Recorder("A", log), Recorder("B", log)]
    async with (
        Server([Greeter()], port=0, interceptors=interceptors) as server,
        Channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = GreeterStub(channel)
        assert (await stub.say_hello(HelloRequest(name="x"))).message == "Hello xAB/B/A"
        assert [(n, e) for n, e, _ in log] == [
            ("A", "start"),
            ("B", "start"),
            ("A", "receive"),
            ("B", "receive"),
            ("B", "send"),
            ("A", "send"),
            ("B", "end"),
            ("A", "end"),
        ]
        outcome = log[-1][2]
        assert (outcome.status, outcome.messages_received, outcome.messages_sent) == (
            Status.OK,
            1,
            1,
        )
        assert 0 < outcome.duration < 5
        replies = [r.message async for r in stub.lots_of_replies(HelloRequest(name="s", count=2))]
        assert replies == ["Hello sAB #1/B/A", "Hello sAB #2/B/A"]
        reply = await stub.lots_of_greetings(requests("p", "q"))
        assert reply.message == "Hello pAB, qAB/B/A"
        bidi = [r.message async for r in stub.bidi_hello(requests("u", "v"))]
        assert bidi == ["Hello uAB/B/A", "Hello vAB/B/A"]
    ends = [detail for name, event, detail in log if event == "end" and name == "A"]
    assert [(o.messages_received, o.messages_sent) for o in ends] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
    ]


class BearerAuth(ServerInterceptor):
    """The documented example: a bearer token in the metadata, else UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}"

    async def start(self, rpc: ServerStream[Any, Any]) -> None:
        if rpc.metadata.get("authorization") != self.expected:
            raise GRPCError(Status.UNAUTHENTICATED, "missing or wrong bearer token")


class RateLimit(ServerInterceptor):
    """The documented example: at most `per_second` calls of a method per second."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self.window: dict[str, tuple[int, int]] = {}  # method -> (second, calls)

    async def start(self, rpc: ServerStream[Any, Any]) -> None:
        limit = self.limits.get(rpc.path)
        if limit is None:
            return
        second = int(time.monotonic())
        start, calls = self.window.get(rpc.path, (second, 0))
        calls = calls + 1 if start == second else 1
        self.window[rpc.path] = (second, calls)
        if calls > limit:
            raise GRPCError(Status.RESOURCE_EXHAUSTED, f"more than {limit} calls/s to {rpc.path}")


async def test_authentication_by_metadata() -> None:
    started: list[str] = []

    class Seen(Greeter):
        async def say_hello(self, message: HelloRequest) -> HelloReply:
            started.append(message.name)
            return await super().say_hello(message)

    async with (
        Server([Seen()], port=0, interceptors=[BearerAuth("s3cret")]) as server,
        Channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = GreeterStub(channel)
        with pytest.raises(GRPCError) as caught:
            await stub.say_hello(HelloRequest(name="no"))
        assert caught.value.status is Status.UNAUTHENTICATED
        reply = await stub.say_hello(
            HelloRequest(name="yes"), metadata={"authorization": "Bearer s3cret"}
        )
        assert reply.message == "Hello yes"
    assert started == ["yes"]  # the refused call never reached the handler


async def test_a_per_method_rate_limit() -> None:
    limit = RateLimit({"/greet.Greeter/SayHello": 3})
    async with (
        Server([Greeter()], port=0, interceptors=[limit]) as server,
        Channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = GreeterStub(channel)
        outcomes = []
        for _ in range(10):  # well within one second, or the window resets: allow for that
            try:
                await stub.say_hello(HelloRequest(name="r"))
                outcomes.append("ok")
            except GRPCError as exc:
                assert exc.status is Status.RESOURCE_EXHAUSTED
                outcomes.append("limited")
        assert outcomes.count("limited") >= 10 - 2 * 3
        replies = [r.message async for r in stub.lots_of_replies(HelloRequest(name="s", count=1))]
        assert replies == ["Hello s #1"]  # another method: not limited


class Broken(ServerInterceptor):
    """Raises in one hook for the name "b" (a bug), and always in `end`."""

    def __init__(self, hook: str) -> None:
        self.hook = hook

    def fail(self, hook: str, rpc: ServerStream[Any, Any]) -> None:
        if hook == self.hook and rpc.metadata.get("x-name") == "b":
            raise RuntimeError(f"interceptor bug in {hook}")

    async def start(self, rpc: ServerStream[Any, Any]) -> None:
        self.fail("start", rpc)

    def receive(self, rpc: ServerStream[Any, Any], message: Any) -> Any:
        self.fail("receive", rpc)
        return message

    def send(self, rpc: ServerStream[Any, Any], message: Any) -> Any:
        self.fail("send", rpc)
        return message

    def end(self, rpc: ServerStream[Any, Any], outcome: RpcOutcome) -> None:
        raise RuntimeError("end bug")


@pytest.mark.parametrize("hook", ["start", "receive", "send"])
async def test_an_interceptor_that_raises_is_unknown_and_logged(
    hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[RpcOutcome] = []

    class Outer(ServerInterceptor):
        def end(self, rpc: ServerStream[Any, Any], outcome: RpcOutcome) -> None:
            seen.append(outcome)

    caplog.set_level(logging.ERROR, logger="greeter.server")
    async with (
        Server([Greeter()], port=0, interceptors=[Outer(), Broken(hook)]) as server,
        Channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = GreeterStub(channel)
        with pytest.raises(GRPCError) as caught:
            await stub.say_hello(HelloRequest(name="b"), metadata={"x-name": "b"})
        assert caught.value.status is Status.UNKNOWN
        assert caught.value.message == "Unexpected error"  # no traceback on the wire
        [connection] = server.connections
        # The connection is kept: the next call on the channel is served over it.
        reply = await stub.say_hello(HelloRequest(name="a"), metadata={"x-name": "a"})
        assert reply.message == "Hello a"
        assert server.connections == {connection}
    failures = [r for r in caplog.records if r.exc_info is not None]
    assert [str(r.exc_info[1]) for r in failures if r.exc_info] == [
        f"interceptor bug in {hook}",
        "end bug",
        "end bug",
    ], caplog.text
    assert "Traceback" in caplog.text
    assert [o.status for o in seen] == [Status.UNKNOWN, Status.OK]  # the outer one still ran


async def test_the_outcome_of_an_rpc_that_ran_out_of_time() -> None:
    probe = Probe()
    outcomes: list[RpcOutcome] = []

    class Outcomes(ServerInterceptor):
        def end(self, rpc: ServerStream[Any, Any], outcome: RpcOutcome) -> None:
            outcomes.append(outcome)

    async with (
        Server([Greeter(), probe], port=0, interceptors=[Outcomes()]) as server,
        Channel(f"127.0.0.1:{server.port}") as channel,
    ):
        call = channel.request(path("Slow"), Cardinality.UNARY_UNARY, HelloRequest, HelloReply)
        call.deadline = Deadline.from_timeout(0.3)
        with pytest.raises(GRPCError) as caught:
            async with call:
                await call.send_message(HelloRequest(name="t"), end=True)
                await call.recv_message()
        assert caught.value.status is Status.DEADLINE_EXCEEDED
        await asyncio.wait_for(probe.cancelled.wait(), 5)
    [outcome] = outcomes
    assert (outcome.status, outcome.messages_received, outcome.messages_sent) == (
        Status.DEADLINE_EXCEEDED,
        1,
        0,
    )
