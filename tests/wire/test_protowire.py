"""greeter.wire.protowire: strict schema-free walk of the protobuf wire format."""

from __future__ import annotations

import itertools

import pytest
from google.protobuf import empty_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from gen.greet import HelloReply, HelloRequest
from greeter.wire.errors import WireFormatError
from greeter.wire.protowire import (
    I32,
    I64,
    LEN,
    SGROUP,
    VARINT,
    WireField,
    check_wire_format,
    iter_fields,
)

UINT32 = st.integers(min_value=0, max_value=2**32 - 1)


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def rejected(data: bytes, match: str) -> None:
    """Both entry points reject ``data`` with the same message."""
    with pytest.raises(WireFormatError, match=match) as caught:
        check_wire_format(data)
    with pytest.raises(WireFormatError) as again:
        list(iter_fields(data))
    assert str(again.value) == str(caught.value)


VALID = [
    b"",
    bytes(HelloRequest()),
    bytes(HelloRequest(name="world", count=3)),
    bytes(HelloRequest(name="é" * 200, count=2**32 - 1)),  # two-byte length, five-byte varint
    bytes(HelloReply(message="x" * 100_000)),  # three-byte length
    tag(1, I64) + bytes(8),
    tag(15, I32) + bytes(4),
    tag(16, VARINT) + b"\x00",  # first two-byte tag
    tag(2**29 - 1, LEN) + b"\x00",  # largest field number
    tag(1, VARINT) + b"\xff" * 9 + b"\x01",  # 2**64 - 1: ten bytes, the last carrying bit 63
    tag(1, VARINT) + b"\x80\x00",  # non-minimal varints are valid
]


@pytest.mark.parametrize("data", VALID, ids=range(len(VALID)))
def test_valid_encodings(data: bytes) -> None:
    check_wire_format(data)
    assert sum(1 for _ in iter_fields(data)) == len(list(iter_fields(data)))


def test_fields_of_a_hello_request() -> None:
    data = bytes(HelloRequest(name="world", count=3))
    assert list(iter_fields(data)) == [
        WireField(number=1, wire_type=LEN, value=b"world", offset=0),
        WireField(number=2, wire_type=VARINT, value=3, offset=7),
    ]


def test_field_values() -> None:
    data = (
        tag(1, I64)
        + (2**64 - 2).to_bytes(8, "little")
        + tag(2, I32)
        + (0x01020304).to_bytes(4, "little")
        + tag(300, VARINT)
        + b"\xff" * 9
        + b"\x01"
    )
    assert [(f.number, f.wire_type, f.value, f.offset) for f in iter_fields(data)] == [
        (1, I64, 2**64 - 2, 0),
        (2, I32, 0x01020304, 9),
        (300, VARINT, 2**64 - 1, 14),
    ]


def test_truncated_varint_is_rejected() -> None:
    # betterproto2 0.10 parses this into an empty HelloRequest: the reason this module exists.
    rejected(b"\xff\xff\xff\xff", "varint at offset 0 is truncated")
    rejected(bytes(HelloRequest(name="a")) + tag(2, VARINT) + b"\x80", "offset 4 is truncated")


def test_overlong_varints_are_rejected() -> None:
    rejected(tag(1, VARINT) + b"\xff" * 10 + b"\x01", "offset 1 is longer than 10 bytes")
    rejected(tag(1, VARINT) + b"\xff" * 9 + b"\x02", "offset 1 overflows 64 bits")
    rejected(tag(1, VARINT) + b"\x80" * 9 + b"\x7f", "overflows 64 bits")


@pytest.mark.parametrize("data", [b"\x00", b"\x02\x00", b"\x05\x00\x00\x00\x00", b"\x80\x00"])
def test_field_number_zero_is_rejected(data: bytes) -> None:
    rejected(data, "invalid field number 0 at offset 0")


def test_field_number_above_the_maximum_is_rejected() -> None:
    rejected(b"\x08\x01" + tag(2**29, VARINT) + b"\x00", f"field number {2**29} at offset 2")


