"""pcapng captures of traced connections, for Wireshark and tshark.

:class:`PcapngWriter` is a record callback: from a connection's ``transport`` record, its bytes
records and its ``close`` (greeter/tap/capture.py) it writes the TCP conversation a capture on
the wire would have shown -- SYN, SYN-ACK, ACK; each chunk as segments of at most
:data:`~greeter.tap.packets.MAX_PAYLOAD` bytes with PSH|ACK and sequence numbers counting the
bytes each way; FIN both ways at close -- with the connection's real addresses and ports. The
payloads are exactly the bytes the endpoint read and wrote, in order per direction, so
Wireshark's HTTP/2, gRPC and Protobuf dissectors see the frames the peers exchanged. A TLS
connection's payloads are its plaintext HTTP/2 (the tap sees bytes after decryption); its SYN
carries a comment saying so. Other records are ignored. Without a ``transport`` record the
addresses are made up (127.0.0.1, the client being whichever side sent the HTTP/2 client
preface) and the SYN's comment says so; the same for Unix-socket connections.

The file (draft-ietf-opsawg-pcapng): a Section Header Block, one Interface Description Block of
link type LINKTYPE_RAW (each packet starts at its IP header, IPv4 and IPv6 alike; timestamps in
microseconds, the default resolution), then one Enhanced Packet Block per packet, whose flags
say inbound (received by the tapped endpoint) or outbound. All little-endian, as the byte-order
magic tells readers.

Why these blocks are written here rather than by a library: greeter needs three fixed block
layouts and a comment option, about forty lines checked in CI by tshark reading every capture
the tests make. The candidates on PyPI would each be a dependency larger than the code it
replaces: python-pcapng and dpkt have had no release since 2022, and scapy (maintained) is a
whole packet-crafting framework, slow to import, for what two ``struct.pack`` calls do here.
"""

from __future__ import annotations

import base64
import ipaddress
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from greeter.tap.packets import ACK, FIN, MAX_PAYLOAD, PSH, SYN, IPAddress, tcp_packet
from greeter.tap.records import BytesRecord, ConnectionRecord, Direction, Record

SHB_TYPE = 0x0A0D0D0A
IDB_TYPE = 0x00000001
EPB_TYPE = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINKTYPE_RAW = 101
OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
EPB_FLAGS = 2
EPB_INBOUND = 0b01
EPB_OUTBOUND = 0b10
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SYNTHETIC_HOST = ipaddress.IPv4Address("127.0.0.1")
SYNTHETIC_SERVER_PORT = 50051
CAPTURE_COMMENT = (
    "greeter wire tap: IP and TCP headers are synthetic; payloads are the bytes each endpoint "
    "read and wrote (for TLS, the decrypted HTTP/2)"
)
_OTHER: dict[Direction, Direction] = {"in": "out", "out": "in"}


def _option(code: int, value: bytes) -> bytes:
    padding = -len(value) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * padding


def _options(options: Iterable[tuple[int, bytes]]) -> bytes:
    encoded = b"".join(_option(code, value) for code, value in options)
    return encoded + _option(OPT_ENDOFOPT, b"") if encoded else b""


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)  # type, length, body, length again
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def section_header(comment: str = CAPTURE_COMMENT) -> bytes:
    """The Section Header Block: byte order, version 1.0, section length unknown (-1)."""
    options = _options([(OPT_COMMENT, comment.encode()), (SHB_USERAPPL, b"greeter")])
    return _block(SHB_TYPE, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + options)


def interface_description(name: str = "greeter-tap") -> bytes:
    """The one interface: raw IP packets, no snapshot length limit."""
    body = struct.pack("<HHI", LINKTYPE_RAW, 0, 0) + _options([(IF_NAME, name.encode())])
    return _block(IDB_TYPE, body)


def enhanced_packet(
    microseconds: int, packet: bytes, *, inbound: bool, comment: str | None = None
) -> bytes:
    """One packet of interface 0 at ``microseconds`` since the epoch."""
    padding = b"\x00" * (-len(packet) % 4)
    options = [(EPB_FLAGS, struct.pack("<I", EPB_INBOUND if inbound else EPB_OUTBOUND))]
    if comment:
        options.append((OPT_COMMENT, comment.encode()))
    head = struct.pack(
        "<IIIII", 0, microseconds >> 32, microseconds & 0xFFFFFFFF, len(packet), len(packet)
    )
    return _block(EPB_TYPE, head + packet + padding + _options(options))


