"""Per-connection defences against hostile peers: budgets, ping policy and a frame-header scanner.

No clock of its own: every call takes `now`. Each check answers with a `Trip` (what fired, the
GOAWAY code and debug data to send) or None; the sans-IO core turns a Trip into GOAWAY + events.
docs/security.md lists the threats; the limits come from `CoreConfig`.

- Stream churn (Rapid Reset CVE-2023-44487, MadeYouReset CVE-2025-8671): streams the peer resets
  before their response completed and streams the core resets or refuses because of the peer's
  errors share one budget.
- Control-frame floods: frames that make the server work without advancing any request (PING,
  SETTINGS, PRIORITY, GOAWAY, unknown types, zero-length DATA without END_STREAM, and
  WINDOW_UPDATE that returns no credit the server used) share another budget.
- Keepalive enforcement, gRFC A8 as grpc-go's `keepalive.EnforcementPolicy` implements it: a PING
  sooner than `min_ping_interval` after the previous one (or, with no active stream and
  `permit_ping_without_stream` off, sooner than two hours after it) is a strike; more than
  `max_ping_strikes` strikes end the connection with GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings").
  Sending response HEADERS or DATA forgives all strikes, and the first PING after that is free.
- Header blocks: the scanner reads only the 9-byte frame headers of the incoming byte stream and
  caps the bytes of one header block (HEADERS + CONTINUATION) before h2 buffers them, and its
  frames at h2's own limit (so the core knows why the connection ends without reading h2's text).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from greeter.core.budget import RateBudget
from greeter.core.config import CoreConfig

PROTOCOL_ERROR = 0x1
FRAME_SIZE_ERROR = 0x6
ENHANCE_YOUR_CALM = 0xB
CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_STREAM_PING_INTERVAL = 2 * 60 * 60.0
"""grpc-go's defaultPingTimeout: the interval that applies while no stream is active."""
HEADER_BLOCK_SLACK = 1024
"""Room above max_header_list_size for an encoded block's padding and table-size updates."""
MAX_HEADER_BLOCK_FRAMES = 64
"""h2's CONTINUATION_BACKLOG: a block of more frames (HEADERS included) is a PROTOCOL_ERROR there
(the empty-CONTINUATION flood costs work, not bytes, so the byte cap alone does not stop it)."""

# Frame types (RFC 9113 §6) and flags the scanner looks at.
DATA, HEADERS, PRIORITY, SETTINGS = 0, 1, 2, 4
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM, END_HEADERS = 0x1, 0x4
_FLOOD_TYPES = {PRIORITY: "PRIORITY", SETTINGS: "SETTINGS", PING: "PING", GOAWAY: "GOAWAY"}


@dataclass(frozen=True, slots=True)
class Trip:
    """A defence fired: close the connection with GOAWAY(error_code, debug)."""

    name: str
    detail: str
    error_code: int
    debug: bytes


_FRAME_HEADER = struct.Struct(">BHBBI")
"""RFC 9113 §4.1: the 24-bit length (as 8 + 16 bits), type, flags, stream id (with its R bit)."""


class FrameHead(NamedTuple):
    """The 9-byte header of one frame (RFC 9113 §4.1); a tuple: one per frame received."""

    type: int
    flags: int
    length: int
    stream_id: int
    end: int
    """Offset in the chunk just fed where the frame ends (beyond it if it continues later)."""


_new_tuple = tuple.__new__


