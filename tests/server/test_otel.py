"""OpenTelemetry (greeter.server.otel, greeter.client.otel) with the SDK's in-memory exporters:
a CLIENT and a SERVER span per call, joined by W3C trace context in the metadata, attributes
of the experimental or the stable RPC conventions as OTEL_SEMCONV_STABILITY_OPT_IN selects,
span status by the gRPC rules, and the duration and size metrics."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.client import Channel
from greeter.client.otel import OtelClientInterceptor
from greeter.server import Server
from greeter.server.otel import OtelServerInterceptor, Semconv
from greeter.services.greeter import Greeter

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]


class Picky(Greeter):
    async def say_hello(self, message: HelloRequest) -> HelloReply:
        if message.name == "nobody":
            raise GRPCError(Status.NOT_FOUND, "no such person")
        return await super().say_hello(message)


async def traced_calls(opt_in: str, *names: str) -> tuple[list[ReadableSpan], dict[str, Any]]:
    """Spans (client and server) and metric points of one SayHello per name."""
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    semconv = Semconv(opt_in)
    server_otel = OtelServerInterceptor(tracer_provider, meter_provider, semconv=semconv)
    client_otel = OtelClientInterceptor(tracer_provider, meter_provider, semconv=semconv)
    async with (
        Server([Picky()], port=0, interceptors=[server_otel]) as server,
        Channel(f"127.0.0.1:{server.port}", interceptors=[client_otel]) as channel,
    ):
        for name in names:
            with contextlib.suppress(GRPCError):  # the failures are what some tests look at
                await GreeterStub(channel).say_hello(HelloRequest(name=name))
    data = reader.get_metrics_data()
    points = {
        metric.name: metric.data.data_points
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    return list(exporter.get_finished_spans()), points


def by_kind(spans: list[ReadableSpan], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans if span.kind == kind]


async def test_client_and_server_spans_share_the_trace_default_conventions() -> None:
    spans, points = await traced_calls("", "Ada")
    [client], [server] = by_kind(spans, SpanKind.CLIENT), by_kind(spans, SpanKind.SERVER)
    assert client.name == server.name == "greet.Greeter/SayHello"
    assert server.context.trace_id == client.context.trace_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    expected = {
        "rpc.system": "grpc",
        "rpc.service": "greet.Greeter",
        "rpc.method": "SayHello",
        "rpc.grpc.status_code": 0,
        "network.peer.address": "127.0.0.1",
    }
    assert expected.items() <= dict(server.attributes or {}).items()
    assert (client.attributes or {})["server.address"] == "127.0.0.1"
    assert "rpc.system.name" not in (server.attributes or {})
    assert {"rpc.server.duration", "rpc.client.duration", "rpc.server.request.size"} <= set(points)
    assert "rpc.server.call.duration" not in points
    assert [p.count for p in points["rpc.server.duration"]] == [1]


async def test_stable_conventions_and_error_status() -> None:
    spans, points = await traced_calls("rpc", "nobody")
    [client], [server] = by_kind(spans, SpanKind.CLIENT), by_kind(spans, SpanKind.SERVER)
    attributes = dict(server.attributes or {})
    assert attributes["rpc.system.name"] == "grpc"
    assert attributes["rpc.method"] == "greet.Greeter/SayHello"
    assert attributes["rpc.response.status_code"] == "NOT_FOUND"
    assert attributes["error.type"] == "NOT_FOUND"
    assert "rpc.system" not in attributes and "rpc.grpc.status_code" not in attributes
    assert server.status.status_code == StatusCode.UNSET  # NOT_FOUND is the caller's error
    assert client.status.status_code == StatusCode.ERROR  # every failure, for a client
    assert {"rpc.server.call.duration", "rpc.client.call.duration"} <= set(points)
    assert "rpc.server.duration" not in points


async def test_dup_emits_both_sets() -> None:
    spans, points = await traced_calls("rpc/dup", "Ada")
    [server] = by_kind(spans, SpanKind.SERVER)
    attributes = dict(server.attributes or {})
    assert attributes["rpc.method"] == "greet.Greeter/SayHello"  # the stable value wins the key
    assert attributes["rpc.service"] == "greet.Greeter"
    assert attributes["rpc.grpc.status_code"] == 0
    assert attributes["rpc.response.status_code"] == "OK"
    assert {"rpc.server.duration", "rpc.server.call.duration"} <= set(points)
