"""The interop tests' in-process server: greeter's `Server` with Greeter, Health and `test.Probe`.

Not a test module. The Greeter contract has no error, slow or metadata behaviour, so the interop
tests that need one host this service next to Greeter and Health on greeter's own `Server`, in the
test's event loop. Each handler records what happened to it in asyncio.Events (started, cancelled)
that a test awaits with a bound, so "the handler was cancelled" is observed, never slept for.

Methods (HelloRequest in, HelloReply out):

- NotFound (unary): raises GRPCError(NOT_FOUND, request.name or "nope")
- Crash (unary): raises ValueError with a secret in its text (must not reach the wire)
- FailMidStream (server stream): sends two replies, then raises GRPCError(NOT_FOUND, "nope")
  or, when the request's count is 1, ValueError
- Hang (unary): never answers; records cancellation
- Endless (server stream): sends replies until cancelled; records cancellation
- Drain (client stream): reads requests until cancelled (counting them); records cancellation
- Echo (unary): initial metadata `x-initial` / `x-initial-bin`, the reply "Hello " + name, and
  every received `x-*` metadata pair copied into the trailers (values as received, repeats kept)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.health.service import Health
from multidict import MultiDict

from gen.greet import HelloReply, HelloRequest
from greeter.server import Server, ServerConfig, Service
from greeter.server.handler_stream import ServerStream
from greeter.services.greeter import Greeter

PROBE = "test.Probe"
SECRET = "secret-internal-state-0xdeadbeef"
INITIAL_BIN = b"\x00\x01\xfe\xff"
"""The `x-initial-bin` value the Echo handler sends: NUL and 0xFF bytes need real base64."""

Stream = ServerStream[HelloRequest, HelloReply]
HandlerFunc = Callable[[Stream], Coroutine[Any, Any, None]]


@dataclass
class Signals:
    """What happened to one method's handler, for the test to await."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    message_received: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    received: int = 0


class Probe:
    """`test.Probe`: handlers with errors, slowness and metadata, each observable by the test."""

    def __init__(self) -> None:
        self.signals: dict[str, Signals] = {}
        self.received_metadata: list[MultiDict[str | bytes]] = []

    def __getitem__(self, method: str) -> Signals:
        return self.signals.setdefault(method, Signals())

    def __mapping__(self) -> dict[str, Handler]:
        unary, server_stream = Cardinality.UNARY_UNARY, Cardinality.UNARY_STREAM
        table: dict[str, tuple[HandlerFunc, Cardinality]] = {
            "NotFound": (self.not_found, unary),
            "Crash": (self.crash, unary),
            "FailMidStream": (self.fail_mid_stream, server_stream),
            "Hang": (self.hang, unary),
            "Endless": (self.endless, server_stream),
            "Drain": (self.drain, Cardinality.STREAM_UNARY),
            "Echo": (self.echo, unary),
        }
        return {
            f"/{PROBE}/{name}": Handler(func, cardinality, HelloRequest, HelloReply)
            for name, (func, cardinality) in table.items()
        }

    async def not_found(self, stream: Stream) -> None:
        request = await stream.recv_message()
        assert request is not None
        raise GRPCError(Status.NOT_FOUND, request.name or "nope")

    async def crash(self, stream: Stream) -> None:
        await stream.recv_message()
        raise ValueError(f"handler bug, {SECRET}")

    async def fail_mid_stream(self, stream: Stream) -> None:
        request = await stream.recv_message()
        assert request is not None
        for index in (1, 2):
            await stream.send_message(HelloReply(message=f"Hello {request.name} #{index}"))
        if request.count == 1:
            raise ValueError(f"handler bug, {SECRET}")
        raise GRPCError(Status.NOT_FOUND, "nope")

    async def hang(self, stream: Stream) -> None:
        await self._until_cancelled("Hang", self._wait_forever(stream))

    async def endless(self, stream: Stream) -> None:
        await self._until_cancelled("Endless", self._send_forever(stream))

    async def drain(self, stream: Stream) -> None:
        await self._until_cancelled("Drain", self._read_forever(stream))

    async def echo(self, stream: Stream) -> None:
        request = await stream.recv_message()
        assert request is not None
        self.received_metadata.append(stream.metadata.copy())
        echoed = [(key, value) for key, value in stream.metadata.items() if key.startswith("x-")]
        await stream.send_initial_metadata([("x-initial", "hello"), ("x-initial-bin", INITIAL_BIN)])
        await stream.send_message(HelloReply(message=f"Hello {request.name}"))
        await stream.send_trailing_metadata(metadata=echoed)

    # -- helpers ---------------------------------------------------------------------------------

    async def _until_cancelled(self, method: str, body: Coroutine[Any, Any, None]) -> None:
        signals = self[method]
        signals.started.set()
        try:
            await body
        except asyncio.CancelledError:
            signals.cancelled.set()
            raise
        finally:
            signals.finished.set()

    async def _wait_forever(self, stream: Stream) -> None:
        await stream.recv_message()
        await asyncio.Event().wait()

    async def _send_forever(self, stream: Stream) -> None:
        request = await stream.recv_message()
        assert request is not None
        signals = self["Endless"]
        while True:
            signals.sent += 1
            await stream.send_message(HelloReply(message=f"Hello {request.name} #{signals.sent}"))

    async def _read_forever(self, stream: Stream) -> None:
        signals = self["Drain"]
        async for _ in stream:
            signals.received += 1
            signals.message_received.set()
        await asyncio.Event().wait()


class AsSayHello:
    """Serves one Probe handler as /greet.Greeter/SayHello, for clients that only know greet.proto.

    ``AsSayHello(probe.echo)``: grpc-js's metadata scenario gets its metadata echoed;
    ``AsSayHello(probe.not_found)``: a SayHello that fails with NOT_FOUND.
    """

    def __init__(self, handler: HandlerFunc) -> None:
        self._handler = handler

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/greet.Greeter/SayHello": Handler(
                self._handler, Cardinality.UNARY_UNARY, HelloRequest, HelloReply
            )
        }


@dataclass(frozen=True)
class InProcess:
    """greeter's Server running in the test's event loop, with the Probe it hosts."""

    server: Server
    probe: Probe
    target: str


@asynccontextmanager
async def in_process_server(
    services: Iterable[Service] | None = None, *, probe: Probe | None = None
) -> AsyncIterator[InProcess]:
    """Serve Greeter, Health and a Probe (or `services`) on 127.0.0.1:0 for the block.

    Blocking clients (grpcio's sync API, subprocesses) must run in a worker thread
    (`asyncio.to_thread`) while this loop serves them.
    """
    probe = probe or Probe()
    chosen: list[Service] = [Greeter(), Health(), probe] if services is None else list(services)
    async with Server(chosen, port=0, config=ServerConfig(grace_period=1.0)) as server:
        yield InProcess(server, probe, f"127.0.0.1:{server.port}")
