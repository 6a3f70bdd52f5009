"""OpenTelemetry for a server: a span and duration/size metrics per RPC (greeter[otel]).

`OtelServerInterceptor(tracer_provider=None, meter_provider=None)` is a server interceptor
(``Server(interceptors=[...])``): each RPC gets a SERVER span, child of the W3C trace context in
the request metadata (``traceparent``), named and attributed as OpenTelemetry's RPC semantic
conventions say, and its duration and message sizes go into histograms. The client side is
greeter.client.otel.

Which conventions, as OpenTelemetry's own switch says (``OTEL_SEMCONV_STABILITY_OPT_IN``, read
once when the interceptor is made): by default the experimental ones of semconv v1.37 and
earlier (``rpc.system``, ``rpc.service``, ``rpc.method`` = the method's name,
``rpc.grpc.status_code`` as an int; metrics ``rpc.server.duration`` in ms,
``rpc.server.request.size``, ``rpc.server.response.size``); ``rpc`` emits the stable ones
instead (``rpc.system.name``, ``rpc.method`` = ``service/method``, ``rpc.response.status_code``
as the status name, ``error.type`` on failure; ``rpc.server.call.duration`` in s); ``rpc/dup``
emits both. Span names are ``package.Service/Method`` either way; the peer is
``network.peer.address`` / ``network.peer.port``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from grpclib.const import Status
from opentelemetry import context, metrics, trace
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, StatusCode

from greeter.server.handler_stream import RpcOutcome, ServerStream
from greeter.server.interceptors import ServerInterceptor
from greeter.wire import codec

__all__ = ["OtelServerInterceptor", "Semconv", "Telemetry", "rpc_attributes"]

# Statuses that are a server's failure (semconv, gRPC: "Server errors"); the others are the
# caller's and leave a server span UNSET.
SERVER_ERRORS = frozenset(
    {
        Status.UNKNOWN,
        Status.DEADLINE_EXCEEDED,
        Status.UNIMPLEMENTED,
        Status.INTERNAL,
        Status.UNAVAILABLE,
        Status.DATA_LOSS,
    }
)


class Semconv:
    """Which RPC conventions to emit, from OTEL_SEMCONV_STABILITY_OPT_IN (old, stable, both)."""

    def __init__(self, opt_in: str | None = None) -> None:
        values = {
            v.strip()
            for v in (opt_in or os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")).split(",")
        }
        self.stable = "rpc" in values or "rpc/dup" in values
        self.old = "rpc/dup" in values or not self.stable


def rpc_attributes(semconv: Semconv, path: str) -> dict[str, Any]:
    """The method's attributes for a span: ``path`` is ``/package.Service/Method``."""
    full = path.lstrip("/")
    service, _, method = full.partition("/")
    attributes: dict[str, Any] = {}
    if semconv.old:
        attributes |= {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
    if semconv.stable:
        attributes |= {"rpc.system.name": "grpc", "rpc.method": full}
    return attributes


def status_attributes(semconv: Semconv, status: Status) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if semconv.old:
        attributes["rpc.grpc.status_code"] = status.value
    if semconv.stable:
        attributes["rpc.response.status_code"] = status.name
        if status is not Status.OK:
            attributes["error.type"] = status.name
    return attributes


class Telemetry:
    """What one side's interceptor records with: the conventions, a tracer, a meter and the
    duration histograms (ms for the experimental conventions, s for the stable ones)."""

    def __init__(
        self,
        side: str,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        semconv: Semconv | None,
    ) -> None:
        self.semconv = semconv or Semconv()
        self.tracer = trace.get_tracer("greeter", tracer_provider=tracer_provider)
        self.meter = metrics.get_meter("greeter", meter_provider=meter_provider)
        self.durations = _duration_histograms(self.meter, self.semconv, side)

    def record_duration(self, seconds: float, attributes: dict[str, Any]) -> None:
        for histogram, scale in self.durations:
            histogram.record(seconds * scale, attributes)


def _duration_histograms(
    meter: metrics.Meter, semconv: Semconv, side: str
) -> list[tuple[metrics.Histogram, float]]:
    histograms = []
    if semconv.old:
        histograms.append(
            (meter.create_histogram(f"rpc.{side}.duration", "ms", "Duration of RPCs"), 1000.0)
        )
    if semconv.stable:
        histograms.append(
            (meter.create_histogram(f"rpc.{side}.call.duration", "s", "Duration of RPCs"), 1.0)
        )
    return histograms


class OtelServerInterceptor(ServerInterceptor):
    """A SERVER span and metrics per RPC (see the module docstring)."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        semconv: Semconv | None = None,
    ) -> None:
        self._otel = Telemetry("server", tracer_provider, meter_provider, semconv)
        self.semconv = self._otel.semconv
        meter = self._otel.meter
        self._request_size = meter.create_histogram(
            "rpc.server.request.size", "By", "Sizes of RPC request messages"
        )
        self._response_size = meter.create_histogram(
            "rpc.server.response.size", "By", "Sizes of RPC response messages"
        )
        self._spans: dict[int, tuple[trace.Span, object, float]] = {}

    async def start(self, rpc: ServerStream[Any, Any]) -> None:
        parent = extract(_carrier(rpc.metadata.items()))
        attributes = rpc_attributes(self.semconv, rpc.path)
        address = rpc.peer_address
        if address is not None:
            attributes |= {"network.peer.address": address[0], "network.peer.port": address[1]}
        span = self._otel.tracer.start_span(
            rpc.path.lstrip("/"), context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        # The handler runs in this task: its own spans and client calls become children.
        token = context.attach(trace.set_span_in_context(span, parent))
        self._spans[id(rpc)] = (span, token, time.monotonic())

    def receive(self, rpc: ServerStream[Any, Any], message: Any) -> Any:
        if self.semconv.old:
            self._request_size.record(
                len(codec.encode(message)), rpc_attributes(self.semconv, rpc.path)
            )
        return message

    def send(self, rpc: ServerStream[Any, Any], message: Any) -> Any:
        if self.semconv.old:
            self._response_size.record(
                len(codec.encode(message)), rpc_attributes(self.semconv, rpc.path)
            )
        return message

    def end(self, rpc: ServerStream[Any, Any], outcome: RpcOutcome) -> None:
        entry = self._spans.pop(id(rpc), None)
        if entry is None:
            return
        span, token, started = entry
        span.set_attributes(status_attributes(self.semconv, outcome.status))
        if outcome.status in SERVER_ERRORS:
            span.set_status(StatusCode.ERROR, outcome.message)
        span.end()
        context.detach(token)  # type: ignore[arg-type]
        attributes = rpc_attributes(self.semconv, rpc.path) | status_attributes(
            self.semconv, outcome.status
        )
        self._otel.record_duration(time.monotonic() - started, attributes)


def _carrier(pairs: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """Text metadata as a propagation carrier (binary -bin values carry no trace context)."""
    return {name: value for name, value in pairs if isinstance(value, str)}