def parse_endpoint(text: str | None) -> tuple[IPAddress, int] | None:
    """``host:port`` or ``[v6]:port`` (IPv4-mapped IPv6 as IPv4); None for anything else."""
    host, colon, port = (text or "").rpartition(":")
    if not colon or not port.isdigit() or int(port) > 0xFFFF:
        return None
    try:
        address = ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address, int(port)


Endpoint = tuple[IPAddress, int]


@dataclass
class _Conversation:
    """One connection as TCP: who is the client, and the next sequence number each way."""

    client: Endpoint
    server: Endpoint
    upstream: Direction
    """The tapped endpoint's direction of the client's bytes."""
    offset: float
    """Add to a record's timestamp for seconds since the epoch."""
    seq: dict[Direction, int] = field(default_factory=dict)
    """The next sequence number of each direction (RFC 9293 §3.4: SYN and FIN count one)."""

    def segment(self, direction: Direction, flags: int, payload: bytes, ident: int) -> bytes:
        """The packet of a segment going ``direction``, acknowledging all the other way sent."""
        source, destination = (
            (self.client, self.server) if direction == self.upstream else (self.server, self.client)
        )
        seq, ack = self.seq[direction], self.seq[_OTHER[direction]]
        self.seq[direction] = seq + len(payload) + (1 if flags & (SYN | FIN) else 0)
        return tcp_packet(
            source, destination, seq=seq, ack=ack, flags=flags, payload=payload, ident=ident
        )


