"""Connection time limits (greeter.server.watchdog) and the connection cap, in-process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import PingFrame

from gen.greet import HelloReply, HelloRequest
from greeter.core.events import RequestReceived
from greeter.server import Server, ServerConfig
from greeter.server.config import Timeouts
from greeter.server.driver import HANDLERS
from greeter.services.greeter import Greeter
from tests.support.probe import Probe, path
from tests.support.rawclient import RawClient

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]
NO_LIMITS = Timeouts(handshake=None, idle=None, keepalive_time=None, write_stall=None)


@asynccontextmanager
async def serving(**config: object) -> AsyncIterator[Server]:
    async with Server([Greeter()], port=0, config=ServerConfig(**config)) as server:  # type: ignore[arg-type]
        yield server


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Read until the server closes the connection; return everything it sent."""
    received = bytearray()
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(65536):
            received += chunk
    return bytes(received)


async def still_served(client: RawClient, name: str) -> None:
    """One SayHello on `client` is answered; then the client closes."""
    result = await client.unary("/greet.Greeter/SayHello", bytes(HelloRequest(name=name)))
    assert HelloReply.FromString(result.messages()[0]).message == f"Hello {name}"
    await client.close()


async def test_a_connection_without_preface_is_closed_after_the_handshake_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeouts = Timeouts(handshake=0.2, idle=None, keepalive_time=None, write_stall=None)
    async with serving(timeouts=timeouts) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"PRI * HTTP")  # a slowloris: part of the preface, then nothing
        await closed_by_server(reader)
        writer.close()
    assert "no HTTP/2 preface within 0.2 s" in caplog.text


async def test_a_complete_preface_disarms_the_handshake_timeout() -> None:
    timeouts = Timeouts(handshake=0.2, idle=None, keepalive_time=None, write_stall=None)
    async with serving(timeouts=timeouts) as server:
        client = await RawClient.connect(server.port)
        await asyncio.sleep(0.5)  # not synchronisation: outlive the 0.2 s handshake limit
        result = await client.unary("/greet.Greeter/SayHello", bytes(HelloRequest(name="x")))
        assert HelloReply.FromString(result.messages()[0]).message == "Hello x"
        assert not client.eof.is_set()
        await client.close()


async def test_an_idle_connection_gets_goaway_and_is_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeouts = Timeouts(handshake=None, idle=0.3, keepalive_time=None, write_stall=None)
    async with serving(timeouts=timeouts) as server:
        client = await RawClient.connect(server.port)
        await client.unary("/greet.Greeter/SayHello", bytes(HelloRequest(name="x")))
        await client.wait_closed_by_server()
        assert client.goaways and client.goaways[-1].error_code == ErrorCodes.NO_ERROR
        assert client.goaways[-1].additional_data == b"idle for 0.3 s"
    assert "idle for 0.3 s" in caplog.text


