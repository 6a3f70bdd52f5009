"""The tap's message reassembly: DATA bytes of one stream direction -> gRPC messages, bounded.

Length-Prefixed-Messages (gRPC doc/PROTOCOL-HTTP2.md: Compressed-Flag, 4-byte Message-Length,
Message) split across DATA frames at any byte. Unlike the endpoint's own decoder
(greeter.wire.framing.MessageDecoder), which refuses a message over its receive limit and fails
the stream, the tap keeps watching: a message of at most ``limit`` bytes is reassembled whole;
a larger one is kept as its length and its first ``keep`` bytes while the rest of it is counted
and dropped, and the messages after it are read as usual. So the tap holds at most
``max(limit, keep)`` bytes per stream direction, never what a peer announces.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from greeter.wire.errors import FramingError
from greeter.wire.framing import PREFIX_SIZE

_PREFIX = struct.Struct(">BI")


@dataclass(frozen=True, slots=True)
class Piece:
    """One message: ``payload`` is all of it, or only its first bytes when ``cut``."""

    compressed: bool
    length: int
    """Message-Length from the prefix."""
    payload: bytes

    @property
    def cut(self) -> bool:
        return len(self.payload) < self.length


class Reassembler:
    """Messages of one stream direction (module docstring); :meth:`feed` raises FramingError on
    a Compressed-Flag other than 0 or 1, after which the direction cannot be framed."""

    __slots__ = (
        "_compressed",
        "_keep",
        "_kept",
        "_kept_size",
        "_length",
        "_limit",
        "_prefix",
        "_remaining",
    )

    def __init__(self, limit: int, keep: int) -> None:
        self._limit = limit
        self._keep = keep
        self._prefix = bytearray()
        self._length = -1
        """Message-Length of the message in progress; -1 between messages."""
        self._compressed = False
        self._kept: list[bytes] = []
        self._kept_size = 0
        self._remaining = 0

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished message (prefix included) seen so far; 0 between messages."""
        if self._length < 0:
            return len(self._prefix)
        return PREFIX_SIZE + self._length - self._remaining

    def feed(self, data: bytes) -> list[Piece]:
        """Consume one DATA payload; return the messages it completes, in order."""
        pieces: list[Piece] = []
        pos, end = 0, len(data)
        while True:
            if self._length < 0:
                if pos == end:
                    break
                pos = self._read_prefix(data, pos)
                if self._length < 0:
                    break
            take = min(self._remaining, end - pos)
            room = self._room()
            if room > 0 and take > 0:
                # Slicing a bytes object over its whole extent returns it uncopied.
                piece = data[pos : pos + min(take, room)]
                self._kept.append(piece)
                self._kept_size += len(piece)
            self._remaining -= take
            pos += take
            if self._remaining:
                break  # the chunk ended inside the message
            pieces.append(Piece(self._compressed, self._length, b"".join(self._kept)))
            self._kept.clear()
            self._kept_size = 0
            self._length = -1
        return pieces

    def _room(self) -> int:
        """How many more body bytes of the message in progress are kept."""
        wanted = self._length if self._length <= self._limit else min(self._length, self._keep)
        return wanted - self._kept_size

    def _read_prefix(self, data: bytes, pos: int) -> int:
        take = min(PREFIX_SIZE - len(self._prefix), len(data) - pos)
        self._prefix += data[pos : pos + take]
        if len(self._prefix) < PREFIX_SIZE:
            return pos + take
        flag, length = _PREFIX.unpack(self._prefix)
        self._prefix.clear()
        if flag > 1:
            raise FramingError(f"invalid Compressed-Flag {flag} (PROTOCOL-HTTP2.md allows 0 or 1)")
        self._compressed = flag == 1
        self._length = self._remaining = length
        return pos + take
