"""The connection driver: one accepted connection's asyncio side around the sans-IO core.

It moves bytes between the transport and `ServerConnection`, routes each
RPC through the server's `__mapping__()` table to a handler task, and schedules: deadlines,
cancellation, back-pressure, one write per loop turn, graceful shutdown, the watchdog's time
limits. Protocol rules live in the core; this module only decides *when*.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, cast

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.protocol import Peer
from h2.errors import ErrorCodes

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
from greeter.core.server_connection import ServerConnection
from greeter.server.config import ServerConfig
from greeter.server.context import rpc_scope
from greeter.server.handler_stream import ServerStream
from greeter.server.interceptors import ServerInterceptor
from greeter.server.reads import BufferedReads
from greeter.server.watchdog import Watchdog
from greeter.tap.attach import ObserverFactory, SafeObserver, format_peer, open_observer

log = logging.getLogger("greeter.server")

UNARY_REQUEST = frozenset({Cardinality.UNARY_UNARY, Cardinality.UNARY_STREAM})
# A handler that sends without ever waiting (its window is open) would starve the loop: after
# this many messages without a flush the driver writes and yields, so resets and other clients
# are served while a large stream is produced.
MESSAGES_PER_TURN = 64
SHED_GRACE = 1.0
"""Seconds a connection closed by the connection cap gets to finish (a PING round trip and the
requests that raced the GOAWAY); short, since its file descriptor is already given away."""
PREFACE_SIZE = 24  # RFC 9113 §3.4: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class ServerMonitor(Protocol):
    """Told of connection-level events (greeter.server.prometheus.PrometheusMetrics)."""

    def connection_opened(self) -> None: ...

    def connection_closed(self) -> None: ...

    def defence_fired(self, name: str) -> None: ...

    def bytes_received(self, count: int) -> None: ...

    def bytes_sent(self, count: int) -> None: ...

    def flow_control_stalled(self) -> None:
        """A response waited for the peer's HTTP/2 window (its stream's or the connection's)."""
        ...


class ConnectionHost(Protocol):
    """What a driver needs from the server that accepted its connection (greeter.server.Server).

    The driver depends on this, never on the server class, as grpclib's protocol layer depends
    on its handler interface: the server owns the connection set, the driver only reports in.
    """

    config: ServerConfig
    tap: ObserverFactory | None
    interceptors: Sequence[ServerInterceptor]
    monitor: ServerMonitor | None

    @property
    def mapping(self) -> Mapping[str, Handler]:
        """Handler per method path ("/package.Service/Method")."""
        ...

    def next_connection_id(self) -> int:
        """A new connection id: unique per server, in accept order."""
        ...

    def admit(self, connection: ConnectionDriver) -> bool:
        """Count `connection` as open; False (and not counted) when the connection cap is full."""
        ...

    def release(self, connection: ConnectionDriver) -> None:
        """`connection` has closed."""
        ...


