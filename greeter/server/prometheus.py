"""Prometheus metrics of a server, under the names gRPC dashboards expect (greeter[prometheus]).

`PrometheusMetrics` is a server interceptor and a `ServerMonitor`: pass it as both,
``Server(services, interceptors=[metrics], monitor=metrics)`` (`greeter serve --metrics-port P`
does, and serves ``/metrics``). Built on prometheus_client, never by hand.

The RPC metrics have go-grpc-prometheus's names and labels (what Grafana's gRPC dashboards query):
``grpc_server_started_total``, ``grpc_server_handled_total`` (with ``grpc_code`` as Go spells it:
``OK``, ``NotFound``, ``DeadlineExceeded``, ...), ``grpc_server_msg_received_total``,
``grpc_server_msg_sent_total`` and the ``grpc_server_handling_seconds`` histogram, each labelled
``grpc_type`` (unary, client_stream, server_stream, bidi_stream), ``grpc_service``,
``grpc_method``. greeter's own: ``greeter_server_open_connections``,
``greeter_server_accepted_connections_total``, ``greeter_server_open_streams`` (RPCs being
handled), ``greeter_server_received_bytes_total`` and ``greeter_server_sent_bytes_total`` (HTTP/2
bytes, inside TLS), ``greeter_server_flow_control_stalls_total`` (a response waited for the
client's window) and ``greeter_server_defences_total{defence}`` (hostile-peer defences fired, by
kind).

With ``greeter serve --workers N`` every worker writes prometheus_client's multiprocess files
(PROMETHEUS_MULTIPROC_DIR, set by the parent) and the parent serves one ``/metrics`` summing them.
"""

from __future__ import annotations

import os
from typing import Any

from grpclib.const import Cardinality, Status
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from greeter.server.handler_stream import RpcOutcome, ServerStream
from greeter.server.interceptors import ServerInterceptor

__all__ = ["GO_CODE_NAMES", "PrometheusMetrics", "multiprocess_registry"]

