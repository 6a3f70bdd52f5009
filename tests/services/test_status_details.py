"""Rich error details: a betterproto2 handler raises grpclib's GRPCError with
details; greeter packs them into grpc-status-details-bin and grpcio's `rpc_status` reads them.

The details are betterproto2 messages (type URL from betterproto2's message pool) and a google
protobuf message (google.rpc.ErrorInfo, type URL from its DESCRIPTOR), mixed in one Status.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from gen.greet import GreeterBase, HelloReply, HelloRequest
from greeter.server import Server


class Refuser(GreeterBase):
    """SayHello always fails with NOT_FOUND and three details."""

    async def say_hello(self, message: HelloRequest) -> HelloReply:
        details = [
            HelloReply(message=f"no greeting for {message.name}"),
            error_details_pb2.ErrorInfo(reason="NO_GREETING", domain="greeter.test"),
            HelloRequest(name=message.name, count=3),
        ]
        raise GRPCError(Status.NOT_FOUND, "nobody called " + message.name, details)


@pytest_asyncio.fixture
async def target() -> AsyncIterator[str]:
    async with Server([Refuser()], port=0) as server:
        yield f"127.0.0.1:{server.port}"


def call(target: str, name: str) -> grpc.RpcError:
    with grpc.insecure_channel(target) as channel:
        method = channel.unary_unary(
            "/greet.Greeter/SayHello",
            request_serializer=bytes,
            response_deserializer=bytes,
        )
        with pytest.raises(grpc.RpcError) as caught:
            method(bytes(HelloRequest(name=name)), timeout=10)
    return caught.value


@pytest.mark.asyncio
async def test_grpcio_rpc_status_reads_betterproto2_details(target: str) -> None:
    error = await asyncio.to_thread(call, target, "Ada")
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert isinstance(status, status_pb2.Status)
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert status.message == "nobody called Ada"

    first, second, third = status.details
    assert first.type_url == "type.googleapis.com/greet.HelloReply"
    assert HelloReply.parse(first.value) == HelloReply(message="no greeting for Ada")

    assert second.type_url == "type.googleapis.com/google.rpc.ErrorInfo"
    info = error_details_pb2.ErrorInfo()
    assert second.Unpack(info)
    assert (info.reason, info.domain) == ("NO_GREETING", "greeter.test")

    assert third.type_url == "type.googleapis.com/greet.HelloRequest"
    assert HelloRequest.parse(third.value) == HelloRequest(name="Ada", count=3)


@pytest.mark.asyncio
async def test_details_survive_a_non_ascii_message(target: str) -> None:
    error = await asyncio.to_thread(call, target, "Zoë ☃")
    status = rpc_status.from_call(error)
    assert status is not None
    assert status.message == "nobody called Zoë ☃"
    assert HelloRequest.parse(status.details[2].value).name == "Zoë ☃"
