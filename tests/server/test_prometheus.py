"""greeter.server.prometheus: go-grpc-prometheus's metric names and labels over the four RPC
kinds and an error, greeter's connection and defence metrics (in-process, a private registry);
then `greeter serve --metrics-port` with one process and with two workers (one scrape sums
both), and a port that cannot be bound."""

from __future__ import annotations

import contextlib
import re
import socket
import urllib.request
from collections.abc import AsyncIterator

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from prometheus_client import CollectorRegistry

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.client import Channel
from greeter.core.config import CoreConfig
from greeter.server import Server, ServerConfig
from greeter.server.prometheus import PrometheusMetrics
from greeter.services.greeter import Greeter
from tests.support.peers import assert_one_line_failure, run_greeter, spawn_greeter_server
from tests.support.probe import Probe, path
from tests.support.rawclient import RawClient

pytestmark = pytest.mark.timeout(60)

BIG = 200_000


class Picky(Greeter):
    async def say_hello(self, message: HelloRequest) -> HelloReply:
        if message.name == "nobody":
            raise GRPCError(Status.NOT_FOUND, "no such person")
        return await super().say_hello(message)


async def names(*items: str) -> AsyncIterator[HelloRequest]:
    for name in items:
        yield HelloRequest(name=name)


@pytest.mark.asyncio
async def test_rpc_metrics_have_go_grpc_prometheus_names_and_labels() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    async with (
        Server([Picky()], port=0, interceptors=[metrics], monitor=metrics) as server,
        Channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = GreeterStub(channel)
        await stub.say_hello(HelloRequest(name="a"))
        with pytest.raises(GRPCError):
            await stub.say_hello(HelloRequest(name="nobody"))
        [_ async for _ in stub.lots_of_replies(HelloRequest(name="s", count=3))]
        await stub.lots_of_greetings(names("x", "y"))
        [_ async for _ in stub.bidi_hello(names("p", "q"))]
        assert registry.get_sample_value("greeter_server_open_connections") == 1

    def sample(name: str, kind: str, method: str, **extra: str) -> float | None:
        labels = {"grpc_type": kind, "grpc_service": "greet.Greeter", "grpc_method": method}
        return registry.get_sample_value(name, {**labels, **extra})

    assert sample("grpc_server_started_total", "unary", "SayHello") == 2
    assert sample("grpc_server_handled_total", "unary", "SayHello", grpc_code="OK") == 1
    assert sample("grpc_server_handled_total", "unary", "SayHello", grpc_code="NotFound") == 1
    assert sample("grpc_server_handling_seconds_count", "unary", "SayHello") == 2
    assert sample("grpc_server_msg_sent_total", "server_stream", "LotsOfReplies") == 3
    assert sample("grpc_server_msg_received_total", "client_stream", "LotsOfGreetings") == 2
    assert sample("grpc_server_msg_sent_total", "bidi_stream", "BidiHello") == 2
    assert registry.get_sample_value("greeter_server_open_connections") == 0
    assert registry.get_sample_value("greeter_server_accepted_connections_total") == 1
    assert registry.get_sample_value("greeter_server_open_streams") == 0
    assert registry.get_sample_value("greeter_server_flow_control_stalls_total") == 0


@pytest.mark.asyncio
async def test_bytes_are_counted_each_way() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    name = "x" * BIG
    async with (
        Server([Greeter()], port=0, interceptors=[metrics], monitor=metrics) as server,
        Channel(f"127.0.0.1:{server.port}") as channel,
    ):
        reply = await GreeterStub(channel).say_hello(HelloRequest(name=name))
        assert reply.message == f"Hello {name}"
    # The message each way, plus the handshake, headers and framing: a few hundred bytes.
    for direction in ("received", "sent"):
        count = registry.get_sample_value(f"greeter_server_{direction}_bytes_total")
        assert count is not None and BIG < count < BIG + 2_000, (direction, count)


@pytest.mark.asyncio
async def test_a_response_waiting_for_the_client_window_is_a_stall() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    probe = Probe()
    async with Server([probe], port=0, interceptors=[metrics], monitor=metrics) as server:
        # Flood sends 20 replies of 10 KiB: a 1,000-byte stream window holds a tenth of one.
        client = await RawClient.connect(
            server.port, initial_window_size=1000, auto_window_update=False
        )
        try:
            stream_id = client.start_request(path("Flood"))
            await client.send_message(stream_id, bytes(HelloRequest(name="f")), end_stream=True)
            result = client.streams[stream_id]
            await client.wait_until(lambda: len(result.data) >= 1000)
            await client.ping()  # a round trip: the handler is waiting by now
            assert registry.get_sample_value("greeter_server_open_streams") == 1
            assert registry.get_sample_value("greeter_server_flow_control_stalls_total") == 1
            client.open_window()
            done = await client.wait(stream_id)
        finally:
            await client.close()
    assert done.status == Status.OK.value
    assert registry.get_sample_value("greeter_server_open_streams") == 0


@pytest.mark.asyncio
async def test_defences_are_counted_by_kind() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    config = ServerConfig(limits=CoreConfig(control_frame_budget=3))
    async with Server([Greeter()], port=0, config=config, monitor=metrics) as server:
        client = await RawClient.connect(server.port)
        with contextlib.suppress(Exception):  # the connection ends in the flood
            for _ in range(10):
                await client.ping(timeout=2)
        await client.wait_closed_by_server()
        await client.close()
    assert (
        registry.get_sample_value("greeter_server_defences_total", {"defence": "control_frames"})
        == 1
    )


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


def handled_ok(text: str) -> float:
    match = re.search(r'^grpc_server_handled_total\{grpc_code="OK",[^}]*\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_metrics_port_serves_every_worker(workers: str) -> None:
    with spawn_greeter_server("--workers", workers, "--metrics-port", "0") as server:
        line = server.wait_for_line(re.compile(r"Prometheus metrics at (http://\S+)"), 20)
        for index in range(6):  # new connections: spread over the workers by the kernel
            done = run_greeter("hello", f"m{index}", "--target", server.target)
            assert done.stdout.strip() == f"Hello m{index}", done.stderr
        text = scrape(line.group(1))
    assert handled_ok(text) == 6, text
    assert "greeter_server_accepted_connections_total 6.0" in text
    received = re.search(r"^greeter_server_received_bytes_total (\S+)$", text, re.M)
    assert received is not None and float(received.group(1)) > 6 * 24, text  # 6 prefaces, at least


def test_a_metrics_port_in_use_fails_the_start_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_greeter("serve", "--port", "0", "--metrics-port", str(port))
    line = assert_one_line_failure(done)
    expected = f"greeter: --metrics-port {port}: cannot serve metrics on 127.0.0.1:{port}: "
    assert line.startswith(expected), line
