"""The sans-IO gRPC server connection: HTTP/2 bytes in, gRPC events out; commands in, bytes out.

No asyncio, no sockets, no threads: the driver feeds received bytes to `receive_data`, reacts to the
returned events, issues commands (`send_message`, `send_trailers`, ...) and writes whatever
`data_to_send` returns. Deadlines and scheduling belong to the driver (greeter.server.driver); every
protocol rule belongs here or in the pure modules it calls.

Time is injected: the rate budgets of greeter.core.defences need "now", so the constructor takes a
`clock` (time.monotonic by default) that is read once per `receive_data` call and never slept on;
tests pass a fake one. Defences that fire are reported as `DefenceTriggered`, followed by GOAWAY
and `ConnectionTerminated(local=True)`. `receive_data` never raises: h2's errors become GOAWAY
with their code, and any other exception (a bug) becomes GOAWAY(INTERNAL_ERROR).

Spec: gRPC doc/PROTOCOL-HTTP2.md over RFC 9113, on top of h2's frame and stream state machine.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import h2.connection
import h2.events
import h2.exceptions
from grpclib.const import Status
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from greeter.core import headers
from greeter.core.config import MAX_STREAM_ID, CoreConfig, new_h2_connection
from greeter.core.defences import Defences, Trip
from greeter.core.events import (
    ConnectionTerminated,
    DefenceTriggered,
    Event,
    KeepaliveAcknowledged,
    MessageReceived,
    RequestEnded,
    RequestReceived,
    RequestRejected,
    RpcAborted,
    SendUnblocked,
    ShutdownAcknowledged,
    StreamReset,
)
from greeter.core.stream_state import StreamState, take_frame
from greeter.wire.errors import GreeterError, MessageError, StreamGoneError

BytesObserver = Callable[[Literal["in", "out"], bytes], None]
"""Called with each chunk received ("in") and each chunk handed out for sending ("out")."""
SHUTDOWN_PING = b"greeter\x00"
KEEPALIVE_PING = b"greeter\x01"
# Messages up to this size are sent as one bytes object (prefix copied in front); larger ones
# are queued as prefix + memoryview so that a multi-megabyte payload is never copied whole.
COALESCE_LIMIT = 16 * 1024
# h2 handles a whole read before the core sees its events, so by the time the core answers an
# event, h2 may have closed (or already forgotten) the stream; sends on it then raise these.
STREAM_GONE = (h2.exceptions.NoSuchStreamError, h2.exceptions.StreamIDTooLowError)


class ServerConnection:
    """One HTTP/2 connection's gRPC server side, driven by bytes and commands."""

    def __init__(
        self,
        config: CoreConfig | None = None,
        *,
        on_bytes: BytesObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or CoreConfig()
        self._on_bytes = on_bytes
        self._clock = clock
        self._now = 0.0
        """The clock as read at the start of the current `receive_data` call."""
        """The wire tap's entry: sees every byte in and out; None costs nothing."""
        self._h2 = new_h2_connection(self.config)
        self._defences = Defences(self.config, self._h2.max_inbound_frame_size)
        self._streams: dict[int, StreamState] = {}
        self._dirty: dict[int, StreamState] = {}
        """Streams with messages or trailers queued by commands, for `data_to_send`."""
        self._credit: dict[int, int] = {}
        """Flow-control bytes the application consumed, returned at `data_to_send`."""
        self._held_output = bytearray()
        self._goaway_last_stream_id: int | None = None
        self._shutdown_started = False
        self.closed = False

    # -- bytes in, bytes out -------------------------------------------------------------------

    def initiate(self) -> None:
        """Queue the server preface (RFC 9113 §3.4): our SETTINGS and a larger connection window."""
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
        ends = self._defences.headers_ends
        if len(ends) <= self.config.max_concurrent_streams - len(self._streams):
            self._feed_h2(data, events)
            return events
        # More new streams in this read than the limit admits: h2 would hold them all open at
        # once (and scan them all for every HEADERS, O(n²)) before the core refused any. Fed a
        # HEADERS frame at a time, each excess stream is refused — and counted — at once.
        start = 0
        for end in [*ends, len(data)]:
            if start < end and not self.closed:
                self._feed_h2(data[start:end], events)
            start = end
        return events

    def _feed_h2(self, data: bytes, events: list[Event]) -> None:
        try:
            h2_events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            events.extend(self._protocol_error(exc))
            return
        goaway = next(
            (i for i, e in enumerate(h2_events) if isinstance(e, h2.events.ConnectionTerminated)),
            None,
        )
        if goaway is not None:
            h2_events = self._peer_goaway(h2_events, goaway)
        for h2_event in h2_events:
            _DISPATCH.get(type(h2_event), _ignore)(self, h2_event, events)
            if self.closed:
                break

    def _peer_goaway(self, h2_events: list[Any], index: int) -> list[Any]:
        """The events of a read that holds the peer's GOAWAY, made safe to answer.

        h2 closes its state machine at the GOAWAY while it parses the read, before the core sees
        the events that came earlier in it; answering them (a refused or rejected request) would
        then raise. A GOAWAY(NO_ERROR) only says the peer opens no more streams, and RFC 9113
        §6.8 lets the streams it already opened finish, so h2 is put back to open (it has no
        "draining" state). After an error GOAWAY the connection is over: what came before it in
        the read is moot.
        """
        if h2_events[index].error_code:
            return h2_events[index:]
        self._h2.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN
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

        Messages, trailers and flow-control credit queued by commands since the last call are
        handed to h2 here, once per call: messages share DATA frames, credit is returned in one
        acknowledgement per stream.
        """
        if self._dirty or self._credit:
            self._hand_over()
        data = self._h2.data_to_send()
        if self._held_output:
            data = bytes(self._held_output) + data
            self._held_output.clear()
        if data and self._on_bytes is not None:
            self._on_bytes("out", data)
        return data

    # -- commands --------------------------------------------------------------------------------

    def send_headers(
        self,
        stream_id: int,
        metadata: Iterable[tuple[str, str | bytes]] = (),
        *,
        compress: bool = False,
    ) -> None:
        """Send Response-Headers with custom metadata; at most once, before any message.

        With `compress` the response may compress messages: the headers name the stream's
        response encoding (chosen from the request's grpc-accept-encoding) in `grpc-encoding`,
        unless the client accepts no compression. Without it no message of the RPC can be
        compressed (`send_message(compress=True)` then sends flag 0).
        """
        stream = self._open_stream(stream_id)
        if stream.headers_sent:
            raise RuntimeError(f"response headers already sent on stream {stream_id}")
        encoding = stream.header_encoding(compress)
        self._h2.send_headers(stream_id, headers.response_headers(metadata, encoding))
        stream.sent_encoding = encoding
        stream.headers_sent = True
        self._defences.pings.response_sent()

    def send_message(self, stream_id: int, payload: bytes, *, compress: bool = False) -> None:
        """Queue one response message; it leaves as the peer's flow-control window allows.

        With `compress` the message is compressed (flag 1) with the encoding the response
        headers announced; they are sent now if they were not yet, announcing it. When the
        headers went out without one (or the client accepts none), the message goes uncompressed.
        After this call `is_send_blocked` tells whether the message is still (partly) queued;
        the driver then waits for `SendUnblocked` before sending more (back-pressure).
        """
        stream = self._open_stream(stream_id)
        if not stream.headers_sent:
            self.send_headers(stream_id, compress=compress)
        flag, payload = stream.outbound_message(payload, compress)
        prefix = struct.pack(">BI", flag, len(payload))
        if len(payload) <= COALESCE_LIMIT:
            stream.outbound.append(prefix + payload)
        else:
            stream.outbound.append(prefix)
            stream.outbound.append(memoryview(payload))
        stream.queued += 5 + len(payload)
        self._dirty[stream_id] = stream

    def send_trailers(
        self,
        stream_id: int,
        status: Status,
        message: str = "",
        metadata: Iterable[tuple[str, str | bytes]] = (),
        details: bytes | None = None,
    ) -> None:
        """End the RPC with a status: Trailers, or Trailers-Only when nothing was sent yet."""
        stream = self._open_stream(stream_id)
        self._defences.pings.response_sent()
        # The block is built before the stream is marked closing: refused metadata raises
        # ValueError or TypeError and must leave the RPC able to send its status.
        if not stream.headers_sent:
            block = headers.trailers_only(status, message, metadata, details)
            stream.closing = True
            self._h2.send_headers(stream_id, block, end_stream=True)
            self._finish(stream)
            return
        stream.trailers = headers.trailers(status, message, metadata, details)
        stream.closing = True
        self._dirty[stream_id] = stream

    def acknowledge(self, stream_id: int, flow_bytes: int) -> None:
        """The application consumed a message: return its bytes to the peer's send window."""
        stream = self._streams.get(stream_id)
        if stream is None or flow_bytes <= 0:
            return  # a finished stream's unconsumed bytes were acknowledged when it ended
        stream.unconsumed -= flow_bytes
        self._credit[stream_id] = self._credit.get(stream_id, 0) + flow_bytes

    def reset_stream(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> None:
        """Abandon a stream with RST_STREAM (e.g. the handler was cancelled)."""
        stream = self._streams.pop(stream_id, None)
        if stream is None or self.closed:
            return
        self._release(stream)
        self._h2.reset_stream(stream_id, error_code)

    def is_send_blocked(self, stream_id: int) -> bool:
        """True while queued response bytes wait for the peer's flow-control window."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.queued:
            return False
        if stream_id not in self._dirty:
            return True  # handed to h2 and still queued: only a WINDOW_UPDATE lets it go
        # Not handed to h2 yet: blocked if this stream's window, or what the connection's
        # window leaves after the streams queued before it this turn, cannot take it all.
        with contextlib.suppress(*STREAM_GONE, h2.exceptions.StreamClosedError):
            if stream.queued > self._h2.local_flow_control_window(stream_id):
                return True
            ahead = 0
            for queued in self._dirty.values():
                ahead += queued.queued
                if queued is stream:
                    break
            return ahead > self._h2.outbound_flow_control_window
        return False

    def start_shutdown(self) -> None:
        """Begin a graceful shutdown with the two-step GOAWAY of RFC 9113 §6.8.

        The first GOAWAY names the largest stream id, so requests already in flight are not lost;
        a PING follows, and its ACK (one round trip later) triggers the final GOAWAY that names
        the last stream actually received. Streams started after it are refused.
        """
        if self._shutdown_started or self.closed:
            return
        self._shutdown_started = True
        self._inject_goaway(MAX_STREAM_ID)
        self._h2.ping(SHUTDOWN_PING)

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
        self._h2.close_connection(error_code, additional_data=reason.encode() or None)

    @property
    def open_streams(self) -> int:
        """RPCs that have started and not finished."""
        return len(self._streams)

    # -- h2 event handlers ---------------------------------------------------------------------

    def _on_request(self, event: h2.events.RequestReceived, out: list[Event]) -> None:
        stream_id = event.stream_id
        if self._goaway_last_stream_id is not None and stream_id > self._goaway_last_stream_id:
            self._refuse(stream_id, "stream opened after GOAWAY", out)
            return
        if len(self._streams) >= self.config.max_concurrent_streams:
            self._refuse(stream_id, "over SETTINGS_MAX_CONCURRENT_STREAMS", out)
            return
        try:
            head = headers.parse_request(event.headers or [])
        except GreeterError as exc:
            self._reject(stream_id, exc, out)
            return
        self._streams[stream_id] = StreamState(
            stream_id,
            head.encoding,
            self.config.max_receive_message_size,
            headers.response_encoding(head.accept_encoding),
        )
        out.append(
            RequestReceived(
                stream_id,
                head.path,
                head.metadata,
                head.timeout,
                head.authority,
                head.user_agent,
                head.encoding,
            )
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
            self._abort(stream, exc.status, exc.message, out)
            return
        if ack_now:
            self._h2.acknowledge_received_data(ack_now, stream_id)
        out.extend(
            MessageReceived(stream_id, payload, flow, compressed)
            for payload, flow, compressed in messages
        )

    def _on_stream_ended(self, event: h2.events.StreamEnded, out: list[Event]) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None or stream.closing:
            return
        stream.request_ended = True
        if stream.decoder.buffered:
            # PROTOCOL-HTTP2.md: END_STREAM must fall on a message boundary.
            self._abort(stream, Status.INTERNAL, "request ended inside a message", out)
            return
        out.append(RequestEnded(event.stream_id))

    def _on_stream_reset(self, event: h2.events.StreamReset, out: list[Event]) -> None:
        stream = self._streams.pop(event.stream_id, None)
        if stream is None:
            return
        self._release(stream)
        if stream.closing:
            return  # the RPC had already ended here; the peer only drops what was still queued
        out.append(StreamReset(event.stream_id, int(event.error_code or 0)))
        self._count_reset("RST_STREAM from the peer", out)

    def _on_window_updated(self, event: object, out: list[Event]) -> None:
        # A WINDOW_UPDATE (stream or connection) or a SETTINGS change of INITIAL_WINDOW_SIZE /
        # MAX_FRAME_SIZE may let queued data go; retry every blocked stream, oldest first.
        stream_id = getattr(event, "stream_id", 0)
        if stream_id:
            blocked = [self._streams[stream_id]] if stream_id in self._streams else []
        else:
            blocked = [s for s in self._streams.values() if s.outbound]
        out.extend(
            SendUnblocked(stream.stream_id)
            for stream in blocked
            if stream.outbound and self._flush(stream)
        )

    def _on_ping(self, event: h2.events.PingReceived, out: list[Event]) -> None:
        # h2 has already queued the ACK (RFC 9113 §6.7); the policy only judges the timing.
        self._check(self._defences.ping_received(self._now, len(self._streams)), out)

    def _on_ping_ack(self, event: h2.events.PingAckReceived, out: list[Event]) -> None:
        if event.ping_data == KEEPALIVE_PING:
            out.append(KeepaliveAcknowledged())
        elif event.ping_data == SHUTDOWN_PING and self._goaway_last_stream_id is None:
            last = self._h2.highest_inbound_stream_id
            self._inject_goaway(last)
            self._goaway_last_stream_id = last
            out.append(ShutdownAcknowledged(last))

    def _on_connection_terminated(
        self, event: h2.events.ConnectionTerminated, out: list[Event]
    ) -> None:
        code = int(event.error_code or 0)
        if code != ErrorCodes.NO_ERROR:  # NO_ERROR: in-flight streams finish (see _peer_goaway)
            self.closed = True
            self._streams.clear()
        reason = (event.additional_data or b"").decode("utf-8", "replace")
        out.append(ConnectionTerminated(code, event.last_stream_id or 0, reason, local=False))

    # -- helpers -------------------------------------------------------------------------------

    def _open_stream(self, stream_id: int) -> StreamState:
        stream = self._streams.get(stream_id)
        if stream is None or stream.closing or self.closed:
            raise StreamGoneError(f"stream {stream_id} is not open")
        return stream

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
            self._h2.send_data(stream_id, chunk)
            self._defences.data_sent()
        if stream.trailers is not None:
            self._h2.send_headers(stream_id, stream.trailers, end_stream=True)
            self._finish(stream)
        return True

    def _hand_over(self) -> None:
        """Give h2 what commands queued: credit first (it may let the peer send), then data."""
        credit, self._credit = self._credit, {}
        for stream_id, flow_bytes in credit.items():
            # For a stream that ended meanwhile h2 returns the connection-level credit only.
            self._h2.acknowledge_received_data(flow_bytes, stream_id)
        dirty, self._dirty = self._dirty, {}
        for stream_id, stream in dirty.items():
            if self._streams.get(stream_id) is stream and not self.closed:
                self._flush(stream)

    def _finish(self, stream: StreamState) -> None:
        """The response is complete: forget the stream, ask the client to stop if it still sends."""
        self._streams.pop(stream.stream_id, None)
        self._release(stream)
        if not stream.request_ended:
            self._stop_request(stream.stream_id)

    def _stop_request(self, stream_id: int) -> None:
        """After a complete response, ask the client to stop sending a request nobody reads.

        RFC 9113 §8.1 allows RST_STREAM(NO_ERROR) for this (grpc-go does the same). When the
        request's END_STREAM came in the same read (h2 reports it after the DATA that made us
        answer), the stream is already closed and there is nothing to stop.
        """
        with contextlib.suppress(*STREAM_GONE):
            self._h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)

    def _release(self, stream: StreamState) -> None:
        """Return the flow-control credit of messages that will now never be consumed."""
        if stream.unconsumed > 0:
            self._h2.acknowledge_received_data(stream.unconsumed, stream.stream_id)
            stream.unconsumed = 0

    def _abort(self, stream: StreamState, status: Status, message: str, out: list[Event]) -> None:
        try:
            self.send_trailers(stream.stream_id, status, message)
        except STREAM_GONE:
            # The peer reset the stream later in the same read (h2 is ahead of its events):
            # nothing can be sent, and the stream is over either way.
            self._streams.pop(stream.stream_id, None)
            self._release(stream)
        out.append(RpcAborted(stream.stream_id, status, message))
        self._count_reset(f"aborted: {message}", out)

    def _refuse(self, stream_id: int, reason: str, out: list[Event]) -> None:
        self._reset_quietly(stream_id, ErrorCodes.REFUSED_STREAM)
        out.append(RequestRejected(stream_id, f"refused: {reason}"))
        self._count_reset(f"refused: {reason}", out)

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
        """Response bytes wait for the peer's window (a WINDOW_UPDATE then makes progress)."""
        return any(stream.outbound for stream in self._streams.values())

    def _reset_quietly(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM from an event handler; h2 may have closed the stream later in this read."""
        with contextlib.suppress(*STREAM_GONE):
            self._h2.reset_stream(stream_id, error_code)

    def _reject(self, stream_id: int, exc: GreeterError, out: list[Event]) -> None:
        """Refuse a request before its RPC starts, as the error says (greeter.wire.errors).

        An error with an HTTP/2 `error_code` is a stream error (RFC 9113 §8.1.1: a malformed
        request gets RST_STREAM and counts against the churn budget); any other is answered with
        its gRPC status, in a response with its HTTP status.
        """
        if exc.error_code is not None:
            self._reset_quietly(stream_id, exc.error_code)
            out.append(RequestRejected(stream_id, f"malformed request: {exc}"))
            self._count_reset("malformed request", out)
            return
        # As in _reset_quietly: a RST_STREAM later in the same read already ended the stream.
        with contextlib.suppress(*STREAM_GONE):
            self._send_rejection(stream_id, exc)
        out.append(RequestRejected(stream_id, exc.message))

    def _send_rejection(self, stream_id: int, exc: GreeterError) -> None:
        if exc.http_status == 200:
            block = headers.trailers_only(exc.status, exc.message)
            self._h2.send_headers(stream_id, block, end_stream=True)
        else:
            block = headers.http_error_headers(exc.http_status, exc.status, exc.message)
            self._h2.send_headers(stream_id, block)
            self._h2.send_data(stream_id, exc.message.encode() + b"\n", end_stream=True)
        self._stop_request(stream_id)

    def _inject_goaway(self, last_stream_id: int) -> None:
        # h2's close_connection() would also close its state machine and forbid the responses of
        # in-flight streams, so graceful GOAWAYs are serialised here and queued in order.
        self._held_output += self._h2.data_to_send()
        frame = GoAwayFrame(0, last_stream_id=last_stream_id, error_code=ErrorCodes.NO_ERROR)
        self._held_output += frame.serialize()


def _ignore(connection: ServerConnection, event: object, out: list[Event]) -> None:
    """h2 events the gRPC layer has no use for (SETTINGS ACKs, PINGs h2 answers, priority)."""


# One table for every connection (bound methods per connection would cost memory per connection).
_DISPATCH: dict[type[Any], Callable[[ServerConnection, Any, list[Event]], None]] = {
    h2.events.RequestReceived: ServerConnection._on_request,
    h2.events.DataReceived: ServerConnection._on_data,
    h2.events.StreamEnded: ServerConnection._on_stream_ended,
    h2.events.StreamReset: ServerConnection._on_stream_reset,
    h2.events.WindowUpdated: ServerConnection._on_window_updated,
    h2.events.RemoteSettingsChanged: ServerConnection._on_window_updated,
    h2.events.PingReceived: ServerConnection._on_ping,
    h2.events.PingAckReceived: ServerConnection._on_ping_ack,
    h2.events.ConnectionTerminated: ServerConnection._on_connection_terminated,
}


__all__ = ["BytesObserver", "ServerConnection"]
