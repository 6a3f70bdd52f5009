"""gRPC message framing: the Length-Prefixed-Message of gRPC doc/PROTOCOL-HTTP2.md.

    Length-Prefixed-Message -> Compressed-Flag Message-Length Message
    Compressed-Flag         -> 0 / 1   ; 1 byte unsigned integer
    Message-Length          -> {length of Message}   ; 4 byte unsigned integer, big-endian

DATA frames split messages at arbitrary byte boundaries, so :class:`MessageDecoder` reassembles
them and enforces the receive limit from the prefix alone: a too-large message is refused before
a single byte of its body is buffered (as grpc-go does).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from greeter.wire.errors import FramingError, MessageTooLargeError

PREFIX_SIZE = 5
_PREFIX = struct.Struct(">BI")
_MAX_LENGTH = 0xFFFF_FFFF  # Message-Length is a 4 byte unsigned integer


@dataclass(frozen=True, slots=True)
class FramedMessage:
    """One message as framed on the wire; ``payload`` is still compressed if ``compressed``."""

    compressed: bool
    payload: bytes


def encode_message(payload: bytes, *, compressed: bool = False) -> bytes:
    """Frame ``payload``; ``compressed`` says it is already compressed with the grpc-encoding."""
    if len(payload) > _MAX_LENGTH:
        raise ValueError(f"message of {len(payload)} bytes does not fit a 4-byte Message-Length")
    return _PREFIX.pack(compressed, len(payload)) + payload


class MessageDecoder:
    """Reassembles Length-Prefixed-Messages from DATA chunks of any size.

    After :meth:`feed` raises, the decoder's state is undefined: the stream is failed and the
    decoder discarded. Messages completed earlier in the chunk that raised are dropped with it.
    """

    __slots__ = ("_body", "_body_size", "_compressed", "_length", "_max_message_size", "_prefix")

    def __init__(self, max_message_size: int) -> None:
        self._max_message_size = max_message_size
        self._prefix = bytearray()  # 0..4 bytes of a prefix split across chunks
        self._length = -1  # body length of the pending message once its prefix is complete
        self._compressed = False
        # Body pieces are kept as received and joined once: a chunk entirely inside a body is
        # stored without a copy, so a large message costs one copy (the join), not two.
        self._body: list[bytes] = []
        self._body_size = 0

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message, prefix included; 0 at a message boundary."""
        if self._length < 0:
            return len(self._prefix)
        return PREFIX_SIZE + self._body_size

    def feed(self, data: bytes) -> list[FramedMessage]:
        """Consume a chunk; return the messages it completes, in order."""
        messages: list[FramedMessage] = []
        pos = self._resume(data, messages) if self._prefix or self._length >= 0 else 0
        end = len(data)
        # Fast path: whole messages are sliced straight out of the chunk, never buffered.
        while end - pos >= PREFIX_SIZE:
            flag, length = _PREFIX.unpack_from(data, pos)
            self._check_prefix(flag, length)
            start = pos + PREFIX_SIZE
            pos = start + length
            if pos > end:
                self._start_body(flag, length)
                self._add_body(data[start:])
                return messages
            messages.append(FramedMessage(flag == 1, data[start:pos]))
        if pos < end:
            self._prefix += memoryview(data)[pos:]
        return messages

    def _resume(self, data: bytes, messages: list[FramedMessage]) -> int:
        """Continue the buffered message with ``data``; return how many bytes it consumed."""
        pos = 0
        if self._length < 0:
            pos = PREFIX_SIZE - len(self._prefix)
            self._prefix += memoryview(data)[:pos]
            if len(self._prefix) < PREFIX_SIZE:
                return len(data)
            flag, length = _PREFIX.unpack(self._prefix)
            self._prefix.clear()
            self._check_prefix(flag, length)
            self._start_body(flag, length)
        stop = pos + self._length - self._body_size
        # Slicing a bytes object over its whole extent returns it uncopied.
        self._add_body(data[pos:stop])
        if self._body_size < self._length:
            return len(data)
        messages.append(FramedMessage(self._compressed, b"".join(self._body)))
        self._body.clear()
        self._body_size = 0
        self._length = -1
        return stop

    def _check_prefix(self, flag: int, length: int) -> None:
        if flag > 1:
            raise FramingError(f"invalid Compressed-Flag {flag} (PROTOCOL-HTTP2.md allows 0 or 1)")
        if length > self._max_message_size:
            raise MessageTooLargeError(length, self._max_message_size)

    def _start_body(self, flag: int, length: int) -> None:
        self._compressed = flag == 1
        self._length = length

    def _add_body(self, piece: bytes) -> None:
        if piece:
            self._body.append(piece)
            self._body_size += len(piece)