async def test_at_the_connection_cap_the_longest_idle_connection_makes_room(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 12: idle connections at the cap no longer lock a newcomer out."""
    async with serving(timeouts=NO_LIMITS, max_connections=2) as server:
        oldest = await RawClient.connect(server.port)
        await oldest.unary("/greet.Greeter/SayHello", bytes(HelloRequest(name="o")))
        recent = await RawClient.connect(server.port)
        await recent.unary("/greet.Greeter/SayHello", bytes(HelloRequest(name="r")))
        newcomer = await RawClient.connect(server.port)
        await oldest.wait_until(lambda: bool(oldest.goaways))
        assert oldest.goaways[0].error_code == ErrorCodes.NO_ERROR
        assert oldest.goaways[0].additional_data.startswith(b"connection cap (2) reached: idle")
        await oldest.wait_closed_by_server()
        for client in (recent, newcomer):  # neither noticed
            assert not client.goaways
            await still_served(client, "y")
    assert "connection cap (2) reached" in caplog.text


async def test_a_newcomer_is_refused_only_when_every_connection_is_busy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(timeouts=NO_LIMITS, max_connections=2) as server:
        busy = [await RawClient.connect(server.port) for _ in range(2)]
        for client in busy:  # a client-streaming call left open: an RPC in progress
            stream_id = client.start_request("/greet.Greeter/LotsOfGreetings")
            await client.send_message(stream_id, bytes(HelloRequest(name="b")))
        for client in busy:
            await client.ping()  # a round trip: the server has read the request before it
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        refused = await closed_by_server(reader)
        writer.close()
        assert b"too many connections" in refused  # the GOAWAY's debug data
        for client in busy:
            assert not client.goaways
            await client.close()
    assert "2 connections open, every one with RPCs" in caplog.text


async def test_a_bug_in_the_driver_costs_only_its_connection(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="greeter.server")
    async with serving(timeouts=NO_LIMITS) as server:
        healthy = await RawClient.connect(server.port)

        def broken(driver: object, event: object) -> None:
            raise RuntimeError("simulated bug")

        monkeypatch.setitem(HANDLERS, RequestReceived, broken)
        healthy.start_request("/greet.Greeter/SayHello")
        await healthy.wait_closed_by_server()
        assert healthy.goaways[-1].error_code == ErrorCodes.INTERNAL_ERROR
        monkeypatch.undo()  # the bug is gone again: a new connection must be served
        other = await RawClient.connect(server.port)  # the server itself is fine
        await still_served(other, "z")
    assert "simulated bug" in caplog.text


async def test_keepalive_closes_a_peer_that_does_not_answer_pings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeouts = Timeouts(handshake=None, idle=None, keepalive_time=0.2, keepalive_timeout=0.3)
    async with serving(timeouts=timeouts) as server:
        loop = asyncio.get_running_loop()
        silent = await RawClient.connect(server.port, ack_pings=False)
        connected = loop.time()
        await silent.wait_closed_by_server()
        # Not before keepalive_time (silence) + keepalive_timeout (no ACK): 0.5 s.
        assert loop.time() - connected >= 0.45
        pings = [f for f in silent.frames if isinstance(f, PingFrame) and "ACK" not in f.flags]
        assert len(pings) == 1, "one keepalive PING, then the deadline for its ACK"
        [goaway] = silent.goaways
        assert goaway.error_code == ErrorCodes.NO_ERROR
        assert goaway.additional_data == b"keepalive PING not acknowledged within 0.3 s"
    assert "keepalive PING not acknowledged within 0.3 s" in caplog.text


async def test_keepalive_keeps_a_peer_that_answers() -> None:
    timeouts = Timeouts(handshake=None, idle=None, keepalive_time=0.1, keepalive_timeout=0.2)
    async with serving(timeouts=timeouts) as server:
        client = await RawClient.connect(server.port)  # acknowledges PINGs

        def keepalive_pings() -> int:
            return sum(
                1 for f in client.frames if isinstance(f, PingFrame) and "ACK" not in f.flags
            )

        await client.wait_until(lambda: keepalive_pings() >= 3)  # ~3 timeouts' worth: alive
        result = await client.unary("/greet.Greeter/SayHello", bytes(HelloRequest(name="k")))
        assert HelloReply.FromString(result.messages()[0]).message == "Hello k"
        await client.close()


# -- max connection age (gRFC A9) ----------------------------------------------------------------


async def test_max_connection_age_sends_goaway_and_lets_the_rpc_finish() -> None:
    probe = Probe()
    timeouts = Timeouts(handshake=None, idle=None, keepalive_time=None, max_connection_age=0.5)
    config = ServerConfig(timeouts=timeouts)
    async with Server([Greeter(), probe], port=0, config=config) as server:
        loop = asyncio.get_running_loop()
        client = await RawClient.connect(server.port)
        opened = loop.time()
        stream_id = client.start_request(path("Slow"))
        await client.send_message(stream_id, bytes(HelloRequest(name="a")), end_stream=True)
        await client.wait_until(lambda: bool(client.goaways))
        aged = loop.time() - opened
        assert 0.45 <= aged < 2.0, aged  # 0.5 s ± 10 %: not before 0.45 s
        assert client.goaways[0].additional_data == b"max connection age 0.5 s"
        assert client.goaways[0].error_code == ErrorCodes.NO_ERROR
        probe.release.set()  # the RPC in flight still finishes, then the connection closes
        done = await client.wait(stream_id)
        assert dict(done.trailers or [])["grpc-status"] == "0"
        await client.wait_closed_by_server()


async def test_max_connection_age_grace_cancels_what_is_still_running() -> None:
    probe = Probe()
    timeouts = Timeouts(
        handshake=None,
        idle=None,
        keepalive_time=None,
        max_connection_age=0.2,
        max_connection_age_grace=0.5,
    )
    config = ServerConfig(timeouts=timeouts)
    async with Server([Greeter(), probe], port=0, config=config) as server:
        loop = asyncio.get_running_loop()
        client = await RawClient.connect(server.port)
        stream_id = client.start_request(path("Slow"))
        await client.send_message(stream_id, bytes(HelloRequest(name="a")), end_stream=True)
        await client.wait_until(lambda: bool(client.goaways))
        goaway_at = loop.time()
        await client.wait_closed_by_server()
        assert loop.time() - goaway_at >= 0.45  # the grace, not sooner
        await asyncio.wait_for(probe.cancelled.wait(), 5)
        assert client.goaways[-1].additional_data == b"max connection age grace of 0.5 s over"
