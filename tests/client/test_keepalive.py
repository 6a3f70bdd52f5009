"""Client keepalive (gRFC A8): PINGs while calls are in flight, a silent server is dropped, and a
server's "too_many_pings" doubles the interval."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from gen.greet import HelloReply, HelloRequest
from greeter.client import Channel, ClientConfig
from greeter.core.config import CoreConfig
from greeter.server import Server, ServerConfig
from greeter.tap.wirelog import WireLog
from tests.support.probe import Probe, path

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]


async def forever(channel: Channel, probe: Probe) -> asyncio.Task[None]:
    async def call() -> None:
        stream = channel.request(path("Forever"), Cardinality.UNARY_UNARY, HelloRequest, HelloReply)
        async with stream:
            await stream.send_message(HelloRequest(name="k"), end=True)
            await stream.recv_message()

    task = asyncio.create_task(call())
    await asyncio.wait_for(probe.started.wait(), 5)
    return task


async def test_pings_keep_a_call_alive_on_a_permissive_server() -> None:
    probe, log = Probe(), WireLog()
    limits = CoreConfig(min_ping_interval=0.0)
    config = ClientConfig(keepalive_time=0.05, keepalive_timeout=2)
    async with Server([probe], port=0, config=ServerConfig(limits=limits, grace_period=0.2)) as s:
        channel = Channel(f"127.0.0.1:{s.port}", config=config, tap=log.tap(role="client"))
        task = await forever(channel, probe)
        async with asyncio.timeout(5):
            while len(log.frames("PING", direction="out")) < 3:
                await asyncio.sleep(0.05)
        acks = [f for f in log.frames("PING", direction="in") if "ACK" in f.flags]
        assert acks, "the server acknowledged no PING"
        assert not task.done()
        task.cancel()
        channel.close()


async def test_too_many_pings_doubles_the_keepalive_time() -> None:
    probe = Probe()
    config = ClientConfig(keepalive_time=0.05)
    async with Server([probe], port=0, config=ServerConfig(grace_period=0.2)) as server:
        channel = Channel(f"127.0.0.1:{server.port}", config=config)
        task = await forever(channel, probe)
        with pytest.raises(GRPCError) as caught:
            await asyncio.wait_for(task, 10)  # the server's GOAWAY ends the connection
        assert caught.value.status == Status.UNAVAILABLE
        assert channel.keepalive_time == 0.1
        channel.close()


@pytest_asyncio.fixture
async def silent_server() -> AsyncIterator[str]:
    """Answers the HTTP/2 handshake, then never reads again (so never ACKs a PING)."""
    import h2.config  # noqa: PLC0415
    import h2.connection  # noqa: PLC0415

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        conn.receive_data(await reader.read(65536))
        writer.write(conn.data_to_send())
        await asyncio.Event().wait()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()


async def test_an_unanswered_ping_drops_the_connection(silent_server: str) -> None:
    config = ClientConfig(keepalive_time=0.05, keepalive_timeout=0.2)
    async with Channel(silent_server, config=config) as channel:
        stream = channel.request(path("Forever"), Cardinality.UNARY_UNARY, HelloRequest, HelloReply)
        with pytest.raises(GRPCError) as caught:
            async with stream:
                await stream.send_message(HelloRequest(name="k"), end=True)
                await stream.recv_message()
    assert caught.value.status == Status.UNAVAILABLE
    assert "keepalive timeout" in (caught.value.message or "")
