"""The tap's decoding rules on hand-built bytes: raw fields, status details, types, garbage."""

from __future__ import annotations

import base64

import hpack
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, SettingsFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from gen.greet import GreeterBase, HelloReply, HelloRequest
from greeter.tap import (
    DecodeErrorRecord,
    MessageRecord,
    MessageTypes,
    RawField,
    Record,
    RpcRecord,
    Tap,
    decode_raw,
)
from greeter.tap.decode import MAX_DEPTH, decode_payload, decode_status_details
from greeter.tap.frames import PREFACE
from greeter.wire.framing import encode_message
from greeter.wire.status_details import encode_status

SAY_HELLO = "/greet.Greeter/SayHello"
REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", SAY_HELLO),
    (":authority", "localhost"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]
TYPES = MessageTypes.from_module("gen.greet")


# -- schema-free fields --------------------------------------------------------------------------


def test_decode_raw_nests_messages_but_keeps_text_as_bytes() -> None:
    nested = b"\n\x02ab"  # a message: field 1 = "ab"
    data = b"\x08\x01" + b"\x12\x02hi" + b"\x1a\x04" + nested + b"\x25\x01\x00\x00\x00"
    assert decode_raw(data) == (
        RawField(1, 0, 1),
        RawField(2, 2, b"hi"),  # parses as field 13 = 105, but it is printable text
        RawField(3, 2, (RawField(1, 2, b"ab"),)),
        RawField(4, 5, 1),
    )


def test_decode_raw_keeps_unparsable_len_values_and_empty_ones() -> None:
    assert decode_raw(b"\x0a\x02\xff\xff\x12\x00") == (
        RawField(1, 2, b"\xff\xff"),
        RawField(2, 2, b""),
    )


def test_decode_raw_shows_groups_as_fields() -> None:
    group = b"\x0b" + b"\x10\x05" + b"\x0c"  # SGROUP 1 { field 2 = 5 } EGROUP 1
    assert decode_raw(group) == (RawField(1, 3, (RawField(2, 0, 5),)),)


def test_decode_raw_depth_is_bounded() -> None:
    deep = b"\x08\x01"
    for _ in range(MAX_DEPTH + 5):
        deep = b"\x0a" + _varint(len(deep)) + deep
    level: object = decode_raw(deep)
    depth = 0
    while isinstance(level, tuple):
        depth += 1
        level = level[0].value
    assert depth == MAX_DEPTH
    assert isinstance(level, bytes)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def test_decode_payload_prefers_the_type_then_fields_then_error() -> None:
    assert decode_payload(HelloRequest, b"\n\x01a") == (HelloRequest(name="a"), None, None)
    assert decode_payload(None, b"\n\x01a") == (None, (RawField(1, 2, b"a"),), None)
    decoded, fields, error = decode_payload(None, b"\xff")
    assert (decoded, fields) == (None, None)
    assert error is not None
    assert error.startswith("not protobuf:")


# -- grpc-status-details-bin ---------------------------------------------------------------------


def test_status_details_decoded_with_known_types_else_raw() -> None:
    raw = encode_status(5, "gone", [HelloReply(message="m"), HelloRequest(name="n")])
    value = base64.b64encode(raw).decode().rstrip("=")
    only_replies = MessageTypes(messages=[HelloReply])
    assert decode_status_details(value, only_replies) == (
        ("type.googleapis.com/greet.HelloReply", HelloReply(message="m")),
        ("type.googleapis.com/greet.HelloRequest", (RawField(1, 2, b"n"),)),
    )
    assert decode_status_details(value, None) == (
        ("type.googleapis.com/greet.HelloReply", (RawField(1, 2, b"m"),)),
        ("type.googleapis.com/greet.HelloRequest", (RawField(1, 2, b"n"),)),
    )


def test_invalid_status_details_are_none() -> None:
    assert decode_status_details("not base64!", TYPES) is None
    assert decode_status_details("/w", TYPES) is None  # b"\xff": not protobuf


# -- the type table ------------------------------------------------------------------------------


def test_message_types_from_module_and_services() -> None:
    assert TYPES.lookup(SAY_HELLO) == (HelloRequest, HelloReply)
    assert TYPES.lookup("/greet.Greeter/Nope") is None
    assert TYPES.by_url("type.googleapis.com/greet.HelloRequest") is HelloRequest
    assert len(TYPES) == 4
    from_services = MessageTypes.from_services([GreeterBase()])
    assert from_services.lookup("/greet.Greeter/BidiHello") == (HelloRequest, HelloReply)
    assert from_services.by_url("type.googleapis.com/greet.HelloReply") is HelloReply


# -- a tap fed hand-built frames -----------------------------------------------------------------


class Wire:
    """Hand-built frames for both directions of one connection, HPACK state per direction."""

    def __init__(self) -> None:
        self.encoders = {"in": hpack.Encoder(), "out": hpack.Encoder()}

    def headers(
        self, direction: str, stream_id: int, fields: list[tuple[str, str]], *, end: bool = False
    ) -> bytes:
        frame = HeadersFrame(stream_id, self.encoders[direction].encode(fields))
        frame.flags.add("END_HEADERS")
        if end:
            frame.flags.add("END_STREAM")
        return bytes(frame.serialize())


