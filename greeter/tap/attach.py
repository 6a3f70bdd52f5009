"""Attaching byte observers (the wire tap) to connections: the contract and its safe wrapper.

Glue shared by the server, the proxy and the tapped client (no protocol logic). An observer
sees a connection's raw bytes in both directions; the server hands its `observe` to the core as
the `on_bytes` callable. A failing observer stops tracing, never the connection it watches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol

log = logging.getLogger("greeter.tap")


class ConnectionObserver(Protocol):
    """Sees a connection's raw bytes (the wire tap); its `observe` is the core's `on_bytes`.

    An observer may also define ``connected(local, remote, tls)``: called once before any
    bytes with the socket's own and the peer's address (`format_peer` spelling) and whether
    the bytes it sees came out of TLS (greeter.tap.capture records them for packet captures).
    """

    def observe(self, direction: Literal["in", "out"], data: bytes) -> None: ...

    def close(self, reason: str) -> None: ...


ObserverFactory = Callable[[int, Any], ConnectionObserver]
"""Called with (connection id, peer address) when a connection is accepted."""


def format_peer(peername: Any) -> str | None:
    """``host:port`` (``[v6]:port``) for a socket's peername, None when unknown."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername) if peername else None  # a Unix socket's client has no name ('')


class SafeObserver:
    """Wraps an observer so that a failing tap stops tracing, never the connection it watches."""

    def __init__(self, observer: ConnectionObserver, connection_id: int) -> None:
        self._observer: ConnectionObserver | None = observer
        self._connection_id = connection_id

    def observe(self, direction: Literal["in", "out"], data: bytes) -> None:
        if self._observer is None:
            return
        try:
            self._observer.observe(direction, data)
        except Exception:
            log.exception("connection %d: the tap failed; tracing stops", self._connection_id)
            self._observer = None

    def connected(self, transport: Any) -> None:
        """Tell the observer where the asyncio `transport` runs, if it wants to know."""
        connected = getattr(self._observer, "connected", None)
        if connected is None:
            return
        try:
            connected(
                format_peer(transport.get_extra_info("sockname")),
                format_peer(transport.get_extra_info("peername")),
                transport.get_extra_info("ssl_object") is not None,
            )
        except Exception:
            log.exception("connection %d: the tap failed; tracing stops", self._connection_id)
            self._observer = None

    def close(self, reason: str) -> None:
        if self._observer is None:
            return
        observer, self._observer = self._observer, None
        try:
            observer.close(reason)
        except Exception:
            log.exception("connection %d: the tap failed on close", self._connection_id)


def open_observer(
    tap: ObserverFactory | None, connection_id: int, peer: str | None, transport: Any = None
) -> SafeObserver | None:
    """``tap(connection_id, peer)`` wrapped in a SafeObserver and told of its `transport`
    (when given); None without a tap or if it fails."""
    if tap is None:
        return None
    try:
        observer = SafeObserver(tap(connection_id, peer), connection_id)
    except Exception:
        log.exception("connection %d: the tap factory failed; not tracing it", connection_id)
        return None
    if transport is not None:
        observer.connected(transport)
    return observer
