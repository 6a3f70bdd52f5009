"""The inspecting proxy between peers that are not ours: results unchanged, both legs traced.

grpcio client -> proxy -> grpcio server, and grpc-js client -> proxy -> greeter's own server. The
proxy runs in the test's event loop; the blocking clients run in worker threads. Each test
compares what the client saw with a direct call and asserts on the records the proxy's taps
emitted (a list sink); records that arrive after the client returned are awaited, never slept
for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpclib.health.service import Health

from gen.greet import HelloReply, HelloRequest
from greeter.server import Server
from greeter.services.greeter import Greeter
from greeter.tap.observer import TapFactory
from greeter.tap.records import FrameRecord, MessageRecord, Record, RpcRecord
from greeter.tap.resolve import MessageTypes
from greeter.tools.proxy import Proxy
from tests.support.peers import (
    METHOD_PATHS,
    GrpcioGreeter,
    grpcio_channel,
    grpcio_server,
    run_node_client,
)

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio]

MIB = 1024 * 1024
LARGE_NAME = "x" * int(3.9 * MIB)


class Recorder:
    """A list sink for tap records that a test can await a record from."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._changed = asyncio.Event()

    def __call__(self, record: Record) -> None:
        self.records.append(record)
        self._changed.set()

    def factory(self) -> TapFactory:
        return TapFactory(self, types=MessageTypes.from_module("gen.greet"))

    async def wait_for(self, predicate: Callable[[Record], bool], timeout: float = 5) -> Record:
        async with asyncio.timeout(timeout):
            while True:
                for record in self.records:
                    if predicate(record):
                        return record
                self._changed.clear()
                await self._changed.wait()

    def rpc_ends(self) -> dict[str, list[RpcRecord]]:
        """The rpc end records by method, in order."""
        ends: dict[str, list[RpcRecord]] = {}
        for r in self.records:
            if isinstance(r, RpcRecord) and r.event == "end":
                ends.setdefault(r.method, []).append(r)
        return ends


# ---------------------------------------------------------------------------- grpcio scenarios


def run_grpcio_scenarios(target: str) -> dict[str, Any]:
    """Every scenario through one grpcio channel: their results, comparable across targets."""
    with grpcio_channel(target, ready_timeout=5) as greeter:
        return {
            "unary": greeter.say_hello(HelloRequest(name="Ada"), timeout=5).message,
            "server_stream": [
                r.message for r in greeter.lots_of_replies(HelloRequest(name="a", count=3))
            ],
            "client_stream": greeter.lots_of_greetings(
                iter([HelloRequest(name=n) for n in "abc"]), timeout=5
            ).message,
            "bidi": [
                r.message
                for r in greeter.bidi_hello(iter([HelloRequest(name=n) for n in "xy"]), timeout=5)
            ],
            "large": len(greeter.say_hello(HelloRequest(name=LARGE_NAME), timeout=10).message),
            "error": _unknown_method(greeter),
            "cancel": _cancel_stream(greeter),
        }


def _unknown_method(greeter: GrpcioGreeter) -> tuple[str, str]:
    nope = greeter.channel.unary_unary("/greet.Greeter/Nope")
    try:
        nope(b"", timeout=5)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details()
    raise AssertionError("an unknown method succeeded")


def _cancel_stream(greeter: GrpcioGreeter) -> tuple[list[str], str]:
    call = greeter.lots_of_replies(HelloRequest(name="c", count=1_000_000), timeout=10)
    first = [next(call).message for _ in range(2)]
    call.cancel()
    return first, call.code().name


async def test_grpcio_client_to_grpcio_server_through_the_proxy() -> None:
    recorder = Recorder()
    with grpcio_server() as target:
        host, _, port = target.rpartition(":")
        direct = await asyncio.to_thread(run_grpcio_scenarios, target)
        async with Proxy("127.0.0.1", 0, host, int(port), tap=recorder.factory()) as proxy:
            proxied = await asyncio.to_thread(run_grpcio_scenarios, f"127.0.0.1:{proxy.port}")
            reset = await recorder.wait_for(
                lambda r: isinstance(r, FrameRecord) and r.type == "RST_STREAM"
            )
    assert proxied == direct
    assert direct["large"] == len(LARGE_NAME) + len("Hello ")
    assert direct["cancel"] == (["Hello c #1", "Hello c #2"], "CANCELLED")
    assert isinstance(reset, FrameRecord)
    assert (reset.direction, reset.error_code) == ("in", "CANCEL")
    _assert_grpcio_trace(recorder)


