"""The TLS gate: the first protocol of every accepted TLS connection, and why one is refused.

asyncio's ``create_server(ssl=...)`` runs the handshake out of sight: a client that fails it, or
that speaks cleartext to the TLS port, reaches no protocol, no log line and no trace. So the
server accepts plain TCP and the gate runs the handshake itself (``loop.start_tls``, the same
TLS machinery, on asyncio and uvloop alike), watching the first bytes the client sends. When the
handshake succeeds and ALPN selected "h2" (RFC 9113 §3.2) the gate hands the TLS transport to the
real protocol and steps aside, so it costs nothing afterwards. Otherwise it logs one line naming
the peer and the reason, tells the tap (a ``close`` record with the reason, and for a capture the
connection's addresses) and closes: such a connection is never counted as a gRPC connection.

Reasons: cleartext HTTP/2 (the client preface) or HTTP/1.x sent to a TLS port, other bytes that
are no TLS record, the handshake's own error (OpenSSL's reason, e.g. ``TLSV1_ALERT_UNKNOWN_CA``
when the client rejects our certificate), its time limit, the client leaving during it, and an
ALPN other than "h2". A client that leaves before sending anything is logged at INFO (a TCP health
check does that), every other refusal at WARNING.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable
from typing import Any, Protocol

from greeter.server.reads import ReadingProtocol
from greeter.server.tls import ALPN_H2, negotiated_alpn
from greeter.tap.attach import ObserverFactory, format_peer, open_observer

log = logging.getLogger("greeter.tls")

TLS_HANDSHAKE_RECORD = 0x16  # RFC 8446 §5.1: ContentType handshake(22) opens every ClientHello
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HTTP1_REQUEST = re.compile(rb"[A-Z]{3,10} [^ ]")
SNIFFED = 24
"""Bytes of the client's first flight kept to tell what it spoke."""


class GateHost(Protocol):
    """What the gate needs from the server (greeter.server.Server)."""

    tap: ObserverFactory | None

    def next_connection_id(self) -> int: ...


def _feed(protocol: Any, data: bytes) -> None:
    """Deliver `data` to an asyncio protocol, buffered or not, as a transport would."""
    get_buffer = getattr(protocol, "get_buffer", None)
    if get_buffer is None:
        protocol.data_received(data)
        return
    view = memoryview(data)
    while view:
        buffer = get_buffer(len(view))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]


class _Sniffer(asyncio.Protocol):
    """Sits between the TCP transport and the TLS protocol during the handshake: passes every
    event on unchanged and keeps the first bytes the client sent."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.head = b""

    def data_received(self, data: bytes) -> None:
        if len(self.head) < SNIFFED:
            self.head += data[: SNIFFED - len(self.head)]
        _feed(self.inner, data)

    def eof_received(self) -> bool | None:
        keep_open: bool | None = self.inner.eof_received()
        return keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def describe_failure(head: bytes, exc: BaseException, timeout: float | None) -> str:
    """Why a handshake failed, from the client's first bytes and the error it ended with."""
    if head and head[0] != TLS_HANDSHAKE_RECORD:
        if PREFACE.startswith(head[: len(PREFACE)]) and len(head) >= 3:
            return "cleartext HTTP/2 (the client preface) sent to a TLS port"
        if HTTP1_REQUEST.match(head):
            return "cleartext HTTP/1.x sent to a TLS port"
        return f"not TLS: the client's first bytes are {head[:16]!r}"
    if isinstance(exc, ssl.SSLError):
        detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        return f"TLS handshake failed: {detail}"
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, ConnectionAbortedError) and "longer than" in str(exc)
    ):
        return "TLS handshake timed out" + (f" after {timeout:g} s" if timeout else "")
    if not head:
        return "closed before the TLS handshake"
    return f"closed during the TLS handshake ({exc or type(exc).__name__})"


class TlsGate(asyncio.Protocol):
    """Runs the server-side TLS handshake of one accepted connection, then hands the TLS
    transport to ``factory()`` -- or refuses the connection, saying why (module docstring)."""

    def __init__(
        self,
        context: ssl.SSLContext,
        factory: Callable[[], ReadingProtocol],
        host: GateHost,
        handshake_timeout: float | None,
    ) -> None:
        self._context = context
        self._factory = factory
        self._host = host
        self._timeout = handshake_timeout
        self._raw = True
        """The TCP transport still delivers to the gate: start_tls has not taken it yet."""
        self._early: list[bytes] = []
        """Raw bytes read before start_tls took the transport (the start of the ClientHello)."""
        self._pending: list[bytes] = []
        """Application data that arrived with the end of the handshake, before the handover."""
        self._eof = False
        self._lost = False
        self._task: asyncio.Task[None] | None = None
        """The handshake, held here: the loop keeps only a weak reference to a task."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._task = asyncio.get_running_loop().create_task(self._handshake(transport))

    async def _handshake(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        starting = asyncio.ensure_future(
            loop.start_tls(
                transport,  # type: ignore[arg-type]  # uvloop's transports do not subclass
                self,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._timeout,
            )
        )
        await asyncio.sleep(0)  # start_tls has put its TLS protocol on the transport, paused
        self._raw = False
        sniffer = None
        tls_protocol = transport.get_protocol()
        if tls_protocol is not self:
            sniffer = _Sniffer(tls_protocol)
            transport.set_protocol(sniffer)
            await asyncio.sleep(0)  # the TLS protocol's connection_made has run
            if self._early:  # read before start_tls took over (uvloop reads at once)
                sniffer.data_received(b"".join(self._early))
        self._early = []
        try:
            tls_transport = await starting
        except (OSError, TimeoutError, EOFError) as exc:  # ssl.SSLError is an OSError
            head = sniffer.head if sniffer is not None else b""
            self._refuse(transport, describe_failure(head, exc, self._timeout), quiet=not head)
            return
        finally:
            if sniffer is not None and not transport.is_closing():
                transport.set_protocol(sniffer.inner)
        if tls_transport is None:  # typeshed allows it; asyncio returns None only if closed
            return
        selected = negotiated_alpn(tls_transport)
        if selected != ALPN_H2:
            shown = repr(selected) if selected else "not negotiated"
            self._refuse(tls_transport, f"ALPN {shown}, gRPC needs {ALPN_H2!r}")
            return
        if self._lost:
            return  # gone right after the handshake: nothing to serve
        protocol = self._factory()
        tls_transport.set_protocol(protocol)
        protocol.connection_made(tls_transport)
        for data in self._pending:
            protocol.data_received(data)
        if self._eof and not protocol.eof_received():
            tls_transport.close()

    def _refuse(self, transport: asyncio.BaseTransport, reason: str, quiet: bool = False) -> None:
        peer = format_peer(transport.get_extra_info("peername"))
        level = logging.INFO if quiet else logging.WARNING
        log.log(level, "refused %s: %s", peer or "a Unix socket peer", reason)
        observer = open_observer(self._host.tap, self._host.next_connection_id(), peer, transport)
        if observer is not None:
            observer.close(reason)
        transport.close()

    # -- the TCP transport's events before start_tls, then the TLS transport's until the handover

    def data_received(self, data: bytes) -> None:
        (self._early if self._raw else self._pending).append(data)

    def eof_received(self) -> bool | None:
        self._eof = not self._raw  # passed on at the handover; TLS closes after it anyway
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
