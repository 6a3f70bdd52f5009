"""Frame layer of the wire tap against the bytes of a real h2 client and a real h2 server."""

from __future__ import annotations

import dataclasses
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hypothesis import given, settings
from hypothesis import strategies as st

from greeter.tap import (
    DecodeErrorRecord,
    Direction,
    FrameDecoder,
    FrameRecord,
    PrefaceRecord,
    Priority,
    Record,
)
from greeter.tap.frames import PREFACE

PATH = "/greet.Greeter/SayHello"
REQUEST_HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", PATH),
    (":authority", "localhost"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
    ("x-custom", "héllo wörld"),
    ("trace-bin", "AAEC"),
]
RESPONSE_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]
TRAILERS = [("grpc-status", "0"), ("grpc-message", "ok%20done")]
REQUEST = b"\x00\x00\x00\x00\x07\n\x05world"
REPLY = b"\x00\x00\x00\x00\r\n\x0bhello world"
DEFAULT_SETTINGS = [
    ("HEADER_TABLE_SIZE", 4096),
    ("INITIAL_WINDOW_SIZE", 65535),
    ("MAX_FRAME_SIZE", 16384),
    ("ENABLE_CONNECT_PROTOCOL", 0),
    ("MAX_CONCURRENT_STREAMS", 100),
    ("MAX_HEADER_LIST_SIZE", 65536),
]


class Peers:
    """A real h2 client and server wired back to back; every byte each sends is kept."""

    def __init__(self) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.to_server = bytearray()
        self.to_client = bytearray()

    def pump(self) -> None:
        while True:
            up, down = self.client.data_to_send(), self.server.data_to_send()
            if not up and not down:
                return
            self.to_server += up
            self.to_client += down
            if up:
                self.server.receive_data(up)
            if down:
                self.client.receive_data(down)


def decode(data: bytes, chunk: int, direction: Direction, *, expect_preface: bool) -> list[Record]:
    decoder = FrameDecoder(
        7, direction, expect_preface=expect_preface, clock=lambda: 1.5, wall_clock=lambda: 2.5
    )
    records: list[Record] = []
    for start in range(0, len(data), chunk):
        records += decoder.feed(data[start : start + chunk])
    return records


def brief(record: Record) -> tuple[Any, ...]:
    """(type, stream, flags, {payload fields that differ from their default})."""
    if isinstance(record, PrefaceRecord):
        return ("PREFACE",)
    if isinstance(record, DecodeErrorRecord):
        return ("ERROR", record.reason, record.offset)
    fields = {
        field.name: getattr(record, field.name)
        for field in dataclasses.fields(record)
        if field.default is not dataclasses.MISSING
        and getattr(record, field.name) != field.default
        and field.name != "wall"
    }
    return (record.type, record.stream_id, record.flags, fields)


def full_exchange() -> Peers:
    peers = Peers()
    client, server = peers.client, peers.server
    client.initiate_connection()
    server.initiate_connection()
    server.update_settings(
        {SettingCodes.MAX_CONCURRENT_STREAMS: 7, SettingCodes.INITIAL_WINDOW_SIZE: 100_000, 0x99: 5}
    )
    peers.pump()
    # A unary RPC: headers with custom metadata, a message, response, trailers.
    client.send_headers(1, REQUEST_HEADERS)
    client.send_data(1, REQUEST, end_stream=True)
    peers.pump()
    server.increment_flow_control_window(len(REQUEST))
    server.increment_flow_control_window(len(REQUEST), stream_id=1)
    server.send_headers(1, RESPONSE_HEADERS)
    server.send_data(1, REPLY)
    server.send_headers(1, TRAILERS, end_stream=True)
    client.ping(b"12345678")
    peers.pump()
    # A cancelled call and a refused one.
    client.send_headers(3, REQUEST_HEADERS)
    client.reset_stream(3, ErrorCodes.CANCEL)
    client.send_headers(5, REQUEST_HEADERS, end_stream=True)
    peers.pump()
    server.reset_stream(5, ErrorCodes.REFUSED_STREAM)
    server.close_connection(ErrorCodes.NO_ERROR, additional_data=b"bye", last_stream_id=5)
    peers.pump()
    return peers


