"""Settings of the server, its connections and their time limits: plain frozen dataclasses.

Layer: pure (stdlib only). `CoreConfig` governs the sans-IO core (protocol limits and defence
budgets), `Timeouts` the driver's watchdog, `ServerConfig` bundles both with the server's own
settings. Every field is documented where it is defined; README "Hostile peers" explains the
defaults and compares them with grpc-go's and C-core's.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Protocol limits of one connection; each is also a documented server setting."""

    max_receive_message_size: int = 4 * 1024 * 1024
    """Largest request message (after decompression) accepted; above it, RESOURCE_EXHAUSTED."""
    max_concurrent_streams: int = 100
    """Advertised SETTINGS_MAX_CONCURRENT_STREAMS; a stream above it gets REFUSED_STREAM."""
    max_header_list_size: int = 16 * 1024
    """Advertised and enforced SETTINGS_MAX_HEADER_LIST_SIZE (C-core: 8 KiB soft, 16 KiB hard)."""
    initial_window_size: int = 1024 * 1024
    """Per-stream receive window; generous so large messages need few WINDOW_UPDATE round trips."""
    connection_window_size: int = 2 * 1024 * 1024
    """Connection receive window (RFC 9113 §6.9.2 starts it at 65,535; we open it at once)."""
    reset_budget: int = 200
    """Streams per `reset_window` that may end early through the peer (its RST_STREAM before the
    response completed, or its malformed, refused or aborted requests); one more → GOAWAY."""
    reset_window: float = 1.0
    control_frame_budget: int = 1000
    """Frames per `control_frame_window` that carry no request progress (PING, SETTINGS,
    PRIORITY, GOAWAY, unknown types, empty DATA, unneeded WINDOW_UPDATE); one more → GOAWAY."""
    control_frame_window: float = 1.0
    min_ping_interval: float = 300.0
    """gRFC A8: a client PING sooner than this after the previous one is a strike (grpc-go's
    EnforcementPolicy.MinTime and C-core's min_recv_ping_interval_without_data: 5 minutes)."""
    max_ping_strikes: int = 2
    """Strikes tolerated; the next one → GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings")."""
    permit_ping_without_stream: bool = False
    """gRFC A8 PermitWithoutStream: when False, PINGs with no active stream must be 2 h apart."""
    max_header_block_size: int | None = None
    """Encoded bytes of one HEADERS + CONTINUATION block, checked before h2 buffers them;
    None means max_header_list_size + 1 KiB (HPACK's 32-byte per-field overhead makes an
    encoded block that large decode to a list over the limit anyway)."""


@dataclass(frozen=True)
class Timeouts:
    """Connection time limits in seconds; None disables one."""

    handshake: float | None = 10.0
    idle: float | None = 600.0
    keepalive_time: float | None = 7200.0
    keepalive_timeout: float = 20.0
    write_stall: float | None = 60.0


@dataclass(frozen=True)
class ServerConfig:
    """Server settings: the protocol limits of each connection and the shutdown grace period."""

    limits: CoreConfig = field(default_factory=CoreConfig)
    grace_period: float = 5.0
    """Seconds in-flight RPCs get to finish after GOAWAY before they are cancelled."""
    timeouts: Timeouts = field(default_factory=Timeouts)
    """Handshake, idle, keepalive and write-stall limits of each connection (greeter.watchdog)."""
    max_connections: int | None = 1000
    """Connections beyond this get GOAWAY and are closed at once (C-core and grpc-go: no cap)."""
