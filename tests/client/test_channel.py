"""greeter's Channel under the generated stubs, against greeter's server, grpcio and grpc-js.

In-process servers run in the test's own loop (port 0); grpcio's server runs in this process on
its own threads, grpc-js's in Node. Every call goes through the unchanged betterproto2 stubs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
import pytest_asyncio
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_pb2 import HealthCheckResponse
from hyperframe.frame import GoAwayFrame

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.client import Channel, ChannelState, ClientConfig, call_options, capture_calls
from greeter.core.config import CoreConfig
from greeter.server import Server, ServerConfig
from greeter.services.greeter import Greeter
from greeter.wire.framing import encode_message
from tests.support.aio_greeter import running_greeter_server
from tests.support.peers import grpc_js_server, grpcio_server, spawn_grpc_js_server
from tests.support.probe import Probe, path
from tests.support.scripted import loopback_server

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


@pytest_asyncio.fixture
async def probe() -> Probe:
    return Probe()


@pytest_asyncio.fixture
async def server(probe: Probe) -> AsyncIterator[Server]:
    async with Server([Greeter(), probe], port=0, config=ServerConfig(grace_period=5)) as running:
        yield running


@pytest.fixture(scope="module", params=["grpcio", "grpc-js"])
def peer_target(request: pytest.FixtureRequest) -> Iterator[str]:
    """A reference Greeter server: grpcio (C-core) in this process, or grpc-js in Node."""
    serve = grpcio_server if request.param == "grpcio" else grpc_js_server
    with serve() as target:
        yield target


async def all_four(stub: GreeterStub) -> None:
    assert (await stub.say_hello(HelloRequest(name="Ada"), timeout=10)).message == "Hello Ada"
    replies = stub.lots_of_replies(HelloRequest(name="Bo", count=3), timeout=10)
    assert [r.message async for r in replies] == ["Hello Bo #1", "Hello Bo #2", "Hello Bo #3"]
    names = [HelloRequest(name="x"), HelloRequest(name="y")]
    assert (await stub.lots_of_greetings(names, timeout=10)).message == "Hello x, y"
    bidi = stub.bidi_hello([HelloRequest(name="p"), HelloRequest(name="q")], timeout=10)
    assert [r.message async for r in bidi] == ["Hello p", "Hello q"]


async def test_the_four_rpcs_against_greeters_server(server: Server) -> None:
    async with Channel(f"127.0.0.1:{server.port}") as channel:
        await all_four(GreeterStub(channel))
        assert channel.state == ChannelState.READY


async def test_the_four_rpcs_against_reference_servers(peer_target: str) -> None:
    async with Channel(peer_target) as channel:
        await all_four(GreeterStub(channel))


async def test_metadata_status_and_peer_of_a_stub_call(server: Server, probe: Probe) -> None:
    async with Channel(f"127.0.0.1:{server.port}") as channel:
        stub = GreeterStub(channel)
        with capture_calls() as calls:
            await stub.say_hello(HelloRequest(name="m"), metadata={"x-id": "42"})
        (call,) = calls
        assert call.status == Status.OK
        assert call.initial_metadata is not None and call.trailing_metadata is not None
        assert call.peer is not None and call.peer.addr()[1] == server.port


async def test_an_error_status_carries_message_and_details(server: Server) -> None:
    async with Channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.request(path("Fail"), Cardinality.UNARY_UNARY, HelloRequest, HelloReply)
        with pytest.raises(GRPCError) as caught:
            async with call as stream:
                await stream.send_message(HelloRequest(name="f"), end=True)
                await stream.recv_message()
    assert (caught.value.status, caught.value.message) == (Status.NOT_FOUND, "no greeting for you")
    (detail,) = caught.value.details
    assert detail.type_url == "type.googleapis.com/grpc.health.v1.HealthCheckResponse"
    unpacked = HealthCheckResponse()
    assert detail.Unpack(unpacked) and unpacked.status == HealthCheckResponse.SERVING


async def test_the_deadline_is_sent_and_enforced_as_deadline_exceeded(
    server: Server, probe: Probe
) -> None:
    async with Channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.request(
            path("Forever"), Cardinality.UNARY_UNARY, HelloRequest, HelloReply, timeout=0.3
        )
        with pytest.raises(GRPCError) as caught:
            async with call as stream:
                await stream.send_message(HelloRequest(name="late"), end=True)
                await stream.recv_message()
        assert caught.value.status == Status.DEADLINE_EXCEEDED
        await asyncio.wait_for(probe.cancelled.wait(), 5)  # the server's handler was cancelled


async def test_cancelling_the_caller_resets_the_stream(server: Server, probe: Probe) -> None:
    async with Channel(f"127.0.0.1:{server.port}") as channel:

        async def forever() -> None:
            call = channel.request(
                path("Forever"), Cardinality.UNARY_UNARY, HelloRequest, HelloReply
            )
            async with call as stream:
                await stream.send_message(HelloRequest(name="c"), end=True)
                await stream.recv_message()

        task = asyncio.create_task(forever())
        await asyncio.wait_for(probe.started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(probe.cancelled.wait(), 5)
        # the channel goes on serving other calls
        assert (await GreeterStub(channel).say_hello(HelloRequest(name="n"))).message == "Hello n"


async def test_request_and_response_compression(server: Server) -> None:
    async with Channel(f"127.0.0.1:{server.port}", config=ClientConfig(compression="gzip")) as ch:
        reply = await GreeterStub(ch).say_hello(HelloRequest(name="z" * 5000))
        assert reply.message == "Hello " + "z" * 5000
    async with Channel(f"127.0.0.1:{server.port}") as channel:
        with call_options(compression="deflate"):
            reply = await GreeterStub(channel).say_hello(HelloRequest(name="d"))
        assert reply.message == "Hello d"


async def test_receive_and_send_limits_are_resource_exhausted(server: Server) -> None:
    small = ClientConfig(limits=CoreConfig(max_receive_message_size=64), max_send_message_size=64)
    async with Channel(f"127.0.0.1:{server.port}", config=small) as channel:
        stub = GreeterStub(channel)
        with pytest.raises(GRPCError) as caught:
            await stub.say_hello(HelloRequest(name="r" * 100))
        assert caught.value.status == Status.RESOURCE_EXHAUSTED
        assert "sent message larger than max" in (caught.value.message or "")
        with pytest.raises(GRPCError) as caught:
            await stub.say_hello(HelloRequest(name="r" * 60))  # the reply is 6 bytes longer
        assert caught.value.status == Status.RESOURCE_EXHAUSTED
        assert "received message larger than max" in (caught.value.message or "")


async def test_graceful_shutdown_lets_a_long_stream_finish() -> None:
    """The scenario grpclib's Channel fails: GOAWAY + PING while 50,000 replies are in flight."""
    count = 50_000
    async with Server([Greeter()], port=0, config=ServerConfig(grace_period=20)) as server:
        channel = Channel(f"127.0.0.1:{server.port}")
        stub = GreeterStub(channel)
        received = 0
        stopping: asyncio.Task[None] | None = None
        async for reply in stub.lots_of_replies(HelloRequest(name="g", count=count)):
            received += 1
            if received == 10:
                stopping = asyncio.create_task(server.stop(grace=20))
            assert reply.message == f"Hello g #{received}"
        assert received == count
        assert stopping is not None
        await asyncio.wait_for(stopping, 20)
        channel.close()


