"""The core's settings (`CoreConfig`) and the h2 connection they configure.

`CoreConfig` holds one connection's protocol limits and defence budgets; `new_h2_connection`
builds the H2Connection every core connection wraps, with h2's header validation moved to
greeter.core.headers, DATA on streams we reset ignored (RFC 9113 §5.1), the stream limit
enforced per stream and HPACK's repeated work cached (greeter.core.hpack_cache).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, cast

import h2.config
import h2.connection
import h2.settings
from h2.settings import SettingCodes
from h2.stream import StreamClosedBy
from hyperframe.frame import RstStreamFrame

from greeter.core import hpack_cache
from greeter.core.frame_reader import FrameReadingH2Connection
from greeter.core.frame_writer import FrameWritingH2Connection
from greeter.wire.ranges import COUNT, INT32_MAX, SECONDS, Range, check_fields

MAX_STREAM_ID = 2**31 - 1
UNLIMITED_STREAMS = 2**32 + 1
"""What h2 reports as the stream limit of a peer that set none."""


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

    def __post_init__(self) -> None:
        check_fields(self, CORE_RANGES)


CORE_RANGES = {
    # The message length prefix is 32 bits (PROTOCOL-HTTP2.md, Length-Prefixed-Message).
    "max_receive_message_size": Range(0, 2**32 - 1, integer=True),
    "max_concurrent_streams": COUNT,
    "max_header_list_size": COUNT,
    "initial_window_size": COUNT,
    # RFC 9113 §6.9.2: the connection window starts at 65,535; the core only ever widens it.
    "connection_window_size": Range(65_535, INT32_MAX, integer=True),
    "reset_budget": COUNT,
    "reset_window": SECONDS,
    "control_frame_budget": COUNT,
    "control_frame_window": SECONDS,
    "min_ping_interval": Range(0),
    "max_ping_strikes": Range(0, INT32_MAX, integer=True),
    "max_header_block_size": Range(1, INT32_MAX, integer=True, optional=True),
}
"""What each CoreConfig field allows (the command line parses its options with these too)."""


class _Pending(list[Any]):
    """One setting's value and the changes not yet acknowledged: h2 uses a deque, whose first
    block alone is ~600 bytes; a connection holds two Settings of five to seven values each, so
    deques were over half of an idle connection's memory. A list does the same here."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class SlimSettings(h2.settings.Settings):
    """h2's Settings with each value's history in a `_Pending` list instead of a deque.

    h2 4.x seam: `Settings._settings` maps each setting to a sequence on which h2 calls only
    `[0]`, `append`, `popleft` and `len`; tests/core/test_idle_connection.py checks an idle
    connection's size and fails if h2 stops working that way.
    """

    def __init__(self, client: bool = True, initial_values: dict[Any, int] | None = None) -> None:
        super().__init__(client, initial_values)
        # The annotation says deque; _Pending offers what h2 calls on it (see the docstring).
        pending: dict[Any, Any] = {key: _Pending(v) for key, v in self._settings.items()}
        self._settings = pending

    def __setitem__(self, key: Any, value: int) -> None:
        fresh = key not in self._settings
        super().__setitem__(key, value)  # validates; a new key gets a deque
        if fresh:
            self._settings[key] = cast("Any", _Pending(self._settings[key]))

    # The three settings read for every new stream, without h2's generic Mapping path (its
    # `get` and `__getitem__` in Python): the same values, the same default.

    @property
    def initial_window_size(self) -> int:
        value: int = self._settings[SettingCodes.INITIAL_WINDOW_SIZE][0]
        return value

    @initial_window_size.setter
    def initial_window_size(self, value: int) -> None:
        self[SettingCodes.INITIAL_WINDOW_SIZE] = value

    @property
    def max_frame_size(self) -> int:
        value: int = self._settings[SettingCodes.MAX_FRAME_SIZE][0]
        return value

    @max_frame_size.setter
    def max_frame_size(self, value: int) -> None:
        self[SettingCodes.MAX_FRAME_SIZE] = value

    @property
    def max_concurrent_streams(self) -> int:
        pending = self._settings.get(SettingCodes.MAX_CONCURRENT_STREAMS)
        value = pending[0] if pending else None
        return UNLIMITED_STREAMS if value is None else int(value)

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[SettingCodes.MAX_CONCURRENT_STREAMS] = value


