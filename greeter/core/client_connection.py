"""The client role of the sans-IO core: calls in as commands, responses out as events.

The channel (greeter.client) starts calls (`start_call`), queues request messages
(`send_message`), half-closes (`end_request`), cancels (`reset_stream`), returns consumed bytes
(`acknowledge`) and writes whatever `data_to_send` returns; `receive_data` reports each call's
response as `ResponseStarted`, `MessageReceived` and exactly one `CallEnded`, whatever the server
sends: a response that is not gRPC, a block without grpc-status, a message over the receive
limit or in an encoding not offered, a reset mid-message (PROTOCOL-HTTP2.md, with the statuses of
doc/http-grpc-status-mapping.md and of its RST_STREAM table).

GOAWAY: h2's client state machine treats any received GOAWAY as the end of the connection, so a
server's graceful shutdown would lose every call in flight. The core restores h2's open state
(greeter.core.connection `_peer_goaway`), lets calls up to the GOAWAY's last stream id finish,
refuses new calls on the connection (`UnavailableError`; the channel opens a new one) and ends
the calls above the last stream id with `CallEnded(unprocessed=True)`, which the channel retries
transparently.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

import h2.connection
import h2.events
import h2.exceptions
from grpclib.const import Status
from h2.errors import ErrorCodes

from greeter.core import headers
from greeter.core.config import CoreConfig, new_h2_connection
from greeter.core.connection import STREAM_GONE, BytesObserver, Connection
from greeter.core.events import (
    CallEnded,
    ConnectionTerminated,
    Event,
    ResponseStarted,
)
from greeter.core.stream_state import StreamState
from greeter.wire import compression
from greeter.wire.errors import GreeterError, MessageError, UnavailableError

# PROTOCOL-HTTP2.md "Errors": the status of a call whose stream the server reset.
RESET_STATUS: dict[int, Status] = {
    ErrorCodes.REFUSED_STREAM: Status.UNAVAILABLE,
    ErrorCodes.CANCEL: Status.CANCELLED,
    ErrorCodes.ENHANCE_YOUR_CALM: Status.RESOURCE_EXHAUSTED,
    ErrorCodes.INADEQUATE_SECURITY: Status.PERMISSION_DENIED,
}
"""Any other code (NO_ERROR and the protocol errors included) ends the call INTERNAL."""


class ClientConnection(Connection):
    """One HTTP/2 connection's gRPC client side, driven by bytes and commands."""

    _OPEN_STATE: ClassVar[h2.connection.ConnectionState] = h2.connection.ConnectionState.CLIENT_OPEN

    def __init__(
        self,
        config: CoreConfig | None = None,
        *,
        authority: str = "localhost",
        scheme: str = "http",
        user_agent: str | None = None,
        on_bytes: BytesObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = config or CoreConfig()
        super().__init__(
            new_h2_connection(config, client_side=True),
            config,
            on_bytes=on_bytes,
            clock=clock,
            peer_preface=False,
        )
        self.authority = authority
        self.scheme = scheme
        self.user_agent = user_agent
        self.goaway_last_stream_id: int | None = None
        """Set once the server sent GOAWAY: calls above it were never processed."""

    # -- commands --------------------------------------------------------------------------------

    @property
    def accepts_calls(self) -> bool:
        """A new call may start now: open, no GOAWAY, under the server's stream limit."""
        if self.closed or self.goaway_last_stream_id is not None:
            return False
        limit = self._h2.remote_settings.max_concurrent_streams
        if len(self._streams) + 1 < limit:
            return True  # far from the limit: h2's exact count walks every stream it knows
        return bool(self._h2.open_outbound_streams < limit)

    @property
    def draining(self) -> bool:
        """The server sent GOAWAY or the connection closed: no new call will start here."""
        return self.closed or self.goaway_last_stream_id is not None

    def start_call(
        self,
        path: str,
        *,
        metadata: Iterable[tuple[str, str | bytes]] = (),
        timeout: float | None = None,
        compression_encoding: str = compression.IDENTITY,
        previous_attempts: int = 0,
    ) -> int:
        """Send a call's request headers; return its stream id.

        With a `compression_encoding` other than identity the headers announce it and request
        messages sent with `compress=True` use it. A retry names its `previous_attempts` in
        grpc-previous-rpc-attempts (gRFC A6). Raises UnavailableError when the connection
        takes no new call (see `accepts_calls`), ValueError or TypeError for bad metadata.
        """
        if not self.accepts_calls:
            raise UnavailableError("the connection takes no new call (GOAWAY, closed or full)")
        if not compression.is_supported(compression_encoding):
            raise ValueError(f"unsupported compression {compression_encoding!r}")
        block: Sequence[tuple[bytes, bytes]]
        if timeout is None and not previous_attempts and not metadata:
            block = headers.plain_request_headers(
                path, self.authority, self.scheme, compression_encoding, self.user_agent
            )
        else:
            block = headers.request_headers(
                path,
                self.authority,
                scheme=self.scheme,
                timeout=timeout,
                encoding=compression_encoding,
                user_agent=self.user_agent,
                previous_attempts=previous_attempts,
                custom=metadata,
            )
        stream_id = int(self._h2.get_next_available_stream_id())
        self._h2.send_headers(stream_id, block)
        stream = StreamState(
            stream_id,
            compression.IDENTITY,
            self.config.max_receive_message_size,
            compression_encoding,
        )
        stream.headers_sent = True
        stream.announced_encoding = compression_encoding
        self._streams[stream_id] = stream
        return stream_id

    def send_message(self, stream_id: int, payload: bytes, *, compress: bool = False) -> None:
        """Queue one request message (compressed with the call's encoding when `compress`)."""
        stream = self._open_stream(stream_id)
        if stream.half_close:
            raise RuntimeError(f"the request on stream {stream_id} already ended")
        self._queue_message(stream, payload, compress)

    def end_request(self, stream_id: int) -> None:
        """Half-close: END_STREAM follows the queued messages."""
        stream = self._open_stream(stream_id)
        stream.half_close = True
        self._mark_dirty(stream)

    def _ends(self, stream: StreamState) -> bool:
        # A half-closed request's END_STREAM rides on its last DATA frame (RFC 9113 §6.1), as
        # C-core's and grpc-go's do: no empty frame after it.
        if not stream.half_close:
            return False
        stream.half_close = False
        stream.local_ended = True
        return True

    def _sent_everything(self, stream: StreamState) -> None:
        if stream.half_close:
            stream.half_close = False
            stream.local_ended = True
            # The server may have reset the stream meanwhile: its CallEnded says so.
            with contextlib.suppress(*STREAM_GONE, h2.exceptions.StreamClosedError):
                self._h2.end_stream(stream.stream_id)

    # -- h2 event handlers ---------------------------------------------------------------------

    def _on_response(self, event: h2.events.ResponseReceived, out: list[Event]) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        ends = event.stream_ended is not None
        try:
            head = headers.parse_response(event.headers or [], ends_stream=ends)
        except GreeterError as exc:
            self._end(stream, Status.INTERNAL, f"malformed response headers: {exc}", out)
            return
        if head.end is not None:  # Trailers-Only, or not a gRPC response
            self._end_with(stream, head.end, out, reset=not ends)
            return
        if not compression.is_supported(head.encoding):
            message = f"response grpc-encoding {head.encoding!r} was not offered"
            self._end(stream, Status.INTERNAL, message, out)
            return
        stream.inbound_encoding = head.encoding
        out.append(ResponseStarted(event.stream_id, head.metadata))

    def _bad_message(self, stream: StreamState, exc: MessageError, out: list[Event]) -> None:
        self._end(stream, exc.status, exc.message, out)

    def _on_trailers(self, event: h2.events.TrailersReceived, out: list[Event]) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        if stream.decoder.buffered:
            # PROTOCOL-HTTP2.md: the stream must end on a message boundary.
            self._end(stream, Status.INTERNAL, "response ended inside a message", out)
            return
        try:
            end = headers.parse_trailers(event.headers or [])
        except GreeterError as exc:
            self._end(stream, Status.INTERNAL, exc.message, out)
            return
        self._end_with(stream, end, out, reset=False)

    def _on_stream_ended(self, event: h2.events.StreamEnded, out: list[Event]) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return  # ended by its trailers (or Trailers-Only), reported there
        message = "response ended without trailers"
        if stream.decoder.buffered:
            message = "response ended inside a message"
        self._end(stream, Status.INTERNAL, message, out, reset=False)

    def _on_stream_reset(self, event: h2.events.StreamReset, out: list[Event]) -> None:
        stream = self._streams.pop(event.stream_id, None)
        if stream is None:
            return
        self._release(stream)
        code = int(event.error_code or 0)
        status = RESET_STATUS.get(code, Status.INTERNAL)
        message = f"stream reset by the server: {_code_name(code)}"
        refused = code == ErrorCodes.REFUSED_STREAM
        out.append(CallEnded(event.stream_id, status, message, unprocessed=refused))

    def _on_ping_ack(self, event: h2.events.PingAckReceived, out: list[Event]) -> None:
        self._on_keepalive_ack(event, out)

    def _on_connection_terminated(
        self, event: h2.events.ConnectionTerminated, out: list[Event]
    ) -> None:
        code = int(event.error_code or 0)
        last = int(event.last_stream_id or 0)
        reason = (event.additional_data or b"").decode("utf-8", "replace")
        self.goaway_last_stream_id = last
        # RFC 9113 §6.8: streams above the last stream id were never processed: retry them.
        for stream_id in sorted(s for s in self._streams if s > last):
            stream = self._streams.pop(stream_id)
            self._release(stream)
            text = f"the server did not process the call (GOAWAY, last stream {last})"
            out.append(CallEnded(stream_id, Status.UNAVAILABLE, text, unprocessed=True))
        if code != ErrorCodes.NO_ERROR:
            text = f"connection closed by the server: GOAWAY {_code_name(code)} {reason}".rstrip()
            out.extend(
                CallEnded(stream_id, Status.UNAVAILABLE, text)
                for stream_id in sorted(self._streams)
            )
            self.closed = True
            self._streams.clear()
        out.append(ConnectionTerminated(code, last, reason, local=False))

    def connection_lost(self, reason: str) -> list[Event]:
        """The transport closed: every call still open ends UNAVAILABLE."""
        events: list[Event] = [
            CallEnded(stream_id, Status.UNAVAILABLE, f"connection lost: {reason}")
            for stream_id in sorted(self._streams)
        ]
        self.closed = True
        self._streams.clear()
        return events

    # -- helpers ---------------------------------------------------------------------------------

    def _end_with(
        self, stream: StreamState, end: headers.CallStatus, out: list[Event], *, reset: bool
    ) -> None:
        self._forget(stream, reset)
        out.append(
            CallEnded(
                stream.stream_id,
                end.status,
                end.message,
                end.metadata,
                end.details,
                retry_pushback=end.retry_pushback,
            )
        )

    def _end(
        self,
        stream: StreamState,
        status: Status,
        message: str,
        out: list[Event],
        *,
        reset: bool = True,
    ) -> None:
        """End the call here; with `reset` tell the server to stop (RST_STREAM(CANCEL))."""
        self._forget(stream, reset)
        out.append(CallEnded(stream.stream_id, status, message))

    def _forget(self, stream: StreamState, reset: bool) -> None:
        """Forget an ended call; reset its stream when told to, or when the request is still
        open (the server answered before the client half-closed: the stream would otherwise stay
        open, and count against the server's stream limit, for ever)."""
        self._streams.pop(stream.stream_id, None)
        stream.closing = True
        if reset or not stream.local_ended:
            self._reset_quietly(stream.stream_id, ErrorCodes.CANCEL)
        self._release(stream)


def _code_name(code: int) -> str:
    return ErrorCodes(code).name if code in ErrorCodes._value2member_map_ else str(code)


ClientConnection._DISPATCH = {
    h2.events.ResponseReceived: ClientConnection._on_response,
    h2.events.DataReceived: Connection._on_data,
    h2.events.TrailersReceived: ClientConnection._on_trailers,
    h2.events.StreamEnded: ClientConnection._on_stream_ended,
    h2.events.StreamReset: ClientConnection._on_stream_reset,
    h2.events.WindowUpdated: Connection._on_window_updated,
    h2.events.RemoteSettingsChanged: Connection._on_window_updated,
    h2.events.PingAckReceived: ClientConnection._on_ping_ack,
    h2.events.ConnectionTerminated: ClientConnection._on_connection_terminated,
}


__all__ = ["RESET_STATUS", "ClientConnection"]
