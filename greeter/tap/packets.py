"""Synthetic TCP/IP packets: an IPv4 or IPv6 header and a TCP header around a payload.

For packet captures of connections the tap saw as byte streams (greeter/tap/pcapng.py): the
headers carry the connection's real addresses and ports, sequence and acknowledgement numbers
that count the bytes sent each way (RFC 9293 §3.4), and valid checksums (RFC 1071 one's
complement sums: IPv4 header, RFC 791; TCP over the RFC 9293 §3.1 / RFC 8200 §8.1 pseudo-header),
so that dissectors and checksum validation take them as captured. No options, no fragmentation:
payloads stay within one IP datagram (:data:`MAX_PAYLOAD`).
"""

from __future__ import annotations

import array
import ipaddress
import struct
import sys

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
TCP_HEADER = 20
IPV4_HEADER = 20
IPV6_HEADER = 40
MAX_PAYLOAD = 0xFFFF - IPV4_HEADER - TCP_HEADER
"""Largest TCP payload of one packet: IPv4's Total Length counts both headers (IPv6's
Payload Length counts only TCP's, so the IPv4 bound fits both)."""
WINDOW = 0xFFFF
TTL = 64
PROTOCOL_TCP = 6


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\x00"
    words = array.array("H", data)
    if sys.byteorder == "little":
        words.byteswap()  # the sum is over big-endian 16-bit words
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_packet(
    source: tuple[IPAddress, int],
    destination: tuple[IPAddress, int],
    *,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    ident: int = 0,
) -> bytes:
    """One IP packet (version from the addresses) carrying one TCP segment."""
    (src, src_port), (dst, dst_port) = source, destination
    if src.version != dst.version:
        raise ValueError(f"address families differ: {src} and {dst}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes: at most {MAX_PAYLOAD} fit a packet")
    length = TCP_HEADER + len(payload)
    header = struct.pack(
        "!HHIIBBHHH",
        src_port,
        dst_port,
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF if flags & ACK else 0,
        (TCP_HEADER // 4) << 4,
        flags,
        WINDOW,
        0,
        0,
    )
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, PROTOCOL_TCP, length)
    else:
        pseudo = src.packed + dst.packed + struct.pack("!I3xB", length, PROTOCOL_TCP)
    tcp_sum = checksum(pseudo + header + payload)
    segment = header[:16] + struct.pack("!H", tcp_sum) + header[18:] + payload
    if src.version == 4:
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            IPV4_HEADER + length,
            ident & 0xFFFF,
            0x4000,  # Don't Fragment
            TTL,
            PROTOCOL_TCP,
            0,
            src.packed,
            dst.packed,
        )
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, length, PROTOCOL_TCP, TTL, src.packed, dst.packed)
    return ip + segment