REQ = {"headers": tuple(REQUEST_HEADERS)}
ACK: dict[str, Any] = {"settings": ()}
EXPECTED_IN: list[tuple[Any, ...]] = [
    ("PREFACE",),
    (
        "SETTINGS",
        0,
        (),
        {"settings": (DEFAULT_SETTINGS[0], ("ENABLE_PUSH", 1), *DEFAULT_SETTINGS[1:])},
    ),
    ("SETTINGS", 0, ("ACK",), ACK),  # one ACK per server SETTINGS frame
    ("SETTINGS", 0, ("ACK",), ACK),
    ("HEADERS", 1, ("END_HEADERS",), REQ),
    ("DATA", 1, ("END_STREAM",), {"data": REQUEST}),
    ("PING", 0, (), {"ping_data": b"12345678"}),
    ("HEADERS", 3, ("END_HEADERS",), REQ),  # the second block is mostly dynamic-table indices
    ("RST_STREAM", 3, (), {"error_code": "CANCEL"}),
    ("HEADERS", 5, ("END_STREAM", "END_HEADERS"), REQ),
]
EXPECTED_OUT: list[tuple[Any, ...]] = [
    (
        "SETTINGS",
        0,
        (),
        {"settings": (DEFAULT_SETTINGS[0], ("ENABLE_PUSH", 0), *DEFAULT_SETTINGS[1:])},
    ),
    (
        "SETTINGS",
        0,
        (),
        {
            "settings": (
                ("MAX_CONCURRENT_STREAMS", 7),
                ("INITIAL_WINDOW_SIZE", 100_000),
                ("0x99", 5),
            )
        },
    ),
    ("SETTINGS", 0, ("ACK",), ACK),
    ("WINDOW_UPDATE", 0, (), {"window_increment": len(REQUEST)}),
    ("WINDOW_UPDATE", 1, (), {"window_increment": len(REQUEST)}),
    ("HEADERS", 1, ("END_HEADERS",), {"headers": tuple(RESPONSE_HEADERS)}),
    ("DATA", 1, (), {"data": REPLY}),
    ("HEADERS", 1, ("END_STREAM", "END_HEADERS"), {"headers": tuple(TRAILERS)}),
    ("PING", 0, ("ACK",), {"ping_data": b"12345678"}),
    ("RST_STREAM", 5, (), {"error_code": "REFUSED_STREAM"}),
    ("GOAWAY", 0, (), {"error_code": "NO_ERROR", "last_stream_id": 5, "debug_data": b"bye"}),
]


def test_full_exchange_both_directions() -> None:
    peers = full_exchange()
    inbound = decode(bytes(peers.to_server), len(peers.to_server), "in", expect_preface=True)
    outbound = decode(bytes(peers.to_client), len(peers.to_client), "out", expect_preface=False)
    assert [brief(r) for r in inbound] == EXPECTED_IN
    assert [brief(r) for r in outbound] == EXPECTED_OUT
    frames = [r for r in inbound + outbound if isinstance(r, FrameRecord)]
    assert all(r.connection_id == 7 and r.timestamp == 1.5 for r in frames)
    assert {r.direction for r in inbound} == {"in"}
    assert {r.direction for r in outbound} == {"out"}
    data = next(r for r in inbound if isinstance(r, FrameRecord) and r.type == "DATA")
    assert (data.length, data.raw_flags, data.padding) == (len(REQUEST), 0x1, 0)
    settings_frame = next(r for r in outbound if isinstance(r, FrameRecord))
    assert settings_frame.length == 6 * len(DEFAULT_SETTINGS) + 6
    goaway = outbound[-1]
    assert isinstance(goaway, FrameRecord)
    assert goaway.length == 8 + len(b"bye")


@pytest.mark.parametrize("chunk", range(1, 41))
def test_any_chunking_gives_identical_records(chunk: int) -> None:
    peers = full_exchange()
    sides: list[tuple[bytes, Direction, bool]] = [
        (bytes(peers.to_server), "in", True),
        (bytes(peers.to_client), "out", False),
    ]
    for data, direction, preface in sides:
        whole = decode(data, len(data), direction, expect_preface=preface)
        assert decode(data, chunk, direction, expect_preface=preface) == whole


