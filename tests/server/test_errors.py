"""Handler failures and bad requests (message count, framing, headers, compression), on the wire.

Seen by the raw client (tests.support.rawclient): a bad request ends its own stream with the
right HTTP status, gRPC status or RST_STREAM, and the connection keeps serving.
"""

from __future__ import annotations

import base64
import gzip
import logging

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_pb2 import HealthCheckResponse

from gen.greet import HelloReply, HelloRequest
from greeter.server import Server, current_rpc
from greeter.services.greeter import Greeter
from greeter.wire import protowire
from greeter.wire.framing import encode_message
from tests.support.h2peer import PROTOCOL_ERROR, StreamResult, request_headers
from tests.support.probe import path
from tests.support.rawclient import RawClient

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]

SAY_HELLO = "/greet.Greeter/SayHello"
STEP = 2.0


def hello(name: str) -> bytes:
    return bytes(HelloRequest(name=name).SerializeToString())


def reply_messages(result: StreamResult) -> list[str]:
    return [HelloReply.FromString(m).message for m in result.messages()]


def assert_ok_reply(result: StreamResult, expected: str) -> None:
    assert result.http_status == 200
    assert result.status == Status.OK.value, result.message
    assert reply_messages(result) == [expected]


# -- handler failures -------------------------------------------------------------------------


async def test_grpc_error_status_and_message_reach_the_stub(channel: Channel) -> None:
    async with channel.request(
        path("Fail"), Cardinality.UNARY_UNARY, HelloRequest, HelloReply, timeout=STEP
    ) as call:
        await call.send_message(HelloRequest(name="f"), end=True)
        with pytest.raises(GRPCError) as caught:
            await call.recv_message()
    assert caught.value.status == Status.NOT_FOUND
    assert caught.value.message == "no greeting for you"


async def test_grpc_error_details_are_a_google_rpc_status(raw: RawClient) -> None:
    result = await raw.unary(path("Fail"), hello("f"))
    assert result.status == Status.NOT_FOUND.value
    assert result.message == "no greeting for you"
    encoded = result.trailer("grpc-status-details-bin")
    assert encoded is not None
    status = {f.number: f for f in protowire.iter_fields(_b64decode(encoded))}
    assert status[1].value == Status.NOT_FOUND.value  # code
    assert status[2].value == b"no greeting for you"  # message
    anys = [f for f in protowire.iter_fields(_b64decode(encoded)) if f.number == 3]
    assert len(anys) == 1
    assert isinstance(anys[0].value, bytes)
    packed = {f.number: f.value for f in protowire.iter_fields(anys[0].value)}
    assert packed[1] == b"type.googleapis.com/grpc.health.v1.HealthCheckResponse"
    assert isinstance(packed[2], bytes)
    detail = HealthCheckResponse.FromString(packed[2])
    assert detail.status == HealthCheckResponse.SERVING


def _b64decode(value: str) -> bytes:
    # -bin values may be sent with or without padding (PROTOCOL-HTTP2.md).
    return base64.b64decode(value + "=" * (-len(value) % 4))


async def test_other_exception_is_unknown_without_traceback_and_logged(
    raw: RawClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="greeter.server")
    result = await raw.unary(path("Crash"), hello("c"))
    assert result.status == Status.UNKNOWN.value
    message = result.message or ""
    assert "Traceback" not in message
    assert "secret internal detail" not in message
    assert "RuntimeError" not in message
    records = [r for r in caplog.records if r.name == "greeter.server"]
    assert records, "no log record on greeter.server"
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in records)


# -- request message count and framing --------------------------------------------------------


async def test_unary_with_no_message_is_unimplemented(raw: RawClient) -> None:
    stream_id = raw.start_request(SAY_HELLO, end_stream=True)
    result = await raw.wait(stream_id)
    assert result.status == Status.UNIMPLEMENTED.value


async def test_unary_with_no_message_then_empty_end_is_unimplemented(raw: RawClient) -> None:
    stream_id = raw.start_request(SAY_HELLO)
    await raw.end_stream(stream_id)
    result = await raw.wait(stream_id)
    assert result.status == Status.UNIMPLEMENTED.value


async def test_unary_with_two_messages_is_unimplemented(raw: RawClient) -> None:
    stream_id = raw.start_request(SAY_HELLO)
    await raw.send_message(stream_id, hello("one"))
    await raw.send_message(stream_id, hello("two"), end_stream=True)
    result = await raw.wait(stream_id)
    assert result.status == Status.UNIMPLEMENTED.value
    assert reply_messages(result) == []


async def test_zero_length_data_is_not_end_of_stream(raw: RawClient) -> None:
    framed = encode_message(hello("split"))
    half = len(framed) // 2
    stream_id = raw.start_request(SAY_HELLO)
    await raw.send_data(stream_id, framed[:half])
    await raw.send_data(stream_id, b"")  # empty DATA, no END_STREAM
    await raw.send_data(stream_id, framed[half:])
    await raw.end_stream(stream_id)
    assert_ok_reply(await raw.wait(stream_id), "Hello split")


