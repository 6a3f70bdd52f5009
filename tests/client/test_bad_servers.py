"""greeter's Channel against servers that misbehave: every call ends with a GRPCError whose status
the spec names, quickly, and calls on other streams go on.

Each server is an asyncio socket server around a server-side h2 connection that the test scripts
(`Script`): what it answers to each request.
"""

from __future__ import annotations

import asyncio
import time

import h2.config
import h2.connection
import h2.events
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from gen.greet import GreeterStub, HelloRequest
from greeter.client import Channel
from greeter.wire.framing import encode_message
from tests.support.scripted import GRPC, scripted_server

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]


async def call(target: str) -> GRPCError:
    async with Channel(target) as channel:
        started = time.monotonic()
        with pytest.raises(GRPCError) as caught:
            await GreeterStub(channel).say_hello(HelloRequest(name="x"), timeout=10)
        assert time.monotonic() - started < 5, "the call waited for its deadline"
        return caught.value


async def test_garbage_frames_end_the_call_unavailable() -> None:
    async def garbage(conn: h2.connection.H2Connection, sid: int, w: asyncio.StreamWriter) -> None:
        w.write(b"\x00\x00\x05\x63\x00\x00\x00\x00\x01" + b"junk!" * 1000)

    async with scripted_server(garbage) as target:
        error = await call(target)
    assert error.status == Status.UNAVAILABLE
    assert "frame" in (error.message or "")


async def test_a_connection_cut_mid_call_is_unavailable() -> None:
    async def cut(conn: h2.connection.H2Connection, sid: int, w: asyncio.StreamWriter) -> None:
        conn.send_headers(sid, GRPC)
        w.write(conn.data_to_send())
        w.transport.abort()

    async with scripted_server(cut) as target:
        error = await call(target)
    assert error.status == Status.UNAVAILABLE
    assert "connection lost" in (error.message or "")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([(":status", "404"), ("content-type", "text/plain")], Status.UNIMPLEMENTED),
        ([(":status", "200"), ("content-type", "text/html")], Status.UNKNOWN),
        ([*GRPC, ("grpc-message", "where is my status")], Status.UNKNOWN),
    ],
    ids=["http-404", "html", "no-grpc-status"],
)
async def test_responses_that_are_not_grpc(headers: list[tuple[str, str]], status: Status) -> None:
    async def answer(conn: h2.connection.H2Connection, sid: int, w: asyncio.StreamWriter) -> None:
        conn.send_headers(sid, headers, end_stream=True)

    async with scripted_server(answer) as target:
        error = await call(target)
    assert error.status == status


async def test_a_bad_message_fails_one_call_and_the_next_call_is_served() -> None:
    answers = iter([b"\x02garbage-flag", encode_message(b"\n\x07Hello y")])

    async def answer(conn: h2.connection.H2Connection, sid: int, w: asyncio.StreamWriter) -> None:
        conn.send_headers(sid, GRPC)
        conn.send_data(sid, next(answers))
        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)

    async with scripted_server(answer) as target, Channel(target) as channel:
        stub = GreeterStub(channel)
        with pytest.raises(GRPCError) as caught:
            await stub.say_hello(HelloRequest(name="x"), timeout=5)
        assert caught.value.status == Status.INTERNAL
        assert "Compressed-Flag" in (caught.value.message or "")
        assert (await stub.say_hello(HelloRequest(name="y"), timeout=5)).message == "Hello y"
