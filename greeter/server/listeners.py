"""The asyncio server: listeners (TCP, TLS, Unix socket) and lifecycle, for grpclib-style services.

It binds, accepts (each connection gets a greeter.server.driver.ConnectionDriver around its
own sans-IO core), and shuts down gracefully. `Server` is the `ConnectionHost` its drivers
report to. Embedding API: `async with Server(...)`
or `start()` / `stop(grace)`; port 0 binds a free port, reported by `port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import signal
import socket
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from ssl import SSLContext
from typing import Protocol, runtime_checkable

from grpclib.const import Handler

from greeter.core.config import CoreConfig
from greeter.server.backlog import close_listener
from greeter.server.config import SERVER_RANGES, ServerConfig, Timeouts
from greeter.server.driver import ConnectionDriver, ServerMonitor
from greeter.server.interceptors import ServerInterceptor
from greeter.server.reads import ReadingProtocol
from greeter.server.signals import STOP_SIGNALS, SignalCatcher
from greeter.server.tls_gate import TlsGate
from greeter.tap.attach import ObserverFactory
from greeter.wire.errors import SetupFileError
from greeter.wire.ranges import LISTEN_PORT, check_value

__all__ = ["CoreConfig", "Server", "ServerConfig", "Service", "Timeouts"]

log = logging.getLogger("greeter.server")


class Service(Protocol):
    """Anything with grpclib's service contract: betterproto2 bases, grpclib's Health, ..."""

    def __mapping__(self) -> dict[str, Handler]: ...


@runtime_checkable
class DrainAware(Protocol):
    """A service told when a graceful stop begins (greeter.services.health.ServingHealth)."""

    def draining(self) -> None: ...


class Server:
    """A gRPC server for grpclib-style services, run inside the caller's asyncio event loop.

    ``async with Server([Greeter()], port=0) as server: print(server.port)``

    With `ssl` (greeter.server.tls.server_context) every connection is TLS and must negotiate ALPN
    "h2"; with `uds` the server listens on that Unix socket path instead of host and port.
    """

    def __init__(
        self,
        services: Iterable[Service],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: ServerConfig | None = None,
        tap: ObserverFactory | None = None,
        ssl: SSLContext | None = None,
        uds: str | None = None,
        reuse_port: bool = False,
        listen: bool = True,
        interceptors: Iterable[ServerInterceptor] = (),
        monitor: ServerMonitor | None = None,
    ) -> None:
        self.mapping: dict[str, Handler] = {}
        self._drain_aware: list[DrainAware] = []
        for service in services:
            self.mapping.update(service.__mapping__())
            if isinstance(service, DrainAware):
                self._drain_aware.append(service)
        check_value("Server.port", port, LISTEN_PORT)
        self.host = host
        self.requested_port = port
        self.ssl = ssl
        self.uds = uds
        """A Unix socket path to listen on instead of host and port."""
        self.reuse_port = reuse_port
        """SO_REUSEPORT: several processes listen on one port, the kernel spreads connections."""
        self.listen = listen
        """False: the server binds nothing and serves the connections handed to `adopt` (a
        worker of `greeter serve --workers`, whose parent accepts on `port`)."""
        self.config = config or ServerConfig()
        self.interceptors: Sequence[ServerInterceptor] = tuple(interceptors)
        """Run around every RPC, in order (greeter.server.interceptors)."""
        self.monitor = monitor
        """Told of connections opening and closing and of defences firing (metrics)."""
        self.tap = tap
        """Called per accepted connection for an observer of its bytes (greeter.tap.TapFactory)."""
        self.connections: set[ConnectionDriver] = set()
        self._connection_ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._started = False
        self._adopting: set[asyncio.Task[None]] = set()
        self._factory: Callable[[], ReadingProtocol] = functools.partial(ConnectionDriver, self)
        self._stopping = False
        self._closing = False
        """The listener is closing or closed: a connection admitted now gets GOAWAY at once."""

    # -- ConnectionHost (greeter.server.driver): what each connection's driver uses ---------------

    def next_connection_id(self) -> int:
        """Connection ids are unique per server, in accept order: trace records carry them."""
        return next(self._connection_ids)

    def admit(self, connection: ConnectionDriver) -> bool:
        """Count a new connection. At `config.max_connections`, the connection idle longest (no
        RPC) is closed with GOAWAY to make room; False when every open one has RPCs."""
        limit = self.config.max_connections
        if limit is not None and len(self.connections) >= limit:
            idle = [c for c in self.connections if c.idle_since is not None]
            if not idle:
                return False
            longest = min(idle, key=lambda c: c.idle_since or 0.0)
            self._forget(longest)
            idle_for = asyncio.get_running_loop().time() - (longest.idle_since or 0.0)
            longest.shed(
                f"connection cap ({limit}) reached: idle for {idle_for:.1f} s, closed for a new"
                " connection"
            )
        self.connections.add(connection)
        if self.monitor is not None:
            self.monitor.connection_opened()
        if self._closing:
            # Accepted as the listener closed: served like the others, its requests so far
            # included (the two-step GOAWAY, RFC 9113 §6.8), then closed (greeter.server.backlog).
            connection.start_shutdown()
        return True

    def release(self, connection: ConnectionDriver) -> None:
        self._forget(connection)

    def _forget(self, connection: ConnectionDriver) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            if self.monitor is not None:
                self.monitor.connection_closed()

    @property
    def service_names(self) -> list[str]:
        """Fully qualified service names, in registration order."""
        return list(dict.fromkeys(path.split("/")[1] for path in self.mapping))

    async def start(self) -> None:
        """Bind and start accepting connections."""
        loop = asyncio.get_running_loop()
        self._closing = False
        factory: Callable[[], ReadingProtocol] = functools.partial(ConnectionDriver, self)
        if self.ssl is not None:
            # The gate runs the TLS handshake (so that a failed one is logged and traced); it
            # precedes the connection's own handshake timer, with the same limit.
            timeout = self.config.timeouts.handshake
            factory = functools.partial(TlsGate, self.ssl, factory, self, timeout)
        self._factory = factory
        self._started = True
        if not self.listen:
            return
        if self.uds is not None:
            directory = os.path.dirname(os.path.abspath(self.uds))
            if not os.path.isdir(directory):
                raise SetupFileError(f"Unix socket {self.uds}: no directory {directory}")
            _remove_stale_socket(self.uds)
            self._server = await loop.create_unix_server(factory, self.uds)
        else:
            with listen_errors_named(self.host):
                self._server = await loop.create_server(
                    factory, self.host, self.requested_port, reuse_port=self.reuse_port
                )

    @property
    def port(self) -> int:
        """The bound TCP port (useful after binding port 0); RuntimeError on a Unix socket."""
        if self.uds is not None:
            raise RuntimeError(f"server listens on the Unix socket {self.uds}, not a port")
        if not self.listen:
            return self.requested_port  # the parent's listening port
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> str:
        """Where clients connect: the Unix socket path, else "HOST:PORT" ("[V6]:PORT")."""
        if self.uds is not None:
            return self.uds
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def adopt(self, sock: socket.socket) -> None:
        """Serve `sock`, a connection accepted elsewhere (the parent of `--workers`), as if this
        server had accepted it; after a stop it gets its GOAWAY at once, like one taken from the
        backlog (greeter.server.backlog)."""
        if not (self._started or self._stopping):
            sock.close()  # not serving (never started, or stopped): nothing to serve it with
            return
        task = asyncio.ensure_future(self._adopt(sock))
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    async def _adopt(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        try:
            await loop.connect_accepted_socket(self._factory, sock)
        except OSError as exc:  # the peer left meanwhile, or its TLS handshake failed
            log.info("handed connection lost: %s", exc)
            sock.close()

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: services report draining (health: NOT_SERVING) and the server keeps
        serving for `config.drain_delay` s; then it stops accepting (connections already queued
        are served, greeter.server.backlog), sends GOAWAY on every connection, lets RPCs finish
        for `grace` s and cancels the rest."""
        _check_grace(grace)
        server = self._server
        if not self._started or self._stopping:
            return
        self._stopping = True
        for service in self._drain_aware:
            service.draining()
        if self.config.drain_delay > 0:
            # Still accepting and serving: load balancers and readiness probes need time to see
            # NOT_SERVING and route new calls elsewhere (docs/serving.md, "Shutdown").
            await asyncio.sleep(self.config.drain_delay)
        self._server = None
        self._started = False
        self._closing = True
        if server is not None:
            await close_listener(server, self._factory)
        grace = self.config.grace_period if grace is None else grace
        for connection in list(self.connections):
            connection.start_shutdown()
        if not await self._all_closed(grace):
            for connection in list(self.connections):
                connection.abort()
            await self._all_closed(1.0)
        if server is not None:
            await server.wait_closed()
        if self.uds is not None:
            with contextlib.suppress(OSError):  # the socket file is ours: leave no stale one
                os.unlink(self.uds)
        self._stopping = False

    async def _all_closed(self, timeout: float) -> bool:
        """Wait up to `timeout` s until no connection is open, counting those that open
        meanwhile (a TLS handshake finishing); whether none is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait([c.closed for c in self.connections], timeout=remaining)
        return True

    async def serve_until_signalled(
        self,
        *,
        grace: float | None = None,
        ready: Callable[[], object] | None = None,
        stopping: Callable[[signal.Signals], object] | None = None,
        signals: Iterable[signal.Signals] = STOP_SIGNALS,
    ) -> signal.Signals:
        """Serve until SIGINT or SIGTERM, then stop gracefully (`stop(grace)`); the signal.

        Starts the server if it is not started. The signal handlers are installed first and
        `ready` (e.g. logging a "serving" line) runs after the start, so a signal sent as soon
        as the server is reachable is already a graceful stop; `stopping` runs when the signal
        arrives. A second signal during the grace period cancels the RPCs still running at once.
        The running loop's signal handlers, so the main thread only (as grpc.aio's
        `wait_for_termination` and grpclib's `graceful_exit`).
        """
        _check_grace(grace)
        with SignalCatcher(signals) as caught:
            if not self._started:
                await self.start()
            if ready is not None:
                ready()
            received = await caught.first()
            if stopping is not None:
                stopping(received)
            stopping_task = asyncio.ensure_future(self.stop(grace))
            hurry = asyncio.ensure_future(caught.second.wait())
            await asyncio.wait([stopping_task, hurry], return_when=asyncio.FIRST_COMPLETED)
            if not stopping_task.done():
                log.warning("second signal: cancelling the in-flight RPCs now")
                for connection in list(self.connections):
                    connection.abort()
            hurry.cancel()
            await stopping_task
        return received

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


@contextlib.contextmanager
def listen_errors_named(host: str) -> Iterator[None]:
    """A host to listen on that does not resolve: an OSError naming it (the resolver's own error
    says only "Name or service not known")."""
    try:
        yield
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on host {host!r}: {exc.strerror}") from None


def _check_grace(grace: float | None) -> None:
    """A grace period given to stop: None (the config's) or seconds >= 0, as the config's."""
    if grace is not None:
        check_value("grace", grace, SERVER_RANGES["grace_period"])


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by a server that is gone; refuse to take over a live one.

    (asyncio would unlink any socket file at `path`, even one another server still listens on.)
    """
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return  # not a socket (or nothing there): binding reports the conflict
    except FileNotFoundError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens: stale
            return
    raise OSError(f"{path} is in use: another server listens on it")
