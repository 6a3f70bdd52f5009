"""Connection layer of the wire tap: HTTP/2 flow-control windows as the wire shows them.

Windows are seen from the tapped endpoint (RFC 9113 section 6.9): the *in* windows are what the
peer may still send (connection and per stream), the *out* windows what the endpoint may still
send. Every window starts at 65,535 (section 6.9.2); DATA spends its whole frame length, padding
included (section 6.9.1); WINDOW_UPDATE adds to the windows of the direction opposite to its
own; SETTINGS_INITIAL_WINDOW_SIZE sent by one side sets the initial stream window of the flow
towards that side and shifts every open stream's window by the delta (section 6.9.2).

Approximation: a SETTINGS value is applied when the tap sees it. That is exact for the peer's
SETTINGS (the endpoint applies them on receipt). For the endpoint's own SETTINGS, the peer
applies them only when it receives them, so DATA already in flight is counted against the new
value: an *in* window can read low (even negative) for a moment, but since the delta reaches
every open stream either way, the values agree again once the peer has the SETTINGS.

A *stall* is a window that reaches zero or below while the tap watches (the tap cannot know
whether the sender has more to send); its *unstall* is the first time it is positive again.
Windows of a closed stream are dropped with the stream, a pending stall with them.
"""

from __future__ import annotations

from collections.abc import Callable

from greeter.tap.records import ConnectionRecord, Direction, FrameRecord

DEFAULT_WINDOW = 65_535
_INITIAL_WINDOW_SIZE = "INITIAL_WINDOW_SIZE"
_SIDE: dict[Direction, int] = {"in": 0, "out": 1}
_OTHER: dict[Direction, Direction] = {"in": "out", "out": "in"}


class FlowControl:
    """Tracks the connection and stream windows of one connection and emits window records."""

    __slots__ = (
        "_connection",
        "_connection_id",
        "_emit",
        "_initial",
        "_released",
        "_stalls",
        "_streams",
    )

    def __init__(self, emit: Callable[[ConnectionRecord], None], connection_id: int) -> None:
        self._emit = emit
        self._connection_id = connection_id
        self._connection = [DEFAULT_WINDOW, DEFAULT_WINDOW]  # [in, out]
        self._initial = [DEFAULT_WINDOW, DEFAULT_WINDOW]  # initial stream windows [in, out]
        self._streams: dict[int, list[int]] = {}
        self._stalls: dict[tuple[int, Direction], float] = {}
        """(stream id or 0, blocked direction) -> when the window reached zero."""
        self._released: list[ConnectionRecord] = []
        """stall/unstall records waiting for the window record that shows their cause."""

    def open_stream(self, record: FrameRecord) -> None:
        """The request HEADERS ``record`` began a stream: its windows start at the initial sizes
        in force."""
        stream_id = record.stream_id
        windows = self._streams[stream_id] = list(self._initial)
        for side, direction in enumerate(_SIDE):
            if windows[side] <= 0:
                self._stall(stream_id, direction, record)
        self._flush()

    def drop_stream(self, stream_id: int) -> None:
        """The stream closed (or is no longer tracked): forget its windows and stalls."""
        self._streams.pop(stream_id, None)
        self._stalls.pop((stream_id, "in"), None)
        self._stalls.pop((stream_id, "out"), None)

    def on_data(self, record: FrameRecord) -> None:
        """DATA spends the windows of its own direction, connection and stream."""
        self._adjust(self._connection, 0, record.direction, -record.length, record)
        self._adjust_stream(record, record.direction, -record.length)
        self._emit_window(record, record.stream_id)

    def on_window_update(self, record: FrameRecord) -> None:
        """WINDOW_UPDATE grants the opposite direction more room, on its stream or stream 0."""
        direction = _OTHER[record.direction]
        increment = record.window_increment or 0
        if record.stream_id == 0:
            self._adjust(self._connection, 0, direction, increment, record)
        else:
            self._adjust_stream(record, direction, increment)
        self._emit_window(record, record.stream_id)

    def on_settings(self, record: FrameRecord) -> None:
        """Apply SETTINGS_INITIAL_WINDOW_SIZE (the last one in the frame wins, section 6.5)."""
        values = [value for name, value in record.settings or () if name == _INITIAL_WINDOW_SIZE]
        if "ACK" in record.flags or not values:
            return
        direction = _OTHER[record.direction]  # the flow towards the side that sent SETTINGS
        side = _SIDE[direction]
        delta = values[-1] - self._initial[side]
        if delta == 0:
            return
        self._initial[side] = values[-1]
        self._emit_window(record, 0)
        for stream_id, windows in self._streams.items():
            self._adjust(windows, stream_id, direction, delta, record)
            self._emit_window(record, stream_id)

    def _adjust_stream(self, record: FrameRecord, direction: Direction, delta: int) -> None:
        windows = self._streams.get(record.stream_id)
        if windows is not None:
            self._adjust(windows, record.stream_id, direction, delta, record)

    def _adjust(
        self, windows: list[int], stream_id: int, direction: Direction, delta: int, at: FrameRecord
    ) -> None:
        """Move one window by ``delta`` because of the frame ``at`` (whose times records take)."""
        side = _SIDE[direction]
        old = windows[side]
        windows[side] = old + delta
        if old > 0 >= old + delta:
            self._stall(stream_id, direction, at)
        elif old <= 0 < old + delta:
            started = self._stalls.pop((stream_id, direction), None)
            if started is not None:
                self._released.append(
                    ConnectionRecord(
                        self._connection_id,
                        direction,
                        at.timestamp,
                        stream_id,
                        "unstall",
                        duration=at.timestamp - started,
                        wall=at.wall,
                    )
                )

    def _stall(self, stream_id: int, direction: Direction, at: FrameRecord) -> None:
        self._stalls[stream_id, direction] = at.timestamp
        self._released.append(
            ConnectionRecord(
                self._connection_id, direction, at.timestamp, stream_id, "stall", wall=at.wall
            )
        )

    def _emit_window(self, record: FrameRecord, stream_id: int) -> None:
        """A window record for the frame, then the stalls and unstalls it caused."""
        windows = self._streams.get(stream_id) if stream_id else None
        self._emit(
            ConnectionRecord(
                self._connection_id,
                record.direction,
                record.timestamp,
                stream_id,
                "window",
                connection_in=self._connection[0],
                connection_out=self._connection[1],
                stream_in=windows[0] if windows is not None else None,
                stream_out=windows[1] if windows is not None else None,
                wall=record.wall,
            )
        )
        self._flush()

    def _flush(self) -> None:
        released, self._released = self._released, []
        for stall in released:
            self._emit(stall)
