"""Back-pressure, message size limits and the concurrent-stream limit, with a raw HTTP/2 client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from grpclib.const import Status
from hyperframe.frame import SettingsFrame

from gen.greet import HelloReply, HelloRequest
from greeter.core.config import CoreConfig
from greeter.server import Server, ServerConfig, Service
from greeter.services.greeter import Greeter
from tests.support.h2peer import DEFAULT_WINDOW, REFUSED_STREAM
from tests.support.probe import BLOCK, Probe, path
from tests.support.rawclient import RawClient

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]

SAY_HELLO = "/greet.Greeter/SayHello"
STEP = 2.0


def hello(name: str) -> bytes:
    return bytes(HelloRequest(name=name).SerializeToString())


def replies(data: list[bytes]) -> list[str]:
    return [HelloReply.FromString(m).message for m in data]


@asynccontextmanager
async def serving(limits: CoreConfig, *services: Service) -> AsyncIterator[Server]:
    config = ServerConfig(limits=limits, grace_period=0.5)
    async with Server([Greeter(), *services], port=0, config=config) as server:
        yield server


@pytest.mark.parametrize(
    "initial_window",
    [1000, 1024 * 1024],
    ids=["stream-window-1000", "connection-window-65535"],
)
async def test_send_message_waits_for_the_peer_window(
    server: Server, probe: Probe, initial_window: int
) -> None:
    # The connection window cannot be lowered below RFC 9113's 65,535 by SETTINGS, so a large
    # stream window makes the connection window the one that closes.
    window = min(initial_window, DEFAULT_WINDOW)
    client = await RawClient.connect(
        server.port, initial_window_size=initial_window, auto_window_update=False
    )
    try:
        stream_id = client.start_request(path("Flood"))
        await client.send_message(stream_id, hello("f"), end_stream=True)
        result = client.streams[stream_id]
        await client.wait_until(lambda: len(result.data) >= window, STEP)
        # Two round trips through the server's loop: a PING and a unary RPC on the same
        # connection. A handler that buffered instead of waiting would have raced ahead by now.
        await client.ping()
        if window < DEFAULT_WINDOW:
            other = await client.unary(SAY_HELLO, hello("meanwhile"))
            assert replies(other.messages()) == ["Hello meanwhile"]
        assert len(result.data) == window, "server sent beyond the flow-control window"
        fit = -(-window // (BLOCK + 8))  # messages (partly) inside the window
        assert probe.sent <= fit + 1, f"handler produced {probe.sent} messages, {fit} fit"
        assert probe.returned <= fit
        assert not result.finished

        client.open_window()
        final = await client.wait(stream_id, STEP)
    finally:
        await client.close()
    assert final.status == Status.OK.value
    messages = replies(final.messages())
    assert len(messages) == probe.flood_count
    for index, message in enumerate(messages):
        assert message == f"{index:08d}" * (BLOCK // 8)


async def test_message_over_the_receive_limit_is_refused_from_its_prefix() -> None:
    async with serving(CoreConfig(max_receive_message_size=1024)) as server:
        client = await RawClient.connect(server.port)
        try:
            fits = await client.unary(SAY_HELLO, hello("x" * 900))
            assert replies(fits.messages()) == ["Hello " + "x" * 900]

            stream_id = client.start_request(SAY_HELLO)
            # Only the 5-byte prefix announcing 2000 bytes and a few body bytes; no END_STREAM.
            await client.send_data(stream_id, b"\x00" + (2000).to_bytes(4, "big") + b"\x0a\x03")
            result = await client.wait(stream_id, STEP)
            assert result.status == Status.RESOURCE_EXHAUSTED.value
            assert result.messages() == []

            again = await client.unary(SAY_HELLO, hello("again"))
            assert replies(again.messages()) == ["Hello again"]
        finally:
            await client.close()


async def test_stream_over_the_limit_is_refused_connection_survives() -> None:
    async with serving(CoreConfig(max_concurrent_streams=2)) as server:
        client = await RawClient.connect(server.port)
        try:
            assert client.server_settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 2
            first = client.start_request(SAY_HELLO)
            second = client.start_request(SAY_HELLO)
            third = client.start_request(SAY_HELLO)
            refused = await client.wait(third, STEP)
            assert refused.reset_code == REFUSED_STREAM
            assert refused.headers is None

            await client.send_message(first, hello("one"), end_stream=True)
            await client.send_message(second, hello("two"), end_stream=True)
            done = [await client.wait(first, STEP), await client.wait(second, STEP)]
            assert [replies(r.messages()) for r in done] == [["Hello one"], ["Hello two"]]
            assert all(r.status == Status.OK.value for r in done)

            fourth = await client.unary(SAY_HELLO, hello("four"))
            assert replies(fourth.messages()) == ["Hello four"]
            assert not client.goaways
            assert not client.eof.is_set()
        finally:
            await client.close()
