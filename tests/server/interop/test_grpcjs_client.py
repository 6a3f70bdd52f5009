"""@grpc/grpc-js (with @grpc/proto-loader) as the client of greeter's server, on loopback.

Each test runs one interop/node/client.js scenario (one JSON line out) against greeter's CLI
server (`python -m greeter serve`, shared by the session). The metadata echo needs a handler that
sends metadata back, which Greeter does not: that test serves the test-only Echo handler as
greet.Greeter/SayHello on greeter's in-process Server and runs the Node client in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.inprocess import AsSayHello, Probe, in_process_server
from tests.support.peers import run_node_client

pytestmark = pytest.mark.timeout(30)

MIB = 1024 * 1024
OK = {"code": 0, "code_name": "OK"}


def assert_ok(result: dict[str, Any]) -> None:
    assert {key: result[key] for key in OK} == OK, result


def test_unary(greeter_target: str) -> None:
    result = run_node_client(greeter_target, "unary", "Ada")
    assert_ok(result)
    assert result["message"] == "Hello Ada"


@pytest.mark.parametrize("count", [0, 3, 100])
def test_server_stream(greeter_target: str, count: int) -> None:
    result = run_node_client(greeter_target, "server-stream", "Ada", str(count))
    assert_ok(result)
    assert result["messages"] == [f"Hello Ada #{i}" for i in range(1, count + 1)]


def test_client_stream(greeter_target: str) -> None:
    result = run_node_client(greeter_target, "client-stream", "a", "b", "c")
    assert_ok(result)
    assert result["message"] == "Hello a, b, c"


def test_bidi_ping_pong(greeter_target: str) -> None:
    # client.js writes each name only after the reply to the previous one arrived.
    result = run_node_client(greeter_target, "bidi", "a", "b", "c", "d")
    assert_ok(result)
    assert result["messages"] == ["Hello a", "Hello b", "Hello c", "Hello d"]


def test_metadata_is_accepted(greeter_target: str) -> None:
    # Greeter ignores metadata; what matters is that a -bin key and repeated keys are accepted
    # and the response headers and trailers parse in grpc-js.
    result = run_node_client(greeter_target, "metadata")
    assert_ok(result)
    assert result["message"] == "Hello metadata"
    assert isinstance(result["initial_metadata"], dict)
    assert isinstance(result["trailers"], dict)


@pytest.mark.asyncio
async def test_metadata_both_ways() -> None:
    probe = Probe()
    async with in_process_server([AsSayHello(probe.echo)], probe=probe) as running:
        result = await asyncio.to_thread(run_node_client, running.target, "metadata")
    assert_ok(result)
    assert result["message"] == "Hello metadata"
    # What the handler saw from grpc-js: the -bin value decoded to bytes, repeats in order.
    (seen,) = probe.received_metadata
    assert seen["x-trace-bin"] == b"\x00\x01\xfe\xff"
    assert seen.getall("x-multi") == ["one", "two"]
    assert seen["x-echo"] == "echo-me"
    # What grpc-js saw from greeter (-bin values printed as padded base64 of the bytes).
    assert result["initial_metadata"]["x-initial"] == ["hello"]
    assert result["initial_metadata"]["x-initial-bin"] == ["AAH+/w=="]
    trailers = result["trailers"]
    assert trailers["x-echo"] == ["echo-me"]
    assert trailers["x-custom"] == ["custom-value"]
    # Node's http2 joins repeated fields with ", " (PROTOCOL-HTTP2.md allows either form).
    assert ", ".join(trailers["x-multi"]) == "one, two"
    assert trailers["x-trace-bin"] == ["AAH+/w=="]


@pytest.mark.parametrize("size", [1 * MIB, int(3.9 * MIB)], ids=["1MiB", "3.9MiB"])
def test_large_message_both_ways(greeter_target: str, size: int) -> None:
    result = run_node_client(greeter_target, "large", str(size))
    assert_ok(result)
    assert result["reply_length"] == size + len("Hello ")


def test_over_limit_is_resource_exhausted(greeter_target: str) -> None:
    result = run_node_client(greeter_target, "large", str(5 * MIB))
    assert result["code_name"] == "RESOURCE_EXHAUSTED", result


def test_gzip_compressed(greeter_target: str) -> None:
    result = run_node_client(greeter_target, "compressed", "zipped")
    assert_ok(result)
    assert result["message"] == "Hello zipped"


def test_deadline(greeter_target: str) -> None:
    assert_ok(run_node_client(greeter_target, "deadline", "5000"))
    expired = run_node_client(greeter_target, "deadline", "0")
    assert expired["code_name"] == "DEADLINE_EXCEEDED", expired