class ConnectionDriver(BufferedReads):
    """One accepted connection: feeds the core, runs a task per RPC, writes what the core queues."""

    def __init__(self, server: ConnectionHost) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self.connection_id = server.next_connection_id()
        self._observer: SafeObserver | None = None
        self._watchdog: Watchdog | None = None
        self._received = 0
        self._rpcs: dict[int, ServerStream[Any, Any]] = {}
        self._send_waiters: dict[int, asyncio.Future[None]] = {}
        self._flush_scheduled = False
        self._unflushed_messages = 0
        self._writable: asyncio.Future[None] | None = None
        self._draining = False
        """No new RPC can start (final GOAWAY sent, or the peer's GOAWAY): close once idle."""
        self.closed = self._loop.create_future()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = Peer(self.transport)
        config = self._server.config
        self._observer = open_observer(
            self._server.tap, self.connection_id, format_peer(self.peer.addr()), self.transport
        )
        on_bytes = self._observer.observe if self._observer is not None else None
        self.conn = ServerConnection(config.limits, on_bytes=on_bytes)
        self.conn.initiate()
        if not self._server.admit(self):
            log.warning(
                "refusing connection from %s: %d connections open, every one with RPCs",
                self.peer.addr(),
                config.max_connections,
            )
            self.conn.close(ErrorCodes.NO_ERROR, "too many connections")
            self._flush()
            transport.close()
            return
        self._watchdog = Watchdog(
            self._loop,
            config.timeouts,
            expire=self._expired,
            ping=self._send_keepalive,
            retire=self._retire,
        )
        self._watchdog.start()
        self._flush()

    def data_received(self, data: bytes) -> None:
        watchdog = self._watchdog
        if watchdog is None:
            return  # refused by the connection cap; the transport is closing
        watchdog.last_read = self._loop.time()
        if self._server.monitor is not None:
            self._server.monitor.bytes_received(len(data))
        try:
            events = self.conn.receive_data(data)
            for event in events:
                self._dispatch(event)
        except Exception:
            # A bug must cost this connection, never the server (nor escape to the loop).
            log.exception("connection from %s failed; closing it", self.peer.addr())
            self._expired("internal error", error_code=ErrorCodes.INTERNAL_ERROR)
            return
        if self._received < PREFACE_SIZE:
            self._received += len(data)
            if self._received >= PREFACE_SIZE and not self.conn.closed:
                watchdog.handshake_done()  # h2 has checked the client preface
        self.schedule_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.release(self)
        if self._watchdog is not None:
            self._watchdog.stop()
        if self._observer is not None:
            self._observer.close(str(exc) if exc else "closed")
        for stream in self._rpcs.values():
            stream.abandon()
        self._rpcs.clear()
        for waiter in self._send_waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        # The peer is not reading: senders wait, and so does reading — whatever it sends next
        # (PINGs, SETTINGS, requests) would only queue more answers (docs/security.md).
        self._writable = self._loop.create_future()
        self.transport.pause_reading()
        if self._watchdog is not None:
            self._watchdog.write_paused(True)

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None
        self.transport.resume_reading()
        if self._watchdog is not None:
            self._watchdog.write_paused(False)

    @property
    def idle_since(self) -> float | None:
        """Loop time since which this connection has had no RPC; None while it has one."""
        return self._watchdog.idle_since if self._watchdog is not None else None

    def shed(self, reason: str) -> None:
        """Close this idle connection to make room (the connection cap): the two-step GOAWAY,
        so a request already on its way is still served (or, above the final GOAWAY, safely
        retried by the client), then closed once drained or after `SHED_GRACE` seconds."""
        log.warning("closing connection from %s: %s", self.peer.addr(), reason)
        self._retire(reason)
        self._loop.call_later(SHED_GRACE, self._shed_overdue)

    def _retire(self, reason: str) -> None:
        """The two-step GOAWAY with `reason`; the connection closes once its RPCs are done."""
        log.debug("retiring connection from %s: %s", self.peer.addr(), reason)
        self.conn.start_shutdown(reason.encode())
        self._flush()

    def _shed_overdue(self) -> None:
        if not self.closed.done():
            self.abort(ErrorCodes.NO_ERROR, "connection cap: closed for a new connection")

    @property
    def write_paused(self) -> bool:
        """The transport's write buffer is above its high-water mark (pause_writing)."""
        return self._writable is not None

    # -- RpcHost, used by ServerStream --------------------------------------------------------

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    async def send_window_open(self, stream_id: int) -> None:
        """Wait until the core handed this stream's queued bytes to HTTP/2, then for the socket."""
        if self.conn.is_send_blocked(stream_id):
            if self._server.monitor is not None:
                self._server.monitor.flow_control_stalled()
            waiter = self._loop.create_future()
            self._send_waiters[stream_id] = waiter
            try:
                await asyncio.wait_for(waiter, self._server.config.timeouts.write_stall)
            except TimeoutError:
                self._send_stalled(stream_id)
            finally:
                self._send_waiters.pop(stream_id, None)
        if self._writable is not None:
            await self._writable

    def message_sent(self) -> bool:
        """Count a sent message; True when the sender should yield (see MESSAGES_PER_TURN)."""
        self._unflushed_messages += 1
        if self._unflushed_messages < MESSAGES_PER_TURN:
            return False
        self._flush()
        return True

    # -- core events ---------------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        HANDLERS[type(event)](self, event)

    def _on_request(self, event: RequestReceived) -> None:
        handler = self._server.mapping.get(event.path)
        if handler is None:
            log.info("unknown method %s from %s", event.path, self.peer.addr())
            self.conn.send_trailers(event.stream_id, Status.UNIMPLEMENTED, "Method not found")
            return
        stream: ServerStream[Any, Any] = ServerStream(
            self, event, handler, self._server.interceptors
        )
        if not self._rpcs and self._watchdog is not None:
            self._watchdog.rpcs_active(True)
        self._rpcs[event.stream_id] = stream
        if event.timeout is not None:
            stream.timer = self._loop.call_later(event.timeout, self._deadline_passed, stream)
        if handler.cardinality not in UNARY_REQUEST:
            self._start(stream)

    def _on_message(self, event: MessageReceived) -> None:
        stream = self._rpcs.get(event.stream_id)
        if stream is None:
            return
        stream.deliver(event.payload, event.flow_bytes, event.compressed, event.wire_size)
        if stream.task is None and stream.received > 1:
            self._fail(stream, Status.UNIMPLEMENTED, "expected one request message, got more")

    def _on_request_ended(self, event: RequestEnded) -> None:
        stream = self._rpcs.get(event.stream_id)
        if stream is None:
            return
        stream.end_request()
        if stream.task is None:
            if stream.received == 1:
                self._start(stream)
            else:
                # doc/statuscodes.md: a unary RPC with no request message is UNIMPLEMENTED.
                self._fail(stream, Status.UNIMPLEMENTED, "expected one request message, got none")

    def _on_gone(self, event: RpcAborted | StreamReset) -> None:
        stream = self._forget(event.stream_id)
        if isinstance(event, RpcAborted):
            # Bad request data: the client already has its status; the operator gets the reason.
            log.info(
                "stream %d from %s failed: %s %s",
                event.stream_id,
                self.peer.addr(),
                event.status.name,
                event.message,
            )
        if stream is not None:
            log.debug("%s on stream %d ended early: %s", stream.path, event.stream_id, event)
            stream.abandon()
        self._wake_sender(event.stream_id)

    def _on_send_unblocked(self, event: SendUnblocked) -> None:
        self._wake_sender(event.stream_id)

    def _on_rejected(self, event: RequestRejected) -> None:
        log.info(
            "request on stream %d from %s rejected: %s",
            event.stream_id,
            self.peer.addr(),
            event.reason,
        )

    def _on_terminated(self, event: ConnectionTerminated) -> None:
        if event.local:
            log.warning("closing connection from %s: %s", self.peer.addr(), event.reason)
        elif event.error_code:
            log.info(
                "peer %s closed with GOAWAY error %d: %s",
                self.peer.addr(),
                event.error_code,
                event.reason,
            )
        if event.local or event.error_code:
            self._flush()
            self.transport.close()
            return
        self._draining = True
        self._close_if_drained()

    def _on_defence(self, event: DefenceTriggered) -> None:
        if self._server.monitor is not None:
            self._server.monitor.defence_fired(event.name)
        log.warning(
            "defence %s fired on connection from %s: %s", event.name, self.peer.addr(), event.detail
        )

    def _on_keepalive_acknowledged(self, event: KeepaliveAcknowledged) -> None:
        if self._watchdog is not None:
            self._watchdog.ping_acknowledged()

    def _on_shutdown_acknowledged(self, event: ShutdownAcknowledged) -> None:
        self._draining = True
        self._close_if_drained()

    # -- RPC lifecycle -------------------------------------------------------------------------

    def _start(self, stream: ServerStream[Any, Any]) -> None:
        stream.task = self._loop.create_task(self._run(stream))

    async def _run(self, stream: ServerStream[Any, Any]) -> None:
        try:
            with rpc_scope(stream):  # current_rpc() inside the handler (and the interceptors)
                for interceptor in self._server.interceptors:
                    await interceptor.start(stream)
                await stream.handler.func(stream)
            if not stream.trailers_sent:
                self._end(stream, Status.OK, "")
        except GRPCError as exc:
            self._end(stream, exc.status, exc.message or "", exc.details)
        except asyncio.CancelledError:
            pass  # whoever cancelled (reset, deadline, shutdown) has already answered the client
        except Exception:
            log.exception("handler for %s raised", stream.path)
            # No traceback on the wire: it could leak internals (grpclib and grpcio do the same).
            self._end(stream, Status.UNKNOWN, "Unexpected error")
        finally:
            if stream.timer is not None:
                stream.timer.cancel()
            if self._rpcs.get(stream.stream_id) is stream:
                self._forget(stream.stream_id)
            if self._server.interceptors:
                _report_end(stream, self._server.interceptors)
            self._close_if_drained()

    def _end(
        self, stream: ServerStream[Any, Any], status: Status, message: str, details: Any = None
    ) -> None:
        if stream.gone or stream.trailers_sent:
            return
        with contextlib.suppress(asyncio.CancelledError):  # the client went away meanwhile
            try:
                stream.end(status, message, details)
            except (ValueError, TypeError) as exc:
                # Trailing metadata the handler set cannot go on the wire (a reserved or invalid
                # key, a wrong value type): the RPC must still end, so without it.
                log.error("%s: invalid trailing metadata, not sent: %s", stream.path, exc)
                stream.trailing_metadata.clear()
                stream.end(Status.INTERNAL, "invalid trailing metadata")

    def _fail(self, stream: ServerStream[Any, Any], status: Status, message: str) -> None:
        """Answer the client with an error status and stop the handler."""
        self._end(stream, status, message)
        self._forget(stream.stream_id)
        stream.abandon()

    def _deadline_passed(self, stream: ServerStream[Any, Any]) -> None:
        log.info("%s on stream %d: deadline exceeded", stream.path, stream.stream_id)
        self._fail(stream, Status.DEADLINE_EXCEEDED, "Deadline Exceeded")
        self._wake_sender(stream.stream_id)
        self._close_if_drained()

    def _send_stalled(self, stream_id: int) -> None:
        """The peer kept this stream's window closed too long (the send-progress limit)."""
        limit = self._server.config.timeouts.write_stall
        log.warning(
            "stream %d from %s: no flow-control window for %s s; resetting it",
            stream_id,
            self.peer.addr(),
            limit,
        )
        self.conn.reset_stream(stream_id)
        self.schedule_flush()
        stream = self._forget(stream_id)
        if stream is not None:
            stream.abandon()

    def _forget(self, stream_id: int) -> ServerStream[Any, Any] | None:
        stream = self._rpcs.pop(stream_id, None)
        if stream is not None and not self._rpcs and self._watchdog is not None:
            self._watchdog.rpcs_active(False)
        return stream

    def _wake_sender(self, stream_id: int) -> None:
        waiter = self._send_waiters.get(stream_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- output and shutdown -------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._unflushed_messages = 0
        self._write_pending()
        # Queued messages and trailers were just handed to HTTP/2: a sender waiting for room
        # may go on, and a draining connection whose last response went out may close.
        for stream_id in [s for s in self._send_waiters if not self.conn.is_send_blocked(s)]:
            self._wake_sender(stream_id)
        if self._draining and not self.conn.closed:
            self._close_if_drained()

    def _write_pending(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)
            if self._server.monitor is not None:
                self._server.monitor.bytes_sent(len(data))

    def start_shutdown(self) -> None:
        """Send the first GOAWAY; the connection closes once acknowledged and RPCs are done."""
        self.conn.start_shutdown()
        self._flush()

    def _close_if_drained(self) -> None:
        if self._draining and not self._rpcs and self.conn.open_streams == 0:
            self.abort()

    def abort(self, error_code: int = ErrorCodes.NO_ERROR, reason: str = "") -> None:
        """Cancel what is left, send the final GOAWAY and close."""
        for stream in list(self._rpcs.values()):
            self._fail(stream, Status.UNAVAILABLE, reason or "server shutting down")
        if not self.conn.closed:
            # Write their trailers now: the final GOAWAY drops every queued stream.
            self._write_pending()
        self.conn.close(error_code, reason)
        self._flush()
        self.transport.close()

    def _expired(
        self, reason: str, hard: bool = False, error_code: int = ErrorCodes.NO_ERROR
    ) -> None:
        """A time limit ran out (or the connection failed): GOAWAY with the reason, then close.

        `hard`: the peer reads nothing, so close() would wait forever for the buffer to drain.
        """
        log.warning("closing connection from %s: %s", self.peer.addr(), reason)
        self.abort(error_code, reason)
        if hard:
            self.transport.abort()

    def _send_keepalive(self) -> None:
        self.conn.send_keepalive_ping()
        self._flush()


def _report_end(stream: ServerStream[Any, Any], interceptors: Sequence[ServerInterceptor]) -> None:
    """The interceptors' `end`, innermost first; one that raises is logged, the rest still run."""
    outcome = stream.outcome()
    for interceptor in reversed(interceptors):
        try:
            interceptor.end(stream, outcome)
        except Exception:
            log.exception("server interceptor %r failed ending %s", interceptor, stream.path)


HANDLERS: dict[type[Any], Callable[[ConnectionDriver, Any], None]] = {
    RequestReceived: ConnectionDriver._on_request,
    MessageReceived: ConnectionDriver._on_message,
    RequestEnded: ConnectionDriver._on_request_ended,
    RpcAborted: ConnectionDriver._on_gone,
    StreamReset: ConnectionDriver._on_gone,
    SendUnblocked: ConnectionDriver._on_send_unblocked,
    RequestRejected: ConnectionDriver._on_rejected,
    ConnectionTerminated: ConnectionDriver._on_terminated,
    ShutdownAcknowledged: ConnectionDriver._on_shutdown_acknowledged,
    DefenceTriggered: ConnectionDriver._on_defence,
    KeepaliveAcknowledged: ConnectionDriver._on_keepalive_acknowledged,
}
"""What the driver does with each core event: one table for every connection."""
