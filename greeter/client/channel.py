"""greeter's client channel: a drop-in for grpclib's `Channel` under the generated stubs.

``GreeterStub(Channel("localhost:50051"))`` works with betterproto2's grpclib-style stubs
unchanged. The channel resolves its target (greeter.client.targets: host:port, dns:, ipv4:,
ipv6:, unix:), connects lazily, keeps one HTTP/2 connection per address and spreads calls
round-robin over the connections that take calls. A failed connection attempt puts the channel
in TRANSIENT_FAILURE and the next one waits the backoff of doc/connection-backoff.md; calls fail
UNAVAILABLE meanwhile unless they wait for ready. A connection whose server sent GOAWAY finishes
its calls and takes no new one: the next call opens a new connection, and calls the server never
processed are retried there (greeter.client.call).

Inside a greeter handler, calls inherit the handler's deadline (``propagate=True``, the default);
cancellation follows by itself, since the call runs in the handler's task.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import ssl as ssl_module
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import Deadline

from greeter.client.backoff import Backoff
from greeter.client.call import ClientCall, ClientInterceptor
from greeter.client.config import ClientConfig
from greeter.client.connectivity import ChannelState, Connectivity
from greeter.client.propagation import inherited_deadline
from greeter.client.retry import RetryThrottle
from greeter.client.targets import Address, Target, parse_target, resolve
from greeter.client.transport import ClientTransport, Keepalive
from greeter.tap.attach import ObserverFactory
from greeter.wire.ranges import CALL_TIMEOUT, check_value

if TYPE_CHECKING:
    # See greeter.client.call: for type checkers this is the grpclib Channel the stubs annotate.
    from grpclib.client import Channel as StubChannel
else:
    StubChannel = object

log = logging.getLogger("greeter.client")

CLOSE_WAIT = 1.0
"""Seconds `async with Channel(...)` waits at exit for its connections to close."""

SendT = TypeVar("SendT")
RecvT = TypeVar("RecvT")
MetadataLike = Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]


class Channel(StubChannel):
    """A gRPC channel to one target, for the generated stubs (grpclib's `Channel` contract)."""

    def __init__(
        self,
        target: str,
        *,
        ssl: ssl_module.SSLContext | None = None,
        authority: str | None = None,
        config: ClientConfig | None = None,
        tap: ObserverFactory | None = None,
        propagate: bool = True,
        default_port: int = 443,
        interceptors: Sequence[ClientInterceptor] = (),
    ) -> None:
        self.target: Target = parse_target(target, default_port)
        self.ssl = ssl
        self.authority = authority or self.target.authority
        self.config = config or ClientConfig()
        self.tap = tap
        """Called per connection for an observer of its bytes (a TapFactory with role client)."""
        self.propagate = propagate
        """Calls inside a greeter handler inherit its deadline."""
        self.interceptors: Sequence[ClientInterceptor] = tuple(interceptors)
        throttling = self.config.retry_throttling
        self.retry_throttle = RetryThrottle(throttling) if throttling is not None else None
        """The channel's retry token bucket (gRFC A6), shared by its calls."""
        """Run around every call, in order (greeter.client.call.ClientInterceptor)."""
        self.connectivity = Connectivity()
        self._addresses: list[Address] = []
        self._transports: dict[Address, ClientTransport] = {}
        self._connecting: dict[Address, asyncio.Task[ClientTransport]] = {}
        self._next = itertools.count()
        self._connection_ids = itertools.count(1)
        self._backoff = Backoff(self.config.backoff)
        self._retry_at = 0.0
        self._last_error = ""
        self._slot_freed: asyncio.Event | None = None
        self._keepalive_time = self.config.keepalive_time
        """Doubled whenever a server answers our PINGs with GOAWAY "too_many_pings" (gRFC A8)."""
        self._closed = False

    # -- grpclib's Channel contract ------------------------------------------------------------

    def request(
        self,
        name: str,
        cardinality: Cardinality,
        request_type: type[SendT],
        reply_type: type[RecvT],
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
        metadata: MetadataLike | None = None,
    ) -> ClientCall[SendT, RecvT]:
        """A call of method `name` ("/package.Service/Method"), to use as ``async with``."""
        if timeout is not None:
            check_value("timeout", timeout, CALL_TIMEOUT)
        if self.propagate:
            deadline = inherited_deadline(timeout, deadline)
        elif timeout is not None:
            candidate = Deadline.from_timeout(timeout)
            deadline = candidate if deadline is None else min(deadline, candidate)
        if metadata is None:
            pairs: list[tuple[str, str | bytes]] = []
        else:
            pairs = list(metadata.items() if isinstance(metadata, Mapping) else metadata)
        return ClientCall(
            self, name, cardinality, request_type, reply_type, deadline=deadline, metadata=pairs
        )

    def close(self) -> None:
        """Close every connection with GOAWAY (calls in flight end UNAVAILABLE); SHUTDOWN."""
        self._closed = True
        self.connectivity.set(ChannelState.SHUTDOWN)
        for task in self._connecting.values():
            task.cancel()
        for transport in list(self._transports.values()):
            transport.close()  # GOAWAY, then the socket closes once its buffer is written
        self._transports.clear()

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        closing = [transport.closed for transport in self._transports.values()]
        self.close()
        if closing:
            # Until the sockets are closed (the GOAWAY written, a tap's close record emitted),
            # bounded: a peer that never reads must not hold up the caller.
            await asyncio.wait(closing, timeout=CLOSE_WAIT)

    # -- state -----------------------------------------------------------------------------------

    @property
    def state(self) -> ChannelState:
        return self.connectivity.state

    @property
    def keepalive_time(self) -> float | None:
        """The keepalive interval new connections use (doubled after "too_many_pings")."""
        return self._keepalive_time

    async def connect(self, timeout: float | None = None) -> None:
        """Connect now (calls connect lazily anyway); GRPCError(UNAVAILABLE) on failure."""
        check_value("timeout", timeout, CALL_TIMEOUT)
        deadline = Deadline.from_timeout(timeout) if timeout is not None else None
        await self.pick(wait_for_ready=timeout is not None, deadline=deadline)

    # -- CallHost: what calls use ------------------------------------------------------------

    def ready(self) -> ClientTransport | None:
        """A connection that takes a call now (round-robin), or None."""
        if self._closed:
            return None
        transports = self._transports
        if len(transports) == 1:  # one address: no list to build for the round-robin
            (only,) = transports.values()
            return only if only.accepts_calls else None
        ready = [t for t in transports.values() if t.accepts_calls]
        return ready[next(self._next) % len(ready)] if ready else None

    async def pick(self, wait_for_ready: bool, deadline: Deadline | None) -> ClientTransport:
        """A connection that takes a call now, connecting (and waiting) as needed."""
        while True:
            if self._closed:
                raise GRPCError(Status.UNAVAILABLE, "the channel is closed")
            transport = self.ready()
            if transport is not None:
                return transport
            if any(not t.draining for t in self._transports.values()):
                await self._wait_for_slot(deadline)  # every connection is at its stream limit
                continue
            if asyncio.get_running_loop().time() < self._retry_at:  # backing off
                if not wait_for_ready:
                    raise GRPCError(Status.UNAVAILABLE, self._last_error)
                await self._sleep_until_retry(deadline)
                continue
            try:
                await self._connect(deadline)
            except (OSError, ConnectionError, TimeoutError) as exc:
                if isinstance(exc, TimeoutError) and _expired(deadline):
                    # The call's deadline ran out, not the connection's time: the call fails as
                    # gRPC's do (DEADLINE_EXCEEDED) and the attempt goes on without a backoff.
                    raise GRPCError(Status.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
                self._failed(exc)
                if not wait_for_ready:
                    raise GRPCError(Status.UNAVAILABLE, self._last_error) from None

    def call_done(self) -> None:
        """A call released its stream: a call waiting for a stream slot may go on."""
        if self._slot_freed is not None:
            self._slot_freed.set()

    # -- connections -----------------------------------------------------------------------------

    async def _connect(self, deadline: Deadline | None) -> None:
        """Open a connection to every address that has none; return once one is ready."""
        loop = asyncio.get_running_loop()
        self.connectivity.set(ChannelState.CONNECTING)
        self._addresses = await resolve(self.target)
        for address in self._addresses:
            live = self._transports.get(address)
            if (live is None or live.draining) and address not in self._connecting:
                self._connecting[address] = loop.create_task(self._open(address))
        pending = set(self._connecting.values())
        if not pending:
            return  # another call connected every address meanwhile: pick looks again
        timeout = self._backoff.connect_timeout(self._backoff.current)
        if deadline is not None:
            timeout = min(timeout, max(deadline.time_remaining(), 0.0))
        errors: list[BaseException] = []
        async with asyncio.timeout(timeout):
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.cancelled():
                        continue
                    error = task.exception()
                    if error is None:
                        self._backoff.reset()
                        self.connectivity.set(ChannelState.READY)
                        return
                    errors.append(error)
        raise ConnectionError("; ".join(str(e) for e in errors) or "no address to connect to")

    async def _open(self, address: Address) -> ClientTransport:
        loop = asyncio.get_running_loop()
        try:
            transport = ClientTransport(
                self.config.limits,
                authority=self.authority,
                scheme="https" if self.ssl is not None else "http",
                user_agent=self.config.user_agent,
                tap=self.tap,
                connection_id=next(self._connection_ids),
                on_draining=self._draining,
                keepalive=self._keepalive(),
            )
            tls: dict[str, Any] = {}
            if self.ssl is not None:
                host = self.authority.rsplit(":", 1)[0].strip("[]")
                tls = {"ssl": self.ssl, "server_hostname": host}
            if address.path is not None:
                await loop.create_unix_connection(lambda: transport, address.path, **tls)
            else:
                host, port = address.host or "localhost", address.port or 443
                await loop.create_connection(lambda: transport, host, port, **tls)
            await transport.ready
            self._transports[address] = transport
            return transport
        except OSError as exc:
            # asyncio says "[Errno 111] Connect call failed ('127.0.0.1', 1)": the errno's own
            # words ("Connection refused") say more, and the address is named already.
            if isinstance(exc, ssl_module.SSLError):  # its errno is OpenSSL's, not the system's
                why = str(exc)
            else:
                why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConnectionError(f"cannot connect to {address}: {why}") from None
        finally:
            self._connecting.pop(address, None)

    def _keepalive(self) -> Keepalive | None:
        if self._keepalive_time is None:
            return None
        config = self.config
        return Keepalive(
            self._keepalive_time, config.keepalive_timeout, config.keepalive_without_calls
        )

    def _draining(self, transport: ClientTransport) -> None:
        """A connection stopped taking calls (GOAWAY or lost): later calls use another one."""
        if transport.too_many_pings and self._keepalive_time is not None:
            transport.too_many_pings = False  # reported once (GOAWAY, then the lost socket)
            self._keepalive_time *= 2
            log.warning(
                "server %s: too many pings; keepalive time now %g s",
                self.authority,
                self._keepalive_time,
            )
        for address, live in list(self._transports.items()):
            if live is transport:
                del self._transports[address]
        if not self._closed and not self._transports:
            self.connectivity.set(ChannelState.IDLE)
        self.call_done()

    def _failed(self, exc: BaseException) -> None:
        loop = asyncio.get_running_loop()
        self._last_error = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            self._last_error = f"connecting to {self.target.authority} timed out"
        delay = self._backoff.next_delay()
        self._retry_at = loop.time() + delay
        self.connectivity.set(ChannelState.TRANSIENT_FAILURE)
        log.debug("channel to %s: %s; next attempt in %.1f s", self.authority, exc, delay)

    async def _sleep_until_retry(self, deadline: Deadline | None) -> None:
        loop = asyncio.get_running_loop()
        wait = max(self._retry_at - loop.time(), 0.0)
        if deadline is not None and deadline.time_remaining() < wait:
            await asyncio.sleep(max(deadline.time_remaining(), 0.0))
            raise GRPCError(Status.DEADLINE_EXCEEDED, "Deadline Exceeded")
        await asyncio.sleep(wait)

    async def _wait_for_slot(self, deadline: Deadline | None) -> None:
        if self._slot_freed is None:
            self._slot_freed = asyncio.Event()
        self._slot_freed.clear()
        timeout = deadline.time_remaining() if deadline is not None else None
        try:
            await asyncio.wait_for(self._slot_freed.wait(), timeout)
        except TimeoutError:
            raise GRPCError(Status.DEADLINE_EXCEEDED, "Deadline Exceeded") from None


def _expired(deadline: Deadline | None) -> bool:
    return deadline is not None and deadline.time_remaining() <= 0
