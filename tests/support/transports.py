"""What the TLS and Unix-domain-socket tests share: `greeter serve` and the four Greeter RPCs.

Not a test module. `greeter_serve` runs `python -m greeter serve ARGS...` with any listener
options (--tls-*, --uds) and waits for a line the test names; `grpcio_calls_all_four` and
`grpclib_calls_all_four` call every Greeter method through a channel the test built (TLS,
unix:). Server start-up is awaited on its "serving ... on ..." line, never slept for.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from gen.greet import GreeterStub, HelloRequest
from tests.support.peers import REPO_ROOT, GrpcioGreeter, ServerProcess

RPC_TIMEOUT = 10.0
"""Seconds each RPC in these tests gets."""


def grpcio_calls_all_four(greeter: GrpcioGreeter) -> None:
    """The four Greeter RPCs through grpcio (blocking: run it in a worker thread)."""
    reply = greeter.say_hello(HelloRequest(name="Ada"), timeout=RPC_TIMEOUT)
    assert reply.message == "Hello Ada"
    replies = greeter.lots_of_replies(HelloRequest(name="Bo", count=3), timeout=RPC_TIMEOUT)
    assert [r.message for r in replies] == ["Hello Bo #1", "Hello Bo #2", "Hello Bo #3"]
    names = iter([HelloRequest(name="x"), HelloRequest(name="y")])
    assert greeter.lots_of_greetings(names, timeout=RPC_TIMEOUT).message == "Hello x, y"
    requests = iter([HelloRequest(name="p"), HelloRequest(name="q")])
    bidi = [r.message for r in greeter.bidi_hello(requests, timeout=RPC_TIMEOUT)]
    assert bidi == ["Hello p", "Hello q"]


async def grpclib_calls_all_four(stub: GreeterStub) -> None:
    """The four Greeter RPCs through grpclib's Channel (greeter's own client)."""
    reply = await stub.say_hello(HelloRequest(name="Ada"), timeout=RPC_TIMEOUT)
    assert reply.message == "Hello Ada"
    replies = stub.lots_of_replies(HelloRequest(name="Bo", count=2), timeout=RPC_TIMEOUT)
    assert [r.message async for r in replies] == ["Hello Bo #1", "Hello Bo #2"]
    names = [HelloRequest(name="x"), HelloRequest(name="y")]
    assert (await stub.lots_of_greetings(names, timeout=RPC_TIMEOUT)).message == "Hello x, y"
    bidi = stub.bidi_hello([HelloRequest(name="p")], timeout=RPC_TIMEOUT)
    assert [r.message async for r in bidi] == ["Hello p"]


@contextmanager
def greeter_serve(*args: str, serving: str, ready_timeout: float = 20) -> Iterator[ServerProcess]:
    """`python -m greeter serve ARGS...` until the block ends; yields once a line matches
    `serving`. On exit: SIGTERM, exit status 0 and no traceback in the output."""
    argv = [sys.executable, "-m", "greeter", "serve", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = ServerProcess(argv, cwd=REPO_ROOT, env=env)
    try:
        process.wait_for_line(serving, ready_timeout)
        yield process
    finally:
        returncode = process.stop(10)
    output = "\n".join(process.lines())
    assert returncode == 0, output
    assert "Traceback" not in output, output