@pytest.mark.parametrize("wire_type", [6, 7])
def test_wire_types_6_and_7_are_rejected(wire_type: int) -> None:
    rejected(tag(1, wire_type) + b"\x00" * 8, f"invalid wire type {wire_type} for field 1")
    rejected(b"\x08\x01" + tag(20, wire_type), f"wire type {wire_type} for field 20 at offset 2")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (tag(1, LEN) + b"\x05abc", "LEN field 1 at offset 0 needs 5 bytes, 3 remain"),
        (tag(1, LEN) + varint(300) + b"x" * 299, "LEN field 1 at offset 0 needs 300 bytes, 299"),
        (tag(20, LEN) + b"\x01", "LEN field 20 at offset 0 needs 1 bytes, 0 remain"),
        (tag(1, LEN), "varint at offset 1 is truncated"),
        (tag(5, I32) + b"\x01\x02\x03", "I32 field 5 at offset 0 needs 4 bytes, 3 remain"),
        (tag(6, I64) + bytes(7), "I64 field 6 at offset 0 needs 8 bytes, 7 remain"),
        (b"\x08\x01" + tag(6, I64), "I64 field 6 at offset 2 needs 8 bytes, 0 remain"),
        (tag(1, VARINT), "varint at offset 1 is truncated"),
    ],
)
def test_truncated_values_are_rejected(data: bytes, match: str) -> None:
    rejected(data, match)


def test_groups() -> None:
    group = tag(3, SGROUP) + tag(1, VARINT) + b"\x01" + tag(3, 4)
    nested = tag(3, SGROUP) + tag(4, SGROUP) + tag(4, 4) + tag(1, LEN) + b"\x00" + tag(3, 4)
    for data in (group, nested, b"\x08\x01" + group + nested):
        check_wire_format(data)
    assert list(iter_fields(nested + b"\x08\x07")) == [
        WireField(number=3, wire_type=SGROUP, value=b"\x23\x24\x0a\x00", offset=0),
        WireField(number=1, wire_type=VARINT, value=7, offset=6),
    ]


def test_bad_groups_are_rejected() -> None:
    rejected(tag(3, 4), "EGROUP for field 3 at offset 0 matches no SGROUP")
    rejected(b"\x08\x01" + tag(3, 4), "EGROUP for field 3 at offset 2")
    rejected(tag(3, SGROUP) + tag(4, 4), "EGROUP for field 4 at offset 1 matches no SGROUP")
    rejected(tag(3, SGROUP) + b"\x08\x01", "SGROUP for field 3 at offset 0 has no EGROUP")
    rejected(tag(3, SGROUP) + tag(4, SGROUP) + tag(4, 4), "SGROUP for field 3 at offset 0")
    rejected(tag(3, SGROUP) + tag(1, LEN) + b"\x05", "LEN field 1 at offset 1 needs 5")


def test_deep_group_nesting_needs_no_recursion() -> None:
    depth = 20_000  # far beyond Python's recursion limit
    check_wire_format(tag(1, SGROUP) * depth + tag(1, 4) * depth)
    rejected(tag(1, SGROUP) * depth + tag(1, 4) * (depth - 1), "SGROUP for field 1 at offset 0")


def test_iter_fields_is_lazy() -> None:
    fields = iter_fields(b"\x08\x01\x10\x02\xff")
    assert [f.value for f in itertools.islice(fields, 2)] == [1, 2]
    with pytest.raises(WireFormatError, match="offset 4"):
        next(fields)


@settings(max_examples=100, deadline=None)
@given(name=st.text(), count=UINT32)
def test_every_hello_request_passes(name: str, count: int) -> None:
    data = bytes(HelloRequest(name=name, count=count))
    check_wire_format(data)
    values = {f.number: f.value for f in iter_fields(data)}
    assert values.get(1, b"") == name.encode()
    assert values.get(2, 0) == count


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=3),
            st.sampled_from([b"\x08", b"\x0a", b"\x0b", b"\x0c", b"\x0d", b"\x09", b"\x80"]),
        ),
        max_size=12,
    ).map(b"".join)
)
def test_random_bytes_only_raise_wire_format_error(data: bytes) -> None:
    try:
        check_wire_format(data)
    except WireFormatError as exc:
        with pytest.raises(WireFormatError) as again:
            list(iter_fields(data))
        assert str(again.value) == str(exc)
        return
    list(iter_fields(data))
    # Whatever we accept, the reference parser (upb, via google.protobuf) accepts as unknown
    # fields. The converse does not hold: upb takes tag 0 as the end of input.
    empty_pb2.Empty.FromString(data)
