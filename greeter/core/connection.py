"""What both roles of the sans-IO core share: bytes in, events out; commands in, bytes out.

No asyncio, no sockets, no threads: a driver feeds received bytes to `receive_data`, reacts to the
returned events, issues commands and writes whatever `data_to_send` returns. `Connection` holds
the role-neutral half over h2: the defences' scan before h2 parses a read, the send queue of each
stream handed to h2 within the peer's flow-control windows (messages queued in one loop turn share
DATA frames), flow-control credit returned once per turn, keepalive PINGs, the peer's GOAWAY, and
the safety net that turns any bug into GOAWAY(INTERNAL_ERROR) instead of an exception. The roles
(greeter.core.server_connection, greeter.core.client_connection) add their header rules, their
commands and their h2 event handlers (`_DISPATCH`).

Time is injected: the defences' rate budgets need "now", so the constructor takes a `clock`
(time.monotonic by default) that is read once per `receive_data` call and never slept on.

Spec: gRPC doc/PROTOCOL-HTTP2.md over RFC 9113, on top of h2's frame and stream state machine.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from greeter.core.config import CoreConfig, GrpcH2Connection
from greeter.core.defences import Defences, Trip
from greeter.core.events import (
    ConnectionTerminated,
    DefenceTriggered,
    Event,
    KeepaliveAcknowledged,
    MessageReceived,
    SendUnblocked,
)
from greeter.core.stream_state import StreamState, take_frame
from greeter.wire.errors import MessageError, StreamGoneError

BytesObserver = Callable[[Literal["in", "out"], bytes], None]
"""Called with each chunk received ("in") and each chunk handed out for sending ("out")."""
KEEPALIVE_PING = b"greeter\x01"
# Messages up to this size are sent as one bytes object (prefix copied in front); larger ones
# are queued as prefix + memoryview so that a multi-megabyte payload is never copied whole.
COALESCE_LIMIT = 16 * 1024
# h2 handles a whole read before the core sees its events, so by the time the core answers an
# event, h2 may have closed (or already forgotten) the stream; sends on it then raise these.
STREAM_GONE = (h2.exceptions.NoSuchStreamError, h2.exceptions.StreamIDTooLowError)

EventHandler = Callable[[Any, Any, list[Event]], None]


class Connection:
    """One HTTP/2 connection's gRPC side, role-neutral; see ServerConnection, ClientConnection."""

    _DISPATCH: ClassVar[dict[type[Any], EventHandler]] = {}
    """h2 event type -> the role's handler (one table per class, not per connection)."""
    _OPEN_STATE: ClassVar[h2.connection.ConnectionState]
    """h2's open state for this role (restored after the peer's GOAWAY(NO_ERROR))."""

    def __init__(
        self,
        h2_connection: GrpcH2Connection,
        config: CoreConfig,
        *,
        on_bytes: BytesObserver | None,
        clock: Callable[[], float],
        peer_preface: bool,
    ) -> None:
        self.config = config
        self._on_bytes = on_bytes
        """The wire tap's entry: sees every byte in and out; None costs nothing."""
        self._clock = clock
        self._now = 0.0
        """The clock as read at the start of the current `receive_data` call."""
        self._h2 = h2_connection
        self._defences = Defences(
            self.config, self._h2.max_inbound_frame_size, peer_preface=peer_preface
        )
        self._streams: dict[int, StreamState] = {}
        self._dirty: dict[int, StreamState] = {}
        """Streams with messages or an end queued by commands, for `data_to_send`."""
        self._dirty_bytes = 0
        """Bytes queued on the streams in `_dirty` (checked against the windows at once)."""
        self._credit: dict[int, int] = {}
        """Flow-control bytes the application consumed, returned at `data_to_send`."""
        self._ended_credit = 0
        """Unconsumed bytes of streams that ended since the last `data_to_send`."""
        self._ended_stream = 0
        """One of those streams (h2 returns only connection credit for an ended stream)."""
        self._held_output = bytearray()
        self.closed = False

    # -- bytes in, bytes out -------------------------------------------------------------------

    def initiate(self) -> None:
        """Queue our preface (RFC 9113 §3.4): SETTINGS and a larger connection window."""
        self._h2.initiate_connection()
        extra = self.config.connection_window_size - 65_535
        if extra > 0:
            self._h2.increment_flow_control_window(extra)

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the socket; return what they caused, in order. Never raises."""
        if self._on_bytes is not None:
            self._on_bytes("in", data)
        if self.closed:
            return []
        try:
            return self._receive(data)
        except Exception as exc:  # a bug must close one connection, not escape to the loop
            return self._fail(exc)

    def _receive(self, data: bytes) -> list[Event]:
        self._now = now = self._clock()
        events: list[Event] = []
        trip = self._defences.scan(data, now, self._send_blocked)
        if trip is not None:
            self._trip(trip, events)  # the flood never reaches h2
            return events
        start = 0
        for end in [*self._split_points(), len(data)]:
            if start < end and not self.closed:
                self._feed_h2(data[start:end], events)
            start = end
        return events

    def _split_points(self) -> list[int]:
        """Where to cut the read just scanned before h2 parses it, in increasing order.

        After each GOAWAY: h2 closes its state machine at a GOAWAY and would raise on any frame
        after it in the same call (a graceful shutdown's PING, say), before the core could
        restore the open state (`_peer_goaway`).
        """
        return self._defences.goaway_ends

    def _feed_h2(self, data: bytes, events: list[Event]) -> None:
        try:
            h2_events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            events.extend(self._protocol_error(exc))
            return
        while self._h2.late_frames and not self.closed:
            self._h2.late_frames -= 1
            self._check(self._defences.late_data(self._now), events)
        goaway = next(
            (i for i, e in enumerate(h2_events) if isinstance(e, h2.events.ConnectionTerminated)),
            None,
        )
        if goaway is not None:
            h2_events = self._peer_goaway(h2_events, goaway)
        dispatch = self._DISPATCH
        for h2_event in h2_events:
            dispatch.get(type(h2_event), _ignore)(self, h2_event, events)
            if self.closed:
                break

    def _peer_goaway(self, h2_events: list[Any], index: int) -> list[Any]:
        """The events of a read that holds the peer's GOAWAY, made safe to answer.

        h2 closes its state machine at the GOAWAY while it parses the read, before the core sees
        the events that came earlier in it; answering them would then raise. A GOAWAY(NO_ERROR)
        only says the peer opens no more streams, and RFC 9113 §6.8 lets the streams up to its
        last stream id finish, so h2 is put back to open (it has no "draining" state; h2 issue
        #1181 asks for one). After an error GOAWAY the connection is over: what came before it
        in the read is moot.
        """
        if h2_events[index].error_code:
            return h2_events[index:]
        self._h2.state_machine.state = self._OPEN_STATE
        return h2_events

    def _protocol_error(self, exc: h2.exceptions.ProtocolError) -> list[Event]:
        code = int(getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR))
        # h2 queues GOAWAY for an error inside its frame loop (RFC 9113 §5.4.1), but rejects
        # a bad client preface (§3.4: HTTP/1.1, TLS to a cleartext port) before that loop.
        if self._h2.state_machine.state != h2.connection.ConnectionState.CLOSED:
            self._h2.close_connection(code)
        self.closed = True
        self._streams.clear()
        reason = str(exc)
        if not reason or reason.isdigit():  # h2's StreamClosedError says just "3"
            reason = f"{type(exc).__name__}: {reason or 'no detail'}"
        last = self._h2.highest_inbound_stream_id
        events: list[Event] = []
        # h2's own defence: its HPACK decoded-size cap (the CONTINUATION count is greeter's scan).
        if isinstance(exc, h2.exceptions.DenialOfServiceError):
            events.append(DefenceTriggered("header_list", reason, code))
        events.append(ConnectionTerminated(code, last, reason, local=True))
        return events

    def _fail(self, exc: Exception) -> list[Event]:
        """An unexpected exception: GOAWAY(INTERNAL_ERROR), whatever state h2 is in."""
        self.closed = True
        self._streams.clear()
        code = ErrorCodes.INTERNAL_ERROR
        last = self._final_goaway(code, force=True)
        reason = f"internal error: {type(exc).__name__}: {exc}"
        return [ConnectionTerminated(int(code), last, reason, local=True)]

    def _final_goaway(self, code: int, debug: bytes = b"", *, force: bool = False) -> int:
        """Queue the last GOAWAY; return the last stream id it names.

        Through h2 when it can (so h2 sends nothing after it), serialised here when h2 is already
        closed or, with `force`, when its state cannot be trusted (it raised something unexpected).
        """
        last = int(self._h2.highest_inbound_stream_id)
        closed = self._h2.state_machine.state == h2.connection.ConnectionState.CLOSED
        if not force and not closed:
            self._h2.close_connection(code, additional_data=debug or None)
            return last
        self._held_output += self._h2.data_to_send()
        frame = GoAwayFrame(0, last_stream_id=last, error_code=code, additional_data=debug)
        self._held_output += frame.serialize()
        return last

    def data_to_send(self) -> bytes:
        """Everything queued for the socket since the last call (possibly empty).

        Messages, ends and flow-control credit queued by commands since the last call are handed
        to h2 here, once per call: messages share DATA frames, credit is returned in one
        acknowledgement per stream.
        """
        if self._dirty or self._credit or self._ended_credit:
            self._hand_over()
        data = self._h2.data_to_send()
        if self._held_output:
            data = bytes(self._held_output) + data
            self._held_output.clear()
        if data and self._on_bytes is not None:
            self._on_bytes("out", data)
        return data

    # -- commands both roles have ------------------------------------------------------------

    def acknowledge(self, stream_id: int, flow_bytes: int) -> None:
        """The application consumed a message: return its bytes to the peer's send window."""
        stream = self._streams.get(stream_id)
        if stream is None or flow_bytes <= 0:
            return  # a finished stream's unconsumed bytes were acknowledged when it ended
        stream.unconsumed -= flow_bytes
        self._credit[stream_id] = self._credit.get(stream_id, 0) + flow_bytes

    def reset_stream(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> None:
        """Abandon a stream with RST_STREAM (a cancelled handler or call)."""
        stream = self._streams.pop(stream_id, None)
        if stream is None or self.closed:
            return
        with contextlib.suppress(*STREAM_GONE, h2.exceptions.StreamClosedError):
            self._h2.reset_stream(stream_id, error_code)
        self._release(stream)

    def is_send_blocked(self, stream_id: int) -> bool:
        """True while queued bytes wait for the peer's flow-control window."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.queued:
            return False
        if stream_id not in self._dirty:
            return True  # handed to h2 and still queued: only a WINDOW_UPDATE lets it go
        # Not handed to h2 yet: blocked if this stream's window, or what the connection's
        # window leaves after the streams queued before it this turn, cannot take it all.
        h2_stream = self._h2.streams.get(stream_id)
        if h2_stream is None:
            return False  # h2 forgot it: the stream ended, its sender waits no more
        connection_window = self._h2.outbound_flow_control_window
        window = min(connection_window, h2_stream.outbound_flow_control_window)
        if self._dirty_bytes <= window:
            return False  # everything queued this turn fits both windows
        if stream.queued > window:
            return True
        ahead = 0
        for queued in self._dirty.values():
            ahead += queued.queued
            if queued is stream:
                break
        return ahead > connection_window

    def send_keepalive_ping(self) -> None:
        """Send a keepalive PING; `KeepaliveAcknowledged` reports its ACK (the driver times it)."""
        if not self.closed:
            self._h2.ping(KEEPALIVE_PING)

    def close(self, error_code: int = ErrorCodes.NO_ERROR, reason: str = "") -> None:
        """Queue a final GOAWAY; nothing is sent after it."""
        if self.closed:
            return
        self.closed = True
        self._streams.clear()
        if self._h2.state_machine.state == h2.connection.ConnectionState.CLOSED:
            self._final_goaway(error_code, reason.encode())
            return
        self._h2.close_connection(error_code, additional_data=reason.encode() or None)

    @property
    def open_streams(self) -> int:
        """RPCs that have started and not finished."""
        return len(self._streams)

    # -- shared h2 event handlers -------------------------------------------------------------

    def _on_window_updated(self, event: object, out: list[Event]) -> None:
        # A WINDOW_UPDATE (stream or connection) or a SETTINGS change of INITIAL_WINDOW_SIZE /
        # MAX_FRAME_SIZE may let queued data go; retry every blocked stream, oldest first.
        stream_id = getattr(event, "stream_id", 0)
        if stream_id:
            blocked = [self._streams[stream_id]] if stream_id in self._streams else []
        else:
            blocked = [s for s in self._streams.values() if s.outbound or s.half_close]
        out.extend(
            SendUnblocked(stream.stream_id)
            for stream in blocked
            if (stream.outbound or stream.half_close) and self._flush(stream)
        )

    def _on_data(self, event: h2.events.DataReceived, out: list[Event]) -> None:
        stream_id = event.stream_id
        flow_length = event.flow_controlled_length or 0
        data = event.data or b""
        if not data and flow_length and not event.stream_ended:
            # Padding only; zero-length DATA frames were already counted by the frame scan.
            self._check(self._defences.empty_data(self._now), out)
        stream = self._streams.get(stream_id)
        if stream is None or stream.closing or self.closed:
            self._h2.acknowledge_received_data(flow_length, stream_id)
            return
        try:
            ack_now, messages = stream.take(data, flow_length)
        except MessageError as exc:
            self._h2.acknowledge_received_data(flow_length, stream_id)
            self._bad_message(stream, exc, out)
            return
        if ack_now:
            self._h2.acknowledge_received_data(ack_now, stream_id)
        out.extend(
            MessageReceived(stream_id, payload, flow, compressed, size)
            for payload, flow, compressed, size in messages
        )

    def _bad_message(self, stream: StreamState, exc: MessageError, out: list[Event]) -> None:
        """The peer's message data is bad: the role ends the RPC with the error's status."""
        raise NotImplementedError

    def _on_keepalive_ack(self, event: h2.events.PingAckReceived, out: list[Event]) -> bool:
        """Report the ACK of our keepalive PING; False for any other ACK."""
        if event.ping_data != KEEPALIVE_PING:
            return False
        out.append(KeepaliveAcknowledged())
        return True

    # -- the send queue ------------------------------------------------------------------------

    def _open_stream(self, stream_id: int) -> StreamState:
        stream = self._streams.get(stream_id)
        if stream is None or stream.closing or self.closed:
            raise StreamGoneError(f"stream {stream_id} is not open")
        return stream

    def _queue_message(self, stream: StreamState, payload: bytes, compress: bool) -> int:
        """Frame one message (compressed per the headers sent) onto the stream's send queue;
        its size on the wire (prefix included)."""
        flag, payload = stream.outbound_message(payload, compress)
        prefix = struct.pack(">BI", flag, len(payload))
        if len(payload) <= COALESCE_LIMIT:
            stream.outbound.append(prefix + payload)
        else:
            stream.outbound.append(prefix)
            stream.outbound.append(memoryview(payload))
        self._mark_dirty(stream)
        stream.queued += 5 + len(payload)
        self._dirty_bytes += 5 + len(payload)
        return 5 + len(payload)

    def _mark_dirty(self, stream: StreamState) -> None:
        """`data_to_send` hands the stream's queue (or its end) to h2."""
        if stream.stream_id not in self._dirty:
            self._dirty[stream.stream_id] = stream
            self._dirty_bytes += stream.queued  # bytes an earlier turn's windows held back

    def _flush(self, stream: StreamState) -> bool:
        """Hand queued bytes to h2 within the flow-control window; True when all are gone."""
        stream_id = stream.stream_id
        outbound = stream.outbound
        while outbound:
            room = min(
                self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size
            )
            if room <= 0:
                return False
            chunk = take_frame(outbound, room)
            stream.queued -= len(chunk)
            self._h2.send_data(stream_id, chunk, end_stream=not outbound and self._ends(stream))
            self._defences.data_sent()
        self._sent_everything(stream)
        return True

    def _ends(self, stream: StreamState) -> bool:
        """The stream's last queued DATA frame goes now: True when it also ends the stream
        (the role records that it did)."""
        return False

    def _sent_everything(self, stream: StreamState) -> None:
        """The stream's queue is empty: send what ends it, if the role has queued an end."""

    def _hand_over(self) -> None:
        """Give h2 what commands queued: credit first (it may let the peer send), then data."""
        credit, self._credit = self._credit, {}
        for stream_id, flow_bytes in credit.items():
            # For a stream that ended meanwhile h2 returns the connection-level credit only.
            self._h2.acknowledge_received_data(flow_bytes, stream_id)
        if self._ended_credit and not self.closed:
            self._h2.acknowledge_received_data(self._ended_credit, self._ended_stream)
        self._ended_credit = 0
        dirty, self._dirty = self._dirty, {}
        self._dirty_bytes = 0
        for stream_id, stream in dirty.items():
            if self._streams.get(stream_id) is stream and not self.closed:
                self._flush(stream)

    def _release(self, stream: StreamState) -> None:
        """The RPC is over here: return the flow-control credit of messages that will now never
        be consumed, and let h2 forget the stream if it is closed.

        The stream is over (h2 has closed it, or does in this step: a reset, the end of both
        sides), so only the connection's window gains: the credit of every stream released
        before the next `data_to_send` goes back in one acknowledgement.
        """
        if stream.unconsumed > 0:
            self._ended_credit += stream.unconsumed
            self._ended_stream = stream.stream_id
            stream.unconsumed = 0
        self._h2.forget_closed_stream(stream.stream_id)

    # -- defences (the rules live in greeter.core.defences) -------------------------------------

    def _count_reset(self, why: str, out: list[Event]) -> None:
        """A stream ended early through the peer's doing: spend the churn budget."""
        self._check(self._defences.stream_reset(self._now, why), out)

    def _check(self, trip: Trip | None, out: list[Event]) -> None:
        if trip is not None and not self.closed:
            self._trip(trip, out)

    def _trip(self, trip: Trip, out: list[Event]) -> None:
        """Close with GOAWAY(trip.error_code, trip.debug) and tell the driver why."""
        self.closed = True
        self._streams.clear()
        last = self._final_goaway(trip.error_code, trip.debug)
        out.append(DefenceTriggered(trip.name, trip.detail, trip.error_code))
        out.append(ConnectionTerminated(trip.error_code, last, trip.detail, local=True))

    def _send_blocked(self) -> bool:
        """Our bytes wait for the peer's window (a WINDOW_UPDATE then makes progress)."""
        return any(stream.outbound for stream in self._streams.values())

    def _reset_quietly(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM from an event handler; h2 may have closed the stream later in this read."""
        with contextlib.suppress(*STREAM_GONE):
            self._h2.reset_stream(stream_id, error_code)


def _ignore(connection: Connection, event: object, out: list[Event]) -> None:
    """h2 events the gRPC layer has no use for (SETTINGS ACKs, PINGs h2 answers, priority)."""


__all__ = ["STREAM_GONE", "BytesObserver", "Connection"]
