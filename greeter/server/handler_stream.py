"""The handler-facing stream: what a grpclib-style handler receives as its one argument.

It offers what grpclib's server `Stream` offers handlers (recv_message,
send_message, async iteration, send_initial_metadata, send_trailing_metadata, cancel, metadata,
deadline, peer, user_agent) and turns each call into a command on the sans-IO core through the
`RpcHost` that owns the connection. Waiting (for messages, for the peer's flow-control window,
for a writable transport) happens here; protocol decisions do not.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import Deadline
from multidict import MultiDict

from greeter.core.events import RequestReceived
from greeter.core.server_connection import ServerConnection
from greeter.wire import codec
from greeter.wire.errors import StreamGoneError
from greeter.wire.status_details import encode_status

if TYPE_CHECKING:
    from grpclib.protocol import Peer

RecvT = TypeVar("RecvT")
SendT = TypeVar("SendT")
MetadataLike = Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]


class RpcHost(Protocol):
    """What a stream needs from the connection driver that owns it (greeter.server)."""

    conn: ServerConnection
    peer: Peer

    def schedule_flush(self) -> None: ...

    async def send_window_open(self, stream_id: int) -> None: ...

    def message_sent(self) -> bool: ...

    @property
    def write_paused(self) -> bool: ...


def _pairs(metadata: MetadataLike | None) -> Iterable[tuple[str, str | bytes]]:
    if metadata is None:
        return ()
    if isinstance(metadata, Mapping):
        return metadata.items()
    return metadata


@dataclass(frozen=True)
class RpcOutcome:
    """How an RPC ended, as its interceptors' `end` sees it (greeter.server.interceptors)."""

    status: Status
    """CANCELLED when the client reset the stream or went away before any status was sent."""
    message: str
    duration: float
    """Seconds from the RPC's arrival to its end."""
    messages_received: int
    messages_sent: int
    bytes_received: int = 0
    """Request messages as they came on the wire: 5-byte prefix plus the (compressed) payload."""
    bytes_sent: int = 0
    """Response messages as they went on the wire, counted the same way."""


class MessageHooks(Protocol):
    """The per-message half of greeter.server.interceptors.ServerInterceptor."""

    def receive(self, rpc: ServerStream[Any, Any], message: Any) -> Any: ...

    def send(self, rpc: ServerStream[Any, Any], message: Any) -> Any: ...