def data(stream_id: int, payload: bytes, *, end: bool = False) -> bytes:
    frame = DataFrame(stream_id, payload)
    if end:
        frame.flags.add("END_STREAM")
    return bytes(frame.serialize())


def server_tap() -> tuple[Tap, list[Record]]:
    records: list[Record] = []
    tap = Tap(records.append, connection_id=3, role="server", types=TYPES, clock=lambda: 2.0)
    tap.observe("in", PREFACE + SettingsFrame(0).serialize())
    tap.observe("out", SettingsFrame(0).serialize())
    return tap, records


def test_a_bad_prefix_stops_decoding_that_direction_of_the_stream() -> None:
    tap, records = server_tap()
    wire = Wire()
    tap.observe("in", wire.headers("in", 1, REQUEST))
    tap.observe("in", data(1, b"\x07\x00\x00\x00\x01x"))
    tap.observe("in", data(1, encode_message(b"\n\x01a"), end=True))
    tap.observe("out", wire.headers("out", 1, [(":status", "200")]))
    tap.observe("out", data(1, encode_message(b"\n\x01b")))

    messages = [r for r in records if isinstance(r, MessageRecord)]
    assert [(m.direction, m.index, m.decoded is not None) for m in messages] == [
        ("in", 1, False),
        ("out", 1, True),
    ]
    assert messages[0].error is not None


def test_header_block_in_continuation_keeps_the_end_stream_of_its_headers() -> None:
    tap, records = server_tap()
    block = hpack.Encoder().encode(REQUEST)
    first = HeadersFrame(1, block[:5])
    first.flags.add("END_STREAM")
    rest = ContinuationFrame(1, block[5:])
    rest.flags.add("END_HEADERS")
    tap.observe("in", bytes(first.serialize()) + bytes(rest.serialize()))
    trailers_only = [(":status", "200"), ("grpc-status", "12")]
    tap.observe("out", Wire().headers("out", 1, trailers_only, end=True))

    rpcs = [(r.event, r.status_name, r.requests) for r in records if isinstance(r, RpcRecord)]
    assert rpcs == [("start", None, 0), ("end", "UNIMPLEMENTED", 0)]
    assert tap.tracked_streams == 0  # both directions ended


def test_response_ended_by_data_has_no_status() -> None:
    tap, records = server_tap()
    wire = Wire()
    tap.observe("in", wire.headers("in", 1, REQUEST, end=True))
    tap.observe("out", wire.headers("out", 1, [(":status", "404")]))
    tap.observe("out", data(1, b"not found", end=True))

    end = [r for r in records if isinstance(r, RpcRecord)][-1]
    assert (end.event, end.status, end.responses) == ("end", None, 1)
    assert tap.tracked_streams == 0


def test_a_failing_emit_silences_the_tap_without_raising() -> None:
    calls: list[Record] = []

    def emit(record: Record) -> None:
        calls.append(record)
        if isinstance(record, RpcRecord):
            raise OSError("disk full")

    tap = Tap(emit, connection_id=1, role="server", clock=lambda: 0.0)
    tap.observe("in", PREFACE + Wire().headers("in", 1, REQUEST))
    tap.observe("in", data(1, encode_message(b"")))
    tap.close("gone")

    assert isinstance(calls[-1], DecodeErrorRecord)
    assert calls[-1].offset == -1
    assert "disk full" in calls[-1].reason


FRAME = st.builds(
    lambda kind, flags, stream, payload: (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    ),
    st.integers(0, 10),
    st.integers(0, 255),
    st.sampled_from([0, 1, 3, 2**31 - 1]),
    st.one_of(
        st.binary(max_size=24),
        st.builds(encode_message, st.binary(max_size=24), compressed=st.booleans()),
        st.builds(lambda n: b"\x00\x04" + n.to_bytes(4, "big"), st.integers(0, 2**32 - 1)),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["in", "out"]), st.lists(FRAME, max_size=4)), max_size=12),
    st.integers(1, 40),
    st.booleans(),
)
def test_garbage_never_raises_nor_breaks_the_tap(
    chunks: list[tuple[str, list[bytes]]], cut: int, valid_start: bool
) -> None:
    records: list[Record] = []
    tap = Tap(records.append, connection_id=1, role="server", types=TYPES, clock=lambda: 0.0)
    if valid_start:
        wire = Wire()
        tap.observe("in", PREFACE + wire.headers("in", 1, REQUEST))
        tap.observe("out", wire.headers("out", 1, [(":status", "200"), ("grpc-encoding", "gzip")]))
    for direction, frames in chunks:
        stream = b"".join(frames)
        for start in range(0, len(stream), cut):
            tap.observe("in" if direction == "in" else "out", stream[start : start + cut])
    tap.close("done")

    assert not [r for r in records if isinstance(r, DecodeErrorRecord) and r.offset == -1]


@given(st.binary(max_size=200), st.integers(1, 50))
def test_pure_garbage_into_both_directions(blob: bytes, cut: int) -> None:
    records: list[Record] = []
    tap = Tap(records.append, connection_id=1, role="client")
    for start in range(0, len(blob), cut):
        tap.observe("in", blob[start : start + cut])
        tap.observe("out", PREFACE[: start % 30] + blob[start : start + cut])
    assert not [r for r in records if isinstance(r, DecodeErrorRecord) and r.offset == -1]
