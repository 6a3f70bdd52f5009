"""Every RPC cut before its status gets an `end` record saying so (issue 11 item 4).

greeter's server runs in-process with a `wire_log` tap; a grpclib client opens BidiHello, gets
one reply, and leaves the RPC open. Then the RPC is cut four ways: the client resets the stream,
the client's connection goes away, the server shuts down with a short grace (the handler is
still waiting for requests; greeter's client here, which keeps its stream open after the first
GOAWAY as gRPC clients do), or the stream is above the final GOAWAY's last stream id (the
sans-IO test in test_tap.py drives that one byte by byte). Each time the server's trace ends the
RPC with an `end` record: `aborted` names how, or the status is the server's shutdown answer.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager

import pytest
from grpclib.client import Channel, Stream
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from gen.greet import HelloReply, HelloRequest
from greeter.client import Channel as GreeterChannel
from greeter.server import Server
from greeter.services.greeter import Greeter
from greeter.tap.records import RpcRecord
from greeter.tap.wirelog import WireLog

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio]

BIDI = "/greet.Greeter/BidiHello"


def bidi(channel: Channel) -> AbstractAsyncContextManager[Stream[HelloRequest, HelloReply]]:
    return channel.request(BIDI, Cardinality.STREAM_STREAM, HelloRequest, HelloReply)


async def end_record(wire_log: WireLog) -> RpcRecord:
    """The one `end` record of BidiHello, waited for (the server notices a cut asynchronously)."""
    async with asyncio.timeout(10):
        while not wire_log.rpcs(event="end", method=BIDI):
            await asyncio.sleep(0.01)
    [end] = wire_log.rpcs(event="end", method=BIDI)
    return end


async def test_a_reset_rpc_ends_aborted_reset(wire_log: WireLog) -> None:
    async with Server([Greeter()], port=0, tap=wire_log.tap(types="gen.greet")) as server:
        channel = Channel("127.0.0.1", server.port)
        try:
            async with bidi(channel) as stream:
                await stream.send_message(HelloRequest(name="a"))
                assert (await stream.recv_message()).message == "Hello a"
                await stream.cancel()
            end = await end_record(wire_log)
        finally:
            channel.close()
    assert (end.aborted, end.status) == ("reset", None)
    assert end.reset is not None  # the code grpclib chose
    assert (end.requests, end.responses) == (1, 1)


async def test_an_rpc_on_a_lost_connection_ends_aborted_cut(wire_log: WireLog) -> None:
    async with Server([Greeter()], port=0, tap=wire_log.tap(types="gen.greet")) as server:
        channel = Channel("127.0.0.1", server.port)
        async with bidi(channel) as stream:
            await stream.send_message(HelloRequest(name="a"))
            assert (await stream.recv_message()).message == "Hello a"
            channel.close()  # the socket goes, the RPC still open
            end = await end_record(wire_log)
    assert (end.aborted, end.status, end.reset) == ("cut", None, None)
    assert end.status_message is not None
    assert end.status_message.startswith("cut: connection closed")


async def test_an_rpc_cut_by_shutdown_ends_unavailable(wire_log: WireLog) -> None:
    """The grace runs out while the handler waits for a request: the server answers
    UNAVAILABLE before its final GOAWAY (the trailers once went missing, dropped with the
    streams by the GOAWAY), and the client gets that status."""
    server = Server([Greeter()], port=0, tap=wire_log.tap(types="gen.greet"))
    await server.start()
    try:
        async with GreeterChannel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(GRPCError) as failed:
                async with bidi(channel) as stream:  # type: ignore[arg-type]  # grpclib's API
                    await stream.send_message(HelloRequest(name="a"))
                    assert (await stream.recv_message()).message == "Hello a"
                    await server.stop(grace=0.2)
                    await stream.recv_message()
    finally:
        await server.stop()
    assert (failed.value.status, failed.value.message) == (
        Status.UNAVAILABLE,
        "server shutting down",
    )
    end = await end_record(wire_log)
    assert (end.status_name, end.status_message, end.aborted) == (
        "UNAVAILABLE",
        "server shutting down",
        None,
    )
    final = wire_log.connection_events("goaway")[-1]
    assert final.last_stream_id == end.stream_id and final.timestamp >= end.timestamp