class ServerStream(Generic[RecvT, SendT]):
    """One RPC as its handler sees it. Created by the driver, never by handlers."""

    def __init__(
        self,
        host: RpcHost,
        request: RequestReceived,
        handler: Handler,
        interceptors: Sequence[MessageHooks] = (),
    ) -> None:
        self._host = host
        self.interceptors = interceptors
        # Not the loop's clock: uvloop's counts whole milliseconds, too coarse for a duration.
        self.started_at = time.perf_counter()
        self.messages_received = 0
        self.messages_sent = 0
        self.bytes_received = 0
        """Request messages' bytes as they arrived (RpcOutcome.bytes_received)."""
        self.bytes_sent = 0
        self.status: Status | None = None
        """The status the trailers carried; None until they are sent."""
        self.status_message = ""
        self.stream_id = request.stream_id
        self.handler = handler
        self.path = request.path
        self.metadata: MultiDict[str | bytes] = MultiDict(request.metadata)
        self.user_agent = request.user_agent
        self.deadline = Deadline.from_timeout(request.timeout) if request.timeout else None
        self.peer = host.peer
        self._inbox: deque[tuple[bytes, int, bool]] = deque()
        self.last_message_compressed = False
        """Whether the request message `recv_message` returned last arrived compressed."""
        self.response_compression = False
        """Compress response messages (set_response_compression); headers then name the encoding."""
        self._compress_next: bool | None = None
        self._request_ended = False
        self._waiter: asyncio.Future[None] | None = None
        self.headers_sent = False
        self.trailers_sent = False
        self.trailing_metadata: list[tuple[str, str | bytes]] = []
        """Sent with the final status, whoever ends the RPC (see set_trailing_metadata)."""
        self.gone = False
        """The client can no longer be answered (reset, deadline, connection lost, aborted)."""
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    # -- fed by the driver -----------------------------------------------------------------------

    @property
    def received(self) -> int:
        """Request messages delivered and not yet consumed by the handler."""
        return len(self._inbox)

    def deliver(
        self, payload: bytes, flow_bytes: int, compressed: bool = False, wire_size: int = 0
    ) -> None:
        self._inbox.append((payload, flow_bytes, compressed))
        self.bytes_received += wire_size
        self._wake()

    def end_request(self) -> None:
        self._request_ended = True
        self._wake()

    def abandon(self) -> None:
        """The client is gone: stop the handler at its next await, send nothing more."""
        self.gone = True
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None:
            self.task.cancel()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the handler API ---------------------------------------------------------------------------

    async def recv_message(self) -> RecvT | None:
        """The next request message, or None once the client half-closed."""
        while not self._inbox:
            if self._request_ended or self.gone:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        payload, flow_bytes, self.last_message_compressed = self._inbox.popleft()
        self._host.conn.acknowledge(self.stream_id, flow_bytes)
        self._host.schedule_flush()
        message = self._decode(payload)
        self.messages_received += 1
        for interceptor in self.interceptors:
            message = interceptor.receive(self, message)
        return message

    def _decode(self, payload: bytes) -> RecvT:
        request_type = self.handler.request_type
        try:
            # Corrupt bytes must fail the RPC (INTERNAL), never become a silently wrong message.
            message: RecvT = codec.decode(request_type, payload)
        except Exception as exc:
            raise GRPCError(
                Status.INTERNAL, f"could not decode the request message: {exc}"
            ) from None
        return message

    def __aiter__(self) -> AsyncIterator[RecvT]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RecvT]:
        while (message := await self.recv_message()) is not None:
            yield message

    # -- the handler context (current_rpc() returns this stream) ---------------------------------

    @property
    def peer_address(self) -> tuple[str, int] | None:
        """The client's (host, port) as the socket reports it; None when unknown."""
        return self.peer.addr()

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        """The client's verified TLS certificate (ssl.getpeercert() form); None without mTLS."""
        return self.peer.cert()

    def time_remaining(self) -> float | None:
        """Seconds left before the client's deadline (never negative); None without a deadline."""
        if self.deadline is None:
            return None
        return max(self.deadline.time_remaining(), 0.0)

    @property
    def cancelled(self) -> bool:
        """The client can no longer be answered: it reset the stream, the deadline passed, ..."""
        return self.gone

    def set_response_compression(self, enabled: bool) -> None:
        """Compress the response messages sent from now on (the default for `send_message`).

        The encoding is the best one the client accepts (gzip, then deflate); a client that
        accepts none gets uncompressed messages. Call it before the response headers leave (before
        `send_initial_metadata` or the first message): headers sent without compression enabled
        announce no encoding, and later messages then go uncompressed.
        """
        self.response_compression = enabled

    def set_message_compression(self, enabled: bool) -> None:
        """Compress (or not) the next response message only, whatever the RPC's default is.

        For handlers that do not call `send_message` themselves (betterproto's generated wrapper
        does): set it before returning or yielding the message. Enabling it before the headers
        leave also makes them announce the encoding.
        """
        self._compress_next = enabled

    def _headers_may_compress(self) -> bool:
        return self.response_compression or bool(self._compress_next)

    async def send_initial_metadata(self, metadata: MetadataLike | None = None) -> None:
        """Send the response headers now, with optional custom metadata."""
        self._command(
            self._host.conn.send_headers, _pairs(metadata), compress=self._headers_may_compress()
        )
        self.headers_sent = True

    def set_trailing_metadata(self, metadata: MetadataLike) -> None:
        """Add custom metadata to the trailers, sent when the RPC ends (OK or error status)."""
        self.trailing_metadata.extend(_pairs(metadata))

    async def send_message(self, message: SendT, *, compress: bool | None = None) -> None:
        """Send one response message; waits while the peer's flow-control window is closed.

        `compress` overrides, for this message, `set_message_compression` and the RPC's
        `set_response_compression` default.
        """
        for interceptor in reversed(self.interceptors):
            message = interceptor.send(self, message)
        payload = codec.encode(message)
        self.messages_sent += 1
        if compress is None:
            compress = self.response_compression
            if self._compress_next is not None:
                compress = self._compress_next
        if not self.headers_sent:
            # The headers announce the encoding when any message of the RPC may compress.
            self._command(
                self._host.conn.send_headers, (), compress=compress or self._headers_may_compress()
            )
            self.headers_sent = True
        self._compress_next = None
        self.bytes_sent += self._command(self._host.conn.send_message, payload, compress=compress)
        if self._host.write_paused or self._host.conn.is_send_blocked(self.stream_id):
            await self._host.send_window_open(self.stream_id)
        elif self._host.message_sent():
            await asyncio.sleep(0)
        if self.gone:
            raise asyncio.CancelledError

    async def send_trailing_metadata(
        self,
        *,
        status: Status = Status.OK,
        status_message: str | None = None,
        status_details: Any = None,
        metadata: MetadataLike | None = None,
    ) -> None:
        """End the RPC with a status; the handler may return afterwards, nothing more is sent."""
        self.end(status, status_message or "", status_details, metadata)

    def end(
        self,
        status: Status,
        message: str = "",
        details: Any = None,
        metadata: MetadataLike | None = None,
    ) -> None:
        """Send the trailers now; `details` (protobuf messages) go into grpc-status-details-bin.

        The trailers carry `trailing_metadata` (set_trailing_metadata) followed by `metadata`.
        """
        encoded = encode_status(status.value, message, details) if details else None
        pairs = [*self.trailing_metadata, *_pairs(metadata)]
        self._command(self._host.conn.send_trailers, status, message, pairs, encoded)
        self.trailers_sent = True
        self.status, self.status_message = status, message

    def outcome(self) -> RpcOutcome:
        """How the RPC ended (for interceptors); CANCELLED if no status was ever sent."""
        status = Status.CANCELLED if self.status is None else self.status
        message = self.status_message if self.status is not None else "the client went away"
        duration = time.perf_counter() - self.started_at
        return RpcOutcome(
            status,
            message,
            duration,
            self.messages_received,
            self.messages_sent,
            self.bytes_received,
            self.bytes_sent,
        )

    async def cancel(self) -> None:
        """Abandon the RPC with RST_STREAM(CANCEL), as grpclib's Stream.cancel does."""
        if not self.gone:
            self._host.conn.reset_stream(self.stream_id)
            self._host.schedule_flush()
            self.abandon()

    def _command(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a core command for this stream; its result."""
        if self.trailers_sent:
            raise RuntimeError("the RPC already ended: trailers were sent")
        if self.gone:
            raise asyncio.CancelledError
        try:
            result = command(self.stream_id, *args, **kwargs)
        except StreamGoneError:
            self.gone = True
            raise asyncio.CancelledError from None
        self._host.schedule_flush()
        return result