GRPC_RESPONSE = [(":status", "200"), ("content-type", "application/grpc")]


@contextlib.asynccontextmanager
async def abrupt_goaway_proxy() -> AsyncIterator[str]:
    """A proxy-like server: on its first connection it waits for two requests, sends one
    GOAWAY(NO_ERROR, last stream 1) with no PING round (as proxies and older servers do),
    answers stream 1 and closes; every later connection answers every request. Replies name
    the connection ("c1", "c2", ...)."""
    connections = itertools.count(1)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = next(connections)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        reply = encode_message(bytes(HelloReply(message=f"c{number}")))
        ended: list[int] = []
        while data := await reader.read(65536):
            ended += [
                e.stream_id for e in conn.receive_data(data) if isinstance(e, h2.events.StreamEnded)
            ]
            if number == 1 and len(ended) < 2:
                writer.write(conn.data_to_send())
                continue
            if number == 1:
                # Raw bytes: h2's close_connection() would forbid answering stream 1 after it.
                writer.write(GoAwayFrame(0, last_stream_id=1, error_code=0).serialize())
                ended = [1]
            for stream_id in ended:
                conn.send_headers(stream_id, GRPC_RESPONSE)
                conn.send_data(stream_id, reply)
                conn.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)
            ended = []
            writer.write(conn.data_to_send())
            if number == 1:
                await writer.drain()
                break
        writer.close()

    async with loopback_server(handle) as target:
        yield target


