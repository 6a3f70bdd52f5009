"""A real trace with something of everything, for the timeline's browser test and its screenshot.

Not a test module. `record(path)` serves Greeter and Health from greeter's server on loopback, with
a server-role tap writing JSON Lines to `path` and a server keepalive PING, and drives it with
grpclib clients (an independent HTTP/2 stack): every RPC kind, a NOT_FOUND, a streaming call the
client leaves after two replies (it resets the stream), and a server-streaming call that greeter's
own client (64 KiB windows) reads slowly, so that the server's sends stall on the flow-control
windows until the client reads on. The server then shuts down: GOAWAY and close.

Run as `python -m tests.support.sample_trace OUT.jsonl` to record one (docs/tracing.md's
screenshot is drawn from such a trace).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

from grpclib.client import Channel
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest

from gen.greet import GreeterStub, HelloRequest
from greeter.client.channel import Channel as GreeterChannel
from greeter.client.config import ClientConfig
from greeter.core.config import CoreConfig
from greeter.server import Server
from greeter.server.config import ServerConfig, Timeouts
from greeter.services.greeter import Greeter
from greeter.services.health import with_health
from greeter.tap.observer import TapFactory
from greeter.tap.resolve import MessageTypes
from greeter.tap.sinks import TraceWriter

SLOW_REPLIES = 40
"""Replies of the slowly read stream: 40 x 4 KB, well past the client's 64 KiB stream window."""


async def _slow_reader(port: int) -> int:
    """LotsOfReplies read with pauses by greeter's client, which returns flow-control credit only
    for what the application consumed, with 64 KiB windows: the server stalls meanwhile."""
    limits = CoreConfig(initial_window_size=65_535, connection_window_size=65_535)
    count = 0
    async with GreeterChannel(f"127.0.0.1:{port}", config=ClientConfig(limits=limits)) as channel:
        request = HelloRequest(name="s" * 4000, count=SLOW_REPLIES)
        async for _ in GreeterStub(channel).lots_of_replies(request, timeout=10):
            count += 1
            if count % 10 == 0:
                await asyncio.sleep(0.05)  # the point of the call: a reader that falls behind
    return count


async def _cancelled(stub: GreeterStub) -> None:
    """LotsOfReplies left after two replies of many: the client resets the stream (CANCEL)."""
    replies = stub.lots_of_replies(HelloRequest(name="c", count=10_000), timeout=10)
    received = 0
    async for _ in replies:
        received += 1
        if received == 2:
            break
    await replies.aclose()


async def _drive(port: int) -> None:
    channel = Channel("127.0.0.1", port)
    stub = GreeterStub(channel)
    try:
        await stub.say_hello(HelloRequest(name="world"), timeout=5)
        _ = [reply async for reply in stub.lots_of_replies(HelloRequest(name="b", count=3))]
        await stub.lots_of_greetings([HelloRequest(name=n) for n in "cde"], timeout=5)
        _ = [reply async for reply in stub.bidi_hello([HelloRequest(name=n) for n in "fg"])]
        with contextlib.suppress(GRPCError):  # NOT_FOUND, as recorded
            await HealthStub(channel).Check(HealthCheckRequest(service="nope"), timeout=5)
        await _cancelled(stub)
        await _slow_reader(port)
        await asyncio.sleep(0.3)  # idle: the server's keepalive PING and its ACK
        await stub.say_hello(HelloRequest(name="last"), timeout=5)
    finally:
        channel.close()


async def record(path: Path) -> None:
    """Serve with a JSON Lines tap writing to `path`, drive the calls, shut down."""
    services = with_health([Greeter()])
    config = ServerConfig(grace_period=1.0, timeouts=Timeouts(keepalive_time=0.25))
    with path.open("w", encoding="utf-8") as stream:
        writer = TraceWriter(stream, format="jsonl")
        tap = TapFactory(writer, role="server", types=MessageTypes.from_services(services))
        async with Server(services, port=0, tap=tap, config=config) as server:
            await _drive(server.port)


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1])))
