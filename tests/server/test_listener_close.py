"""A connection the listener took in just as `stop()` begins is served, then gets its GOAWAY.

A load balancer's new upstream connection carries its request at once, and nginx never replays
a gRPC request it has sent, so a connection dropped at shutdown is a failed call. Two moments,
on asyncio's loop and on uvloop: the connection still waits in the kernel's backlog when the stop
begins ("queued": closing the listening socket would reset it), or the loop has accepted it but
not yet run its connection_made ("accepted": it would miss the GOAWAY and be left open).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
import uvloop
from hyperframe.frame import PingFrame

from gen.greet import HelloReply
from greeter.core.server_connection import SHUTDOWN_PING
from greeter.server import Server
from greeter.services.greeter import Greeter
from tests.support.attacker import Attacker
from tests.support.h2peer import client_preface, data_frame, hello_message, ping_frame

pytestmark = pytest.mark.timeout(20)

STEP = 5.0
GRACE = 3.0
MAX_STREAM_ID = 2**31 - 1
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


class StopOnAccept(Server):
    """Begins `stop()` the moment the loop accepts a connection: the connection's driver asks for
    its id when it is built, before its connection_made runs."""

    stopping: asyncio.Task[None] | None = None

    def next_connection_id(self) -> int:
        if self.stopping is None:
            self.stopping = asyncio.ensure_future(self.stop(grace=GRACE))
        return super().next_connection_id()


async def served_while_the_listener_closes(moment: str) -> None:
    server = StopOnAccept([Greeter()]) if moment == "accepted" else Server([Greeter()])
    await server.start()
    # A blocking connect completes in the kernel: the connection waits in the backlog, its
    # request already sent, as nginx sends one on a new upstream connection.
    client = Attacker(server.port, handshake=False)
    try:
        stream_id, headers = client.request()
        client.send(client_preface() + headers + data_frame(stream_id, hello_message("q"), True))
        loop = asyncio.get_running_loop()
        began = loop.time()
        stopping = asyncio.ensure_future(server.stop(grace=GRACE)) if moment == "queued" else None

        def shutdown_ping() -> bool:
            return any(ping.opaque_data == SHUTDOWN_PING for ping in client.frames_of(PingFrame))

        await asyncio.to_thread(client.wait_for, shutdown_ping, STEP, "the shutdown PING")
        client.send(ping_frame(SHUTDOWN_PING, ack=True))
        await asyncio.to_thread(client.wait_eof, STEP)
        if isinstance(server, StopOnAccept):
            stopping = server.stopping
        assert stopping is not None
        await asyncio.wait_for(stopping, STEP)
        assert loop.time() - began < GRACE, "stop() waited for the grace period"
    finally:
        client.close()
    result = client.streams[stream_id]
    assert result.status == 0, client.summary()
    assert [HelloReply.FromString(m).message for m in result.messages()] == ["Hello q"]
    # RFC 9113 §6.8's two steps: first the largest id, at last the stream it served.
    first, *_, final = client.goaways
    assert (first.last_stream_id, final.last_stream_id) == (MAX_STREAM_ID, stream_id)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("moment", ["queued", "accepted"])
def test_a_connection_taken_in_as_the_listener_closes_is_served(loop: str, moment: str) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(served_while_the_listener_closes(moment))


def shutdown_pinged(client: Attacker) -> Callable[[], bool]:
    return lambda: any(p.opaque_data == SHUTDOWN_PING for p in client.frames_of(PingFrame))


async def handed_request(listener: socket.socket, server: Server, name: str) -> Attacker:
    """A client whose connection `listener` accepted and `server` adopted, its request sent."""
    client = Attacker(listener.getsockname()[1], handshake=False)
    stream_id, headers = client.request()
    client.send(client_preface() + headers + data_frame(stream_id, hello_message(name), True))
    conn, _ = await asyncio.get_running_loop().sock_accept(listener)
    server.adopt(conn)
    return client


def served(client: Attacker, name: str) -> None:
    (result,) = client.streams.values()
    assert result.status == 0, client.summary()
    assert [HelloReply.FromString(m).message for m in result.messages()] == [f"Hello {name}"]


@pytest.mark.asyncio
async def test_a_connection_handed_over_is_served_and_one_handed_during_the_stop_too() -> None:
    # A worker of `serve --workers` (Server(listen=False)) serves what its parent accepted; one
    # handed over while it stops is served, then gets its GOAWAY, as a queued one would.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        server = Server([Greeter()], port=listener.getsockname()[1], listen=False)
        await server.start()
        assert server.port == listener.getsockname()[1]
        first = await handed_request(listener, server, "a")
        late: Attacker | None = None
        try:
            await asyncio.to_thread(
                first.wait_for, lambda: first.streams[1].finished, STEP, "the first reply"
            )
            stop = asyncio.ensure_future(server.stop(grace=GRACE))
            # The first connection's shutdown PING: the stop is under way (it waits for the
            # PING's ACK), and the server accepts no more by itself.
            await asyncio.to_thread(first.wait_for, shutdown_pinged(first), STEP, "the PING")
            late = await handed_request(listener, server, "b")
            await asyncio.to_thread(late.wait_for, shutdown_pinged(late), STEP, "the late PING")
            for client in (first, late):
                client.send(ping_frame(SHUTDOWN_PING, ack=True))
                await asyncio.to_thread(client.wait_eof, STEP)
            await asyncio.wait_for(stop, STEP)
        finally:
            for client in (first, late):
                if client is not None:
                    client.close()
    served(first, "a")
    served(late, "b")


def test_a_connection_handed_to_a_server_not_serving_is_closed() -> None:
    server = Server([Greeter()], port=1, listen=False)
    ours, theirs = socket.socketpair()
    with ours:
        server.adopt(theirs)  # never started
        assert theirs.fileno() == -1
