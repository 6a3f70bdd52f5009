"""Hand-built tap records on connection 1 around t=10.0, and their golden text lines.

Not a test module. `frame` and `message` build frame and message records with defaults a test
overrides by keyword; HEADERS, RPC_START and RPC_END are complete records; GOLDEN pairs one
record of every kind with its text at max_bytes=16 and origin 10.0 (tests/tap/test_text.py
asserts those lines; the JSON Lines and sink tests reuse the records).
"""

from __future__ import annotations

from typing import Any

from gen.greet import HelloReply, HelloRequest
from greeter.tap.records import (
    ConnectionRecord,
    DecodeErrorRecord,
    Direction,
    FrameRecord,
    MessageRecord,
    PrefaceRecord,
    Priority,
    RawField,
    Record,
    RpcRecord,
)

PATH = "/greet.Greeter/SayHello"


def frame(
    type_: str, stream_id: int = 0, direction: Direction = "in", **fields: Any
) -> FrameRecord:
    """A frame record at t=10.0 on connection 1; flags, raw_flags and length default to empty."""
    fields.setdefault("flags", ())
    fields.setdefault("raw_flags", 0)
    fields.setdefault("length", 0)
    return FrameRecord(
        connection_id=1,
        direction=direction,
        timestamp=10.0,
        stream_id=stream_id,
        type=type_,
        **fields,
    )


def message(**fields: Any) -> MessageRecord:
    base: dict[str, Any] = {
        "connection_id": 1,
        "direction": "in",
        "timestamp": 10.002,
        "stream_id": 1,
        "method": PATH,
        "index": 1,
        "compressed": False,
        "length": 7,
        "encoding": "identity",
        "data": b"\n\x05world",
    }
    return MessageRecord(**(base | fields))


HEADERS = frame(
    "HEADERS",
    1,
    flags=("END_HEADERS",),
    raw_flags=4,
    length=40,
    headers=((":path", PATH), ("content-type", "application/grpc")),
)
RPC_START = RpcRecord(
    connection_id=1,
    direction="in",
    timestamp=10.0,
    stream_id=1,
    event="start",
    method=PATH,
    peer="127.0.0.1:5555",
    timeout=1.0,
    metadata=(("x-user", "bob"),),
)
RPC_END = RpcRecord(
    connection_id=1,
    direction="out",
    timestamp=10.0005,
    stream_id=1,
    event="end",
    method=PATH,
    status=5,
    status_name="NOT_FOUND",
    status_message="nope",
    status_details=(
        ("type.googleapis.com/greet.HelloReply", HelloReply(message="why")),
        ("type.googleapis.com/x.Unknown", (RawField(1, 0, 3),)),
    ),
    requests=1,
    timings=(("response_headers", 0.0002), ("first_request", 0.0003), ("trailers", 0.0005)),
    duration=0.0005,
    request_bytes=12,
    wall=1_768_469_400.5,
)

