"""Per-RPC state of the sans-IO core and the rules applied to each chunk of received data.

No h2 here. Both roles of the core keep one StreamState per RPC: its message reassembly,
decompression and flow-control credit on the way in (requests for the server, responses for the
client), its queued bytes on the way out, and how the outbound side ends (trailers for the
server, a half-close for the client).
"""

from __future__ import annotations

from greeter.core import headers
from greeter.wire import compression
from greeter.wire.errors import UnannouncedCompressionError
from greeter.wire.framing import FramedMessage, MessageDecoder


class StreamState:
    """Per-RPC state the core keeps between events."""

    __slots__ = (
        "announced_encoding",
        "closing",
        "compression_encoding",
        "decoder",
        "half_close",
        "headers_sent",
        "inbound_encoding",
        "local_ended",
        "max_message_size",
        "outbound",
        "peer_ended",
        "queued",
        "stream_id",
        "trailers",
        "unconsumed",
    )

    def __init__(
        self,
        stream_id: int,
        inbound_encoding: str,
        max_message_size: int,
        compression_encoding: str = compression.IDENTITY,
    ) -> None:
        self.stream_id = stream_id
        self.inbound_encoding = inbound_encoding
        """The peer's grpc-encoding: how its compressed messages are decompressed."""
        self.compression_encoding = compression_encoding
        """What our compressed messages would use (the server: chosen from grpc-accept-encoding;
        the client: the call's request compression)."""
        self.announced_encoding = compression.IDENTITY
        """The grpc-encoding our headers announced: identity means no compression."""
        self.max_message_size = max_message_size
        self.decoder = MessageDecoder(max_message_size)
        self.peer_ended = False
        """The peer's END_STREAM arrived."""
        self.headers_sent = False
        self.closing = False
        """The RPC is over here: further data from the peer is acknowledged and dropped."""
        self.half_close = False
        """Client: END_STREAM goes out once the queued messages have."""
        self.local_ended = False
        """Client: our END_STREAM went out (the request is complete)."""
        self.outbound: list[bytes | memoryview] = []
        """Framed messages not yet handed to HTTP/2, oldest first (a list: a deque costs 760
        bytes, and most RPCs queue one message at a time)."""
        self.queued = 0
        """Bytes in `outbound`: what the peer's window must admit before the sender may go on."""
        self.trailers: headers.HeaderList | None = None
        self.unconsumed = 0
        """Flow-controlled bytes of delivered messages the application has not consumed yet."""

    def header_encoding(self, compress: bool) -> str:
        """The grpc-encoding our headers announce: the compression encoding when compressing."""
        return self.compression_encoding if compress else compression.IDENTITY

    def outbound_message(self, payload: bytes, compress: bool) -> tuple[int, bytes]:
        """(compressed flag, body) of one outbound message, per the headers already sent.

        Compressed only when asked and the headers announced an encoding: a flag-1 message on a
        stream without grpc-encoding would be a protocol error for the peer.
        """
        if compress and self.announced_encoding != compression.IDENTITY:
            return 1, compression.compress(self.announced_encoding, payload)
        return 0, payload

    def take(self, data: bytes, flow_length: int) -> tuple[int, list[tuple[bytes, int, bool, int]]]:
        """Reassemble one DATA chunk: (bytes to acknowledge now, [(message, flow bytes, flag,
        wire size)]).

        The flag is the message's compressed flag as it arrived (the message is decompressed);
        the wire size is the prefix plus the payload as it arrived.

        Flow control (RFC 9113 §6.9): bytes of complete messages are returned to the peer when
        the application consumes them, which bounds what a slow handler lets pile up. Padding and
        bytes of a message still incomplete are returned now: holding them could deadlock a
        message larger than the window, and the size limit already bounds them. Raises
        a greeter.wire.errors.MessageError for bad data (its `status` ends the RPC); the state is
        then unchanged but for the decoder, which is dead.
        """
        held_before = self.decoder.buffered
        framed = self.decoder.feed(data)
        messages = [
            (
                self._decompress(message),
                5 + len(message.payload) - (held_before if i == 0 else 0),
                message.compressed,
                5 + len(message.payload),
            )
            for i, message in enumerate(framed)
        ]
        due = len(data) - self.decoder.buffered if framed else 0
        self.unconsumed += due
        return flow_length - due, messages

    def _decompress(self, message: FramedMessage) -> bytes:
        if not message.compressed:
            return message.payload
        if self.inbound_encoding == compression.IDENTITY:
            # PROTOCOL-HTTP2.md: a compressed flag without grpc-encoding is a protocol error.
            raise UnannouncedCompressionError
        return compression.decompress(self.inbound_encoding, message.payload, self.max_message_size)


def take_frame(outbound: list[bytes | memoryview], room: int) -> bytes | memoryview:
    """Up to `room` bytes from the front of the send queue, for one DATA frame.

    Small messages queued in one loop turn share a frame (gRPC lets a DATA frame carry several
    messages, or part of one): one h2 frame per message is most of a streaming RPC's cost. The
    pieces taken leave the list in one deletion per frame.
    """
    first = outbound[0]
    if len(first) >= room:
        if len(first) == room:
            del outbound[0]
            return first
        outbound[0] = first[room:]
        return first[:room]
    size, count, total = len(first), 1, len(outbound)
    while count < total and size + len(outbound[count]) <= room:
        size += len(outbound[count])
        count += 1
    parts = outbound[:count]
    if count < total and size < room:
        piece, cut = outbound[count], room - size
        parts.append(piece[:cut])
        outbound[count] = piece[cut:]
    del outbound[:count]
    return parts[0] if len(parts) == 1 and parts[0].__class__ is bytes else b"".join(parts)
