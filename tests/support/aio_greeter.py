"""greet.Greeter on grpc.aio (C-core's asyncio server), for tests and the benchmark harness.

Not a test module. The same semantics as greeter's Greeter, with the betterproto2 messages of
gen.greet as grpc's (de)serializers, so only the transport differs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from gen.greet import HelloReply, HelloRequest


async def say_hello(request: HelloRequest, context: Any) -> HelloReply:
    return HelloReply(message=f"Hello {request.name}")


async def lots_of_replies(request: HelloRequest, context: Any) -> AsyncIterator[HelloReply]:
    for index in range(1, request.count + 1):
        yield HelloReply(message=f"Hello {request.name} #{index}")


async def lots_of_greetings(requests: AsyncIterator[HelloRequest], context: Any) -> HelloReply:
    names = [request.name async for request in requests]
    return HelloReply(message="Hello " + ", ".join(names))


async def bidi_hello(
    requests: AsyncIterator[HelloRequest], context: Any
) -> AsyncIterator[HelloReply]:
    async for request in requests:
        yield HelloReply(message=f"Hello {request.name}")


def handler() -> grpc.GenericRpcHandler:
    """greet.Greeter's four methods as a grpc generic handler."""
    codec: dict[str, Any] = {
        "request_deserializer": HelloRequest.FromString,
        "response_serializer": bytes,
    }
    handlers = {
        "SayHello": grpc.unary_unary_rpc_method_handler(say_hello, **codec),
        "LotsOfReplies": grpc.unary_stream_rpc_method_handler(lots_of_replies, **codec),
        "LotsOfGreetings": grpc.stream_unary_rpc_method_handler(lots_of_greetings, **codec),
        "BidiHello": grpc.stream_stream_rpc_method_handler(bidi_hello, **codec),
    }
    return grpc.method_handlers_generic_handler("greet.Greeter", handlers)


def greeter_server(port: int = 0) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server with Greeter on 127.0.0.1:`port` (0: a free one); not started yet."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([handler()])
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    return server, bound


@asynccontextmanager
async def running_greeter_server() -> AsyncIterator[tuple[grpc.aio.Server, str]]:
    """A started grpc.aio Greeter in this loop; yields (server, target); stopped after."""
    server, port = greeter_server()
    await server.start()
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
