"""`greeter serve --metrics-port P`: Prometheus's /metrics for one process or N workers.

Only wiring (greeter.server.prometheus has the metrics): the option, the endpoint, and for
``--workers N`` the multiprocess directory the workers write and the parent reads.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

from greeter.cli.limits import checked
from greeter.wire.ranges import LISTEN_PORT

if TYPE_CHECKING:
    from greeter.server.prometheus import PrometheusMetrics

NEEDS = "--metrics-port needs prometheus_client: pip install 'greeter[prometheus]'"

log = logging.getLogger("greeter")


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=checked(LISTEN_PORT),
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (on --host; all workers; "
        "0 picks a free port, logged)",
    )


def check_metrics_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error (exit 2) when the extra is not installed."""
    if args.metrics_port is None:
        return
    if importlib.util.find_spec("prometheus_client") is None:
        parser.error(NEEDS)


def _serve(host: str, port: int, registry: object) -> None:
    from prometheus_client import start_http_server  # noqa: PLC0415 -- optional extra

    try:
        server, _ = start_http_server(port, addr=host, registry=registry)  # type: ignore[arg-type]
    except OSError as exc:
        reason = exc.strerror or exc
        raise OSError(
            f"--metrics-port {port}: cannot serve metrics on {host}:{port}: {reason}"
        ) from None
    log.info("Prometheus metrics at http://%s:%d/metrics", host, server.server_port)


def process_metrics(
    args: argparse.Namespace, host: str, *, worker: bool
) -> PrometheusMetrics | None:
    """This process's metrics (None without --metrics-port); a single server also serves them
    (a worker's are served by its parent, from the multiprocess directory)."""
    if args.metrics_port is None:
        return None
    from greeter.server.prometheus import PrometheusMetrics  # noqa: PLC0415 -- optional extra

    metrics = PrometheusMetrics()
    if not worker:
        from prometheus_client import REGISTRY  # noqa: PLC0415

        _serve(host, args.metrics_port, REGISTRY)
    return metrics


@contextlib.contextmanager
def workers_metrics(args: argparse.Namespace, host: str) -> Iterator[None]:
    """For --workers N: the directory every worker writes (inherited PROMETHEUS_MULTIPROC_DIR)
    and the parent's endpoint summing them, for the block."""
    if args.metrics_port is None:
        yield
        return
    from greeter.server.prometheus import multiprocess_registry  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="greeter-metrics-") as directory:
        _serve(host, args.metrics_port, multiprocess_registry(directory))
        yield
