"""Retries as gRFC A6 defines them: the policy, pushback, commitment and throttling."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import h2.connection
import pytest
import pytest_asyncio
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.client import Channel, ClientConfig, RetryPolicy, RetryThrottling, capture_calls
from greeter.client.retry import RetryThrottle, pushback_delay
from greeter.server import Server, current_rpc
from greeter.services.greeter import Greeter
from greeter.tap.wirelog import WireLog
from tests.support.scripted import GRPC, scripted_server

pytestmark = pytest.mark.timeout(20)
FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.02)


class Flaky(Greeter):
    """Fails SayHello with the statuses queued in `failures`, then answers."""

    def __init__(self) -> None:
        self.failures: list[tuple[Status, list[tuple[str, str]]]] = []
        self.attempts = 0
        """Attempts the server saw."""
        self.send_headers_first = False

    async def say_hello(self, message: HelloRequest) -> HelloReply:
        rpc = current_rpc()
        self.attempts += 1
        if self.failures:
            status, trailers = self.failures.pop(0)
            if self.send_headers_first:
                await rpc.send_initial_metadata()
            rpc.set_trailing_metadata(trailers)
            raise GRPCError(status, "not now")
        return HelloReply(message=f"Hello {message.name}")


@pytest_asyncio.fixture
async def wire() -> WireLog:
    return WireLog()


@pytest_asyncio.fixture
async def flaky(wire: WireLog) -> AsyncIterator[tuple[Flaky, str]]:
    service = Flaky()
    async with Server([service], port=0, tap=wire.tap()) as server:
        yield service, f"127.0.0.1:{server.port}"


async def hello(target: str, config: ClientConfig, timeout: float = 10) -> str:
    async with Channel(target, config=config) as channel:
        reply = await GreeterStub(channel).say_hello(HelloRequest(name="r"), timeout=timeout)
        return reply.message


@pytest.mark.asyncio
async def test_a_retryable_failure_is_retried_until_it_succeeds(
    flaky: tuple[Flaky, str], wire: WireLog
) -> None:
    service, target = flaky
    service.failures = [(Status.UNAVAILABLE, []), (Status.UNAVAILABLE, [])]
    assert await hello(target, ClientConfig(retry_policy=FAST)) == "Hello r"
    assert service.attempts == 3
    requests = [f.headers or [] for f in wire.frames("HEADERS", direction="in")]
    previous = [dict(block).get("grpc-previous-rpc-attempts") for block in requests]
    assert previous == [None, "1", "2"]  # gRFC A6: each retry names the attempts before it


@pytest.mark.asyncio
async def test_attempts_are_capped(flaky: tuple[Flaky, str]) -> None:
    service, target = flaky
    service.failures = [(Status.UNAVAILABLE, [])] * 5
    with pytest.raises(GRPCError) as caught:
        await hello(target, ClientConfig(retry_policy=FAST))
    assert caught.value.status == Status.UNAVAILABLE
    assert service.attempts == 4


@pytest.mark.asyncio
async def test_other_statuses_and_committed_calls_are_not_retried(
    flaky: tuple[Flaky, str],
) -> None:
    service, target = flaky
    service.failures = [(Status.INTERNAL, [])]
    with pytest.raises(GRPCError):
        await hello(target, ClientConfig(retry_policy=FAST))
    assert service.attempts == 1
    service.attempts = 0
    service.send_headers_first = True  # response headers commit the call (gRFC A6)
    service.failures = [(Status.UNAVAILABLE, [])]
    with pytest.raises(GRPCError):
        await hello(target, ClientConfig(retry_policy=FAST))
    assert service.attempts == 1


@pytest.mark.parametrize(
    ("pushback", "attempts"), [("-1", 1), ("x", 1), ("20", 2)], ids=["negative", "bad", "20ms"]
)
@pytest.mark.asyncio
async def test_pushback_steers_or_forbids_the_retry(pushback: str, attempts: int) -> None:
    seen: list[int] = []

    async def answer(conn: h2.connection.H2Connection, sid: int, w: asyncio.StreamWriter) -> None:
        seen.append(sid)
        trailers = [("grpc-status", "14"), ("grpc-retry-pushback-ms", pushback)]
        if len(seen) > 1:
            trailers = [("grpc-status", "0")]
        conn.send_headers(sid, [*GRPC, *trailers], end_stream=True)

    async with (
        scripted_server(answer) as target,
        Channel(target, config=ClientConfig(retry_policy=FAST)) as channel,
    ):
        call = channel.request(
            "/greet.Greeter/SayHello", Cardinality.UNARY_UNARY, HelloRequest, HelloReply
        )
        with contextlib.suppress(GRPCError):
            async with call:
                await call.send_message(HelloRequest(name="p"), end=True)
                await call.recv_trailing_metadata()
    assert len(seen) == attempts
    assert call.status == (Status.OK if attempts == 2 else Status.UNAVAILABLE)


@pytest.mark.asyncio
async def test_throttling_stops_retries_when_too_many_fail(flaky: tuple[Flaky, str]) -> None:
    service, target = flaky
    throttled = ClientConfig(
        retry_policy=FAST, retry_throttling=RetryThrottling(max_tokens=2, token_ratio=0.1)
    )
    service.failures = [(Status.UNAVAILABLE, [])] * 3
    async with Channel(target, config=throttled) as channel:
        with capture_calls(), pytest.raises(GRPCError):
            await GreeterStub(channel).say_hello(HelloRequest(name="t"))
    # 2 tokens: the first failure leaves 1 (not more than half): no retry at all.
    assert service.attempts == 1


def test_backoff_and_throttle_rules() -> None:
    policy = RetryPolicy(max_attempts=9, initial_backoff=1, max_backoff=5, backoff_multiplier=2)
    assert policy.attempts == 5
    assert [policy.delay(n, random=lambda: 0.999999) for n in (1, 2, 3, 4)] == pytest.approx(
        [1, 2, 4, 5], rel=1e-5
    )
    assert policy.delay(3, random=lambda: 0.0) == 0
    throttle = RetryThrottle(RetryThrottling(max_tokens=10, token_ratio=0.5))
    for _ in range(5):
        throttle.failed()
    assert not throttle.allows_retry  # 5 of 10: not more than half
    throttle.succeeded()
    assert throttle.allows_retry
    assert pushback_delay(None) is None
    assert pushback_delay("250") == 0.25
    for forbidden in ("-1", "x", ""):
        with pytest.raises(ValueError, match="no retry"):
            pushback_delay(forbidden)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=1)
    with pytest.raises(ValueError, match="not OK"):
        RetryPolicy(retryable_status_codes=frozenset({Status.OK}))
