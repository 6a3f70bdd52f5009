"""Settings of a client channel: plain frozen dataclasses.

`ClientConfig` bundles the core's `CoreConfig` (receive limit, windows, defences against a
hostile server) with what only a client decides: the send limit, request compression, whether
calls wait for a connection, the connection backoff (doc/connection-backoff.md) and the buffer
that lets a call the server never processed be retried transparently (gRFC A6).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from greeter.client.backoff import BackoffPolicy
from greeter.client.retry import RetryPolicy, RetryThrottling
from greeter.core.config import CoreConfig
from greeter.wire import compression
from greeter.wire.ranges import INT32_MAX, OPTIONAL_SECONDS, SECONDS, Range, check_fields

DEFAULT_USER_AGENT = "grpc-python-greeter"


@dataclass(frozen=True)
class ClientConfig:
    """Channel settings; every field is also settable per call where gRPC allows it."""

    limits: CoreConfig = field(default_factory=CoreConfig)
    """`limits.max_receive_message_size` (4 MiB, as grpc) bounds every response message."""
    max_send_message_size: int | None = None
    """Largest request message; above it the call fails RESOURCE_EXHAUSTED (None: no limit)."""
    compression: str = compression.IDENTITY
    """Request compression of every call: identity, gzip or deflate."""
    wait_for_ready: bool = False
    """Calls wait for a connection instead of failing UNAVAILABLE at once (gRPC's default off)."""
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    retry_buffer_size: int = 256 * 1024
    """Request bytes a call keeps for a transparent retry (gRFC A6 per-RPC buffer limit)."""
    max_transparent_retries: int = 5
    """Attempts after the first for a call the server never processed (REFUSED_STREAM, GOAWAY)."""
    retry_policy: RetryPolicy | None = None
    """Retries of failed calls (gRFC A6); None: only transparent retries."""
    retry_throttling: RetryThrottling | None = None
    """The channel's retry token bucket (gRFC A6); None: retries are not throttled."""
    user_agent: str = DEFAULT_USER_AGENT
    keepalive_time: float | None = None
    """Seconds between keepalive PINGs on a connection with calls (gRFC A8; None: off, as in
    gRPC). A GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings") doubles it for the channel."""
    keepalive_timeout: float = 20.0
    """A PING not acknowledged in time closes the connection; its calls end UNAVAILABLE."""
    keepalive_without_calls: bool = False
    """PING also while no call is in flight (servers' policies usually forbid it)."""

    def __post_init__(self) -> None:
        if not compression.is_supported(self.compression):
            raise ValueError(
                f"ClientConfig.compression: {self.compression!r} is not one of identity, gzip,"
                " deflate"
            )
        check_fields(self, CLIENT_RANGES)


CLIENT_RANGES = {
    "max_send_message_size": Range(0, 2**32 - 1, integer=True, optional=True),
    "retry_buffer_size": Range(0, INT32_MAX, integer=True),
    "max_transparent_retries": Range(0, 100, integer=True),
    "keepalive_time": OPTIONAL_SECONDS,
    "keepalive_timeout": SECONDS,
}