_TYPES = {
    Cardinality.UNARY_UNARY: "unary",
    Cardinality.STREAM_UNARY: "client_stream",
    Cardinality.UNARY_STREAM: "server_stream",
    Cardinality.STREAM_STREAM: "bidi_stream",
}
GO_CODE_NAMES = {
    Status.OK: "OK",
    Status.CANCELLED: "Canceled",  # Go's spelling (codes.Canceled)
    Status.UNKNOWN: "Unknown",
    Status.INVALID_ARGUMENT: "InvalidArgument",
    Status.DEADLINE_EXCEEDED: "DeadlineExceeded",
    Status.NOT_FOUND: "NotFound",
    Status.ALREADY_EXISTS: "AlreadyExists",
    Status.PERMISSION_DENIED: "PermissionDenied",
    Status.RESOURCE_EXHAUSTED: "ResourceExhausted",
    Status.FAILED_PRECONDITION: "FailedPrecondition",
    Status.ABORTED: "Aborted",
    Status.OUT_OF_RANGE: "OutOfRange",
    Status.UNIMPLEMENTED: "Unimplemented",
    Status.INTERNAL: "Internal",
    Status.UNAVAILABLE: "Unavailable",
    Status.DATA_LOSS: "DataLoss",
    Status.UNAUTHENTICATED: "Unauthenticated",
}
"""grpc_code values as grpc-go's codes.Code.String() writes them (go-grpc-prometheus)."""
_RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
# go-grpc-prometheus's default buckets (prometheus.DefBuckets).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PrometheusMetrics(ServerInterceptor):
    """The server's metrics in `registry` (prometheus_client's default one unless given)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.started = Counter(
            "grpc_server_started_total",
            "RPCs started on the server.",
            _RPC_LABELS,
            registry=registry,
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, regardless of success or failure.",
            (*_RPC_LABELS, "grpc_code"),
            registry=registry,
        )
        self.received = Counter(
            "grpc_server_msg_received_total",
            "RPC stream messages received on the server.",
            _RPC_LABELS,
            registry=registry,
        )
        self.sent = Counter(
            "grpc_server_msg_sent_total",
            "gRPC stream messages sent on the server.",
            _RPC_LABELS,
            registry=registry,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            _RPC_LABELS,
            buckets=_BUCKETS,
            registry=registry,
        )
        # Gauges of live workers are summed in one scrape (--workers N).
        self.connections, self.streams = (
            Gauge(name, text, registry=registry, multiprocess_mode="livesum")
            for name, text in (
                ("greeter_server_open_connections", "HTTP/2 connections open now."),
                ("greeter_server_open_streams", "RPCs (HTTP/2 streams) being handled now."),
            )
        )
        self.accepted, self.received_bytes, self.sent_bytes, self.stalls = (
            Counter(name, text, registry=registry)
            for name, text in (
                ("greeter_server_accepted_connections_total", "HTTP/2 connections accepted."),
                ("greeter_server_received_bytes_total", "HTTP/2 bytes received (inside TLS)."),
                ("greeter_server_sent_bytes_total", "HTTP/2 bytes sent (inside TLS)."),
                (
                    "greeter_server_flow_control_stalls_total",
                    "Times a response waited for the client's HTTP/2 flow-control window.",
                ),
            )
        )
        self.defences = Counter(
            "greeter_server_defences_total",
            "Hostile-peer defences fired, by kind (docs/security.md).",
            ("defence",),
            registry=registry,
        )
        self._labels: dict[str, tuple[str, str, str]] = {}
        self._open: set[ServerStream[Any, Any]] = set()
        """RPCs counted in `streams`: `end` also runs for one an earlier interceptor ended."""

    def _rpc_labels(self, rpc: ServerStream[Any, Any]) -> tuple[str, str, str]:
        labels = self._labels.get(rpc.path)
        if labels is None:
            _, service, method = rpc.path.split("/", 2)
            labels = (_TYPES.get(rpc.handler.cardinality, "unary"), service, method)
            self._labels[rpc.path] = labels
        return labels

    # -- ServerInterceptor -------------------------------------------------------------------

    async def start(self, rpc: ServerStream[Any, Any]) -> None:
        self.started.labels(*self._rpc_labels(rpc)).inc()
        self._open.add(rpc)
        self.streams.inc()

    def receive(self, rpc: ServerStream[Any, Any], message: Any) -> Any:
        self.received.labels(*self._rpc_labels(rpc)).inc()
        return message

    def send(self, rpc: ServerStream[Any, Any], message: Any) -> Any:
        self.sent.labels(*self._rpc_labels(rpc)).inc()
        return message

    def end(self, rpc: ServerStream[Any, Any], outcome: RpcOutcome) -> None:
        labels = self._rpc_labels(rpc)
        code = GO_CODE_NAMES.get(outcome.status, outcome.status.name)
        self.handled.labels(*labels, code).inc()
        self.handling.labels(*labels).observe(outcome.duration)
        if rpc in self._open:
            self._open.discard(rpc)
            self.streams.dec()

    # -- ServerMonitor -------------------------------------------------------------------------

    def connection_opened(self) -> None:
        self.connections.inc()
        self.accepted.inc()

    def connection_closed(self) -> None:
        self.connections.dec()

    def defence_fired(self, name: str) -> None:
        self.defences.labels(name).inc()

    def bytes_received(self, count: int) -> None:
        self.received_bytes.inc(count)

    def bytes_sent(self, count: int) -> None:
        self.sent_bytes.inc(count)

    def flow_control_stalled(self) -> None:
        self.stalls.inc()


def multiprocess_registry(directory: str) -> CollectorRegistry:
    """A registry summing every process's metrics in `directory` (PROMETHEUS_MULTIPROC_DIR)."""
    from prometheus_client import multiprocess  # noqa: PLC0415 -- reads the env at import

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry
