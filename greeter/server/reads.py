"""Socket reads into one reused buffer: `BufferedReads`, the base of both connection protocols.

asyncio's plain `Protocol` reads with ``sock.recv(256 KiB)``: every read allocates a 256 KiB
bytes object and shrinks it to what arrived. On Linux that allocation costs about 10 µs (glibc
serves it with fresh pages), more than reading a small unary response otherwise costs: for a
client with one call in flight it was over a tenth of its CPU time. `asyncio.BufferedProtocol`
reads into a buffer the protocol hands out instead (``recv_into``); here that buffer is one per
thread, shared by every connection, since asyncio (and its TLS layer) fills it and reports the
byte count in one synchronous step, and `buffer_updated` copies the bytes out before returning.
An idle connection therefore holds no buffer. The server's ConnectionDriver and the client's
ClientTransport implement `data_received(bytes)` as before.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["READ_SIZE", "BufferedReads", "ReadingProtocol"]

READ_SIZE = 256 * 1024
"""The most one read takes: asyncio's own default for a plain Protocol."""


class _ThreadBuffer(threading.local):
    def __init__(self) -> None:
        self.view = memoryview(bytearray(READ_SIZE))


_buffer = _ThreadBuffer()


class BufferedReads(asyncio.BufferedProtocol):
    """A protocol that receives bytes through `data_received`, read without a new allocation."""

    def get_buffer(self, sizehint: int) -> memoryview:
        return _buffer.view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_buffer.view[:nbytes]))

    def data_received(self, data: bytes) -> None:
        """Bytes read from the socket (a copy: the protocol may keep it)."""
        raise NotImplementedError


ReadingProtocol = asyncio.Protocol | BufferedReads
"""A protocol that takes received bytes as `data_received(bytes)` (the TLS gate's early bytes)."""
