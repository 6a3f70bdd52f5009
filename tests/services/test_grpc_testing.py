"""gRPC's interop test cases (doc/interop-test-descriptions.md) against `greeter interop-server`.

On loopback, grpcio (C-core) is the client, calling grpc.testing.TestService
through generic multicallables with the betterproto2 messages of gen.grpc.testing (no protoc
stubs: a generated `grpc/testing/*_pb2` package would shadow grpcio's own `grpc` package).
Every case runs against two servers (the module-scoped `interop_process` fixture, params
"greeter" and "grpc.aio"): `python -m greeter interop-server --port 0`, and grpc.aio's
TestService in tests/support/aio_testservice.py, both as subprocesses. The grpc.aio run shows the
test client itself is right. Every call has a timeout, every request iterator that blocks is
released when its test ends.

The compression cases use grpcio (`compression=grpc.Compression.Gzip`) where it can express them
and tests/support/rawclient.py where it cannot: the "uncompressed message on a call that expects
compression" probe, per-message compressed flags in one request stream, and checking that the
response DATA carries flag 1 with `grpc-encoding: gzip` (grpcio hides both).

Greeter only (GREETER_ONLY): the serving-line check, and the two CompressedRequest probes that
send an uncompressed message with `expect_compressed` true and expect INVALID_ARGUMENT. grpc.aio
exposes neither a received message's compressed flag nor the request's `grpc-encoding` (C-core
consumes it before `invocation_metadata()`), so its TestService cannot reject that message.
"""

from __future__ import annotations

import queue
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from gen.grpc.testing import (
    BoolValue,
    EchoStatus,
    Empty,
    Payload,
    PayloadType,
    ResponseParameters,
    SimpleRequest,
    SimpleResponse,
    StreamingInputCallRequest,
    StreamingInputCallResponse,
    StreamingOutputCallRequest,
    StreamingOutputCallResponse,
)
from greeter.server.context import current_rpc
from tests.services.conftest import GREETER
from tests.support.peers import ServerProcess
from tests.support.rawclient import RawClient

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 10.0
SERVICE = "/grpc.testing.TestService"
ECHO_INITIAL = ("x-grpc-test-echo-initial", "test_initial_metadata_value")
ECHO_TRAILING = ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"


class TestStub:
    """grpcio multicallables for grpc.testing.TestService with betterproto2 messages."""

    __test__ = False

    def __init__(self, channel: grpc.Channel) -> None:
        def codec(response: Any) -> dict[str, Callable[..., Any]]:
            return {"request_serializer": bytes, "response_deserializer": response.FromString}

        self.empty_call = channel.unary_unary(f"{SERVICE}/EmptyCall", **codec(Empty))
        self.unary_call = channel.unary_unary(f"{SERVICE}/UnaryCall", **codec(SimpleResponse))
        self.cacheable_unary_call = channel.unary_unary(
            f"{SERVICE}/CacheableUnaryCall", **codec(SimpleResponse)
        )
        self.streaming_output_call = channel.unary_stream(
            f"{SERVICE}/StreamingOutputCall", **codec(StreamingOutputCallResponse)
        )
        self.streaming_input_call = channel.stream_unary(
            f"{SERVICE}/StreamingInputCall", **codec(StreamingInputCallResponse)
        )
        self.full_duplex_call = channel.stream_stream(
            f"{SERVICE}/FullDuplexCall", **codec(StreamingOutputCallResponse)
        )
        self.half_duplex_call = channel.stream_stream(
            f"{SERVICE}/HalfDuplexCall", **codec(StreamingOutputCallResponse)
        )
        self.unimplemented_call = channel.unary_unary(
            f"{SERVICE}/UnimplementedCall", **codec(Empty)
        )
        self.unimplemented_service = channel.unary_unary(
            "/grpc.testing.UnimplementedService/UnimplementedCall", **codec(Empty)
        )


