"""Raw capture: a connection's bytes as records, undecoded (what a packet capture needs).

:class:`ByteCapture` is the observer behind ``--trace-format pcapng``: it emits a ``transport``
connection record naming the socket (both addresses, TLS or not, the wall clock), one
:class:`~greeter.tap.records.BytesRecord` per chunk read or written, and ``close``. It decodes
nothing, so a capture costs a copy of each chunk's reference and nothing more.
``Tap(raw=True)`` (``--trace-bytes``) embeds one to put the same records into a decoded trace,
which is what ``greeter trace pcapng`` converts later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from greeter.tap.records import BytesRecord, ConnectionRecord, Direction, Record

Role = Literal["server", "client"]


class ByteCapture:
    """One connection's raw bytes as records, handed to ``emit`` in order.

    ``role`` says which side the tapped endpoint is: a server was connected to (its
    ``transport`` record's direction is ``"in"``), a client connected (``"out"``).
    """

    def __init__(
        self,
        emit: Callable[[Record], None],
        *,
        connection_id: int,
        role: Role,
        peer: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._emit = emit
        self._connection_id = connection_id
        self._opened: Direction = "in" if role == "server" else "out"
        self._peer = peer
        self._clock = clock
        self._wall_clock = wall_clock

    def connected(self, local: str | None, remote: str | None, tls: bool) -> None:
        """The socket's addresses (``format_peer`` spelling), before any byte: ``transport``."""
        wall = self._wall_clock()
        self._emit(
            ConnectionRecord(
                self._connection_id,
                self._opened,
                self._clock(),
                0,
                "transport",
                peer=remote if remote is not None else self._peer,
                local=local,
                tls=tls,
                epoch=wall,
                wall=wall,
            )
        )

    def observe(self, direction: Direction, data: bytes) -> None:
        """A chunk the endpoint received (``"in"``) or sent (``"out"``)."""
        wall = self._wall_clock()
        self._emit(BytesRecord(self._connection_id, direction, self._clock(), data, wall=wall))

    def close(self, reason: str) -> None:
        """The connection is gone."""
        self._emit(
            ConnectionRecord(
                self._connection_id,
                None,
                self._clock(),
                0,
                "close",
                reason=reason,
                peer=self._peer,
                wall=self._wall_clock(),
            )
        )


class CaptureFactory:
    """One :class:`ByteCapture` per connection, all emitting to ``emit`` (an observer factory
    for ``Server(tap=...)``, ``Proxy(tap=...)`` or ``Channel(tap=...)``)."""

    def __init__(self, emit: Callable[[Record], None], *, role: Role = "server") -> None:
        self.emit = emit
        self.role: Role = role

    def __call__(self, connection_id: int, peer: str | None) -> ByteCapture:
        return ByteCapture(self.emit, connection_id=connection_id, role=self.role, peer=peer)
