"""One client connection's asyncio side around the sans-IO client core.

`ClientTransport` moves bytes between the socket and `ClientConnection`, routes each event to
the call (`CallSink`) that owns its stream, writes what the core queues once per loop turn, and
lets a sender wait while the server's flow-control window or the socket's buffer is full. It
tells the channel when the connection stops taking calls (the server's GOAWAY, a lost
connection) and closes itself once a draining connection has no call left. Protocol rules live
in the core; this module only decides *when*.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from grpclib.const import Status
from grpclib.protocol import Peer

from greeter.core.client_connection import ClientConnection
from greeter.core.config import CoreConfig
from greeter.core.events import (
    CallEnded,
    ConnectionTerminated,
    DefenceTriggered,
    Event,
    KeepaliveAcknowledged,
    MessageReceived,
    ResponseStarted,
    SendUnblocked,
)
from greeter.server.reads import BufferedReads
from greeter.tap.attach import ObserverFactory, SafeObserver, format_peer, open_observer

log = logging.getLogger("greeter.client")


@dataclass(frozen=True)
class Keepalive:
    """A connection's keepalive: PING every `time` s, close when one is not ACKed in `timeout`."""

    time: float
    timeout: float
    without_calls: bool


class CallSink(Protocol):
    """What the transport tells a call about its stream (greeter.client.call.ClientCall)."""

    def response_started(self, event: ResponseStarted) -> None: ...

    def message_received(self, event: MessageReceived) -> None: ...

    def call_ended(self, event: CallEnded) -> None: ...