class Requests:
    """A request iterator fed from the test thread; `close()` half-closes (and unblocks) it."""

    _END = object()

    def __init__(self) -> None:
        self._queue: queue.Queue[object] = queue.Queue()

    def put(self, request: StreamingOutputCallRequest | StreamingInputCallRequest) -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(self._END)

    def __iter__(self) -> Iterator[Any]:
        while (item := self._queue.get(timeout=TIMEOUT * 2)) is not self._END:
            yield item


GREETER_ONLY = pytest.mark.parametrize("interop_process", [GREETER], indirect=True)
"""A case grpc.aio's TestService cannot serve (see the module docstring): greeter only."""


@pytest.fixture
def stub(interop_process: ServerProcess) -> Iterator[TestStub]:
    options = [("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 8 << 20)]
    with grpc.insecure_channel(interop_process.target, options=options) as channel:
        yield TestStub(channel)


def payload(size: int) -> Payload:
    return Payload(type=PayloadType.COMPRESSABLE, body=bytes(size))


def output_request(*sizes: int, body: int = 0, **fields: Any) -> StreamingOutputCallRequest:
    return StreamingOutputCallRequest(
        response_type=PayloadType.COMPRESSABLE,
        response_parameters=[ResponseParameters(size=size) for size in sizes],
        payload=payload(body) if body else None,
        **fields,
    )


def assert_zeros(response: SimpleResponse | StreamingOutputCallResponse, size: int) -> None:
    assert response.payload is not None
    assert response.payload.body == bytes(size)


@GREETER_ONLY
def test_serving_line_names_test_service(interop_process: ServerProcess) -> None:
    assert any(
        "serving grpc.testing.TestService" in line and "grpc.health.v1.Health" in line
        for line in interop_process.lines()
    )


def test_empty_unary(stub: TestStub) -> None:
    assert bytes(stub.empty_call(Empty(), timeout=TIMEOUT)) == b""


@pytest.mark.parametrize("method", ["unary_call", "cacheable_unary_call"])
def test_large_unary(stub: TestStub, method: str) -> None:
    request = SimpleRequest(
        response_type=PayloadType.COMPRESSABLE, response_size=314159, payload=payload(271828)
    )
    assert_zeros(getattr(stub, method)(request, timeout=TIMEOUT), 314159)


def test_client_streaming(stub: TestStub) -> None:
    requests = [StreamingInputCallRequest(payload=payload(n)) for n in (27182, 8, 1828, 45904)]
    response = stub.streaming_input_call(iter(requests), timeout=TIMEOUT)
    assert response.aggregated_payload_size == 74922


def test_server_streaming(stub: TestStub) -> None:
    sizes = (31415, 9, 2653, 58979)
    responses = list(stub.streaming_output_call(output_request(*sizes), timeout=TIMEOUT))
    assert len(responses) == len(sizes)
    for response, size in zip(responses, sizes, strict=True):
        assert_zeros(response, size)


def test_server_streaming_waits_interval_us(stub: TestStub) -> None:
    request = StreamingOutputCallRequest(
        response_parameters=[ResponseParameters(size=1, interval_us=50_000) for _ in range(3)]
    )
    call = stub.streaming_output_call(request, timeout=TIMEOUT)
    assert len(list(call)) == 3


def test_ping_pong(stub: TestStub) -> None:
    requests = Requests()
    call = stub.full_duplex_call(iter(requests), timeout=TIMEOUT)
    try:
        for response_size, body in zip(
            (31415, 9, 2653, 58979), (27182, 8, 1828, 45904), strict=True
        ):
            requests.put(output_request(response_size, body=body))
            assert_zeros(next(call), response_size)
    finally:
        requests.close()
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


def test_half_duplex_answers_after_the_last_request(stub: TestStub) -> None:
    requests = Requests()
    call = stub.half_duplex_call(iter(requests), timeout=TIMEOUT)
    for size in (5, 6):
        requests.put(output_request(size))
    requests.close()
    assert [len(r.payload.body) for r in call if r.payload] == [5, 6]


def test_empty_stream(stub: TestStub) -> None:
    call = stub.full_duplex_call(iter(()), timeout=TIMEOUT)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


@pytest.mark.parametrize("message", ["test status message", SPECIAL_MESSAGE])
def test_status_code_and_message(stub: TestStub, message: str) -> None:
    """status_code_and_message, and special_status_message for the second message."""
    status = EchoStatus(code=2, message=message)
    with pytest.raises(grpc.RpcError) as unary:
        stub.unary_call(SimpleRequest(response_status=status), timeout=TIMEOUT)
    assert unary.value.code() == grpc.StatusCode.UNKNOWN
    assert unary.value.details() == message
    call = stub.full_duplex_call(iter([output_request(response_status=status)]), timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as duplex:
        list(call)
    assert duplex.value.code() == grpc.StatusCode.UNKNOWN
    assert duplex.value.details() == message


def test_custom_metadata_unary(stub: TestStub) -> None:
    request = SimpleRequest(response_size=314159, payload=payload(271828))
    response, call = stub.unary_call.with_call(
        request, metadata=(ECHO_INITIAL, ECHO_TRAILING), timeout=TIMEOUT
    )
    assert_zeros(response, 314159)
    assert ECHO_INITIAL in call.initial_metadata()
    assert ECHO_TRAILING in call.trailing_metadata()


def test_custom_metadata_full_duplex(stub: TestStub) -> None:
    request = output_request(314159, body=271828)
    call = stub.full_duplex_call(
        iter([request]), metadata=(ECHO_INITIAL, ECHO_TRAILING), timeout=TIMEOUT
    )
    responses = list(call)
    assert len(responses) == 1
    assert_zeros(responses[0], 314159)
    assert ECHO_INITIAL in call.initial_metadata()
    assert ECHO_TRAILING in call.trailing_metadata()


def test_trailing_echo_survives_an_error_status(stub: TestStub) -> None:
    request = SimpleRequest(response_status=EchoStatus(code=9, message="nope"))
    with pytest.raises(grpc.RpcError) as error:
        stub.unary_call(request, metadata=(ECHO_INITIAL, ECHO_TRAILING), timeout=TIMEOUT)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert ECHO_TRAILING in error.value.trailing_metadata()


def test_unimplemented_method(stub: TestStub) -> None:
    with pytest.raises(grpc.RpcError) as error:
        stub.unimplemented_call(Empty(), timeout=TIMEOUT)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unimplemented_service(stub: TestStub) -> None:
    with pytest.raises(grpc.RpcError) as error:
        stub.unimplemented_service(Empty(), timeout=TIMEOUT)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_cancel_after_begin(stub: TestStub) -> None:
    requests = Requests()
    future = stub.streaming_input_call.future(iter(requests), timeout=TIMEOUT)
    try:
        assert future.cancel()
        assert future.code() == grpc.StatusCode.CANCELLED
    finally:
        requests.close()


def test_cancel_after_first_response(stub: TestStub) -> None:
    requests = Requests()
    call = stub.full_duplex_call(iter(requests), timeout=TIMEOUT)
    try:
        requests.put(output_request(31415, body=27182))
        assert_zeros(next(call), 31415)
        call.cancel()
        with pytest.raises(grpc.RpcError) as error:
            next(call)
        assert error.value.code() == grpc.StatusCode.CANCELLED
    finally:
        requests.close()


def test_timeout_on_sleeping_server(stub: TestStub) -> None:
    requests = Requests()
    requests.put(output_request(body=27182))
    call = stub.full_duplex_call(iter(requests), timeout=0.001)
    try:
        with pytest.raises(grpc.RpcError) as error:
            list(call)
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        requests.close()


def test_server_still_serves_after_the_cancelled_calls(stub: TestStub) -> None:
    assert bytes(stub.empty_call(Empty(), timeout=TIMEOUT)) == b""


def test_current_rpc_outside_a_handler_raises() -> None:
    errors: list[BaseException] = []

    def probe() -> None:
        try:
            current_rpc()
        except LookupError as exc:
            errors.append(exc)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(TIMEOUT)
    with pytest.raises(LookupError):
        current_rpc()
    assert len(errors) == 1


# -- compression (client_compressed_*, server_compressed_*) ---------------------------------------

ACCEPT = ("grpc-accept-encoding", "identity,deflate,gzip")
GZIP = ("grpc-encoding", "gzip")
INVALID_ARGUMENT = 3


def framed(data: bytes) -> list[tuple[bool, bytes]]:
    """(compressed flag, payload) of each Length-Prefixed-Message in a response body."""
    out = []
    pos = 0
    while pos < len(data):
        flag, length = struct.unpack_from(">BI", data, pos)
        out.append((flag == 1, data[pos + 5 : pos + 5 + length]))
        pos += 5 + length
    return out


def port_of(process: ServerProcess) -> int:
    return int(process.target.rsplit(":", 1)[1])


async def raw_call(
    process: ServerProcess,
    method: str,
    messages: list[tuple[bytes, bool]],
    extra: tuple[tuple[str, str], ...] = (ACCEPT,),
) -> tuple[int | None, str | None, list[tuple[bool, bytes]]]:
    """One call from a raw HTTP/2 client: (grpc-status, grpc-encoding, framed response)."""
    async with await RawClient.connect(port_of(process)) as client:
        sid = client.start_request(f"{SERVICE}/{method}", extra=extra)
        for i, (payload, compressed) in enumerate(messages):
            body = zlib.compress(payload, wbits=31) if compressed else payload
            last = i == len(messages) - 1
            await client.send_message(sid, body, compressed=compressed, end_stream=last)
        result = await client.wait(sid)
        return result.status, result.header("grpc-encoding"), framed(bytes(result.data))


def compressed_unary_request(expect: bool, **fields: Any) -> SimpleRequest:
    return SimpleRequest(
        response_type=PayloadType.COMPRESSABLE,
        response_size=314159,
        payload=payload(271828),
        expect_compressed=BoolValue(value=expect),
        **fields,
    )


@GREETER_ONLY
@pytest.mark.asyncio
async def test_client_compressed_unary_probe_rejects_uncompressed(
    interop_process: ServerProcess,
) -> None:
    request = bytes(compressed_unary_request(True))
    status, _, _ = await raw_call(interop_process, "UnaryCall", [(request, False)])
    assert status == INVALID_ARGUMENT


def test_client_compressed_unary(stub: TestStub) -> None:
    response = stub.unary_call(
        compressed_unary_request(True), compression=grpc.Compression.Gzip, timeout=TIMEOUT
    )
    assert_zeros(response, 314159)
    response = stub.unary_call(compressed_unary_request(False), timeout=TIMEOUT)
    assert_zeros(response, 314159)


@pytest.mark.asyncio
async def test_client_compressed_unary_raw_flags(interop_process: ServerProcess) -> None:
    request = bytes(compressed_unary_request(True))
    status, _, messages = await raw_call(
        interop_process, "UnaryCall", [(request, True)], (ACCEPT, GZIP)
    )
    assert status == 0
    assert len(SimpleResponse.FromString(messages[0][1]).payload.body) == 314159  # type: ignore[union-attr]
    # expect_compressed=false: the description asks nothing of a compressed message; accepted.
    request = bytes(compressed_unary_request(False))
    status, _, _ = await raw_call(interop_process, "UnaryCall", [(request, True)], (ACCEPT, GZIP))
    assert status == 0


@pytest.mark.parametrize("compressed", [True, False])
def test_server_compressed_unary(stub: TestStub, compressed: bool) -> None:
    request = SimpleRequest(
        response_type=PayloadType.COMPRESSABLE,
        response_size=314159,
        payload=payload(271828),
        response_compressed=BoolValue(value=compressed),
    )
    assert_zeros(stub.unary_call(request, timeout=TIMEOUT), 314159)


@pytest.mark.asyncio
@pytest.mark.parametrize("compressed", [True, False])
async def test_server_compressed_unary_wire(
    interop_process: ServerProcess, compressed: bool
) -> None:
    request = SimpleRequest(
        response_size=314159,
        payload=payload(271828),
        response_compressed=BoolValue(value=compressed),
    )
    status, encoding, messages = await raw_call(
        interop_process, "UnaryCall", [(bytes(request), False)]
    )
    assert status == 0
    assert encoding == ("gzip" if compressed else None)
    ((flag, body),) = messages
    assert flag is compressed
    if compressed:
        body = zlib.decompress(body, wbits=31)
    assert_zeros(SimpleResponse.FromString(body), 314159)


def test_server_compressed_unary_with_echoed_metadata(stub: TestStub) -> None:
    """Initial metadata echoed before the response still lets the response compress."""
    request = SimpleRequest(response_size=1000, response_compressed=BoolValue(value=True))
    response, call = stub.unary_call.with_call(request, metadata=(ECHO_INITIAL,), timeout=TIMEOUT)
    assert_zeros(response, 1000)
    assert ECHO_INITIAL in call.initial_metadata()


@GREETER_ONLY
@pytest.mark.asyncio
async def test_client_compressed_streaming_probe_rejects_uncompressed(
    interop_process: ServerProcess,
) -> None:
    request = StreamingInputCallRequest(
        payload=payload(27182), expect_compressed=BoolValue(value=True)
    )
    status, _, _ = await raw_call(interop_process, "StreamingInputCall", [(bytes(request), False)])
    assert status == INVALID_ARGUMENT


@pytest.mark.asyncio
async def test_client_compressed_streaming(interop_process: ServerProcess) -> None:
    """The case's procedure: a compressed message expecting it, then an uncompressed one."""
    first = StreamingInputCallRequest(
        payload=payload(27182), expect_compressed=BoolValue(value=True)
    )
    second = StreamingInputCallRequest(
        payload=payload(45904), expect_compressed=BoolValue(value=False)
    )
    status, _, messages = await raw_call(
        interop_process,
        "StreamingInputCall",
        [(bytes(first), True), (bytes(second), False)],
        (ACCEPT, GZIP),
    )
    assert status == 0
    response = StreamingInputCallResponse.FromString(messages[0][1])
    assert response.aggregated_payload_size == 73086


def test_client_compressed_streaming_grpcio(stub: TestStub) -> None:
    """grpcio compresses every message of a call: expect_compressed true, then false."""
    requests = [
        StreamingInputCallRequest(payload=payload(27182), expect_compressed=BoolValue(value=True)),
        StreamingInputCallRequest(payload=payload(45904), expect_compressed=BoolValue(value=False)),
    ]
    response = stub.streaming_input_call(
        iter(requests), compression=grpc.Compression.Gzip, timeout=TIMEOUT
    )
    assert response.aggregated_payload_size == 73086


def compressed_output_request() -> StreamingOutputCallRequest:
    return StreamingOutputCallRequest(
        response_type=PayloadType.COMPRESSABLE,
        response_parameters=[
            ResponseParameters(size=31415, compressed=BoolValue(value=True)),
            ResponseParameters(size=92653, compressed=BoolValue(value=False)),
        ],
    )


def test_server_compressed_streaming(stub: TestStub) -> None:
    responses = list(stub.streaming_output_call(compressed_output_request(), timeout=TIMEOUT))
    assert len(responses) == 2
    assert_zeros(responses[0], 31415)
    assert_zeros(responses[1], 92653)


@pytest.mark.asyncio
async def test_server_compressed_streaming_wire(interop_process: ServerProcess) -> None:
    status, encoding, messages = await raw_call(
        interop_process, "StreamingOutputCall", [(bytes(compressed_output_request()), False)]
    )
    assert status == 0
    assert encoding == "gzip"
    assert [flag for flag, _ in messages] == [True, False]
    first = StreamingOutputCallResponse.FromString(zlib.decompress(messages[0][1], wbits=31))
    second = StreamingOutputCallResponse.FromString(messages[1][1])
    assert_zeros(first, 31415)
    assert_zeros(second, 92653)
