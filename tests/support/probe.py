"""The in-process server tests' `test.Probe` service: handlers that report their fate in Events.

Not a test module. One instance per test (its Events belong to that test's loop), served by the
`server` fixture of tests/server/conftest.py. Paths are ``/test.Probe/<Name>`` (`path`); requests
and replies are the generated greet messages. (The interop suites' own `test.Probe`, with
per-method signals, is in tests.support.inprocess.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_pb2 import HealthCheckResponse

from gen.greet import HelloReply, HelloRequest

SERVICE = "test.Probe"
FLOWING = 200
BLOCK = 10 * 1024
"""Payload size of each Flood reply."""


def path(method: str) -> str:
    return f"/{SERVICE}/{method}"


class Probe:
    """Handlers that fail, never end, block, flood or echo metadata; each records its fate."""

    def __init__(self, flood_count: int = 20) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.finished = asyncio.Event()
        self.release = asyncio.Event()
        self.flowing = asyncio.Event()
        """Endless: set once FLOWING messages went out."""
        self.sent = 0
        """Endless/Flood: messages whose send_message was entered."""
        self.returned = 0
        """Endless/Flood: send_message calls that returned."""
        self.flood_count = flood_count
        self.seen_metadata: list[tuple[str, str | bytes]] = []

    def __mapping__(self) -> dict[str, Handler]:
        handlers: dict[str, tuple[Any, Cardinality]] = {
            "Fail": (self.fail, Cardinality.UNARY_UNARY),
            "Crash": (self.crash, Cardinality.UNARY_UNARY),
            "Endless": (self.endless, Cardinality.UNARY_STREAM),
            "Forever": (self.forever, Cardinality.UNARY_UNARY),
            "Slow": (self.slow, Cardinality.UNARY_UNARY),
            "Flood": (self.flood, Cardinality.UNARY_STREAM),
            "Metadata": (self.metadata, Cardinality.UNARY_UNARY),
        }
        return {
            path(name): Handler(self._tracked(func), cardinality, HelloRequest, HelloReply)
            for name, (func, cardinality) in handlers.items()
        }

    def _tracked(self, func: Any) -> Any:
        async def run(stream: Any) -> None:
            self.started.set()
            try:
                await func(stream)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            finally:
                self.finished.set()

        return run

    async def fail(self, stream: Any) -> None:
        await stream.recv_message()
        detail = HealthCheckResponse(status=HealthCheckResponse.SERVING)
        raise GRPCError(Status.NOT_FOUND, "no greeting for you", [detail])

    async def crash(self, stream: Any) -> None:
        await stream.recv_message()
        raise RuntimeError("secret internal detail")

    async def endless(self, stream: Any) -> None:
        request = await stream.recv_message()
        while True:
            self.sent += 1
            await stream.send_message(HelloReply(message=f"{request.name} {self.sent}"))
            self.returned += 1
            if self.returned == FLOWING:
                self.flowing.set()

    async def forever(self, stream: Any) -> None:
        await stream.recv_message()
        await asyncio.get_running_loop().create_future()

    async def slow(self, stream: Any) -> None:
        request = await stream.recv_message()
        await self.release.wait()
        await stream.send_message(HelloReply(message=f"slow {request.name}"))

    async def flood(self, stream: Any) -> None:
        await stream.recv_message()
        for index in range(self.flood_count):
            self.sent += 1
            body = f"{index:08d}".encode() * (BLOCK // 8)
            await stream.send_message(HelloReply(message=body.decode()))
            self.returned += 1

    async def metadata(self, stream: Any) -> None:
        request = await stream.recv_message()
        self.seen_metadata = list(stream.metadata.items())
        await stream.send_initial_metadata(
            metadata={"x-initial": "first", "x-initial-bin": b"\x00\x01\xfe\xff"}
        )
        await stream.send_message(HelloReply(message=f"meta {request.name}"))
        echoed = [(k, v) for k, v in self.seen_metadata if k.startswith("x-")]
        await stream.send_trailing_metadata(
            metadata=[*echoed, ("x-trailer", "last"), ("x-trailer-bin", b"\xff\x00")]
        )