def _assert_grpcio_trace(recorder: Recorder) -> None:
    frames = {(r.direction, r.type) for r in recorder.records if isinstance(r, FrameRecord)}
    assert {("in", "HEADERS"), ("in", "DATA"), ("out", "HEADERS"), ("out", "DATA")} <= frames
    messages = [r for r in recorder.records if isinstance(r, MessageRecord)]
    assert HelloRequest(name="Ada") in [m.decoded for m in messages if m.direction == "in"]
    assert HelloReply(message="Hello Ada") in [m.decoded for m in messages if m.direction == "out"]
    large = [m for m in messages if m.direction == "in" and m.length > 3 * MIB]
    assert len(large) == 1
    assert isinstance(large[0].decoded, HelloRequest)
    assert large[0].decoded.name == LARGE_NAME
    ends = recorder.rpc_ends()
    for method in METHOD_PATHS.values():
        assert ends[method][0].status == 0, ends[method]
    unimplemented = grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert [e.status for e in ends["/greet.Greeter/Nope"]] == [unimplemented]
    cancelled = ends[METHOD_PATHS["LotsOfReplies"]][1]
    assert (cancelled.status, cancelled.reset) == (None, "CANCEL")
    starts = {r.method for r in recorder.records if isinstance(r, RpcRecord) and r.event == "start"}
    assert starts >= {*METHOD_PATHS.values(), "/greet.Greeter/Nope"}


# ---------------------------------------------------------------------- grpc-js -> greeter


GRPC_JS_SCENARIOS: list[tuple[tuple[str, ...], str, object]] = [
    (("unary", "Ada"), "message", "Hello Ada"),
    (("server-stream", "Ada", "3"), "messages", ["Hello Ada #1", "Hello Ada #2", "Hello Ada #3"]),
    (("client-stream", "a", "b"), "message", "Hello a, b"),
    (("bidi", "a", "b", "c"), "messages", ["Hello a", "Hello b", "Hello c"]),
]


async def test_grpc_js_client_to_our_server_through_the_proxy() -> None:
    recorder = Recorder()
    async with (
        Server([Greeter(), Health()], port=0) as server,
        Proxy("127.0.0.1", 0, "127.0.0.1", server.port, tap=recorder.factory()) as proxy,
    ):
        target = f"127.0.0.1:{proxy.port}"
        results = await asyncio.gather(
            *(asyncio.to_thread(run_node_client, target, *args) for args, _, _ in GRPC_JS_SCENARIOS)
        )
    for (args, key, expected), result in zip(GRPC_JS_SCENARIOS, results, strict=True):
        assert (result["code_name"], result[key]) == ("OK", expected), args
    ends = recorder.rpc_ends()
    statuses = {method: tuple(e.status for e in ends[method]) for method in METHOD_PATHS.values()}
    assert statuses == dict.fromkeys(METHOD_PATHS.values(), (0,))
    replies = [
        r.decoded for r in recorder.records if isinstance(r, MessageRecord) and r.direction == "out"
    ]
    assert HelloReply(message="Hello a, b") in replies


# ------------------------------------------------------------------------------ proxy itself


async def test_unreachable_target_closes_the_client_connection(
    caplog: pytest.LogCaptureFixture, refused_port: int
) -> None:
    caplog.set_level(logging.WARNING, logger="greeter.proxy")
    async with Proxy("127.0.0.1", 0, "127.0.0.1", refused_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()
    assert "cannot reach" in caplog.text


async def test_bytes_and_half_close_are_relayed_unchanged() -> None:
    received: list[bytes] = []
    seen: list[tuple[str, bytes]] = []

    async def echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the half-close arrives
        received.append(data)
        writer.write(data.upper())
        writer.close()

    class Seen:
        def observe(self, direction: str, data: bytes) -> None:
            seen.append((direction, data))

        def close(self, reason: str) -> None:
            seen.append(("close", reason.encode()))

    upstream = await asyncio.start_server(echo_upper, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    payload = bytes(range(256)) * 1000
    async with upstream, Proxy("127.0.0.1", 0, "127.0.0.1", port, tap=lambda c, p: Seen()) as px:
        reader, writer = await asyncio.open_connection("127.0.0.1", px.port)
        writer.write(payload)
        writer.write_eof()
        async with asyncio.timeout(5):
            answer = await reader.read()
        writer.close()
    assert received == [payload]
    assert answer == payload.upper()
    assert b"".join(d for direction, d in seen if direction == "in") == payload
    assert b"".join(d for direction, d in seen if direction == "out") == payload.upper()
