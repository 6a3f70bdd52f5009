"""Record and replay: a JSONL trace of all four RPC kinds, re-sent with `greeter replay`.

The session is recorded through the tap of greeter's in-process server. Replayed against a
greeter server, every RPC matches (exit 0); replayed against a grpcio server whose SayHello says
"Hi", the report names that RPC and the decoded replies (exit 1). The CLI runs as a subprocess
with a timeout; the in-process server keeps serving in the test's event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from ssl import SSLContext
from typing import Any

import grpc
import pytest
from grpclib.client import Channel
from grpclib.health.service import Health

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.client import Channel as GreeterChannel
from greeter.client.call import call_options
from greeter.server import Server
from greeter.services.greeter import Greeter
from greeter.tap.jsonl import read_jsonl
from greeter.tap.observer import TapFactory
from greeter.tap.resolve import MessageTypes
from greeter.tap.sinks import TraceWriter
from greeter.tools.replay import ReplayReport, load_rpcs, replay_file
from tests.support.peers import METHOD_PATHS, REPO_ROOT, SERVICE, grpcio_greeter_handler

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio]


async def call_all_four(port: int) -> None:
    channel = Channel("127.0.0.1", port)
    stub = GreeterStub(channel)
    try:
        assert (await stub.say_hello(HelloRequest(name="a"), timeout=5)).message == "Hello a"
        replies = [r async for r in stub.lots_of_replies(HelloRequest(name="b", count=3))]
        assert len(replies) == 3
        names = [HelloRequest(name=n) for n in "cd"]
        assert (await stub.lots_of_greetings(names, timeout=5)).message == "Hello c, d"
        bidi = [r async for r in stub.bidi_hello([HelloRequest(name=n) for n in "ef"])]
        assert [r.message for r in bidi] == ["Hello e", "Hello f"]
    finally:
        channel.close()


async def record_session(path: Path) -> None:
    """Serve Greeter with a JSONL-writing tap, make the four calls, stop (closing the file)."""
    services = [Greeter(), Health()]
    with path.open("w", encoding="utf-8") as stream:
        writer = TraceWriter(stream, format="jsonl")
        factory = TapFactory(writer, role="server", types=MessageTypes.from_services(services))
        async with Server(services, port=0, tap=factory) as server:
            await call_all_four(server.port)


async def replay_to(
    trace: Path, target: str, *, ssl: SSLContext | None = None, **options: Any
) -> ReplayReport:
    """`replay_file` on greeter's client, as `greeter replay` runs it."""
    async with GreeterChannel(target, ssl=ssl) as channel:
        return await replay_file(
            trace,
            channel,
            compressing=lambda encoding: call_options(compression=encoding),
            **options,
        )


async def greeter_replay(trace: Path, target: str, *args: str) -> tuple[int, str]:
    """`python -m greeter replay TRACE --target TARGET ARGS`: (exit code, stdout + stderr)."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "greeter", "replay", str(trace), "--target", target, *args),
        cwd=REPO_ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(20):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


def _say_hi(request: HelloRequest, context: grpc.ServicerContext) -> HelloReply:
    return HelloReply(message=f"Hi {request.name}")


@contextmanager
def grpcio_hi_server() -> Iterator[str]:
    """A grpcio Greeter whose SayHello answers "Hi NAME"; the other methods as the peer's."""
    hi = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "SayHello": grpc.unary_unary_rpc_method_handler(
                _say_hi, request_deserializer=HelloRequest.FromString, response_serializer=bytes
            )
        },
    )
    with ThreadPoolExecutor(max_workers=8) as pool:
        server = grpc.server(pool, options=[("grpc.enable_http_proxy", 0)])
        server.add_generic_rpc_handlers((hi, grpcio_greeter_handler()))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.stop(0).wait(5)


async def test_recorded_session_groups_into_four_rpcs(tmp_path: Path) -> None:
    trace = tmp_path / "session.jsonl"
    await record_session(trace)
    rpcs = load_rpcs(read_jsonl(trace))
    assert [rpc.method for rpc in rpcs] == list(METHOD_PATHS.values())
    assert [len(rpc.requests) for rpc in rpcs] == [1, 1, 2, 2]
    assert [len(rpc.responses) for rpc in rpcs] == [1, 3, 1, 2]
    assert {rpc.status for rpc in rpcs} == {0}
    assert HelloRequest.FromString(rpcs[2].requests[1]) == HelloRequest(name="d")


async def test_replay_against_greeter_matches(tmp_path: Path) -> None:
    trace = tmp_path / "session.jsonl"
    await record_session(trace)
    async with Server([Greeter(), Health()], port=0) as server:
        report = await replay_to(trace, f"127.0.0.1:{server.port}")
        code, output = await greeter_replay(trace, f"127.0.0.1:{server.port}")
    assert report.ok, report.text()
    assert len(report.outcomes) == 4
    assert code == 0, output
    assert "4 matched, 0 differ, 0 skipped" in output


async def test_replay_against_a_different_server_reports_the_difference(tmp_path: Path) -> None:
    trace = tmp_path / "session.jsonl"
    await record_session(trace)
    with grpcio_hi_server() as target:
        report = await replay_to(trace, target, types=MessageTypes.from_module("gen.greet"))
        code, output = await greeter_replay(trace, target)
    assert not report.ok
    differing = [o for o in report.outcomes if not o.ok]
    assert [o.rpc.method for o in differing] == [METHOD_PATHS["SayHello"]]
    assert differing[0].replies == (bytes(HelloReply(message="Hi a")),)
    assert code == 1, output
    assert f"{METHOD_PATHS['SayHello']}: DIFFERS" in output
    assert "HelloReply(message='Hello a')" in output
    assert "HelloReply(message='Hi a')" in output
    assert "3 matched, 1 differ, 0 skipped" in output
