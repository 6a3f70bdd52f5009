"""One client call as the generated stubs drive it: grpclib's client `Stream` API on greeter's core.

`ClientCall` offers what betterproto2's grpclib-style stubs call (`send_request`,
`send_message(msg, end=)`, `end`, `recv_message`, `async for`, `recv_initial_metadata`,
`recv_trailing_metadata`, `cancel`, `async with`) plus `initial_metadata`, `trailing_metadata`,
`peer`, `status` and `last_message_compressed`. Every failure surfaces as
`grpclib.exceptions.GRPCError` with the status the spec names: the local deadline as
DEADLINE_EXCEEDED, a lost connection as UNAVAILABLE, a bad response as the core decided
(greeter.core.client_connection).

Request messages are kept (up to `retry_buffer_size`) until the response starts: a call the
server never processed (REFUSED_STREAM, or above a GOAWAY's last stream id) is retried on another
connection without the caller noticing (gRFC A6 transparent retry).

Generated stubs hide the call object; `capture_calls()` records the calls made in a block so
their metadata and status can be read, and `call_options()` sets compression and wait-for-ready
for the calls made in a block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from google.protobuf import any_pb2  # type: ignore[import-untyped]
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import Deadline, _Metadata
from grpclib.protocol import Peer
from multidict import MultiDict

from greeter.client.config import ClientConfig
from greeter.client.retry import RetryThrottle, pushback_delay
from greeter.core.events import CallEnded, MessageReceived, ResponseStarted
from greeter.wire import codec
from greeter.wire.errors import StreamGoneError, UnavailableError, WireFormatError
from greeter.wire.status_details import decode_status_details

if TYPE_CHECKING:
    # The stubs annotate grpclib's Stream and Channel: for type checkers greeter's call and
    # channel are those (they honour the same contract, checked as overrides); at run time they
    # share none of grpclib's code.
    from grpclib.client import Stream as StubStream

    from greeter.client.transport import ClientTransport
else:
    StubStream = Generic

log = logging.getLogger("greeter.client")

SendT = TypeVar("SendT")
RecvT = TypeVar("RecvT")
Metadata = _Metadata
"""grpclib's metadata type (a MultiDict), the one the stubs' Stream annotates."""


class ClientInterceptor:
    """Middleware for every call of a channel, of the four kinds: override what you need.

    `Channel(target, interceptors=[a, b])` runs `start` and `send` in that order (a, then b),
    `receive` and `end` in the reverse order, as wrappers nest. With none installed a call pays
    nothing.
    """

    async def start(self, call: ClientCall[Any, Any]) -> None:
        """Before the request headers leave: read or change `call.metadata` (a list of pairs) and
        `call.deadline`; raise GRPCError to fail the call before anything is sent."""

    def send(self, call: ClientCall[Any, Any], message: Any) -> Any:
        """Each request message: return it, or the message to send instead."""
        return message

    def receive(self, call: ClientCall[Any, Any], message: Any) -> Any:
        """Each response message: return it, or the message the caller gets instead."""
        return message

    def end(self, call: ClientCall[Any, Any]) -> None:
        """The call is over for its caller (``async with`` left, or it failed here):
        `call.outcome` (status, message, trailing metadata), `call.duration`,
        `call.messages_sent`, `call.messages_received`. An exception here is logged, not raised."""


class CallHost(Protocol):
    """What a call needs from its channel (greeter.client.channel.Channel implements it)."""

    config: ClientConfig
    interceptors: Sequence[ClientInterceptor]
    retry_throttle: RetryThrottle | None
    authority: str
    """The ``:authority`` calls carry (the target's host[:port])."""

    def ready(self) -> ClientTransport | None:
        """A connection that takes a call now, without waiting; None when `pick` must wait."""
        ...

    async def pick(self, wait_for_ready: bool, deadline: Deadline | None) -> ClientTransport:
        """A connection that takes a call now; GRPCError when there is none."""
        ...

    def call_done(self) -> None:
        """The call released its stream."""
        ...


@dataclass(frozen=True)
class CallOptions:
    """Per-call settings the stubs cannot pass; None keeps the channel's."""

    compression: str | None = None
    wait_for_ready: bool | None = None


_DEFAULT_OPTIONS = CallOptions()
_OPTIONS: ContextVar[CallOptions] = ContextVar("greeter_call_options", default=_DEFAULT_OPTIONS)
_CAPTURE: ContextVar[list[ClientCall[Any, Any]] | None] = ContextVar(
    "greeter_captured_calls", default=None
)


@contextlib.contextmanager
def call_options(
    *, compression: str | None = None, wait_for_ready: bool | None = None
) -> Iterator[None]:
    """Calls started in the block (in this task) use these settings."""
    token = _OPTIONS.set(CallOptions(compression, wait_for_ready))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


@contextlib.contextmanager
def capture_calls() -> Iterator[list[ClientCall[Any, Any]]]:
    """The calls started in the block (in this task), to read metadata and status afterwards::

    with capture_calls() as calls:
        await stub.say_hello(HelloRequest(name="x"))
    print(calls[0].initial_metadata, calls[0].trailing_metadata)
    """
    calls: list[ClientCall[Any, Any]] = []
    token = _CAPTURE.set(calls)
    try:
        yield calls
    finally:
        _CAPTURE.reset(token)


def grpc_error(end: CallEnded) -> GRPCError:
    """The GRPCError of a call that ended with a status other than OK; details as protobuf Anys."""
    details: list[Any] | None = None
    if end.details:
        with contextlib.suppress(WireFormatError):
            details = [
                any_pb2.Any(type_url=url, value=value)
                for url, value in decode_status_details(end.details)
            ]
    return GRPCError(end.status, end.message or None, details)


class ClientCall(StubStream[SendT, RecvT]):
    """One call: created by `Channel.request`, used as ``async with`` by the stubs."""

    # Slots: a call has more attributes than CPython's shared-key instance dicts hold (30),
    # and past that each call built a full dict; __dict__ still takes what an interceptor adds.
    __slots__ = (
        "__dict__",
        "_attempts",
        "_caller_cancelled",
        "_host",
        "_inbox",
        "_inbox_head",
        "_initial_metadata",
        "_initial_pairs",
        "_interceptors",
        "_loop",
        "_released",
        "_request_ended",
        "_retries",
        "_retrying",
        "_sent",
        "_sent_bytes",
        "_started",
        "_stream_id",
        "_timer",
        "_trailing_metadata",
        "_transport",
        "_waiter",
        "authority",
        "cardinality",
        "compression",
        "deadline",
        "duration",
        "last_message_compressed",
        "messages_received",
        "messages_sent",
        "metadata",
        "outcome",
        "path",
        "peer",
        "reply_type",
        "request_type",
        "started_at",
        "wait_for_ready",
    )

    def __init__(
        self,
        channel: CallHost,
        path: str,
        cardinality: Cardinality,
        request_type: type[SendT],
        reply_type: type[RecvT],
        *,
        deadline: Deadline | None,
        metadata: list[tuple[str, str | bytes]],
    ) -> None:
        self._host = channel
        self.authority = channel.authority
        """Where the call goes (the channel's ``:authority``)."""
        self.path = path
        self.cardinality = cardinality
        self.request_type = request_type
        self.reply_type = reply_type
        self.deadline = deadline
        self.metadata = metadata
        """Request metadata (pairs; an interceptor's `start` may change it)."""
        self._interceptors = channel.interceptors
        self._loop = loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        self.duration: float | None = None
        """Seconds from the call's creation to its end; None while it runs."""
        self.messages_sent = 0
        self.messages_received = 0
        self._released = False
        self._caller_cancelled = False
        options = _OPTIONS.get()
        config = channel.config
        self.compression = options.compression or config.compression
        self.wait_for_ready = (
            config.wait_for_ready if options.wait_for_ready is None else options.wait_for_ready
        )
        self._transport: ClientTransport | None = None
        self._stream_id = 0
        self._inbox: list[MessageReceived] = []
        """Messages not yet read, from `_inbox_head` on (a list: a deque costs 760 bytes)."""
        self._inbox_head = 0
        self._waiter: asyncio.Future[None] | None = None
        self._started = False
        self._request_ended = False
        self._sent: list[tuple[bytes, bool]] | None = []
        """Request payloads kept for a transparent retry; None once committed."""
        self._sent_bytes = 0
        self._attempts = 0
        self._retries = 0
        """Retries under the channel's retry policy (transparent ones not counted)."""
        self._retrying: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.outcome: CallEnded | None = None
        """How the call ended (status, message, trailing metadata); None while it runs."""
        self._initial_pairs: Sequence[tuple[str, str | bytes]] | None = None
        self._initial_metadata: Metadata | None = None
        self._trailing_metadata: Metadata | None = None
        self.peer: Peer | None = None
        self.last_message_compressed: bool | None = None
        """Whether the response message `recv_message` returned last arrived compressed on the
        wire (its compressed flag was set); None before the first message. Read-only."""
        captured = _CAPTURE.get()
        if captured is not None:
            captured.append(self)

    @property
    def status(self) -> Status | None:
        return self.outcome.status if self.outcome is not None else None

    # The metadata objects are built when first read: most calls never read them.

    @property
    def initial_metadata(self) -> Metadata | None:
        """The response headers' metadata, once they arrived (None before)."""
        if self._initial_metadata is None and self._initial_pairs is not None:
            self._initial_metadata = Metadata(MultiDict(self._initial_pairs))
        return self._initial_metadata

    @initial_metadata.setter
    def initial_metadata(self, value: Metadata | None) -> None:
        # grpclib's Stream declares a writeable attribute; the stubs' type contract keeps it.
        self._initial_metadata = value

    @property
    def trailing_metadata(self) -> Metadata | None:
        """The trailers' metadata, once the call ended (None before)."""
        if self._trailing_metadata is None and self.outcome is not None:
            self._trailing_metadata = Metadata(MultiDict(self.outcome.metadata))
        return self._trailing_metadata

    @trailing_metadata.setter
    def trailing_metadata(self, value: Metadata | None) -> None:
        # grpclib's Stream declares a writeable attribute; the stubs' type contract keeps it.
        self._trailing_metadata = value

    # -- sending ---------------------------------------------------------------------------------

    async def send_request(self, *, end: bool = False) -> None:
        """Start the call (request headers); with `end`, half-close at once."""
        if not self._started and not self._start_at_once():
            await self._start()
        if end:
            self._half_close()

    # The common path of a call awaits nothing but its response: the start below, the sends
    # and the half-close run without creating a coroutine when no interceptor, connection or
    # flow-control window makes them wait (a coroutine per step was a visible share of a call).

    def _start_at_once(self) -> bool:
        """Start the call now if nothing needs awaiting (no interceptor, and a connection that
        takes it); False when `_start` must do it."""
        if self._interceptors:
            return False
        transport = self._host.ready()
        if transport is None:
            return False
        self._started = True
        self._arm_deadline()
        return self._place(transport)

    async def _start(self) -> None:
        if not self._started:
            self._started = True
            for interceptor in self._interceptors:
                try:
                    await interceptor.start(self)
                except GRPCError as exc:
                    self._finish_locally(exc.status, exc.message or "")
                    raise
            self._arm_deadline()
        await self._attempt()

    def _arm_deadline(self) -> None:
        if self.deadline is not None:
            self._timer = self._loop.call_at(
                self._loop.time() + self.deadline.time_remaining(), self._deadline_passed
            )

    async def send_message(
        self, message: SendT, *, end: bool = False, compress: bool | None = None
    ) -> None:
        """Send one request message; waits while the server's flow-control window is closed.

        `compress` overrides, for this message, whether it is compressed with the call's
        compression (None: compressed when the call has one); a call without compression never
        compresses.
        """
        if not self._started and not self._start_at_once():
            await self._start()
        for interceptor in self._interceptors:
            message = interceptor.send(self, message)
        payload = codec.encode(message)
        self.messages_sent += 1
        limit = self._host.config.max_send_message_size
        if limit is not None and len(payload) > limit:
            self._finish_locally(
                Status.RESOURCE_EXHAUSTED,
                f"sent message larger than max ({len(payload)} vs. {limit})",
            )
            self._raise_if_failed()
        if compress is None:
            compress = self.compression != "identity"
        self._keep_for_retry(payload, compress)
        self._command_send(payload, compress)
        transport = self._transport
        conn = transport.conn if transport is not None else None
        if conn is not None and self.outcome is None and conn.is_send_blocked(self._stream_id):
            assert transport is not None
            transport.flush()
            await transport.send_window_open(self._stream_id)
        if end:
            self._half_close()

    async def end_request(self) -> None:
        """Half-close: no more request messages."""
        if not self._started and not self._start_at_once():
            await self._start()
        self._half_close()

    def _half_close(self) -> None:
        if self._request_ended:
            return
        self._request_ended = True
        transport = self._transport
        if self.outcome is None and transport is not None and transport.conn is not None:
            try:
                transport.conn.end_request(self._stream_id)
            except StreamGoneError:
                return  # the server ended the call meanwhile: its status says how
            transport.schedule_flush()

    async def end(self) -> None:
        """grpclib's name for `end_request` (what the stubs call)."""
        await self.end_request()

    def _command_send(self, payload: bytes, compress: bool) -> None:
        transport = self._transport
        if self.outcome is not None or transport is None or transport.conn is None:
            return  # the call is over: its status surfaces when the response is read
        try:
            transport.conn.send_message(self._stream_id, payload, compress=compress)
        except StreamGoneError:
            return  # the server ended the call meanwhile: its status says how
        transport.schedule_flush()

    def _keep_for_retry(self, payload: bytes, compress: bool) -> None:
        if self._sent is None:
            return
        self._sent_bytes += len(payload)
        if self._sent_bytes > self._host.config.retry_buffer_size:
            self._sent = None  # too much to replay: committed (gRFC A6)
        else:
            self._sent.append((payload, compress))

    # -- receiving -------------------------------------------------------------------------------

    async def recv_initial_metadata(self) -> None:
        """Wait for the response headers (then `initial_metadata` holds their metadata); GRPCError
        when the call ended without a response."""
        while self._initial_pairs is None and self.outcome is None:
            await self._new_waiter()
        if self._initial_pairs is None:
            self._raise_if_failed()
            self._initial_pairs = ()

    async def recv_message(self) -> RecvT | None:
        """The next response message; None after the last one; GRPCError if the call failed."""
        if not self._started and not self._start_at_once():
            await self._start()
        while not self._inbox:
            if self.outcome is not None:
                self._raise_if_failed()
                return None
            await self._new_waiter()
        event = self._inbox[self._inbox_head]
        self._inbox_head += 1
        if self._inbox_head == len(self._inbox):
            self._inbox.clear()
            self._inbox_head = 0
        transport = self._transport
        if transport is not None and transport.conn is not None:
            transport.conn.acknowledge(self._stream_id, event.flow_bytes)
            transport.schedule_flush()
        self.last_message_compressed = event.compressed
        try:
            message: RecvT = codec.decode(self.reply_type, event.payload)
        except Exception as exc:
            self._cancel_stream()
            self._finish_locally(Status.INTERNAL, f"could not decode the response: {exc}")
            self._raise_if_failed()
            raise
        self.messages_received += 1
        for interceptor in reversed(self._interceptors):
            message = interceptor.receive(self, message)
        return message

    def __aiter__(self) -> AsyncIterator[RecvT]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RecvT]:
        while (message := await self.recv_message()) is not None:
            yield message

    async def recv_trailing_metadata(self) -> None:
        """Wait for the call's end (then `trailing_metadata` holds its metadata); GRPCError for a
        status not OK."""
        while self.outcome is None:
            self._inbox.clear()  # unread messages are dropped, as grpclib does
            self._inbox_head = 0
            await self._new_waiter()
        self._raise_if_failed()

    async def cancel(self) -> None:
        """Abandon the call with RST_STREAM(CANCEL); it ends CANCELLED (and leaving the ``async
        with`` block afterwards raises nothing, as with grpclib)."""
        self._caller_cancelled = True
        if self.outcome is None:
            self._cancel_stream()
            self._finish_locally(Status.CANCELLED, "cancelled by the client")

    async def __aenter__(self) -> ClientCall[SendT, RecvT]:
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            if exc is not None:
                await self.cancel()
            elif self._started and not self._caller_cancelled:
                if self.outcome is None:
                    await self.recv_trailing_metadata()
                self._raise_if_failed()
        finally:
            self._release()

    # -- fed by the transport (CallSink) ---------------------------------------------------------

    def response_started(self, event: ResponseStarted) -> None:
        self._sent = None  # the server processed the call: no transparent retry from now on
        self._initial_pairs = event.metadata
        self._wake()

    def message_received(self, event: MessageReceived) -> None:
        self._inbox.append(event)
        self._wake()

    def call_ended(self, event: CallEnded) -> None:
        if self.outcome is not None:
            return
        retry = event.unprocessed and self._sent is not None
        if retry and self._attempts <= self._host.config.max_transparent_retries:
            self._transport = None
            self._retrying = self._loop.create_task(self._attempt())
            return
        delay = self._retry_delay(event)
        if delay is not None:
            self._transport = None
            self._retrying = self._loop.create_task(self._retry_after(delay))
            return
        self._set_outcome(event)

    def _retry_delay(self, event: CallEnded) -> float | None:
        """Seconds before retrying `event`'s failure under the channel's policy; None: do not."""
        policy = self._host.config.retry_policy
        throttle = self._host.retry_throttle
        if event.status == Status.OK:
            if throttle is not None:
                throttle.succeeded()
            return None
        if policy is None or event.status not in policy.retryable_status_codes:
            return None
        if throttle is not None:
            throttle.failed()
        if self._sent is None or self._retries + 1 >= policy.attempts:
            return None  # committed (headers came, or too much to replay), or out of attempts
        if throttle is not None and not throttle.allows_retry:
            return None
        try:
            pushback = pushback_delay(event.retry_pushback)
        except ValueError:
            return None  # the server says no
        self._retries += 1
        delay = policy.delay(self._retries) if pushback is None else pushback
        if self.deadline is not None and delay >= self.deadline.time_remaining():
            return None
        return delay

    async def _retry_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._attempt()

    # -- internals -------------------------------------------------------------------------------

    async def _attempt(self) -> None:
        """Start (or restart) the call on a connection the channel picks; replay what was sent."""
        while self.outcome is None:
            transport = self._host.ready()
            if transport is None:
                try:
                    transport = await self._host.pick(self.wait_for_ready, self.deadline)
                except GRPCError as exc:
                    self._finish_locally(exc.status, exc.message or "")
                    return
            if self._place(transport):
                return

    def _place(self, transport: ClientTransport) -> bool:
        """Send the request headers (and what was sent before, on a retry) on `transport`;
        False when it stopped taking calls meanwhile (pick again)."""
        self._attempts += 1
        timeout = self.deadline.time_remaining() if self.deadline is not None else None
        if timeout is not None and timeout <= 0:
            self._finish_locally(Status.DEADLINE_EXCEEDED, "Deadline Exceeded")
            return True
        assert transport.conn is not None
        try:
            stream_id = transport.conn.start_call(
                self.path,
                metadata=self.metadata,
                timeout=timeout,
                compression_encoding=self.compression,
                previous_attempts=self._retries,
            )
        except UnavailableError:
            return False
        except (ValueError, TypeError) as exc:
            self._finish_locally(Status.INTERNAL, f"invalid request metadata: {exc}")
            self._raise_if_failed()
        self._transport, self._stream_id = transport, stream_id
        self.peer = transport.peer
        transport.calls[stream_id] = self
        for payload, compress in self._sent or ():
            self._command_send(payload, compress)
        if self._request_ended:
            transport.conn.end_request(stream_id)
        transport.schedule_flush()
        return True

    def _set_outcome(self, end: CallEnded) -> None:
        self.outcome = end
        self.duration = self._loop.time() - self.started_at
        if self._timer is not None:
            self._timer.cancel()
        self._wake()

    def _finish_locally(self, status: Status, message: str) -> None:
        if self.outcome is None:
            self._set_outcome(CallEnded(self._stream_id, status, message))
            self._release()

    def _deadline_passed(self) -> None:
        if self.outcome is None:
            self._cancel_stream()
            self._finish_locally(Status.DEADLINE_EXCEEDED, "Deadline Exceeded")

    def _cancel_stream(self) -> None:
        transport = self._transport
        if transport is not None and transport.conn is not None and self.outcome is None:
            transport.conn.reset_stream(self._stream_id)
            transport.schedule_flush()

    def _release(self) -> None:
        if not self._released and self.outcome is not None:
            self._released = True
            for interceptor in reversed(self._interceptors):
                try:
                    interceptor.end(self)
                except Exception:
                    log.exception("client interceptor %r failed ending %s", interceptor, self.path)
        if self._retrying is not None and not self._retrying.done():
            self._retrying.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.release(self._stream_id)
            self._host.call_done()

    def _raise_if_failed(self) -> None:
        if self.outcome is not None and self.outcome.status != Status.OK:
            raise grpc_error(self.outcome)

    def _new_waiter(self) -> asyncio.Future[None]:
        """A future `_wake` completes: the next event for the caller to look at."""
        self._waiter = waiter = self._loop.create_future()
        return waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
