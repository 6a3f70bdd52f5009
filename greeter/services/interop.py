"""grpc.testing.TestService: the server side of gRPC's interop test cases.

Knows the generated grpc.testing messages and base class (gen.grpc.testing) and reaches the RPC's
metadata only through greeter.server.context.current_rpc(), never a transport. Behaviour follows
gRPC's doc/interop-test-descriptions.md ("Server" section):

- `x-grpc-test-echo-initial` request metadata is echoed as initial metadata, and
  `x-grpc-test-echo-trailing-bin` as trailing metadata, on every method;
- a request's `response_status` with a non-zero code ends the RPC with that code and message;
- payloads are `response_size` / `ResponseParameters.size` zero bytes, each streamed response
  waits `interval_us` first; StreamingInputCall answers the total size of the received payloads;
- CompressedResponse: `response_compressed` (unary) and `ResponseParameters.compressed`
  (streaming) compress that response message (flag 1, gzip when the client accepts it), the
  others go uncompressed;
- CompressedRequest: a request message with `expect_compressed` true that arrived without the
  compressed flag fails the RPC with INVALID_ARGUMENT. The description asks nothing of a
  message with `expect_compressed` false, so a compressed one is accepted (as grpc-go does).

The stubs (`TestServiceStub`, `UnimplementedServiceStub`) and messages are re-exported for
`greeter interop-client` (greeter.cli.interop_client), which may not import gen/ itself.

Not in this slice: `fill_username` / `fill_oauth_scope` / `fill_server_id` (authentication and
xDS cases).
UnimplementedCall and UnimplementedService stay UNIMPLEMENTED (the generated bases raise it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from grpclib.const import Status
from grpclib.exceptions import GRPCError

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
    TestServiceBase,
    TestServiceStub,
    UnimplementedServiceStub,
)
from greeter.server.context import RpcContext, current_rpc

__all__ = [
    "ECHO_INITIAL",
    "ECHO_TRAILING",
    "BoolValue",
    "EchoStatus",
    "Empty",
    "Payload",
    "PayloadType",
    "ResponseParameters",
    "SimpleRequest",
    "SimpleResponse",
    "StreamingInputCallRequest",
    "StreamingInputCallResponse",
    "StreamingOutputCallRequest",
    "StreamingOutputCallResponse",
    "TestService",
    "TestServiceStub",
    "UnimplementedServiceStub",
]

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"


def _rpc() -> RpcContext | None:
    """The current RPC's handler context; None when not served by greeter (e.g. direct calls)."""
    try:
        return current_rpc()
    except LookupError:
        return None


def _flag(value: BoolValue | None) -> bool:
    return value is not None and value.value


def _check_compressed(expect: BoolValue | None) -> None:
    """CompressedRequest: INVALID_ARGUMENT for an expected-compressed message sent without it."""
    rpc = _rpc()
    if _flag(expect) and rpc is not None and not rpc.last_message_compressed:
        raise GRPCError(Status.INVALID_ARGUMENT, "expected a compressed request message")


def _compress_next(enabled: bool) -> None:
    """CompressedResponse: compress (or not) the next response message."""
    rpc = _rpc()
    if rpc is not None:
        rpc.set_message_compression(enabled)


async def _echo_metadata(*, compress: bool = False) -> None:
    """Echo the two test metadata keys of the current RPC (nothing when not on greeter).

    `compress`: some response message will be compressed, so headers sent here must name the
    encoding (it is enabled for the RPC; each message then sets its own flag).
    """
    rpc = _rpc()
    if rpc is None:
        return
    if compress:
        rpc.set_response_compression(True)
    initial = [(ECHO_INITIAL, value) for value in rpc.metadata.getall(ECHO_INITIAL, [])]
    if initial:
        await rpc.send_initial_metadata(initial)
    trailing = [(ECHO_TRAILING, value) for value in rpc.metadata.getall(ECHO_TRAILING, [])]
    if trailing:
        rpc.set_trailing_metadata(trailing)


def _raise_requested_status(echo: EchoStatus | None) -> None:
    """End the RPC with the status a request asked for (a non-zero `response_status.code`)."""
    if echo is None or echo.code == 0:
        return
    try:
        status = Status(echo.code)
    except ValueError:
        status = Status.UNKNOWN  # not a gRPC code: what a client would see for it anyway
    raise GRPCError(status, echo.message)


def _payload(size: int) -> Payload:
    if size < 0:
        raise GRPCError(Status.INVALID_ARGUMENT, f"negative payload size {size}")
    return Payload(type=PayloadType.COMPRESSABLE, body=bytes(size))


async def _respond(
    parameters: Iterable[ResponseParameters],
) -> AsyncIterator[StreamingOutputCallResponse]:
    for parameter in parameters:
        if parameter.interval_us > 0:
            await asyncio.sleep(parameter.interval_us / 1_000_000)
        _compress_next(_flag(parameter.compressed))
        yield StreamingOutputCallResponse(payload=_payload(parameter.size))


class TestService(TestServiceBase):
    """grpc.testing.TestService as the interop test descriptions require of a server."""

    __test__ = False  # not a pytest test class, whatever its name

    async def empty_call(self, message: Empty) -> Empty:
        await _echo_metadata()
        return Empty()

    async def unary_call(self, message: SimpleRequest) -> SimpleResponse:
        compress = _flag(message.response_compressed)
        await _echo_metadata(compress=compress)
        _check_compressed(message.expect_compressed)
        _raise_requested_status(message.response_status)
        _compress_next(compress)
        return SimpleResponse(payload=_payload(message.response_size))

    async def cacheable_unary_call(self, message: SimpleRequest) -> SimpleResponse:
        return await self.unary_call(message)

    async def streaming_output_call(
        self, message: StreamingOutputCallRequest
    ) -> AsyncIterator[StreamingOutputCallResponse]:
        compress = any(_flag(p.compressed) for p in message.response_parameters)
        await _echo_metadata(compress=compress)
        _raise_requested_status(message.response_status)
        async for response in _respond(message.response_parameters):
            yield response

    async def streaming_input_call(
        self, messages: AsyncIterator[StreamingInputCallRequest]
    ) -> StreamingInputCallResponse:
        await _echo_metadata()
        total = 0
        async for request in messages:
            _check_compressed(request.expect_compressed)
            if request.payload is not None:
                total += len(request.payload.body)
        return StreamingInputCallResponse(aggregated_payload_size=total)

    async def full_duplex_call(
        self, messages: AsyncIterator[StreamingOutputCallRequest]
    ) -> AsyncIterator[StreamingOutputCallResponse]:
        await _echo_metadata()
        async for request in messages:  # each request is answered before the next is read
            _raise_requested_status(request.response_status)
            async for response in _respond(request.response_parameters):
                yield response

    async def half_duplex_call(
        self, messages: AsyncIterator[StreamingOutputCallRequest]
    ) -> AsyncIterator[StreamingOutputCallResponse]:
        await _echo_metadata()
        requests = [request async for request in messages]  # all of them, then the answers
        for request in requests:
            _raise_requested_status(request.response_status)
            async for response in _respond(request.response_parameters):
                yield response