async def test_undecodable_request_is_internal(raw: RawClient) -> None:
    result = await raw.unary(SAY_HELLO, b"\xff\xff\xff\xff")
    assert result.status == Status.INTERNAL.value
    assert reply_messages(result) == []


@pytest.mark.parametrize(
    "bad_path", ["/greet.Nobody/SayHello", "/greet.Greeter/SayGoodbye", "/no-slashes"]
)
async def test_unknown_service_or_method_is_unimplemented(raw: RawClient, bad_path: str) -> None:
    result = await raw.unary(bad_path, hello("x"))
    assert result.http_status == 200
    assert result.status == Status.UNIMPLEMENTED.value


# -- headers ----------------------------------------------------------------------------------


async def test_content_type_text_plain_is_http_415(raw: RawClient) -> None:
    headers = [(k, "text/plain" if k == "content-type" else v) for k, v in _base_headers()]
    stream_id = raw.start_request(headers=headers)
    await raw.send_message(stream_id, hello("x"), end_stream=True)
    result = await raw.wait(stream_id)
    assert result.http_status == 415


async def test_method_get_is_http_405(raw: RawClient) -> None:
    headers = [(k, "GET" if k == ":method" else v) for k, v in _base_headers()]
    stream_id = raw.start_request(headers=headers, end_stream=True)
    result = await raw.wait(stream_id)
    assert result.http_status == 405


async def test_te_gzip_resets_the_stream_and_connection_stays_usable(raw: RawClient) -> None:
    headers = [(k, "gzip" if k == "te" else v) for k, v in _base_headers()]
    stream_id = raw.start_request(headers=headers)
    await raw.send_message(stream_id, hello("x"), end_stream=True)
    result = await raw.wait(stream_id)
    assert result.reset_code == PROTOCOL_ERROR
    assert result.headers is None
    assert not raw.goaways
    assert_ok_reply(await raw.unary(SAY_HELLO, hello("after")), "Hello after")


@pytest.mark.parametrize("timeout", ["1x", "123456789S"])
async def test_malformed_grpc_timeout_is_internal(raw: RawClient, timeout: str) -> None:
    result = await raw.unary(SAY_HELLO, hello("x"), extra=[("grpc-timeout", timeout)])
    assert result.status == Status.INTERNAL.value
    assert reply_messages(result) == []


# -- compression ------------------------------------------------------------------------------


async def test_gzip_compressed_request_is_decompressed(raw: RawClient) -> None:
    stream_id = raw.start_request(SAY_HELLO, extra=[("grpc-encoding", "gzip")])
    await raw.send_message(stream_id, gzip.compress(hello("zipped")), compressed=True)
    await raw.end_stream(stream_id)
    result = await raw.wait(stream_id)
    assert_ok_reply(result, "Hello zipped")
    assert result.data[0] == 0  # the reply itself is not compressed


async def test_unknown_grpc_encoding_is_unimplemented_with_accept_encoding(raw: RawClient) -> None:
    stream_id = raw.start_request(SAY_HELLO, extra=[("grpc-encoding", "snappy")])
    await raw.send_message(stream_id, hello("x"), compressed=True, end_stream=True)
    result = await raw.wait(stream_id)
    assert result.status == Status.UNIMPLEMENTED.value
    accepted = result.header("grpc-accept-encoding") or result.trailer("grpc-accept-encoding")
    assert accepted is not None
    assert "gzip" in accepted.split(",")
    assert "snappy" not in accepted


async def test_compressed_flag_without_grpc_encoding_is_internal(raw: RawClient) -> None:
    stream_id = raw.start_request(SAY_HELLO)
    await raw.send_message(stream_id, gzip.compress(hello("x")), compressed=True)
    await raw.end_stream(stream_id)
    result = await raw.wait(stream_id)
    assert result.status == Status.INTERNAL.value
    assert reply_messages(result) == []


def _base_headers() -> list[tuple[str, str]]:
    return request_headers(SAY_HELLO)


class ReservedTrailers(Greeter):
    async def say_hello(self, message: HelloRequest) -> HelloReply:
        current_rpc().set_trailing_metadata([("grpc-status", "0")])  # reserved: cannot be sent
        raise GRPCError(Status.NOT_FOUND, "nobody")


async def test_invalid_trailing_metadata_still_ends_the_rpc(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before: the trailers raised ValueError inside the driver and the RPC never ended (the
    # client waited for its deadline).
    caplog.set_level(logging.ERROR, logger="greeter.server")
    async with Server([ReservedTrailers()], port=0) as server:
        client = await RawClient.connect(server.port)
        try:
            result = await client.unary("/greet.Greeter/SayHello", bytes(HelloRequest(name="x")))
        finally:
            await client.close()
    assert (result.status, result.message) == (Status.INTERNAL.value, "invalid trailing metadata")
    assert any("invalid trailing metadata" in r.getMessage() for r in caplog.records)
