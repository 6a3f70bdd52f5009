"""greeter.wire.ranges and the config dataclasses that use it: every numeric setting refuses a
value outside its range at construction, with a SettingError (a ValueError) naming the field,
the value and what is allowed; the range's own bounds are accepted."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from greeter.client.backoff import BACKOFF_RANGES, BackoffPolicy
from greeter.client.channel import Channel
from greeter.client.config import CLIENT_RANGES, ClientConfig
from greeter.client.retry import (
    RETRY_POLICY_RANGES,
    RETRY_THROTTLING_RANGES,
    RetryPolicy,
    RetryThrottling,
)
from greeter.core.config import CORE_RANGES, CoreConfig
from greeter.server.config import SERVER_RANGES, TIMEOUT_RANGES, ServerConfig, Timeouts
from greeter.server.listeners import Server
from greeter.server.workers import WORKER_COUNT, Supervisor
from greeter.services.greeter import Greeter, GreeterStub, HelloReply, HelloRequest
from greeter.tools.proxy import Proxy
from greeter.wire.errors import GreeterError, SettingError
from greeter.wire.ranges import CALL_TIMEOUT, LISTEN_PORT, PEER_PORT, SECONDS, Range

CONFIGS: list[tuple[type[Any], dict[str, Range]]] = [
    (CoreConfig, CORE_RANGES),
    (Timeouts, TIMEOUT_RANGES),
    (ServerConfig, SERVER_RANGES),
    (ClientConfig, CLIENT_RANGES),
    (BackoffPolicy, BACKOFF_RANGES),
    (RetryPolicy, RETRY_POLICY_RANGES),
    (RetryThrottling, RETRY_THROTTLING_RANGES),
]
FIELDS = [(cls, name, allowed) for cls, ranges in CONFIGS for name, allowed in ranges.items()]
IDS = [f"{cls.__name__}.{name}" for cls, name, _ in FIELDS]


def bad_values(allowed: Range) -> list[object]:
    values: list[object] = [math.nan, math.inf, "1", True]
    if allowed.low != -math.inf:
        values.append(allowed.low if allowed.above else allowed.low - 1)
    if allowed.high != math.inf:
        values.append(allowed.high if allowed.below else allowed.high + 1)
    if allowed.integer:
        values.append(allowed.low + 1.5)
    if not allowed.optional:
        values.append(None)
    return values


def good_values(allowed: Range) -> list[object]:
    low = max(allowed.low, -1e9)
    values: list[object] = [low + min(1, (allowed.high - low) / 2) if allowed.above else low]
    if allowed.high != math.inf:
        values.append(allowed.high - 0.001 if allowed.below else allowed.high)
    if allowed.optional:
        values.append(None)
    return values


@pytest.mark.parametrize(("cls", "name", "allowed"), FIELDS, ids=IDS)
def test_every_numeric_setting_refuses_values_outside_its_range(
    cls: type[Any], name: str, allowed: Range
) -> None:
    for value in bad_values(allowed):
        with pytest.raises(SettingError) as caught:
            cls(**{name: value})
        error = caught.value
        assert isinstance(error, ValueError)
        assert isinstance(error, GreeterError)
        assert error.setting == f"{cls.__name__}.{name}"
        assert str(error) == (
            f"{cls.__name__}.{name}: {value!r} is out of range: allowed is {allowed.allowed()}"
        )


@pytest.mark.parametrize(("cls", "name", "allowed"), FIELDS, ids=IDS)
def test_every_numeric_setting_accepts_its_bounds(
    cls: type[Any], name: str, allowed: Range
) -> None:
    for value in good_values(allowed):
        assert getattr(cls(**{name: value}), name) == value


def test_the_ranges_cover_every_numeric_field() -> None:
    """A new numeric field without a range would escape the checks."""
    for cls, ranges in CONFIGS:
        defaults = cls()
        numeric = {
            name
            for name in cls.__dataclass_fields__
            if isinstance(getattr(defaults, name), int | float)
            and not isinstance(getattr(defaults, name), bool)
        }
        assert numeric <= set(ranges), f"{cls.__name__}: {sorted(numeric - set(ranges))}"


def test_parse_reads_and_checks_command_line_text() -> None:
    streams = CORE_RANGES["max_concurrent_streams"]
    assert streams.parse("100") == 100
    with pytest.raises(ValueError, match=r"'1\.5' is not an integer"):
        streams.parse("1.5")
    with pytest.raises(
        ValueError, match="-1 is out of range: allowed is an integer >= 1 and <= 2147483647"
    ):
        streams.parse("-1")
    assert TIMEOUT_RANGES["keepalive_timeout"].parse("0.5") == 0.5
    with pytest.raises(ValueError, match="allowed is a finite number > 0"):
        TIMEOUT_RANGES["keepalive_timeout"].parse("0")


# -- numeric arguments of the API's classes and methods -------------------------------------------


def _run(coroutine: Coroutine[Any, Any, object]) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def _call(timeout: object) -> object:
    channel = Channel("127.0.0.1:1")
    return channel.request(
        "/greet.Greeter/SayHello",
        Cardinality.UNARY_UNARY,
        HelloRequest,
        HelloReply,
        timeout=timeout,  # type: ignore[arg-type]
    )


ARGUMENTS: list[tuple[str, Callable[[Any], object], Range, list[object]]] = [
    ("Server.port", lambda v: Server([], port=v), LISTEN_PORT, [-1, 65_536, 1.5, None]),
    ("grace", lambda v: _run(Server([]).stop(v)), SERVER_RANGES["grace_period"], [-1, math.nan]),
    (
        "grace",
        lambda v: _run(Server([]).serve_until_signalled(grace=v)),
        SERVER_RANGES["grace_period"],
        [-0.5, math.inf],
    ),
    (
        "Proxy.listen_port",
        lambda v: Proxy("127.0.0.1", v, "127.0.0.1", 1),
        LISTEN_PORT,
        [-1, 70_000],
    ),
    ("Proxy.target_port", lambda v: Proxy("127.0.0.1", 0, "127.0.0.1", v), PEER_PORT, [0, "1"]),
    (
        "Proxy.connect_timeout",
        lambda v: Proxy("127.0.0.1", 0, "127.0.0.1", 1, connect_timeout=v),
        SECONDS,
        [0, -1, math.nan],
    ),
    ("timeout", _call, CALL_TIMEOUT, [math.nan, math.inf, "1"]),
    ("timeout", lambda v: _run(Channel("127.0.0.1:1").connect(v)), CALL_TIMEOUT, [math.nan]),
    (
        "workers",
        lambda v: Supervisor([], count=v, host="127.0.0.1", port=0, grace=1),
        WORKER_COUNT,
        [0, 257, 2.0],
    ),
]


@pytest.mark.parametrize(
    ("setting", "build", "allowed", "values"), ARGUMENTS, ids=[a[0] for a in ARGUMENTS]
)
def test_every_numeric_argument_refuses_values_outside_its_range(
    setting: str, build: Callable[[Any], object], allowed: Range, values: list[object]
) -> None:
    """Checked where it is given, before anything binds, connects or starts a process."""
    for value in values:
        with pytest.raises(SettingError) as caught:
            build(value)
        assert str(caught.value) == (
            f"{setting}: {value!r} is out of range: allowed is {allowed.allowed()}"
        )


@pytest.mark.asyncio
async def test_a_call_timeout_of_zero_or_less_is_a_deadline_already_past() -> None:
    """As in gRPC: not a setting error; the call fails DEADLINE_EXCEEDED, a long one succeeds."""
    async with Server([Greeter()], port=0) as server, Channel(f"127.0.0.1:{server.port}") as ch:
        stub = GreeterStub(ch)
        for timeout in (0, -1.5):
            with pytest.raises(GRPCError) as caught:
                await stub.say_hello(HelloRequest(name="t"), timeout=timeout)
            assert caught.value.status == Status.DEADLINE_EXCEEDED
        reply = await stub.say_hello(HelloRequest(name="t"), timeout=1e9)
        assert reply.message == "Hello t"
