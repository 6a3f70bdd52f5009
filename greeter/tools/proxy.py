"""An inspecting h2c reverse proxy: a TCP relay with a wire tap on each connection.

Bytes are copied unchanged in both directions -- never parsed, re-framed or re-encoded here; the tap
only reads them.

Because nothing is re-encoded, the byte stream the client sends *is* what the server receives and
vice versa: the trace of one relayed connection is the trace of both legs. Each connection gets
one observer (a ``Tap(role="server")``) that sees the client's bytes as ``"in"`` and the server's
as ``"out"``, exactly as if the proxy were the server. Flow control (WINDOW_UPDATE, SETTINGS),
cancellation (RST_STREAM), error statuses and large messages pass through unchanged because the
proxy takes part in none of them: HTTP/2 runs end to end between the two peers.

Back-pressure: each direction awaits ``drain()`` after every write, so a slow reader on one side
stops the proxy reading from the other side (TCP flow control then reaches the sender).
Half-close is propagated (``write_eof``); a reset or error on either side closes both.

TLS on either leg: with ``listen_ssl`` (greeter.server.tls.server_context) clients connect with
TLS and the proxy terminates it; with ``target_ssl`` (client_context) it connects to the target
with TLS. Both offer only ALPN "h2", and a leg that did not agree on it is closed with a warning.
What is relayed (and traced) is the plaintext HTTP/2 between them, unchanged; the tap marks a
TLS client leg (``tls`` in its transport record).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from typing import Literal

from greeter.server.listeners import listen_errors_named
from greeter.server.tls import ALPN_H2, negotiated_alpn
from greeter.tap.attach import ObserverFactory, SafeObserver, format_peer, open_observer
from greeter.wire.ranges import LISTEN_PORT, PEER_PORT, SECONDS, check_value

log = logging.getLogger("greeter.proxy")

CHUNK = 64 * 1024


class Proxy:
    """Relay every accepted connection to ``target_host:target_port``, tapping both directions.

    ``async with Proxy("127.0.0.1", 0, "127.0.0.1", 50051, tap=factory) as proxy: proxy.port``
    """

    def __init__(
        self,
        listen_host: str,
        listen_port: int,
        target_host: str,
        target_port: int,
        *,
        tap: ObserverFactory | None = None,
        connect_timeout: float = 10.0,
        listen_ssl: ssl.SSLContext | None = None,
        target_ssl: ssl.SSLContext | None = None,
        target_name: str | None = None,
    ) -> None:
        check_value("Proxy.listen_port", listen_port, LISTEN_PORT)
        check_value("Proxy.target_port", target_port, PEER_PORT)
        check_value("Proxy.connect_timeout", connect_timeout, SECONDS)
        self.listen_host = listen_host
        self.requested_port = listen_port
        self.target_host = target_host
        self.target_port = target_port
        self.tap = tap
        """Called per accepted connection with (connection id, "host:port" of the client)."""
        self.connect_timeout = connect_timeout
        self.listen_ssl = listen_ssl
        """TLS for the clients' leg (the proxy's certificate), None for cleartext."""
        self.target_ssl = target_ssl
        """TLS for the target's leg (the CAs that verify it), None for cleartext."""
        self.target_name = target_name
        """The name the target's certificate must carry (default: ``target_host``)."""
        self._connection_ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound TCP port (useful after binding port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("proxy is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind and start accepting connections."""
        with listen_errors_named(self.listen_host):
            self._server = await asyncio.start_server(
                self._accepted,
                self.listen_host,
                self.requested_port,
                ssl=self.listen_ssl,
                ssl_handshake_timeout=self.connect_timeout if self.listen_ssl is not None else None,
            )

    async def stop(self) -> None:
        """Stop accepting, close every relayed connection and wait for their relays to end."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for handler in list(self._handlers):
            handler.cancel()  # one still connecting upstream
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5.0)
        await server.wait_closed()

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._server is None:  # accepted from the backlog while stopping
            writer.transport.abort()
            return
        self._handlers.add(task)
        try:
            await self._relay_connection(reader, writer)
        except asyncio.CancelledError:
            # A top-level task nobody awaits (asyncio.run cancels it at exit): ending the relay
            # is all cancellation means here, and re-raising only makes asyncio log it.
            writer.transport.abort()
        finally:
            self._handlers.discard(task)

    async def _relay_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connection_id = next(self._connection_ids)
        peer = format_peer(writer.get_extra_info("peername"))
        self._writers.add(writer)
        try:
            if not _agreed_h2(writer, f"client {peer}"):
                return
            upstream = await self._connect_upstream(connection_id, peer)
            if upstream is None:
                return
            up_reader, up_writer = upstream
            self._writers.add(up_writer)
            observer = open_observer(self.tap, connection_id, peer, writer.transport)
            reason = "proxy stopped"
            try:
                reason = await self._relay(reader, writer, up_reader, up_writer, observer)
            finally:
                if observer is not None:
                    observer.close(reason)
                self._writers.discard(up_writer)
                up_writer.close()
            await _close(up_writer)
        finally:
            self._writers.discard(writer)
            await _close(writer)

    async def _connect_upstream(
        self, connection_id: int, peer: str | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        target = f"{self.target_host}:{self.target_port}"
        name = (self.target_name or self.target_host) if self.target_ssl is not None else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.target_host, self.target_port, ssl=self.target_ssl, server_hostname=name
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            log.warning(
                "connection %d from %s: cannot reach %s: %s; closing it",
                connection_id,
                peer,
                target,
                exc or "timed out",
            )
            return None
        if not _agreed_h2(writer, f"target {target}"):
            await _close(writer)
            return None
        return reader, writer

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        observer: SafeObserver | None,
    ) -> str:
        """Copy both directions until both are done; return why the connection ended."""
        pumps = [
            asyncio.create_task(_pump(reader, up_writer, observer, "in")),
            asyncio.create_task(_pump(up_reader, writer, observer, "out")),
        ]
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for pump in pumps:
                pump.cancel()
        errors = [str(p.exception()) for p in done if not p.cancelled() and p.exception()]
        return errors[0] if errors else "closed"


def _agreed_h2(writer: asyncio.StreamWriter, leg: str) -> bool:
    """True unless the leg is TLS and did not agree on ALPN "h2" (then it says so)."""
    if writer.get_extra_info("ssl_object") is None:
        return True
    selected = negotiated_alpn(writer.transport)
    if selected == ALPN_H2:
        return True
    shown = repr(selected) if selected else "not negotiated"
    log.warning("closing the TLS leg to the %s: ALPN %s, gRPC needs %r", leg, shown, ALPN_H2)
    return False


async def _pump(
    source: asyncio.StreamReader,
    sink: asyncio.StreamWriter,
    observer: SafeObserver | None,
    direction: Literal["in", "out"],
) -> None:
    """Copy one direction: observe, forward, wait for the sink to drain; EOF becomes write_eof."""
    while data := await source.read(CHUNK):
        if observer is not None:
            observer.observe(direction, data)
        sink.write(data)
        await sink.drain()
    if sink.can_write_eof() and not sink.transport.is_closing():
        sink.write_eof()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
