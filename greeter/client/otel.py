"""OpenTelemetry for a client: a span and a duration metric per call (greeter[otel]).

`OtelClientInterceptor` is a client interceptor (``Channel(target, interceptors=[...])``): each
call gets a CLIENT span, child of the current span (inside a traced handler: the handler's
span), and carries it to the server in W3C ``traceparent`` / ``tracestate`` metadata; the call's
duration goes into ``rpc.client.duration`` (ms, experimental conventions) and/or
``rpc.client.call.duration`` (s, stable), as ``OTEL_SEMCONV_STABILITY_OPT_IN`` selects
(greeter.server.otel explains the two sets). Attributes: the method's (greeter.server.otel),
``server.address`` / ``server.port`` from the channel's authority, the status, and on a failure
the span's status ERROR (every non-OK status is a failure for a client).
"""

from __future__ import annotations

import time
from typing import Any

from grpclib.const import Status
from opentelemetry import metrics, trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, StatusCode

from greeter.client.call import ClientCall, ClientInterceptor
from greeter.server.otel import Semconv, Telemetry, rpc_attributes, status_attributes

__all__ = ["OtelClientInterceptor"]


class OtelClientInterceptor(ClientInterceptor):
    """A CLIENT span per call with the trace context injected into its metadata."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        semconv: Semconv | None = None,
    ) -> None:
        self._otel = Telemetry("client", tracer_provider, meter_provider, semconv)
        self.semconv = self._otel.semconv
        self._spans: dict[int, tuple[trace.Span, float]] = {}

    async def start(self, call: ClientCall[Any, Any]) -> None:
        attributes = rpc_attributes(self.semconv, call.path)
        host, _, port = call.authority.rpartition(":")
        if host and port.isdigit():
            attributes |= {"server.address": host.strip("[]"), "server.port": int(port)}
        else:
            attributes["server.address"] = call.authority
        span = self._otel.tracer.start_span(
            call.path.lstrip("/"), kind=SpanKind.CLIENT, attributes=attributes
        )
        carrier: dict[str, str] = {}
        inject(carrier, context=trace.set_span_in_context(span))
        call.metadata.extend(carrier.items())
        self._spans[id(call)] = (span, time.monotonic())

    def end(self, call: ClientCall[Any, Any]) -> None:
        entry = self._spans.pop(id(call), None)
        if entry is None:
            return
        span, started = entry
        status = call.status if call.status is not None else Status.UNKNOWN
        attributes = status_attributes(self.semconv, status)
        span.set_attributes(attributes)
        if status is not Status.OK:
            message = call.outcome.message if call.outcome is not None else ""
            span.set_status(StatusCode.ERROR, message)
        span.end()
        elapsed = time.monotonic() - started
        self._otel.record_duration(elapsed, rpc_attributes(self.semconv, call.path) | attributes)
