"""The server role of the sans-IO core: HTTP/2 bytes in, gRPC events out; commands in, bytes out.

The driver (greeter.server.driver) feeds received bytes to `receive_data`, reacts to the returned
events, issues commands (`send_headers`, `send_message`, `send_trailers`, ...) and writes whatever
`data_to_send` returns. Deadlines and scheduling belong to the driver; every protocol rule belongs
here, in greeter.core.connection (what both roles share) or in the pure modules they call.

Defences that fire are reported as `DefenceTriggered`, followed by GOAWAY and
`ConnectionTerminated(local=True)`. `receive_data` never raises: h2's errors become GOAWAY with
their code, and any other exception (a bug) becomes GOAWAY(INTERNAL_ERROR). Graceful shutdown is
the two-step GOAWAY of RFC 9113 §6.8.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from typing import ClassVar

import h2.connection
import h2.events
from grpclib.const import Status
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from greeter.core import headers
from greeter.core.config import MAX_STREAM_ID, CoreConfig, new_h2_connection
from greeter.core.connection import STREAM_GONE, BytesObserver, Connection
from greeter.core.events import (
    ConnectionTerminated,
    Event,
    RequestEnded,
    RequestReceived,
    RequestRejected,
    RpcAborted,
    ShutdownAcknowledged,
    StreamReset,
)
from greeter.core.stream_state import StreamState
from greeter.wire.errors import GreeterError, MessageError

SHUTDOWN_PING = b"greeter\x00"


class ServerConnection(Connection):
    """One HTTP/2 connection's gRPC server side, driven by bytes and commands."""

    _OPEN_STATE: ClassVar[h2.connection.ConnectionState] = h2.connection.ConnectionState.SERVER_OPEN

    def __init__(
        self,
        config: CoreConfig | None = None,
        *,
        on_bytes: BytesObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = config or CoreConfig()
        super().__init__(
            new_h2_connection(config), config, on_bytes=on_bytes, clock=clock, peer_preface=True
        )
        self._goaway_last_stream_id: int | None = None
        self._shutdown_started = False

    def _split_points(self) -> list[int]:
        ends = self._defences.headers_ends
        if len(ends) <= self.config.max_concurrent_streams - len(self._streams):
            return super()._split_points()
        # More new streams in this read than the limit admits: h2 would hold them all open at
        # once (and scan them all for every HEADERS, O(n²)) before the core refused any. Fed a
        # HEADERS frame at a time, each excess stream is refused — and counted — at once.
        return sorted({*ends, *super()._split_points()})

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
        stream.announced_encoding = encoding
        stream.headers_sent = True
        self._defences.pings.response_sent()

    def send_message(self, stream_id: int, payload: bytes, *, compress: bool = False) -> int:
        """Queue one response message; it leaves as the peer's flow-control window allows.

        With `compress` the message is compressed (flag 1) with the encoding the response
        headers announced; they are sent now if they were not yet, announcing it. When the
        headers went out without one (or the client accepts none), the message goes uncompressed.
        After this call `is_send_blocked` tells whether the message is still (partly) queued;
        the driver then waits for `SendUnblocked` before sending more (back-pressure).
        Returns the message's size on the wire: the 5-byte prefix and the (compressed) payload.
        """
        stream = self._open_stream(stream_id)
        if not stream.headers_sent:
            self.send_headers(stream_id, compress=compress)
        return self._queue_message(stream, payload, compress)

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
        self._mark_dirty(stream)

    def start_shutdown(self, debug: bytes = b"") -> None:
        """Begin a graceful shutdown with the two-step GOAWAY of RFC 9113 §6.8.

        The first GOAWAY names the largest stream id, so requests already in flight are not lost;
        a PING follows, and its ACK (one round trip later) triggers the final GOAWAY that names
        the last stream actually received. Streams started after it are refused. `debug` goes
        in the first GOAWAY's debug data (why the connection is closing).
        """
        if self._shutdown_started or self.closed:
            return
        self._shutdown_started = True
        self._inject_goaway(MAX_STREAM_ID, debug)
        self._h2.ping(SHUTDOWN_PING)

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
            # RFC 9110 §9.3.2: a response to HEAD carries no content.
            body = (b":method", b"HEAD") not in (event.headers or [])
            self._reject(stream_id, exc, out, body=body)
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

    def _bad_message(self, stream: StreamState, exc: MessageError, out: list[Event]) -> None:
        self._abort(stream, exc.status, exc.message, out)

    def _on_stream_ended(self, event: h2.events.StreamEnded, out: list[Event]) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None or stream.closing:
            return
        stream.peer_ended = True
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

    def _on_ping(self, event: h2.events.PingReceived, out: list[Event]) -> None:
        # h2 has already queued the ACK (RFC 9113 §6.7); the policy only judges the timing.
        self._check(self._defences.ping_received(self._now, len(self._streams)), out)

    def _on_ping_ack(self, event: h2.events.PingAckReceived, out: list[Event]) -> None:
        if self._on_keepalive_ack(event, out):
            return
        if event.ping_data == SHUTDOWN_PING and self._goaway_last_stream_id is None:
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

    def _sent_everything(self, stream: StreamState) -> None:
        if stream.trailers is not None:
            self._h2.send_headers(stream.stream_id, stream.trailers, end_stream=True)
            self._finish(stream)

    def _finish(self, stream: StreamState) -> None:
        """The response is complete: forget the stream, ask the client to stop if it still sends."""
        self._streams.pop(stream.stream_id, None)
        if not stream.peer_ended:
            self._stop_request(stream.stream_id)
        self._release(stream)

    def _stop_request(self, stream_id: int) -> None:
        """After a complete response, ask the client to stop sending a request nobody reads.

        RFC 9113 §8.1 allows RST_STREAM(NO_ERROR) for this (grpc-go does the same). When the
        request's END_STREAM came in the same read (h2 reports it after the DATA that made us
        answer), the stream is already closed and there is nothing to stop.
        """
        with contextlib.suppress(*STREAM_GONE):
            self._h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)

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

    def _reject(
        self, stream_id: int, exc: GreeterError, out: list[Event], *, body: bool = True
    ) -> None:
        """Refuse a request before its RPC starts, as the error says (greeter.wire.errors).

        An error with an HTTP/2 `error_code` is a stream error (RFC 9113 §8.1.1: a malformed
        request gets RST_STREAM and counts against the churn budget); any other is answered with
        its gRPC status, in a response with its HTTP status (and, unless `body` is False, a
        short text body for a human with curl).
        """
        if exc.error_code is not None:
            self._reset_quietly(stream_id, exc.error_code)
            out.append(RequestRejected(stream_id, f"malformed request: {exc}"))
            self._count_reset("malformed request", out)
            return
        # As in _reset_quietly: a RST_STREAM later in the same read already ended the stream.
        with contextlib.suppress(*STREAM_GONE):
            self._send_rejection(stream_id, exc, body)
        out.append(RequestRejected(stream_id, exc.message))

    def _send_rejection(self, stream_id: int, exc: GreeterError, body: bool) -> None:
        if exc.http_status == 200:
            block = headers.trailers_only(exc.status, exc.message)
            self._h2.send_headers(stream_id, block, end_stream=True)
            self._stop_request(stream_id)
            return
        block = headers.http_error_headers(exc.http_status, exc.status, exc.message)
        text = exc.message.encode() + b"\n"
        # The body is a courtesy (the status line and grpc-status say it all): it goes only when
        # it fits the peer's windows now (RFC 9113 §6.9.1), else the headers end the stream.
        room = min(self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size)
        if body and len(text) <= room:
            self._h2.send_headers(stream_id, block)
            self._h2.send_data(stream_id, text, end_stream=True)
        else:
            self._h2.send_headers(stream_id, block, end_stream=True)
        self._stop_request(stream_id)

    def _inject_goaway(self, last_stream_id: int, debug: bytes = b"") -> None:
        # h2's close_connection() would also close its state machine and forbid the responses of
        # in-flight streams, so graceful GOAWAYs are serialised here and queued in order.
        self._held_output += self._h2.data_to_send()
        frame = GoAwayFrame(
            0, last_stream_id=last_stream_id, error_code=ErrorCodes.NO_ERROR, additional_data=debug
        )
        self._held_output += frame.serialize()


ServerConnection._DISPATCH = {
    h2.events.RequestReceived: ServerConnection._on_request,
    h2.events.DataReceived: Connection._on_data,
    h2.events.StreamEnded: ServerConnection._on_stream_ended,
    h2.events.StreamReset: ServerConnection._on_stream_reset,
    h2.events.WindowUpdated: Connection._on_window_updated,
    h2.events.RemoteSettingsChanged: Connection._on_window_updated,
    h2.events.PingReceived: ServerConnection._on_ping,
    h2.events.PingAckReceived: ServerConnection._on_ping_ack,
    h2.events.ConnectionTerminated: ServerConnection._on_connection_terminated,
}


__all__ = ["BytesObserver", "ServerConnection"]
