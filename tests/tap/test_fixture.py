"""The ``wire_log`` pytest fixture (greeter.tap.pytest_plugin, a pytest11 entry point) on a real
server: grpclib's Channel and the generated GreeterStub against ``Server(tap=wire_log.tap())``.

The fixture is not imported here: it comes from the entry point, as in any project that
installs greeter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from grpclib.client import Channel

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.server import Server
from greeter.services.greeter import Greeter
from greeter.tap import Direction, FrameRecord
from greeter.tap.wirelog import WireLog

pytestmark = pytest.mark.timeout(10)

STEP = 2.0
DEFAULT_MAX_FRAME_SIZE = 16_384
SAY_HELLO = "/greet.Greeter/SayHello"
LOTS_OF_REPLIES = "/greet.Greeter/LotsOfReplies"


@pytest_asyncio.fixture
async def stub(wire_log: WireLog) -> AsyncIterator[GreeterStub]:
    async with Server([Greeter()], port=0, tap=wire_log.tap(types="gen.greet")) as server:
        channel = Channel("127.0.0.1", server.port)
        try:
            yield GreeterStub(channel)
        finally:
            channel.close()


def peer_max_frame_size(wire_log: WireLog) -> int:
    """SETTINGS_MAX_FRAME_SIZE from the client's SETTINGS (the last value wins), else 16,384."""
    value = DEFAULT_MAX_FRAME_SIZE
    for frame in wire_log.frames("SETTINGS", direction="in"):
        for name, setting in frame.settings or ():
            if name == "MAX_FRAME_SIZE":
                value = setting
    return value


@pytest.mark.asyncio
async def test_unary_trailers_frames_and_decoded_request(
    stub: GreeterStub, wire_log: WireLog
) -> None:
    name = "w" * 40_000  # a reply bigger than one DATA frame
    reply = await stub.say_hello(HelloRequest(name=name), timeout=STEP)
    assert reply.message == f"Hello {name}"

    (start,) = wire_log.rpcs("start", SAY_HELLO)
    assert wire_log.trailers(start.stream_id)["grpc-status"] == "0"
    (end,) = wire_log.rpcs("end")
    assert (end.status, end.requests, end.responses) == (0, 1, 1)

    limit = peer_max_frame_size(wire_log)
    sent = wire_log.frames("DATA", direction="out", stream_id=start.stream_id)
    assert len(sent) > 1, "the reply should have needed several DATA frames"
    assert all(frame.length <= limit for frame in sent), [f.length for f in sent]

    (request,) = wire_log.messages(SAY_HELLO, "in")
    assert request.decoded == HelloRequest(name=name)
    (response,) = wire_log.messages("/greet.Greeter/*", "out")
    assert response.decoded == HelloReply(message=f"Hello {name}")


@pytest.mark.asyncio
async def test_server_stream_has_count_response_messages(
    stub: GreeterStub, wire_log: WireLog
) -> None:
    count = 4
    replies = [r async for r in stub.lots_of_replies(HelloRequest(name="n", count=count))]
    assert len(replies) == count

    responses = wire_log.messages(LOTS_OF_REPLIES, direction="out")
    assert [m.index for m in responses] == list(range(1, count + 1))
    assert [m.decoded for m in responses] == [
        HelloReply(message=f"Hello n #{i}") for i in range(1, count + 1)
    ]
    (request,) = wire_log.messages(LOTS_OF_REPLIES, direction="in")
    assert request.decoded == HelloRequest(name="n", count=count)
    (end,) = wire_log.rpcs("end", LOTS_OF_REPLIES)
    assert wire_log.trailers(end.stream_id) == {"grpc-status": "0"}


@pytest.mark.asyncio
async def test_connection_events_and_clear(wire_log: WireLog) -> None:
    async with Server([Greeter()], port=0, tap=wire_log.tap()) as server:
        channel = Channel("127.0.0.1", server.port)
        try:
            await GreeterStub(channel).say_hello(HelloRequest(name="x"), timeout=STEP)
        finally:
            channel.close()
        for _ in range(100):  # the server notices the closed socket on its next loop turn
            if wire_log.connection_events("close"):
                break
            await asyncio.sleep(0.01)
    (opened,) = wire_log.connection_events("open")
    assert opened.peer is not None and opened.peer.startswith("127.0.0.1:")
    assert len(wire_log.connection_events("close")) == 1
    # Without types the request is shown as wire fields: field 1 (name), LEN, b"x".
    (request,) = wire_log.messages(direction="in")
    assert request.decoded is None
    assert request.fields is not None and request.fields[0].value == b"x"

    wire_log.clear()
    assert len(wire_log) == 0


def header_block(direction: Direction, stream_id: int, *pairs: tuple[str, str]) -> FrameRecord:
    return FrameRecord(1, direction, 0.0, stream_id, "HEADERS", ("END_HEADERS",), 4, 9, pairs)


def test_trailers_follow_the_role_of_the_tap(wire_log: WireLog) -> None:
    factory = wire_log.tap(role="client")
    assert (factory.emit, factory.role) == (wire_log, "client")
    with pytest.raises(LookupError):
        wire_log.trailers(1)
    # A client-role tap: the request leaves ("out"), the response arrives ("in").
    wire_log(header_block("out", 1, (":path", SAY_HELLO)))
    with pytest.raises(LookupError):
        wire_log.trailers(1)
    wire_log(header_block("in", 1, (":status", "200")))
    wire_log(header_block("out", 1, ("x-request-trailer", "ignored")))
    wire_log(header_block("in", 1, ("grpc-status", "5"), ("grpc-message", "gone")))
    assert wire_log.trailers(1) == {"grpc-status": "5", "grpc-message": "gone"}
    assert len(wire_log.frames("HEADERS", direction="in", stream_id=1)) == 2
