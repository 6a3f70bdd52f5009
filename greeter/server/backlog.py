"""Closing a listener without dropping a connection the kernel or the loop already accepted.

A client's TCP handshake completes in the kernel before the server calls accept(): the
connection waits in the listening socket's backlog, and the client (a load balancer such as
nginx) may already have sent its request on it. Closing the listening socket resets every
connection still in the backlog, and a proxy cannot replay a gRPC request it already sent
(nginx never does), so its client sees the call fail. `close_listener` therefore takes what the
backlog holds and closes the socket in one step of the loop (nothing runs in between), and hands
each taken connection to the server like any other, so it is served and then gets its GOAWAY.

asyncio's own selector loop accepts in two steps: the reader accepts and starts a task that
creates the transport on the next turn, and a transport created after `Server.close()` fails
(the server is closed) and drops the connection. So on that loop accepting is paused first and
those tasks get one turn while the server is still open. uvloop creates the transport in the
same callback as the accept. Either way `connection_made` then runs one turn later (call_soon,
FIFO), which is why the caller yields once more after the close before counting connections.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from greeter.server.reads import ReadingProtocol

__all__ = ["close_listener", "take_backlog"]

log = logging.getLogger("greeter.server")


async def close_listener(server: asyncio.Server, factory: Callable[[], ReadingProtocol]) -> None:
    """Stop accepting on `server`; connections already accepted or queued get `factory`'s
    protocol as if accepted normally (with TLS its gate runs the handshake,
    greeter.server.tls_gate)."""
    loop = asyncio.get_running_loop()
    listeners = server.sockets
    if isinstance(loop, asyncio.SelectorEventLoop):
        for listener in listeners:
            loop.remove_reader(listener.fileno())
        await asyncio.sleep(0)  # accept tasks already started create their transports
    queued = [conn for listener in listeners for conn in take_backlog(listener)]
    # In the same step as the take: only a handshake the kernel completes in between (a few
    # microseconds) can still be reset.
    server.close()
    adopted = [loop.connect_accepted_socket(factory, conn) for conn in queued]
    results = await asyncio.gather(*adopted, return_exceptions=True)
    for conn, result in zip(queued, results, strict=True):
        if isinstance(result, Exception):  # the peer left meanwhile, or its TLS handshake failed
            log.info("connection queued at shutdown lost: %s", result)
            conn.close()
    await asyncio.sleep(0)  # connection_made of the transports created before the close


def take_backlog(listener: Any) -> list[socket.socket]:
    """Accept every connection waiting in `listener`'s backlog (asyncio's TransportSocket or a
    socket), without blocking."""
    taken: list[socket.socket] = []
    with socket.socket(listener.family, listener.type, fileno=os.dup(listener.fileno())) as dup:
        dup.setblocking(False)
        while True:
            try:
                conn, _ = dup.accept()
            except ConnectionAbortedError:
                continue  # reset by the peer while queued: nothing to serve
            except OSError:  # BlockingIOError: the backlog is empty; EMFILE: no room to take it
                break
            conn.setblocking(False)
            taken.append(conn)
    return taken
