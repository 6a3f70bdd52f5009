"""grpcio (C-core) as the client of greeter's server, on loopback.

Two servers: greeter's CLI (`python -m greeter serve`, a subprocess shared by the session) for the
Greeter RPCs, sizes, compression and health; greeter's `Server` in the test's event loop with the
test-only `test.Probe` service (tests.support.inprocess) for errors, deadlines, cancellation and
metadata, where the test also observes the handler. grpcio's sync API blocks, so the in-process
tests call it through `asyncio.to_thread` while their loop serves.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from gen.greet import HelloReply, HelloRequest
from tests.support.inprocess import INITIAL_BIN, PROBE, SECRET, InProcess
from tests.support.peers import GrpcioGreeter, grpcio_channel, spawn_greeter_server

pytestmark = pytest.mark.timeout(30)

CALL_TIMEOUT = 10.0
"""Seconds, for every grpcio call that is expected to succeed."""
PROMPTLY = 2.0
"""Seconds within which the server must have cancelled a handler whose client went away."""
MIB = 1024 * 1024
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = b"\x08\x01"
"""HealthCheckResponse(status=SERVING) in protobuf bytes: field 1, varint 1."""


@pytest.fixture(scope="module")
def stub(greeter_process: Any) -> Iterator[GrpcioGreeter]:
    """grpcio Greeter methods on one channel to the CLI server, for the whole module."""
    with grpcio_channel(greeter_process.target, ready_timeout=CALL_TIMEOUT) as methods:
        yield methods


def raw_unary(channel: grpc.Channel, path: str) -> grpc.UnaryUnaryMultiCallable:
    """A unary method with no codec: bytes in, bytes out."""
    return channel.unary_unary(path)


def probe_method(channel: grpc.Channel, name: str, *, streaming: bool = False) -> Any:
    """A test.Probe multi-callable (unary-unary, or unary-stream) with the Greeter messages."""
    codec: dict[str, Callable[..., Any]] = {
        "request_serializer": bytes,
        "response_deserializer": HelloReply.FromString,
    }
    path = f"/{PROBE}/{name}"
    if streaming:
        return channel.unary_stream(path, **codec)
    return channel.unary_unary(path, **codec)


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    """Run `call`, which must fail with a gRPC status; return the error."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# ------------------------------------------------------------------- the four RPCs, CLI server


def test_say_hello(stub: GrpcioGreeter) -> None:
    reply, call = stub.say_hello.with_call(HelloRequest(name="Ada"), timeout=CALL_TIMEOUT)
    assert reply.message == "Hello Ada"
    assert call.code() == grpc.StatusCode.OK


@pytest.mark.parametrize("count", [0, 1, 3, 200])
def test_lots_of_replies(stub: GrpcioGreeter, count: int) -> None:
    call = stub.lots_of_replies(HelloRequest(name="Ada", count=count), timeout=CALL_TIMEOUT)
    assert [reply.message for reply in call] == [f"Hello Ada #{i}" for i in range(1, count + 1)]
    assert call.code() == grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("names", "expected"),
    [(["a", "b", "c"], "Hello a, b, c"), (["solo"], "Hello solo"), ([], "Hello ")],
)
def test_lots_of_greetings(stub: GrpcioGreeter, names: list[str], expected: str) -> None:
    requests = iter([HelloRequest(name=name) for name in names])
    reply, call = stub.lots_of_greetings.with_call(requests, timeout=CALL_TIMEOUT)
    assert reply.message == expected
    assert call.code() == grpc.StatusCode.OK


def bidi_ping_pong(stub: GrpcioGreeter, names: list[str]) -> list[str]:
    """BidiHello, sending each request only after the reply to the previous one arrived."""
    outbox: queue.Queue[HelloRequest | None] = queue.Queue()

    def requests() -> Iterator[HelloRequest]:
        while (request := outbox.get(timeout=CALL_TIMEOUT)) is not None:
            yield request

    call = stub.bidi_hello(requests(), timeout=CALL_TIMEOUT)
    replies = []
    for name in names:
        outbox.put(HelloRequest(name=name))
        replies.append(next(call).message)  # blocks until this request's own reply is back
    outbox.put(None)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK
    return replies


def test_bidi_hello_ping_pong(stub: GrpcioGreeter) -> None:
    names = ["a", "b", "c", "d"]
    assert bidi_ping_pong(stub, names) == [f"Hello {name}" for name in names]


def test_bidi_hello_no_requests(stub: GrpcioGreeter) -> None:
    call = stub.bidi_hello(iter(()), timeout=CALL_TIMEOUT)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