class FrameScanner:
    """Splits the client's byte stream into frame headers without buffering any payload.

    After the 24-byte client preface, it keeps at most 8 bytes of a split frame header and a count
    of payload bytes to skip, so its cost is O(frames) time and O(1) memory. It goes quiet when
    the preface is wrong (h2 fails the connection then) or a frame header announces more than
    `max_frame_size` bytes: `oversized` then holds that header, and the core closes the
    connection at once — h2 would first buffer the whole announced body (up to 16 MiB).
    """

    __slots__ = ("_partial", "_preface_seen", "_skip", "max_frame_size", "oversized", "quiet")

    def __init__(self, max_frame_size: int, *, preface: bool = True) -> None:
        self.max_frame_size = max_frame_size
        self.oversized: FrameHead | None = None
        self.quiet = False
        self._preface_seen = 0 if preface else len(CLIENT_PREFACE)
        """Bytes of the client preface seen; a client's scanner (a server's bytes) has none."""
        self._partial = b""
        self._skip = 0

    def feed(self, data: bytes) -> list[FrameHead]:
        """The headers of the frames that start in `data`, in order."""
        if self.quiet:
            return []
        pos = self._check_preface(data)
        if self.quiet:
            return []
        heads: list[FrameHead] = []
        end = len(data)
        if self._skip and pos < end:  # the payload of a frame that an earlier read began
            step = min(self._skip, end - pos)
            self._skip -= step
            pos += step
        unpack = _FRAME_HEADER.unpack_from
        while pos < end:
            if self._partial or end - pos < 9:  # a header split between reads
                need = 9 - len(self._partial)
                raw = self._partial + bytes(data[pos : pos + need])
                pos += need
                if len(raw) < 9:
                    self._partial = raw
                    break
                self._partial = b""
                high, low, kind, flags, stream_id = _FRAME_HEADER.unpack(raw)
            else:
                high, low, kind, flags, stream_id = unpack(data, pos)
                pos += 9
            length = high << 16 | low
            # tuple.__new__: a NamedTuple's own constructor costs twice as much, once per frame.
            head = _new_tuple(FrameHead, (kind, flags, length, stream_id, pos + length))
            if length > self.max_frame_size:
                self.quiet = True
                self.oversized = head
                break
            heads.append(head)
            if pos + length > end:  # the payload goes on in later reads
                self._skip = pos + length - end
                break
            pos += length
        return heads

    def _check_preface(self, data: bytes) -> int:
        """Consume what `data` holds of the client preface; return where frames start."""
        seen = self._preface_seen
        if seen >= len(CLIENT_PREFACE):
            return 0
        take = min(len(CLIENT_PREFACE) - seen, len(data))
        if bytes(data[:take]) != CLIENT_PREFACE[seen : seen + take]:
            self.quiet = True
        self._preface_seen = seen + take
        return take


class PingPolicy:
    """gRFC A8 keepalive enforcement, rule for rule as grpc-go's http2Server.handlePing."""

    __slots__ = (
        "_forgiven",
        "_last",
        "max_strikes",
        "min_interval",
        "permit_without_stream",
        "strikes",
    )

    def __init__(self, min_interval: float, max_strikes: int, permit_without_stream: bool) -> None:
        self.min_interval = min_interval
        self.max_strikes = max_strikes
        self.permit_without_stream = permit_without_stream
        self.strikes = 0
        self._last: float | None = None
        self._forgiven = False

    def response_sent(self) -> None:
        """The server sent HEADERS or DATA: strikes are forgiven at the next PING."""
        self._forgiven = True

    def ping_received(self, now: float, active_streams: int) -> bool:
        """Judge one PING (not an ACK); True when the peer is out of strikes."""
        last, self._last = self._last, now
        if self._forgiven:
            self._forgiven = False
            self.strikes = 0
            return False
        if active_streams < 1 and not self.permit_without_stream:
            interval = NO_STREAM_PING_INTERVAL
        else:
            interval = self.min_interval
        if last is not None and now - last < interval:
            self.strikes += 1
        return self.strikes > self.max_strikes


