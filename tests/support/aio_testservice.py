"""grpc.testing.TestService on grpc.aio: the reference server of the interop cases.

Not a test module. Run as `python tests/support/aio_testservice.py --port 0` (by
tests/services/test_grpc_testing.py); prints `listening on 127.0.0.1:PORT` once serving and exits
0 on SIGTERM/SIGINT. The interop cases run against it (as well as against `greeter
interop-server`) to show that the test client, not only greeter, is right.

grpc.aio serves TestService through generic handlers whose (de)serializers are the betterproto2
messages of gen.grpc.testing (`bytes(msg)` / `Cls.FromString`). Semantics follow
greeter/services/interop.py (gRPC's doc/interop-test-descriptions.md, "Server" section):

- `x-grpc-test-echo-initial` is echoed as initial metadata (`send_initial_metadata`) and
  `x-grpc-test-echo-trailing-bin` as trailing metadata (`set_trailing_metadata`), every method;
- a non-zero `response_status` ends the RPC with that code and message (`context.abort`, which
  keeps the trailing metadata already set);
- `response_size` / `ResponseParameters.size` zero bytes, each streamed response waits
  `interval_us` first; StreamingInputCall answers the total of the received payload sizes;
- CompressedResponse: `context.set_compression(Gzip)` for a call with any compressed response
  (then initial metadata is always sent explicitly, see `_echo_metadata`), and
  `disable_next_message_compression()` before each response that must go uncompressed.
- CompressedRequest (`expect_compressed`): grpc.aio does not expose the per-message compressed
  flag of a received message, nor the request's `grpc-encoding` header (C-core consumes it; it
  is absent from `invocation_metadata()`). This server therefore cannot reject an uncompressed
  message that was expected compressed: it accepts every request whatever `expect_compressed`
  says, and the probe cases that send exactly that message run against greeter only.

Not implemented: `fill_username` / `fill_oauth_scope` / `fill_server_id` (auth and xDS cases).
UnimplementedCall and UnimplementedService are not registered, so grpc.aio answers UNIMPLEMENTED.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

if __name__ == "__main__":  # run as a script: make `gen` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import grpc
from grpc import aio

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

SERVICE = "grpc.testing.TestService"
ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"
STOP_GRACE = 1.0
CODES = {code.value[0]: code for code in grpc.StatusCode}


def _flag(value: BoolValue | None) -> bool:
    return value is not None and value.value


def _payload(size: int) -> Payload:
    return Payload(type=PayloadType.COMPRESSABLE, body=bytes(max(size, 0)))


async def _echo_metadata(context: aio.ServicerContext, *, compress: bool = False) -> None:
    """Echo the two test metadata keys; `compress` enables gzip for the call first."""
    if compress:
        context.set_compression(grpc.Compression.Gzip)
    metadata = context.invocation_metadata() or ()
    initial = tuple((key, value) for key, value in metadata if key == ECHO_INITIAL)
    trailing = tuple((key, value) for key, value in metadata if key == ECHO_TRAILING)
    if initial or compress:
        # Explicitly even when empty: grpc.aio names the call's encoding (`set_compression`) only
        # in initial metadata sent through send_initial_metadata; a unary handler's implicit
        # headers (sent with the response) omit it, so its response would go uncompressed.
        await context.send_initial_metadata(initial)
    if trailing:
        context.set_trailing_metadata(trailing)


async def _abort_on_requested_status(context: aio.ServicerContext, echo: EchoStatus | None) -> None:
    if echo is None or echo.code == 0:
        return
    await context.abort(CODES.get(echo.code, grpc.StatusCode.UNKNOWN), echo.message)


async def _respond(
    context: aio.ServicerContext, parameters: Iterable[ResponseParameters], *, compressing: bool
) -> AsyncIterator[StreamingOutputCallResponse]:
    for parameter in parameters:
        if parameter.interval_us > 0:
            await asyncio.sleep(parameter.interval_us / 1_000_000)
        if compressing and not _flag(parameter.compressed):
            context.disable_next_message_compression()
        yield StreamingOutputCallResponse(payload=_payload(parameter.size))


async def empty_call(request: Empty, context: aio.ServicerContext) -> Empty:
    await _echo_metadata(context)
    return Empty()


async def unary_call(request: SimpleRequest, context: aio.ServicerContext) -> SimpleResponse:
    await _echo_metadata(context, compress=_flag(request.response_compressed))
    await _abort_on_requested_status(context, request.response_status)
    return SimpleResponse(payload=_payload(request.response_size))


async def streaming_output_call(
    request: StreamingOutputCallRequest, context: aio.ServicerContext
) -> AsyncIterator[StreamingOutputCallResponse]:
    compress = any(_flag(p.compressed) for p in request.response_parameters)
    await _echo_metadata(context, compress=compress)
    await _abort_on_requested_status(context, request.response_status)
    async for response in _respond(context, request.response_parameters, compressing=compress):
        yield response


async def streaming_input_call(
    requests: AsyncIterator[StreamingInputCallRequest], context: aio.ServicerContext
) -> StreamingInputCallResponse:
    await _echo_metadata(context)
    total = 0
    async for request in requests:
        if request.payload is not None:
            total += len(request.payload.body)
    return StreamingInputCallResponse(aggregated_payload_size=total)


async def full_duplex_call(
    requests: AsyncIterator[StreamingOutputCallRequest], context: aio.ServicerContext
) -> AsyncIterator[StreamingOutputCallResponse]:
    await _echo_metadata(context)
    async for request in requests:  # each request is answered before the next is read
        await _abort_on_requested_status(context, request.response_status)
        async for response in _respond(context, request.response_parameters, compressing=False):
            yield response


async def half_duplex_call(
    requests: AsyncIterator[StreamingOutputCallRequest], context: aio.ServicerContext
) -> AsyncIterator[StreamingOutputCallResponse]:
    await _echo_metadata(context)
    received = [request async for request in requests]  # all of them, then the answers
    for request in received:
        await _abort_on_requested_status(context, request.response_status)
        async for response in _respond(context, request.response_parameters, compressing=False):
            yield response


def handler() -> grpc.GenericRpcHandler:
    def codec(request: type) -> dict[str, object]:
        return {"request_deserializer": request.FromString, "response_serializer": bytes}

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "EmptyCall": grpc.unary_unary_rpc_method_handler(empty_call, **codec(Empty)),
            "UnaryCall": grpc.unary_unary_rpc_method_handler(unary_call, **codec(SimpleRequest)),
            "CacheableUnaryCall": grpc.unary_unary_rpc_method_handler(
                unary_call, **codec(SimpleRequest)
            ),
            "StreamingOutputCall": grpc.unary_stream_rpc_method_handler(
                streaming_output_call, **codec(StreamingOutputCallRequest)
            ),
            "StreamingInputCall": grpc.stream_unary_rpc_method_handler(
                streaming_input_call, **codec(StreamingInputCallRequest)
            ),
            "FullDuplexCall": grpc.stream_stream_rpc_method_handler(
                full_duplex_call, **codec(StreamingOutputCallRequest)
            ),
            "HalfDuplexCall": grpc.stream_stream_rpc_method_handler(
                half_duplex_call, **codec(StreamingOutputCallRequest)
            ),
        },
    )


def add_test_service(server: aio.Server) -> None:
    server.add_generic_rpc_handlers((handler(),))


async def serve(
    host: str, port: int, add_services: Callable[[aio.Server], None] = add_test_service
) -> None:
    server = aio.server(options=[("grpc.max_receive_message_length", 8 << 20)])
    add_services(server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"listening on {host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(STOP_GRACE)


def main(add_services: Callable[[aio.Server], None] = add_test_service) -> None:
    """Serve what `add_services` adds (TestService by default) until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, add_services))


if __name__ == "__main__":
    main()
