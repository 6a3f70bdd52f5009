"""Settings of the server and of its connections' time limits: plain frozen dataclasses.

`Timeouts` are the watchdog's limits, `ServerConfig` bundles them with the core's `CoreConfig`
and the server's own settings. Every field is documented where it is defined;
docs/security.md explains the defaults and compares them with grpc-go's and C-core's.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field

from greeter.core.config import CoreConfig
from greeter.wire.ranges import INT32_MAX, OPTIONAL_SECONDS, SECONDS, Range, check_fields


@dataclass(frozen=True)
class Timeouts:
    """Connection time limits in seconds; None disables one."""

    handshake: float | None = 10.0
    idle: float | None = 600.0
    keepalive_time: float | None = 7200.0
    keepalive_timeout: float = 20.0
    write_stall: float | None = 60.0
    max_connection_age: float | None = None
    """gRFC A9: after this long (±10 % jitter) a connection gets GOAWAY, its RPCs finish and it
    closes, so clients reconnect and L4 balancers spread them again (grpc-go's MaxConnectionAge;
    None: never, as grpc-go's default)."""
    max_connection_age_grace: float | None = None
    """RPCs still running this long after the age's GOAWAY are cancelled and the connection
    closed (grpc-go's MaxConnectionAgeGrace; None: they may run to the end)."""

    def __post_init__(self) -> None:
        check_fields(self, TIMEOUT_RANGES)


FD_RESERVE = 64
"""File descriptors kept for everything but accepted connections: listeners, log and trace
files, the connections handlers open as clients."""


def fd_connection_budget() -> int:
    """The default connection cap: what the process's file-descriptor limit (RLIMIT_NOFILE, its
    soft value) leaves after `FD_RESERVE`, so the cap, not EMFILE, decides who is refused."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return INT32_MAX
    return max(1, min(soft - FD_RESERVE, INT32_MAX))


@dataclass(frozen=True)
class ServerConfig:
    """Server settings: the protocol limits of each connection and the shutdown grace period."""

    limits: CoreConfig = field(default_factory=CoreConfig)
    grace_period: float = 5.0
    """Seconds in-flight RPCs get to finish after GOAWAY before they are cancelled."""
    timeouts: Timeouts = field(default_factory=Timeouts)
    """Handshake, idle, keepalive and write-stall limits of each connection (see watchdog.py)."""
    max_connections: int | None = field(default_factory=fd_connection_budget)
    """Open connections at most (default: the file-descriptor limit less `FD_RESERVE`; None: no
    cap, as C-core and grpc-go). At the cap the connection idle longest gets GOAWAY and is closed
    to make room; a newcomer is refused (GOAWAY "too many connections") only when every open
    connection has RPCs."""
    drain_delay: float = 0.0
    """Seconds a graceful stop keeps serving after health turned NOT_SERVING, before GOAWAY."""

    def __post_init__(self) -> None:
        check_fields(self, SERVER_RANGES)


TIMEOUT_RANGES = {
    "handshake": OPTIONAL_SECONDS,
    "idle": OPTIONAL_SECONDS,
    "keepalive_time": OPTIONAL_SECONDS,
    "keepalive_timeout": SECONDS,
    "write_stall": OPTIONAL_SECONDS,
    "max_connection_age": OPTIONAL_SECONDS,
    "max_connection_age_grace": OPTIONAL_SECONDS,
}
SERVER_RANGES = {
    "grace_period": Range(0),
    "drain_delay": Range(0),
    "max_connections": Range(1, INT32_MAX, integer=True, optional=True),
}