def started() -> Peers:
    peers = Peers()
    peers.client.initiate_connection()
    peers.server.initiate_connection()
    peers.pump()
    peers.to_server.clear()
    peers.to_client.clear()
    return peers


def frames_of(data: bytes, chunk: int = 1_000_000) -> list[tuple[Any, ...]]:
    return [brief(r) for r in decode(data, chunk, "out", expect_preface=False)]


@pytest.mark.parametrize("chunk", [1, 7, 9, 1000, 1_000_000])
def test_headers_larger_than_max_frame_size_use_continuation(chunk: int) -> None:
    peers = started()
    big = [*REQUEST_HEADERS, ("x-big", "v" * 40_000)]
    peers.client.send_headers(1, big, end_stream=True)
    data = peers.client.data_to_send()
    records = decode(data, chunk, "out", expect_preface=False)
    assert [brief(r)[:3] for r in records] == [
        ("HEADERS", 1, ("END_STREAM",)),
        ("CONTINUATION", 1, ()),
        ("CONTINUATION", 1, ("END_HEADERS",)),
    ]
    frames = [r for r in records if isinstance(r, FrameRecord)]
    assert [r.headers for r in frames] == [None, None, tuple(big)]
    assert [r.length for r in frames[:2]] == [16384, 16384]
    # The server's own h2 agrees, so the tap's decoder did not borrow its state.
    event = peers.server.receive_data(data)[0]
    assert isinstance(event, h2.events.RequestReceived)
    assert [(k.decode(), v.decode()) for k, v in event.headers or ()] == big


def test_padded_data_priority_and_unknown_frames() -> None:
    peers = started()
    peers.client.send_headers(1, REQUEST_HEADERS, priority_weight=42, priority_depends_on=0)
    peers.client.send_data(1, REQUEST, pad_length=10)
    peers.client.prioritize(1, weight=200, depends_on=0, exclusive=True)
    unknown = b"\x00\x00\x03\xfa\x07\x00\x00\x00\x01abc"
    altsvc = b"\x00\x00\x02\x0a\x00\x00\x00\x00\x00\x00\x00"
    records = frames_of(peers.client.data_to_send() + unknown + altsvc)
    assert records == [
        ("HEADERS", 1, ("END_HEADERS", "PRIORITY"), {**REQ, "priority": Priority(0, 42, False)}),
        ("DATA", 1, ("PADDED",), {"data": REQUEST, "padding": 10}),
        ("PRIORITY", 1, (), {"priority": Priority(0, 200, True)}),
        ("UNKNOWN(0xfa)", 1, (), {"payload": b"abc"}),
        ("UNKNOWN(0x0a)", 0, (), {"payload": b"\x00\x00"}),
    ]
    raw = decode(unknown, 3, "out", expect_preface=False)
    assert isinstance(raw[0], FrameRecord)
    assert (raw[0].raw_flags, raw[0].length) == (0x07, 3)


def test_padded_data_length_counts_padding() -> None:
    peers = started()
    peers.client.send_headers(1, REQUEST_HEADERS)
    peers.client.send_data(1, REQUEST, pad_length=10, end_stream=True)
    records = decode(peers.client.data_to_send(), 5, "out", expect_preface=False)
    data = records[-1]
    assert isinstance(data, FrameRecord)
    assert (data.length, data.padding, data.data, data.flags) == (
        len(REQUEST) + 1 + 10,
        10,
        REQUEST,
        ("END_STREAM", "PADDED"),
    )