class ClientTransport(BufferedReads):
    """One HTTP/2 connection of a channel: feeds the core, routes events, writes its output."""

    def __init__(
        self,
        config: CoreConfig,
        *,
        authority: str,
        scheme: str,
        user_agent: str,
        tap: ObserverFactory | None,
        connection_id: int,
        on_draining: Callable[[ClientTransport], None],
        keepalive: Keepalive | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._config = config
        self._authority = authority
        self._scheme = scheme
        self._user_agent = user_agent
        self._tap = tap
        self.connection_id = connection_id
        self._on_draining = on_draining
        self._observer: SafeObserver | None = None
        self._closed_by: str | None = None
        """Why this side closed the socket, when it did (the tap's close reason)."""
        self.calls: dict[int, CallSink] = {}
        self._send_waiters: dict[int, asyncio.Future[None]] = {}
        self._writable: asyncio.Future[None] | None = None
        self._flush_scheduled = False
        self.ready: asyncio.Future[None] = self._loop.create_future()
        """Done once the server's SETTINGS arrived (or with the error that ended the attempt)."""
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self.conn: ClientConnection | None = None
        self.peer: Peer | None = None
        self._keepalive = keepalive
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_deadline: asyncio.TimerHandle | None = None
        self.too_many_pings = False
        """The server said GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings")."""

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = Peer(self.transport)
        self._observer = open_observer(
            self._tap, self.connection_id, format_peer(self.peer.addr()), self.transport
        )
        self.conn = ClientConnection(
            self._config,
            authority=self._authority,
            scheme=self._scheme,
            user_agent=self._user_agent,
            on_bytes=self._observer.observe if self._observer is not None else None,
        )
        self.conn.initiate()
        self.flush()

    def data_received(self, data: bytes) -> None:
        assert self.conn is not None
        try:
            for event in self.conn.receive_data(data):
                self._dispatch(event)
        except Exception:  # a bug must cost this connection's calls, never the application
            log.exception("client connection to %s failed; closing it", self._peer_name())
            self.abort()
            return
        if not self.ready.done() and not self.conn.closed:
            self.ready.set_result(None)
            self._arm_keepalive()
        self.schedule_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = str(exc) if exc else self._closed_by or "closed by the server"
        for timer in (self._ping_timer, self._ping_deadline):
            if timer is not None:
                timer.cancel()
        if self.conn is not None:
            for event in self.conn.connection_lost(reason):
                self._dispatch(event)
        self._end_all(f"connection lost: {reason}")
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {reason}"))
        self._wake_all()
        if self._observer is not None:
            self._observer.close(reason)
        self._on_draining(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- what calls use --------------------------------------------------------------------------

    @property
    def accepts_calls(self) -> bool:
        return self.conn is not None and self.ready.done() and self.conn.accepts_calls

    @property
    def draining(self) -> bool:
        return self.conn is None or self.conn.draining or self.closed.done()

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self.conn is None:
            return
        data = self.conn.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)
        for stream_id in [s for s in self._send_waiters if not self.conn.is_send_blocked(s)]:
            self._wake(stream_id)
        if self.conn.draining and not self.calls and not self.transport.is_closing():
            self._closed_by = "closed by the client: drained"
            self.transport.close()

    async def send_window_open(self, stream_id: int) -> None:
        """Wait until the core handed the stream's queued bytes to HTTP/2, then for the socket."""
        assert self.conn is not None
        if self.conn.is_send_blocked(stream_id):
            waiter = self._loop.create_future()
            self._send_waiters[stream_id] = waiter
            try:
                await waiter
            finally:
                self._send_waiters.pop(stream_id, None)
        if self._writable is not None:
            await self._writable

    def release(self, stream_id: int) -> None:
        """The call on `stream_id` is over here: forget it (and close if draining and idle)."""
        self.calls.pop(stream_id, None)
        self._wake(stream_id)
        self.schedule_flush()

    def abort(self) -> None:
        """Close at once (a bug, or the channel closing): calls end UNAVAILABLE."""
        if self.conn is not None:
            self.conn.close()
            self.flush()
        if getattr(self, "transport", None) is not None:
            self._closed_by = "aborted by the client"
            self.transport.abort()

    def close(self) -> None:
        """GOAWAY and close once the calls in flight are done (a channel closing gracefully)."""
        if self.conn is None or self.conn.closed:
            return
        self.conn.close()
        self.flush()
        self._closed_by = "closed by the client"
        self.transport.close()

    # -- core events -------------------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        stream_id: int | None = getattr(event, "stream_id", None)
        call = self.calls.get(stream_id) if stream_id is not None else None
        if isinstance(event, MessageReceived):
            if call is not None:
                call.message_received(event)
        elif isinstance(event, ResponseStarted):
            if call is not None:
                call.response_started(event)
        elif isinstance(event, CallEnded):
            self.calls.pop(event.stream_id, None)
            self._wake(event.stream_id)
            if call is not None:
                call.call_ended(event)
        elif isinstance(event, SendUnblocked):
            self._wake(event.stream_id)
        elif isinstance(event, KeepaliveAcknowledged):
            if self._ping_deadline is not None:
                self._ping_deadline.cancel()
                self._ping_deadline = None
            self._arm_keepalive()
        elif isinstance(event, ConnectionTerminated):
            self._terminated(event)
        elif isinstance(event, DefenceTriggered):
            log.warning(
                "defence %s fired on the connection to %s: %s",
                event.name,
                self._peer_name(),
                event.detail,
            )

    def _terminated(self, event: ConnectionTerminated) -> None:
        if event.local:
            log.warning("closing the connection to %s: %s", self._peer_name(), event.reason)
            self._end_all(f"connection closed: {event.reason}")
            self.flush()
            self.transport.close()
        elif event.error_code:
            self.too_many_pings = event.reason == "too_many_pings"
            log.info(
                "server %s closed the connection: GOAWAY %d %s",
                self._peer_name(),
                event.error_code,
                event.reason,
            )
        self._on_draining(self)

    # -- keepalive (gRFC A8) ---------------------------------------------------------------------

    def _arm_keepalive(self) -> None:
        if self._keepalive is not None and not self.draining:
            self._ping_timer = self._loop.call_later(self._keepalive.time, self._keepalive_due)

    def _keepalive_due(self) -> None:
        keepalive = self._keepalive
        if keepalive is None or self.conn is None or self.draining:
            return
        if not self.calls and not keepalive.without_calls:
            self._arm_keepalive()  # nothing to keep alive now: look again later
            return
        self.conn.send_keepalive_ping()
        self.flush()
        self._ping_deadline = self._loop.call_later(keepalive.timeout, self._keepalive_missed)

    def _keepalive_missed(self) -> None:
        log.warning(
            "keepalive PING to %s not acknowledged in %.1f s; closing the connection",
            self._peer_name(),
            self._keepalive.timeout if self._keepalive is not None else 0.0,
        )
        self._end_all("keepalive timeout: the server did not answer a PING")
        self.abort()

    def _end_all(self, reason: str) -> None:
        """The connection failed here (the core already forgot its streams): end every call."""
        calls, self.calls = self.calls, {}
        for stream_id, call in calls.items():
            call.call_ended(CallEnded(stream_id, Status.UNAVAILABLE, reason))

    def _wake(self, stream_id: int) -> None:
        waiter = self._send_waiters.get(stream_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_all(self) -> None:
        for stream_id in list(self._send_waiters):
            self._wake(stream_id)
        self.resume_writing()

    def _peer_name(self) -> Any:
        return self.peer.addr() if self.peer is not None else self._authority