class PcapngWriter:
    """A record callback writing connections as a pcapng capture to the binary ``stream``.

    The section and interface blocks are written at once, so even an empty capture is a valid
    file; with ``flush`` every record's packets are flushed (a live capture, e.g. piped into
    ``wireshark -k -i -``). ``epoch_offset`` turns timestamps into wall-clock time when a
    connection has no ``transport`` record (default: this process's monotonic clock).
    """

    def __init__(
        self, stream: BinaryIO, *, flush: bool = True, epoch_offset: float | None = None
    ) -> None:
        self._stream = stream
        self._flush = flush
        self._epoch_offset = (
            time.time() - time.monotonic() if epoch_offset is None else epoch_offset
        )
        self._conversations: dict[int, _Conversation] = {}
        self._ident = 0
        self.packets = 0
        stream.write(section_header() + interface_description())
        self._flushed()

    def __call__(self, record: Record) -> None:
        if isinstance(record, BytesRecord):
            self._data(record)
        elif isinstance(record, ConnectionRecord) and record.event == "transport":
            if record.connection_id not in self._conversations:
                self._open(record)
        elif isinstance(record, ConnectionRecord) and record.event == "close":
            self._close(record)
        else:
            return
        self._flushed()

    def _flushed(self) -> None:
        if self._flush:
            self._stream.flush()

    def _open(self, record: ConnectionRecord) -> None:
        assert record.direction is not None  # a transport record has the opening direction
        remote, local = parse_endpoint(record.peer), parse_endpoint(record.local)
        notes = [f"greeter connection c{record.connection_id}"]
        if record.tls:
            notes.append("TLS: the payloads are the decrypted HTTP/2 bytes, not TLS records")
        ends: tuple[Endpoint | None, Endpoint | None] = (None, None)
        if remote is None or local is None or remote[0].version != local[0].version:
            notes.append(f"addresses made up (local {record.local}, peer {record.peer})")
        else:
            ends = (remote, local) if record.direction == "in" else (local, remote)  # client first
        offset = self._epoch_offset
        if record.epoch is not None:
            offset = record.epoch - record.timestamp
        conversation = self._conversation(record, record.direction, ends, offset)
        self._handshake(conversation, record.timestamp, "; ".join(notes))

    def _conversation(
        self,
        record: ConnectionRecord | BytesRecord,
        upstream: Direction,
        ends: tuple[Endpoint | None, Endpoint | None],
        offset: float,
    ) -> _Conversation:
        connection_id = record.connection_id
        client, server = ends
        if client is None or server is None:
            client = (SYNTHETIC_HOST, 32768 + connection_id % 28000)
            server = (SYNTHETIC_HOST, SYNTHETIC_SERVER_PORT)
        # Distinct initial sequence numbers per connection, reproducible from the id.
        client_isn = (connection_id * 2654435761) & 0xFFFFFFFF
        seq = {upstream: client_isn, _OTHER[upstream]: ~client_isn & 0xFFFFFFFF}
        conversation = _Conversation(client, server, upstream, offset, seq)
        self._conversations[connection_id] = conversation
        return conversation

    def _handshake(self, conversation: _Conversation, timestamp: float, comment: str) -> None:
        up = conversation.upstream
        self._packet(conversation, timestamp, up, SYN, comment=comment)
        self._packet(conversation, timestamp, _OTHER[up], SYN | ACK)
        self._packet(conversation, timestamp, up, ACK)

    def _data(self, record: BytesRecord) -> None:
        conversation = self._conversations.get(record.connection_id)
        if conversation is None:
            # The HTTP/2 client preface tells which side is the client (RFC 9113 §3.4).
            client_sent = record.data.startswith(PREFACE[: len(record.data)])
            upstream = record.direction if client_sent else _OTHER[record.direction]
            conversation = self._conversation(record, upstream, (None, None), self._epoch_offset)
            comment = f"greeter connection c{record.connection_id}; addresses made up"
            self._handshake(conversation, record.timestamp, comment)
        for start in range(0, len(record.data), MAX_PAYLOAD):
            payload = record.data[start : start + MAX_PAYLOAD]
            self._packet(conversation, record.timestamp, record.direction, PSH | ACK, payload)

    def _close(self, record: ConnectionRecord) -> None:
        conversation = self._conversations.pop(record.connection_id, None)
        if conversation is None:
            return
        up = conversation.upstream
        comment = f"closed: {record.reason}" if record.reason else None
        self._packet(conversation, record.timestamp, up, FIN | ACK, comment=comment)
        self._packet(conversation, record.timestamp, _OTHER[up], FIN | ACK)
        self._packet(conversation, record.timestamp, up, ACK)

    def _packet(
        self,
        conversation: _Conversation,
        timestamp: float,
        direction: Direction,
        flags: int,
        payload: bytes = b"",
        *,
        comment: str | None = None,
    ) -> None:
        self._ident += 1
        packet = conversation.segment(direction, flags, payload, self._ident)
        microseconds = round((timestamp + conversation.offset) * 1_000_000)
        self._stream.write(
            enhanced_packet(microseconds, packet, inbound=direction == "in", comment=comment)
        )
        self.packets += 1


def capture_records(
    objects: Iterable[dict[str, object]],
) -> Iterator[BytesRecord | ConnectionRecord]:
    """The records a capture is made of (bytes, ``transport``, ``close``), back from the JSON
    objects of a trace (docs/trace-format.md); every other object is skipped."""
    for obj in objects:
        layer, conn, t = obj.get("layer"), obj.get("conn"), obj.get("t")
        if not isinstance(conn, int) or not isinstance(t, int | float):
            continue
        direction = obj.get("direction")
        if layer == "bytes" and direction in ("in", "out"):
            data = base64.b64decode(str(obj.get("data_b64", "")))
            yield BytesRecord(conn, "in" if direction == "in" else "out", float(t), data)
        elif layer == "connection" and obj.get("event") in ("transport", "close"):
            epoch = obj.get("epoch")
            yield ConnectionRecord(
                conn,
                "in" if direction == "in" else "out" if direction == "out" else None,
                float(t),
                0,
                "transport" if obj.get("event") == "transport" else "close",
                reason=_text(obj.get("reason")),
                peer=_text(obj.get("peer")),
                local=_text(obj.get("local")),
                tls=obj.get("tls") is True,
                epoch=float(epoch) if isinstance(epoch, int | float) else None,
            )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
