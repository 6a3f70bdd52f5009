"""The access log (`AccessLog`, `serve --access-log`): one `greeter.access` line per RPC.

In-process: greeter's server with the interceptor, greeter's client; the line of a unary call
names peer, method, status, duration and the messages' bytes on the wire (prefix included, the
compressed size for a gzip request, so the count is the wire's, not the decoded message's); a
failed RPC adds its status message; a server-streaming RPC counts every reply. A server without
it logs nothing there. From the command line: `serve --access-log` prints the line, `serve`
alone does not.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError

from greeter.client import Channel, ClientConfig
from greeter.server import Server
from greeter.server.access_log import AccessLog
from greeter.services.greeter import Greeter, GreeterStub, HelloReply, HelloRequest
from greeter.wire import compression
from tests.support.peers import run_greeter, spawn_greeter_server

pytestmark = pytest.mark.timeout(30)

LINE = re.compile(
    r"peer=127\.0\.0\.1:(\d+) method=(\S+) status=(\w+) duration_ms=(\d+\.\d{3}) "
    r"bytes_in=(\d+) bytes_out=(\d+) messages_in=(\d+) messages_out=(\d+)( message=.*)?$"
)


FAIL = "/test.Failing/Fail"


class Failing:
    """A service whose one method fails NOT_FOUND."""

    def __mapping__(self) -> dict[str, Handler]:
        return {FAIL: Handler(self.fail, Cardinality.UNARY_UNARY, HelloRequest, HelloReply)}

    async def fail(self, stream: Any) -> None:
        await stream.recv_message()
        raise GRPCError(Status.NOT_FOUND, "no such greeting")


def access_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    lines = [r.getMessage() for r in caplog.records if r.name == "greeter.access"]
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    return [m for m in matches if m is not None]


def wire(message: HelloRequest | HelloReply) -> int:
    return 5 + len(bytes(message))


@pytest.mark.asyncio
async def test_one_line_per_rpc_with_the_bytes_on_the_wire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="greeter.access")
    name = "a" * 1000  # gzip makes it far smaller on the wire
    services = [Greeter(), Failing()]
    async with Server(services, port=0, interceptors=[AccessLog()]) as server:
        target = f"127.0.0.1:{server.port}"
        async with Channel(target) as channel:
            stub = GreeterStub(channel)
            reply = await stub.say_hello(HelloRequest(name="Ada"), timeout=5)
            replies = [r async for r in stub.lots_of_replies(HelloRequest(name="b", count=3))]
            with pytest.raises(GRPCError, match="no such greeting"):
                async with channel.request(  # type: ignore[arg-type]  # grpclib's API
                    FAIL, Cardinality.UNARY_UNARY, HelloRequest, HelloReply
                ) as call:
                    await call.send_message(HelloRequest(name="x"), end=True)
                    await call.recv_message()
        async with Channel(target, config=ClientConfig(compression="gzip")) as gzipped:
            await GreeterStub(gzipped).say_hello(HelloRequest(name=name), timeout=5)
    unary, streaming, failed, compressed = access_lines(caplog)
    assert unary.group(2, 3) == ("/greet.Greeter/SayHello", "OK")
    assert int(unary.group(5)) == wire(HelloRequest(name="Ada"))
    assert int(unary.group(6)) == wire(reply)
    assert unary.group(7, 8) == ("1", "1")
    assert unary.group(9) is None
    assert streaming.group(2, 3, 8) == ("/greet.Greeter/LotsOfReplies", "OK", "3")
    assert int(streaming.group(6)) == sum(wire(r) for r in replies)
    assert failed.group(2, 3, 9) == (FAIL, "NOT_FOUND", ' message="no such greeting"')
    sent = int(compressed.group(5))
    assert sent < wire(HelloRequest(name=name)) // 4
    expected = 5 + len(compression.compress("gzip", bytes(HelloRequest(name=name))))
    assert abs(sent - expected) <= 16  # gzip headers may differ in a timestamp byte or so


@pytest.mark.asyncio
async def test_off_without_the_interceptor(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="greeter.access")
    async with Server([Greeter()], port=0) as server, Channel(f"127.0.0.1:{server.port}") as ch:
        await GreeterStub(ch).say_hello(HelloRequest(name="Ada"), timeout=5)
    assert [r for r in caplog.records if r.name == "greeter.access"] == []


@pytest.mark.parametrize("switch", [True, False])
def test_serve_access_log_switch(switch: bool) -> None:
    args = ("--access-log",) if switch else ()
    with spawn_greeter_server(*args) as server:
        done = run_greeter("hello", "Ada", "--target", server.target)
        assert done.returncode == 0, done.stderr
        if switch:
            server.wait_for_line(r"greeter\.access: peer=\S+ method=/greet.Greeter/SayHello", 10)
    logged = [line for line in server.lines() if "greeter.access" in line]
    assert bool(logged) == switch