def test_long_server_stream(stub: GrpcioGreeter) -> None:
    # Far more than the client's flow-control window: the server must wait for window updates.
    count = 5000
    call = stub.lots_of_replies(HelloRequest(name="many", count=count), timeout=CALL_TIMEOUT)
    messages = [reply.message for reply in call]
    assert len(messages) == count
    assert messages[0] == "Hello many #1"
    assert messages[-1] == f"Hello many #{count}"


def test_concurrent_calls_on_one_connection(stub: GrpcioGreeter) -> None:
    # More unary calls at once than the server's 100 concurrent streams: grpcio queues the
    # excess by SETTINGS_MAX_CONCURRENT_STREAMS and every call still succeeds.
    streams = [
        stub.lots_of_replies(HelloRequest(name=f"s{i}", count=20), timeout=CALL_TIMEOUT)
        for i in range(8)
    ]
    futures = [
        stub.say_hello.future(HelloRequest(name=f"u{i}"), timeout=CALL_TIMEOUT) for i in range(150)
    ]
    assert [f.result().message for f in futures] == [f"Hello u{i}" for i in range(150)]
    for i, call in enumerate(streams):
        assert [r.message for r in call] == [f"Hello s{i} #{n}" for n in range(1, 21)]


@pytest.mark.parametrize("path", ["/greet.Greeter/Nope", "/no.Such/Service"])
def test_unknown_method_is_unimplemented(stub: GrpcioGreeter, path: str) -> None:
    method = raw_unary(stub.channel, path)
    error = rpc_error(lambda: method(b"", timeout=CALL_TIMEOUT))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED, error


def test_health_check_overall_is_serving(stub: GrpcioGreeter) -> None:
    check = raw_unary(stub.channel, HEALTH_CHECK)
    assert check(b"", timeout=CALL_TIMEOUT) == SERVING


def test_health_check_unknown_service_is_not_found(stub: GrpcioGreeter) -> None:
    check = raw_unary(stub.channel, HEALTH_CHECK)
    request = b"\x0a\x04nope"  # HealthCheckRequest(service="nope")
    error = rpc_error(lambda: check(request, timeout=CALL_TIMEOUT))
    assert error.code() == grpc.StatusCode.NOT_FOUND, error


# ------------------------------------------------------------- sizes and compression, CLI server


@pytest.mark.parametrize("size", [1 * MIB, int(3.9 * MIB)], ids=["1MiB", "3.9MiB"])
def test_large_message_both_ways(stub: GrpcioGreeter, size: int) -> None:
    name = "x" * size
    reply = stub.say_hello(HelloRequest(name=name), timeout=CALL_TIMEOUT)
    assert len(reply.message) == size + len("Hello ")
    assert reply.message == "Hello " + name


def test_large_bidi_ping_pong(stub: GrpcioGreeter) -> None:
    # Two 3.9 MiB requests in a row: each is more than the server's stream receive window, so the
    # second arrives only if the server acknowledged the first as its handler consumed it.
    names = [char * int(3.9 * MIB) for char in "ab"]
    assert bidi_ping_pong(stub, names) == [f"Hello {name}" for name in names]


def test_request_over_default_limit_is_resource_exhausted(stub: GrpcioGreeter) -> None:
    request = HelloRequest(name="x" * (5 * MIB))
    error = rpc_error(lambda: stub.say_hello(request, timeout=CALL_TIMEOUT))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    # The connection survives: the next call on the same channel works.
    assert stub.say_hello(HelloRequest(name="after"), timeout=CALL_TIMEOUT).message == "Hello after"


@pytest.mark.parametrize("algorithm", [grpc.Compression.Gzip, grpc.Compression.Deflate])
@pytest.mark.parametrize("size", [5, MIB], ids=["small", "1MiB"])
def test_compressed_request(stub: GrpcioGreeter, algorithm: grpc.Compression, size: int) -> None:
    name = ("compressed " * size)[:size]
    reply = stub.say_hello(HelloRequest(name=name), compression=algorithm, timeout=CALL_TIMEOUT)
    assert reply.message == "Hello " + name