async def test_a_single_abrupt_goaway_finishes_old_calls_and_retries_the_rest() -> None:
    """Calls up to the GOAWAY's last stream id finish on the old connection; the call above it,
    never processed, is retried on a new connection without the caller noticing."""
    async with abrupt_goaway_proxy() as target, Channel(target) as channel:
        stub = GreeterStub(channel)
        replies = await asyncio.wait_for(
            asyncio.gather(*(stub.say_hello(HelloRequest(name=n)) for n in "ab")), 10
        )
    assert sorted(r.message for r in replies) == ["c1", "c2"]


async def test_after_goaway_new_calls_go_to_a_new_connection(probe: Probe) -> None:
    first = Server([Greeter(), probe], port=0, config=ServerConfig(grace_period=5))
    await first.start()
    port = first.port
    channel = Channel(f"127.0.0.1:{port}")
    stub = GreeterStub(channel)
    assert (await stub.say_hello(HelloRequest(name="1"))).message == "Hello 1"
    await first.stop(grace=1)
    second = Server([Greeter()], port=port)
    await second.start()
    try:
        assert (await stub.say_hello(HelloRequest(name="2"))).message == "Hello 2"
    finally:
        channel.close()
        await second.stop(grace=1)


async def test_concurrent_first_calls_share_the_connection_being_opened(server: Server) -> None:
    """Several calls on a fresh channel at once: the ones that find the connection already
    opened by another call use it (a race once failed ~4% of such channels UNAVAILABLE "no
    address to connect to")."""
    for _ in range(100):
        async with Channel(f"127.0.0.1:{server.port}") as channel:
            stub = GreeterStub(channel)
            calls = [stub.say_hello(HelloRequest(name=str(i))) for i in range(4)]
            replies = await asyncio.wait_for(asyncio.gather(*calls), 5)
            assert [r.message for r in replies] == [f"Hello {i}" for i in range(4)]


async def test_unavailable_server_fails_fast_with_unavailable() -> None:
    async with Channel("127.0.0.1:1") as channel:
        with pytest.raises(GRPCError) as caught:
            await GreeterStub(channel).say_hello(HelloRequest(name="x"))
        assert caught.value.status == Status.UNAVAILABLE
        assert "127.0.0.1:1" in (caught.value.message or "")
        assert channel.state == ChannelState.TRANSIENT_FAILURE


async def test_unix_socket_and_ipv4_list_targets(tmp_path: Path) -> None:
    sock = str(tmp_path / "g.sock")
    async with Server([Greeter()], uds=sock), Channel(f"unix:{sock}") as channel:
        assert (await GreeterStub(channel).say_hello(HelloRequest(name="u"))).message == "Hello u"
    async with Server([Greeter()], port=0) as one, Server([Greeter()], port=0) as two:
        target = f"ipv4:127.0.0.1:{one.port},127.0.0.1:{two.port}"
        async with Channel(target) as channel:
            stub = GreeterStub(channel)
            peers = set()
            for n in range(6):
                with capture_calls() as calls:
                    await stub.say_hello(HelloRequest(name=str(n)))
                assert calls[0].peer is not None
                peers.add(calls[0].peer.addr()[1])
        assert peers == {one.port, two.port}  # round-robin over both addresses


async def test_the_four_rpcs_against_grpc_aio() -> None:
    async with running_greeter_server() as (_, target), Channel(target) as channel:
        await all_four(GreeterStub(channel))


async def read_through_shutdown(target: str, count: int, stop: Callable[[], object]) -> int:
    """Stream `count` replies, calling `stop()` after the 10th; how many arrived."""
    received = 0
    async with Channel(target) as channel:
        async for reply in GreeterStub(channel).lots_of_replies(
            HelloRequest(name="g", count=count), timeout=20
        ):
            received += 1
            assert reply.message == f"Hello g #{received}"
            if received == 10:
                stop()
    return received


async def test_graceful_shutdown_of_grpc_aio_lets_the_stream_finish() -> None:
    async with running_greeter_server() as (server, target):
        stopping: list[asyncio.Task[None]] = []
        count = await read_through_shutdown(
            target, 20_000, lambda: stopping.append(asyncio.create_task(server.stop(15)))
        )
        assert count == 20_000
        await asyncio.wait_for(stopping[0], 15)


async def test_graceful_shutdown_of_grpc_js_lets_the_stream_finish() -> None:
    with spawn_grpc_js_server() as process:
        count = await read_through_shutdown(
            process.target, 20_000, lambda: process.proc.send_signal(signal.SIGTERM)
        )
        assert count == 20_000