class _LimitCheckedPerStream(SlimSettings):
    """Local settings whose stream limit h2 does not enforce itself.

    h2 turns a HEADERS frame over SETTINGS_MAX_CONCURRENT_STREAMS into a connection error, tearing
    down every RPC on the connection. RFC 9113 §5.1.2 lets a server refuse just that stream with
    REFUSED_STREAM, which tells the client it may retry; the core counts streams and does that.
    The advertised value (what h2 serialises into SETTINGS) is unchanged.
    """

    @property
    def max_concurrent_streams(self) -> int:
        return MAX_STREAM_ID

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[SettingCodes.MAX_CONCURRENT_STREAMS] = value


class GrpcH2Connection(FrameReadingH2Connection, FrameWritingH2Connection):
    """h2's connection, ignoring DATA that arrives on a stream after we reset it.

    RFC 9113 §5.1: an endpoint that sent RST_STREAM "MUST ignore frames that it receives on
    closed streams after it has sent a RST_STREAM frame"; h2 answers each such DATA frame with
    another RST_STREAM(STREAM_CLOSED) (a 5 MiB request still in flight: ~60 of them). The frames'
    bytes still return connection credit (h2 does that); `late_frames` counts them so that the
    core charges each to the control-frame budget, as a frame without request progress. h2 4.x
    seam: `_handle_data_on_closed_stream` (tests/core/test_connection_errors.py fails if it goes).
    """

    late_frames = 0
    """DATA frames ignored on streams we reset, since the core last read the count."""

    def _handle_data_on_closed_stream(
        self, events: list[Any], exc: Any, frame: Any
    ) -> tuple[list[Any], list[Any]]:
        frames, events = super()._handle_data_on_closed_stream(events, exc, frame)
        if self._stream_closed_by(frame.stream_id) is StreamClosedBy.SEND_RST_STREAM:
            self.late_frames += 1
            frames = [f for f in frames if not isinstance(f, RstStreamFrame)]
        return frames, events


@functools.cache
def h2_configuration(*, client_side: bool) -> h2.config.H2Configuration:
    """h2's settings for the core: bytes headers, h2's own header checks off (one object per
    role, shared by every connection: nothing changes it)."""
    return h2.config.H2Configuration(
        client_side=client_side,
        header_encoding=None,
        # Validation moves to greeter.core.headers (stream errors, not connection errors);
        # outbound headers are built by us and need no second check.
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


def new_h2_connection(config: CoreConfig, *, client_side: bool = False) -> GrpcH2Connection:
    """An H2Connection advertising `config`'s limits, for the server role or the client role."""
    connection = GrpcH2Connection(h2_configuration(client_side=client_side))
    limits = {
        SettingCodes.MAX_HEADER_LIST_SIZE: config.max_header_list_size,
        SettingCodes.INITIAL_WINDOW_SIZE: config.initial_window_size,
    }
    connection.remote_settings = SlimSettings(client=not client_side)
    if client_side:
        # A gRPC client accepts no server push (PROTOCOL-HTTP2.md); the server opens no streams.
        limits[SettingCodes.ENABLE_PUSH] = 0
        connection.local_settings = SlimSettings(client=True, initial_values=limits)
    else:
        server = {SettingCodes.MAX_CONCURRENT_STREAMS: config.max_concurrent_streams, **limits}
        connection.local_settings = _LimitCheckedPerStream(client=False, initial_values=server)
    hpack_cache.install(connection)
    connection.decoder.max_header_list_size = config.max_header_list_size
    return connection