@pytest.mark.parametrize("algorithm", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_compressed_streams(stub: GrpcioGreeter, algorithm: grpc.Compression) -> None:
    requests = iter([HelloRequest(name=name) for name in ("a", "b")])
    reply = stub.lots_of_greetings(requests, compression=algorithm, timeout=CALL_TIMEOUT)
    assert reply.message == "Hello a, b"
    call = stub.bidi_hello(
        iter([HelloRequest(name="c"), HelloRequest(name="d")]),
        compression=algorithm,
        timeout=CALL_TIMEOUT,
    )
    assert [r.message for r in call] == ["Hello c", "Hello d"]


def test_compressed_request_over_limit_when_decompressed(stub: GrpcioGreeter) -> None:
    # 5 MiB of one letter gzips to a few KiB: the length prefix passes, the decompressed size
    # must not (the same 4 MiB limit bounds it).
    request = HelloRequest(name="x" * (5 * MIB))
    error = rpc_error(
        lambda: stub.say_hello(request, compression=grpc.Compression.Gzip, timeout=CALL_TIMEOUT)
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error


def test_sigterm_lets_an_in_flight_rpc_finish() -> None:
    # The CLI's graceful shutdown seen by C-core: after SIGTERM (GOAWAY), an open BidiHello
    # still gets its replies and its OK status, and the server then exits 0 well within --grace.
    with (
        spawn_greeter_server("--grace", "20") as process,
        grpcio_channel(process.target, ready_timeout=CALL_TIMEOUT) as stub,
    ):
        outbox: queue.Queue[HelloRequest | None] = queue.Queue()

        def requests() -> Iterator[HelloRequest]:
            while (request := outbox.get(timeout=CALL_TIMEOUT)) is not None:
                yield request

        call = stub.bidi_hello(requests(), timeout=CALL_TIMEOUT)
        try:
            outbox.put(HelloRequest(name="before"))
            assert next(call).message == "Hello before"
            mark = len(process.lines())
            process.proc.send_signal(signal.SIGTERM)
            process.wait_for_line("shutting down", CALL_TIMEOUT, start=mark)
            outbox.put(HelloRequest(name="during"))
            assert next(call).message == "Hello during"
        finally:
            outbox.put(None)
        assert list(call) == []
        assert call.code() == grpc.StatusCode.OK
        assert process.proc.wait(timeout=CALL_TIMEOUT) == 0
    assert not [line for line in process.lines() if "Traceback" in line], process.lines()


# ---------------------------------------------------------- errors, in-process server with Probe


async def call_in_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking grpcio call in a worker thread while this loop serves it."""
    return await asyncio.to_thread(func, *args, **kwargs)


async def expect_error(func: Callable[..., Any], *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        await call_in_thread(func, *args, **kwargs)
    return info.value


@pytest.mark.asyncio
@pytest.mark.parametrize("message", ["nope", "100% ünïcode, not ASCII\ttab"])
async def test_grpc_error_status_and_message(inproc: InProcess, message: str) -> None:
    with grpcio_channel(inproc.target) as stub:
        not_found = probe_method(stub.channel, "NotFound")
        error = await expect_error(not_found, HelloRequest(name=message), timeout=CALL_TIMEOUT)
    assert error.code() == grpc.StatusCode.NOT_FOUND, error
    assert error.details() == message


@pytest.mark.asyncio
async def test_handler_exception_is_unknown_without_traceback(
    inproc: InProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="greeter")
    with grpcio_channel(inproc.target) as stub:
        crash = probe_method(stub.channel, "Crash")
        error = await expect_error(crash, HelloRequest(name="x"), timeout=CALL_TIMEOUT)
    assert error.code() == grpc.StatusCode.UNKNOWN, error
    details = error.details() or ""
    for leak in ("Traceback", "ValueError", SECRET, ".py"):
        assert leak not in details, details
    # ...but the server logged it, with the traceback, for its operator.
    logged = [r for r in caplog.records if r.exc_info and SECRET in str(r.exc_info[1])]
    assert logged, caplog.text


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("count", "code", "details"),
    [(0, grpc.StatusCode.NOT_FOUND, "nope"), (1, grpc.StatusCode.UNKNOWN, None)],
    ids=["grpc-error", "exception"],
)
async def test_error_after_messages_arrives_in_trailers(
    inproc: InProcess, count: int, code: grpc.StatusCode, details: str | None
) -> None:
    with grpcio_channel(inproc.target) as stub:
        fail = probe_method(stub.channel, "FailMidStream", streaming=True)
        call = fail(HelloRequest(name="Ada", count=count), timeout=CALL_TIMEOUT)
        received: list[str] = []

        def drain() -> None:
            received.extend(reply.message for reply in call)

        error = await expect_error(drain)
    assert received == ["Hello Ada #1", "Hello Ada #2"]
    assert error.code() == code, error
    if details is not None:
        assert error.details() == details
    assert SECRET not in (error.details() or "")


@pytest.mark.asyncio
async def test_deadline_exceeded_and_handler_cancelled(inproc: InProcess) -> None:
    signals = inproc.probe["Hang"]
    with grpcio_channel(inproc.target) as stub:
        hang = probe_method(stub.channel, "Hang")
        started = time.monotonic()
        error = await expect_error(hang, HelloRequest(name="slow"), timeout=0.5)
        elapsed = time.monotonic() - started
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error
        # Not sooner than the deadline (a grpc-timeout misread, e.g. 500m as microseconds, would
        # end it at once); no upper bound here: grpcio ends the call at its deadline by itself.
        assert elapsed >= 0.45
        assert signals.started.is_set()
        await asyncio.wait_for(signals.cancelled.wait(), PROMPTLY)
        # The server is not stuck: the next call on the same connection is answered.
        reply = await call_in_thread(stub.say_hello, HelloRequest(name="next"), timeout=PROMPTLY)
    assert reply.message == "Hello next"


@pytest.mark.asyncio
async def test_deadline_on_endless_stream_cancels_handler(inproc: InProcess) -> None:
    signals = inproc.probe["Endless"]
    with grpcio_channel(inproc.target) as stub:
        endless = probe_method(stub.channel, "Endless", streaming=True)
        call = endless(HelloRequest(name="tick"), timeout=0.5)
        error = await expect_error(lambda: sum(1 for _ in call))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error
        await asyncio.wait_for(signals.cancelled.wait(), PROMPTLY)


@pytest.mark.asyncio
async def test_client_cancel_stops_endless_stream_promptly(inproc: InProcess) -> None:
    signals = inproc.probe["Endless"]
    with grpcio_channel(inproc.target) as stub:
        endless = probe_method(stub.channel, "Endless", streaming=True)
        call = endless(HelloRequest(name="tick"), timeout=CALL_TIMEOUT)
        first = await call_in_thread(next, call)
        assert first.message == "Hello tick #1"
        await asyncio.wait_for(signals.started.wait(), PROMPTLY)
        assert call.cancel()
        await asyncio.wait_for(signals.cancelled.wait(), PROMPTLY)
        sent_at_cancel = signals.sent
        assert call.code() == grpc.StatusCode.CANCELLED
        # Other clients are answered (within the call's PROMPTLY deadline), and the cancelled
        # handler produces nothing more.
        reply = await call_in_thread(stub.say_hello, HelloRequest(name="next"), timeout=PROMPTLY)
        assert reply.message == "Hello next"
        assert signals.sent == sent_at_cancel
        assert signals.finished.is_set()


@pytest.mark.asyncio
async def test_client_cancel_while_handler_awaits_requests(inproc: InProcess) -> None:
    signals = inproc.probe["Drain"]
    outbox: queue.Queue[HelloRequest | None] = queue.Queue()

    def requests() -> Iterator[HelloRequest]:
        while (request := outbox.get(timeout=CALL_TIMEOUT)) is not None:
            yield request

    with grpcio_channel(inproc.target) as stub:
        drain = stub.channel.stream_unary(
            f"/{PROBE}/Drain", request_serializer=bytes, response_deserializer=HelloReply.FromString
        )
        future = drain.future(requests(), timeout=CALL_TIMEOUT)
        try:
            outbox.put(HelloRequest(name="first"))
            await asyncio.wait_for(signals.message_received.wait(), PROMPTLY)
            assert future.cancel()
            await asyncio.wait_for(signals.cancelled.wait(), PROMPTLY)
        finally:
            outbox.put(None)  # lets grpcio's request-reading thread finish
    assert signals.received == 1
    assert future.cancelled()


@pytest.mark.asyncio
async def test_custom_metadata_both_ways(inproc: InProcess) -> None:
    sent = (
        ("x-custom", "custom-value"),
        ("x-multi", "one"),
        ("x-multi", "two"),
        ("x-trace-bin", b"\x00\x01\xfe\xff\x00"),
        ("x-empty-bin", b""),
    )
    with grpcio_channel(inproc.target) as stub:
        echo = probe_method(stub.channel, "Echo")
        reply, call = await call_in_thread(
            echo.with_call, HelloRequest(name="md"), metadata=sent, timeout=CALL_TIMEOUT
        )
    assert reply.message == "Hello md"
    # What the handler saw: str values, bytes for -bin keys, repeats in order.
    (seen,) = inproc.probe.received_metadata
    assert seen.getall("x-multi") == ["one", "two"]
    assert seen["x-trace-bin"] == b"\x00\x01\xfe\xff\x00"
    assert seen["x-empty-bin"] == b""
    assert "user-agent" in seen
    # What grpcio saw: initial metadata from send_initial_metadata, trailers echoing the request.
    initial = tuple((m.key, m.value) for m in call.initial_metadata())
    assert ("x-initial", "hello") in initial
    assert ("x-initial-bin", INITIAL_BIN) in initial
    trailing = [(m.key, m.value) for m in call.trailing_metadata()]
    assert [pair for pair in trailing if pair[0].startswith("x-")] == list(sent)


@pytest.mark.asyncio
async def test_health_check_in_process(inproc: InProcess) -> None:
    with grpcio_channel(inproc.target) as stub:
        check = raw_unary(stub.channel, HEALTH_CHECK)
        assert await call_in_thread(check, b"", timeout=CALL_TIMEOUT) == SERVING