def settings_frame(payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + b"\x04\x00\x00\x00\x00\x00" + payload


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"\x00\x00\x04\x04\x00\x00\x00\x00\x00abcd", "malformed SETTINGS frame"),
        (b"\x00\x00\x05\x06\x00\x00\x00\x00\x00hello", "malformed PING frame"),
        (b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x", "malformed DATA frame"),  # stream 0
        (b"\x00\x00\x04\x01\x04\x00\x00\x00\x01\xff\xff\xff\xff", "HPACK"),
        (b"\x00\x00\x00\x09\x04\x00\x00\x00\x01", "CONTINUATION frame without"),
        (b"\x00\x00\x00\x01\x00\x00\x00\x00\x01" + settings_frame(), "SETTINGS frame inside"),
    ],
)
def test_garbage_after_preface_stops_the_direction(garbage: bytes, reason: str) -> None:
    data = PREFACE + settings_frame() + garbage + settings_frame()
    for chunk in (1, 4, len(data)):
        decoder = FrameDecoder(1, "in", expect_preface=True, clock=lambda: 0.0, wall_clock=float)
        records: list[Record] = []
        for start in range(0, len(data), chunk):
            records += decoder.feed(data[start : start + chunk])
        frames = [FrameRecord] * (2 if "inside" in reason else 1)
        assert [type(r) for r in records] == [PrefaceRecord, *frames, DecodeErrorRecord]
        error = records[-1]
        assert isinstance(error, DecodeErrorRecord)
        assert error.reason.startswith(reason), error.reason
        assert error.offset == len(PREFACE) + 9 + (9 if "inside" in reason else 0)
        assert decoder.failed
        assert decoder.buffered == 0
        assert decoder.feed(settings_frame()) == []


def test_bad_preface_is_reported_as_soon_as_it_differs() -> None:
    decoder = FrameDecoder(1, "in", expect_preface=True, clock=lambda: 0.0, wall_clock=float)
    assert decoder.feed(b"PRI * HTTP") == []
    records = decoder.feed(b"/1.1\r\n")
    assert records == [
        DecodeErrorRecord(1, "in", 0.0, "invalid client connection preface", 0, wall=0.0)
    ]


def test_limits_bound_memory() -> None:
    decoder = FrameDecoder(1, "out", expect_preface=False, max_frame_length=100)
    [error] = decoder.feed(b"\x00\x00\x65\x00\x00\x00\x00\x00\x01")
    assert isinstance(error, DecodeErrorRecord)
    assert error.reason == "frame length 101 exceeds the limit 100"
    peers = started()
    peers.client.send_headers(1, [*REQUEST_HEADERS, ("x-big", "v" * 40_000)])
    decoder = FrameDecoder(1, "out", expect_preface=False, max_header_block=20_000)
    records = decoder.feed(peers.client.data_to_send())
    assert [brief(r)[0] for r in records] == ["HEADERS", "ERROR"]
    assert brief(records[-1])[1] == "header block of stream 1 exceeds 20000 bytes"


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from([b"", PREFACE, PREFACE + settings_frame()]),
    data=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    preface=st.booleans(),
)
def test_random_bytes_never_raise(
    prefix: bytes, data: bytes, cuts: list[int], preface: bool
) -> None:
    stream = prefix + data
    decoder = FrameDecoder(
        7, "in", expect_preface=preface, clock=lambda: 1.5, wall_clock=lambda: 2.5
    )
    records: list[Record] = []
    last = 0
    for cut in [*sorted(cuts), len(stream)]:
        records += decoder.feed(stream[last:cut])
        last = max(last, cut)
    errors = [i for i, r in enumerate(records) if isinstance(r, DecodeErrorRecord)]
    assert errors in ([], [len(records) - 1])
    assert records == decode(stream, max(len(stream), 1), "in", expect_preface=preface)


frame_bytes = st.builds(
    lambda kind, flags, stream, payload: (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    ),
    st.integers(0, 11),
    st.integers(0, 255),
    st.sampled_from([0, 1, 3, 2**31 + 1]),
    st.binary(max_size=24),
)


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(frame_bytes, max_size=12), chunk=st.integers(1, 40))
def test_random_well_framed_frames_never_raise(frames: list[bytes], chunk: int) -> None:
    stream = PREFACE + b"".join(frames)
    records = decode(stream, chunk, "in", expect_preface=True)
    assert records[0] == PrefaceRecord(7, "in", 1.5, wall=2.5)
    assert not any(isinstance(r, DecodeErrorRecord) for r in records[:-1])
    assert records == decode(stream, len(stream), "in", expect_preface=True)
    # Every frame before the first error is reported, none is dropped.
    decoded = sum(isinstance(r, FrameRecord) for r in records)
    assert decoded == len(frames) or isinstance(records[-1], DecodeErrorRecord)