class Defences:
    """Every budget of one connection, fed by the core as frames and events arrive."""

    def __init__(
        self, config: CoreConfig, max_frame_size: int, *, peer_preface: bool = True
    ) -> None:
        self.resets = RateBudget(config.reset_budget, config.reset_window)
        self.control = RateBudget(config.control_frame_budget, config.control_frame_window)
        self.pings = PingPolicy(
            config.min_ping_interval, config.max_ping_strikes, config.permit_ping_without_stream
        )
        block = config.max_header_block_size
        self.max_header_block = (
            config.max_header_list_size + HEADER_BLOCK_SLACK if block is None else block
        )
        self.scanner = FrameScanner(max_frame_size, preface=peer_preface)
        self.headers_ends: list[int] = []
        self.goaway_ends: list[int] = []
        self._goaway_rest = 0
        """Bytes of a GOAWAY frame that a previous read began and the next one completes."""
        self._block_bytes: int | None = None
        """Bytes of the header block in progress; None between blocks."""
        self._block_frames = 0
        """Frames of the header block in progress (HEADERS and CONTINUATIONs)."""
        self._window_credit = 0
        """WINDOW_UPDATEs that return credit the server used (earned by sending DATA)."""

    # -- inputs from the core --------------------------------------------------------------------

    def data_sent(self) -> None:
        """The server sent a DATA frame: a stream and a connection WINDOW_UPDATE may follow."""
        self._window_credit = min(self._window_credit + 2, self.control.limit)
        self.pings.response_sent()

    def scan(self, data: bytes, now: float, send_blocked: Callable[[], bool]) -> Trip | None:
        """Check the frame headers in newly received bytes, before h2 parses them.

        Also sets `headers_ends`: where each HEADERS frame complete in `data` ends, so the core
        can hand h2 a read full of new streams a few at a time (see ServerConnection), and
        `goaway_ends`: where each GOAWAY frame ends (h2 refuses every frame after a GOAWAY in
        the same call, so the core feeds it what follows separately; see Connection).
        """
        self.headers_ends = ends = []
        self.goaway_ends = goaways = []
        if self._goaway_rest:
            if self._goaway_rest <= len(data):
                goaways.append(self._goaway_rest)
                self._goaway_rest = 0
            else:
                self._goaway_rest -= len(data)
        scanner = self.scanner
        for head in scanner.feed(data):
            kind = head.type
            if self._block_bytes is None:
                if kind == DATA and (head.length or head.flags & END_STREAM):
                    continue  # a DATA frame that carries bytes (or END_STREAM)
                if (
                    kind == HEADERS
                    and head.flags & END_HEADERS
                    and head.length <= self.max_header_block
                ):
                    # A whole header block in one frame (an RPC's head or trailers): what
                    # `_header_block` and `_control_frame` would pass without a count.
                    if head.end <= len(data):
                        ends.append(head.end)
                    continue
            trip = self._header_block(head) or self._control_frame(head, now, send_blocked)
            if trip is not None:
                return trip
            if head.type == HEADERS and head.end <= len(data):
                ends.append(head.end)
            elif head.type == GOAWAY:
                if head.end <= len(data):
                    goaways.append(head.end)
                else:
                    self._goaway_rest = head.end - len(data)
        if scanner.oversized is not None:
            detail = f"frame of {scanner.oversized.length} bytes over SETTINGS_MAX_FRAME_SIZE"
            return Trip("frame_size", detail, FRAME_SIZE_ERROR, b"frame too large")
        return None

    def stream_reset(self, now: float, why: str) -> Trip | None:
        """A stream ended early through the peer's doing (its RST_STREAM or its error)."""
        return _spend(self.resets, now, "stream_resets", "stream resets", why)

    def late_data(self, now: float) -> Trip | None:
        """A DATA frame arrived on a stream we had reset (ignored, RFC 9113 §5.1)."""
        return self._spend_control(now, "DATA on a reset stream")

    def empty_data(self, now: float) -> Trip | None:
        """A DATA frame without payload or END_STREAM (e.g. padding only) arrived."""
        return self._spend_control(now, "empty DATA")

    def ping_received(self, now: float, active_streams: int) -> Trip | None:
        if not self.pings.ping_received(now, active_streams):
            return None
        detail = f"more than {self.pings.max_strikes} PING strikes (gRFC A8 policy)"
        return Trip("ping_strikes", detail, ENHANCE_YOUR_CALM, b"too_many_pings")

    # -- rules -----------------------------------------------------------------------------------

    def _header_block(self, head: FrameHead) -> Trip | None:
        if head.type == HEADERS:
            self._block_bytes = head.length
            self._block_frames = 1
        elif head.type == CONTINUATION and self._block_bytes is not None:
            self._block_bytes += head.length
            self._block_frames += 1
        else:
            self._block_bytes = None  # h2 rejects any other frame inside a header block
            return None
        size = self._block_bytes
        if head.flags & END_HEADERS:
            self._block_bytes = None
        if self._block_frames > MAX_HEADER_BLOCK_FRAMES:
            detail = f"header block of more than {MAX_HEADER_BLOCK_FRAMES} frames"
            return Trip("header_block", detail, PROTOCOL_ERROR, b"")
        if size <= self.max_header_block:
            return None
        detail = f"header block of more than {self.max_header_block} bytes"
        return Trip("header_block", detail, ENHANCE_YOUR_CALM, b"header block too large")

    def _control_frame(
        self, head: FrameHead, now: float, send_blocked: Callable[[], bool]
    ) -> Trip | None:
        kind = head.type
        if kind == DATA:
            if head.length or head.flags & END_STREAM:
                return None
            return self._spend_control(now, "empty DATA")
        if kind == WINDOW_UPDATE:
            if self._window_credit > 0:
                self._window_credit -= 1
                return None
            if send_blocked():
                return None
            return self._spend_control(now, "WINDOW_UPDATE")
        if kind in _FLOOD_TYPES:
            return self._spend_control(now, _FLOOD_TYPES[kind])
        if kind > CONTINUATION:
            return self._spend_control(now, f"unknown type {kind}")
        return None

    def _spend_control(self, now: float, what: str) -> Trip | None:
        return _spend(self.control, now, "control_frames", "control frames", what)


_BUDGET_DEBUG = {
    "stream_resets": b"too many stream resets",
    "control_frames": b"control frame flood",
}


def _spend(budget: RateBudget, now: float, name: str, noun: str, last: str) -> Trip | None:
    """Spend one unit of `budget`; over it, the Trip that ends the connection."""
    if budget.spend(now):
        return None
    detail = f"more than {budget.limit} {noun} in {budget.window:g}s (last: {last})"
    return Trip(name, detail, ENHANCE_YOUR_CALM, _BUDGET_DEBUG[name])


__all__ = ["Defences", "FrameHead", "FrameScanner", "PingPolicy", "Trip"]