GOLDEN: list[tuple[Record, str]] = [
    (PrefaceRecord(1, "in", 10.0), "+0.000000 c1 s0 <- frame PREFACE"),
    (
        frame("SETTINGS", length=12, settings=(("MAX_CONCURRENT_STREAMS", 100),)),
        "+0.000000 c1 s0 <- frame SETTINGS len=12 MAX_CONCURRENT_STREAMS=100",
    ),
    (
        frame("SETTINGS", flags=("ACK",), raw_flags=1, settings=()),
        "+0.000000 c1 s0 <- frame SETTINGS ACK len=0",
    ),
    (
        HEADERS,
        "+0.000000 c1 s1 <- frame HEADERS END_HEADERS len=40\n"
        "    :path: /greet.Greeter/S… (23 chars)\n"
        "    content-type: application/grpc",
    ),
    (
        frame(
            "DATA", 1, flags=("END_STREAM", "PADDED"), raw_flags=9, length=20, data=b"x", padding=3
        ),
        "+0.000000 c1 s1 <- frame DATA END_STREAM|PADDED len=20 b'x' pad=3",
    ),
    (
        frame("WINDOW_UPDATE", direction="out", length=4, window_increment=65535),
        "+0.000000 c1 s0 -> frame WINDOW_UPDATE len=4 +65535",
    ),
    (
        frame("RST_STREAM", 3, length=4, error_code="CANCEL"),
        "+0.000000 c1 s3 <- frame RST_STREAM len=4 CANCEL",
    ),
    (
        frame("GOAWAY", length=11, error_code="NO_ERROR", last_stream_id=5, debug_data=b"bye"),
        "+0.000000 c1 s0 <- frame GOAWAY len=11 NO_ERROR last=s5 b'bye'",
    ),
    (
        frame("PING", flags=("ACK",), raw_flags=1, length=8, ping_data=bytes(range(8))),
        "+0.000000 c1 s0 <- frame PING ACK len=8 0001020304050607",
    ),
    (
        frame("PRIORITY", 3, length=5, priority=Priority(1, 16, True)),
        "+0.000000 c1 s3 <- frame PRIORITY len=5 depends_on=s1 weight=16 exclusive",
    ),
    (
        frame("PUSH_PROMISE", 1, length=4, promised_stream_id=2),
        "+0.000000 c1 s1 <- frame PUSH_PROMISE len=4 promised=s2",
    ),
    (
        frame("UNKNOWN(0x0a)", length=20, payload=b"y" * 20),
        "+0.000000 c1 s0 <- frame UNKNOWN(0x0a) len=20 b'yyyyyyyyyyyyyyyy…' (20 bytes)",
    ),
    (
        DecodeErrorRecord(1, "in", 10.5, "frame too large", 24),
        "+0.500000 c1 s0 <- frame DECODE_ERROR at byte 24: frame too large",
    ),
    (
        message(decoded=HelloRequest(name="world")),
        "+0.002000 c1 s1 <- msg   greet.HelloRequest #1 7 bytes\n    name: 'world'\n    count: 0",
    ),
    (
        message(
            compressed=True,
            length=30,
            encoding="gzip",
            size=7,
            fields=(RawField(1, 2, b"world"), RawField(3, 2, (RawField(1, 0, 150),))),
        ),
        "+0.002000 c1 s1 <- msg   message #1 30 bytes (gzip, 7 bytes decompressed)\n"
        "    1 LEN: b'world'\n"
        "    3 LEN:\n"
        "      1 VARINT: 150",
    ),
    (
        message(method=None, length=4, data=b"\xff\xff\xff\xff", error="truncated varint"),
        "+0.002000 c1 s1 <- msg   message #1 4 bytes error: truncated varint\n"
        "    b'\\xff\\xff\\xff\\xff'",
    ),
    (
        RPC_START,
        "+0.000000 c1 s1 <- rpc   start /greet.Greeter/SayHello from 127.0.0.1:5555 timeout=1.0s\n"
        "    x-user: bob",
    ),
    (
        RPC_END,
        "2026-01-15T09:30:00.500000Z +0.000500 c1 s1 -> rpc   end /greet.Greeter/SayHello "
        "NOT_FOUND 'nope' duration=0.500ms requests=1 (12 bytes) responses=0 (0 bytes) "
        "(headers +0.200ms, first request +0.300ms, trailers +0.500ms)\n"
        "    detail type.googleapis.com/greet.HelloReply\n"
        "        message: 'why'\n"
        "    detail type.googleapis.com/x.Unknown\n"
        "        1 VARINT: 3",
    ),
    (
        RpcRecord(1, "in", 10.0, 3, "end", PATH, reset="CANCEL", requests=1),
        "+0.000000 c1 s3 <- rpc   end /greet.Greeter/SayHello reset=CANCEL "
        "requests=1 (0 bytes) responses=0 (0 bytes)",
    ),
    (
        ConnectionRecord(1, None, 10.1, 1, "window", 100, 200, 1, 2),
        "+0.100000 c1 s1 ·· conn  window conn in=100 out=200 stream in=1 out=2",
    ),
    (
        ConnectionRecord(1, "out", 10.1, 0, "stall", connection_out=0),
        "+0.100000 c1 s0 -> conn  stall conn out=0",
    ),
    (
        ConnectionRecord(1, "out", 10.2, 0, "unstall", connection_out=65535, duration=0.1),
        "+0.200000 c1 s0 -> conn  unstall conn out=65535 after 100.000ms",
    ),
    (
        ConnectionRecord(1, None, 10.2, 0, "ping_rtt", duration=0.0004),
        "+0.200000 c1 s0 ·· conn  ping rtt=0.400ms",
    ),
    (
        ConnectionRecord(
            1, "in", 10.2, 0, "goaway", error_code="ENHANCE_YOUR_CALM", last_stream_id=5
        ),
        "+0.200000 c1 s0 <- conn  goaway ENHANCE_YOUR_CALM last=s5",
    ),
    (
        ConnectionRecord(1, None, 10.0, 0, "open", peer="127.0.0.1:5555"),
        "+0.000000 c1 s0 ·· conn  open peer=127.0.0.1:5555",
    ),
    (
        ConnectionRecord(1, None, 10.3, 0, "close", reason="peer closed"),
        "+0.300000 c1 s0 ·· conn  close 'peer closed'",
    ),
]
"""Each record with its text at max_bytes=16, origin 10.0 (test_text's golden lines; test_jsonl
round-trips every one of these records)."""
