"""greeter.wire.dataclass_codec: the bytes and messages betterproto2 makes, for every field kind."""

# ruff: noqa: RUF009 (betterproto2.field() makes the dataclass field, as in generated code)

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import betterproto2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gen.greet import HelloReply, HelloRequest
from greeter.wire import codec, dataclass_codec, protowire
from greeter.wire.errors import WireFormatError

T = betterproto2


class Colour(betterproto2.Enum):
    RED = 0
    GREEN = 1
    BLUE = 2


@dataclass(eq=False, repr=False)
class Inner(betterproto2.Message):
    value: int = betterproto2.field(1, T.TYPE_INT64)
    label: str = betterproto2.field(2, T.TYPE_STRING)


@dataclass(eq=False, repr=False)
class Everything(betterproto2.Message):
    """One field of each kind; numbers above 15 and 2047 take two- and three-byte tags."""

    int32: int = betterproto2.field(1, T.TYPE_INT32)
    int64: int = betterproto2.field(2, T.TYPE_INT64)
    uint32: int = betterproto2.field(3, T.TYPE_UINT32)
    uint64: int = betterproto2.field(4, T.TYPE_UINT64)
    sint32: int = betterproto2.field(5, T.TYPE_SINT32)
    sint64: int = betterproto2.field(6, T.TYPE_SINT64)
    boolean: bool = betterproto2.field(7, T.TYPE_BOOL)
    float32: float = betterproto2.field(8, T.TYPE_FLOAT)
    float64: float = betterproto2.field(9, T.TYPE_DOUBLE)
    fixed32: int = betterproto2.field(10, T.TYPE_FIXED32)
    sfixed32: int = betterproto2.field(11, T.TYPE_SFIXED32)
    fixed64: int = betterproto2.field(12, T.TYPE_FIXED64)
    sfixed64: int = betterproto2.field(13, T.TYPE_SFIXED64)
    text: str = betterproto2.field(14, T.TYPE_STRING)
    data: bytes = betterproto2.field(15, T.TYPE_BYTES)
    colour: Colour = betterproto2.field(16, T.TYPE_ENUM, default_factory=lambda: Colour(0))
    inner: Inner | None = betterproto2.field(17, T.TYPE_MESSAGE, optional=True)
    maybe: int | None = betterproto2.field(18, T.TYPE_INT32, optional=True)
    choice_text: str | None = betterproto2.field(19, T.TYPE_STRING, group="choice")
    choice_inner: Inner | None = betterproto2.field(20, T.TYPE_MESSAGE, group="choice")
    ints: list[int] = betterproto2.field(2048, T.TYPE_INT32, repeated=True)
    zigzags: list[int] = betterproto2.field(21, T.TYPE_SINT64, repeated=True)
    doubles: list[float] = betterproto2.field(22, T.TYPE_DOUBLE, repeated=True)
    fixeds: list[int] = betterproto2.field(23, T.TYPE_FIXED32, repeated=True)
    flags: list[bool] = betterproto2.field(24, T.TYPE_BOOL, repeated=True)
    colours: list[Colour] = betterproto2.field(25, T.TYPE_ENUM, repeated=True)
    texts: list[str] = betterproto2.field(26, T.TYPE_STRING, repeated=True)
    blobs: list[bytes] = betterproto2.field(27, T.TYPE_BYTES, repeated=True)
    inners: list[Inner] = betterproto2.field(100_000, T.TYPE_MESSAGE, repeated=True)


@dataclass(eq=False, repr=False)
class WithMap(betterproto2.Message):
    name: str = betterproto2.field(1, T.TYPE_STRING)
    counts: dict[str, int] = betterproto2.field(
        2, T.TYPE_MAP, map_meta=betterproto2.map_meta(T.TYPE_STRING, T.TYPE_INT32)
    )


def ints(bits: int, signed: bool) -> st.SearchStrategy[int]:
    if signed:
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return st.integers(0, (1 << bits) - 1)


any_int64 = st.integers(-(1 << 63), (1 << 64) - 1)
inners = st.builds(Inner, value=ints(64, True), label=st.text(max_size=8))
colours = st.sampled_from([*Colour, Colour(7)])  # 7: an enum value the class does not name

everything = st.builds(
    Everything,
    int32=any_int64,  # out of range on purpose: betterproto2 writes it, a reader truncates it
    int64=ints(64, True),
    uint32=ints(32, False),
    uint64=ints(64, False),
    sint32=ints(32, True),
    sint64=ints(64, True),
    boolean=st.booleans(),
    float32=st.floats(width=32),
    float64=st.floats(),
    fixed32=ints(32, False),
    sfixed32=ints(32, True),
    fixed64=ints(64, False),
    sfixed64=ints(64, True),
    text=st.text(max_size=20),
    data=st.binary(max_size=200),  # over 127: a two-byte length
    colour=colours,
    inner=st.none() | inners,
    maybe=st.none() | ints(32, True),
    choice_text=st.none() | st.text(max_size=5),
    choice_inner=st.none() | inners,
    ints=st.lists(ints(32, True), max_size=4),
    zigzags=st.lists(ints(64, True), max_size=4),
    doubles=st.lists(st.floats(), max_size=3),
    fixeds=st.lists(ints(32, False), max_size=3),
    flags=st.lists(st.booleans(), max_size=3),
    colours=st.lists(colours, max_size=3),
    texts=st.lists(st.text(max_size=5), max_size=3),
    blobs=st.lists(st.binary(max_size=5), max_size=3),
    inners=st.lists(inners, max_size=3),
)


def same(a: Any, b: Any) -> bool:
    """Field by field (NaN equal to NaN), the unknown fields too (Message.__eq__ skips them)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, betterproto2.Message):
        names = a._betterproto.meta_by_field_name
        return a._unknown_fields == b._unknown_fields and all(
            same(getattr(a, name), getattr(b, name)) for name in names
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(message=everything)
def test_encoding_is_betterproto2s(message: Everything) -> None:
    assert dataclass_codec.encode(message) == bytes(message)


@settings(max_examples=300, deadline=None)
@given(first=everything, second=everything, unknown=st.binary(max_size=20))
def test_decoding_is_betterproto2s(first: Everything, second: Everything, unknown: bytes) -> None:
    # Two messages back to back: the second's singular fields win, repeated ones add up (what
    # betterproto2's load does); unknown fields of every wire type are kept in order.
    records = b"".join(
        unknown_record(number, wire_type, unknown)
        for number, wire_type in ((30, 0), (31, 1), (32, 2), (33, 5))
    )
    data = bytes(first) + records + bytes(second)
    assert same(codec.decode(Everything, data), Everything.FromString(data))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 16]), ints(64, False))))
def test_any_varint_converts_as_betterproto2_converts_it(values: list[tuple[int, int]]) -> None:
    # Out of range for the field's type: int32 and sint32 truncate to 32 bits, a bool is any
    # value above 0, an enum takes values its class does not name.
    data = b"".join(
        betterproto2.encode_varint(number << 3) + betterproto2.encode_varint(value)
        for number, value in values
    )
    assert same(codec.decode(Everything, data), Everything.FromString(data))


@settings(max_examples=100, deadline=None)
@given(message=everything, unknown=st.binary(max_size=20))
def test_unknown_fields_are_written_back(message: Everything, unknown: bytes) -> None:
    decoded = codec.decode(Everything, bytes(message) + unknown_record(99, protowire.LEN, unknown))
    assert decoded._unknown_fields
    assert dataclass_codec.encode(decoded) == bytes(decoded)


def test_a_field_set_to_none_is_not_written() -> None:
    # Not only optional fields: betterproto2 skips None in any singular field.
    message = Everything(text=None, int32=None, inner=None, ints=[1])  # type: ignore[arg-type]
    assert dataclass_codec.encode(message) == bytes(message) == bytes(Everything(ints=[1]))


def unknown_record(number: int, wire_type: int, seed: bytes) -> bytes:
    """A well-formed record of an unknown field built from `seed`."""
    tag = betterproto2.encode_varint(number << 3 | wire_type)
    if wire_type == protowire.VARINT:
        return tag + betterproto2.encode_varint(int.from_bytes(seed[:8] or b"\0", "little"))
    if wire_type == protowire.LEN:
        return tag + betterproto2.encode_varint(len(seed)) + seed
    size = 8 if wire_type == protowire.I64 else 4
    return tag + seed[:size].ljust(size, b"\0")


@settings(max_examples=200, deadline=None)
@given(values=st.lists(ints(32, True), max_size=5), colours=st.lists(colours, max_size=3))
def test_packable_fields_are_read_packed_or_not(values: list[int], colours: list[Colour]) -> None:
    unpacked = b"".join(
        betterproto2.encode_varint(2048 << 3) + betterproto2.encode_varint(value)
        for value in values
    ) + b"".join(b"\xc8\x01" + betterproto2.encode_varint(colour) for colour in colours)
    decoded = codec.decode(Everything, unpacked + bytes(Everything(ints=values)))
    assert decoded.ints == values + values
    assert decoded.colours == colours
    assert same(decoded, Everything.FromString(unpacked + bytes(Everything(ints=values))))


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=40))
def test_any_bytes_decode_as_check_then_betterproto2(data: bytes) -> None:
    """Random bytes against a flat message: refused exactly when the check refuses them, else
    the message betterproto2 makes from them."""
    try:
        protowire.check_wire_format(data, codec.wire_schema(HelloRequest))
    except WireFormatError:
        with pytest.raises(WireFormatError):
            codec.decode(HelloRequest, data)
        return
    try:
        expected = HelloRequest.FromString(data)
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            codec.decode(HelloRequest, data)
        return
    assert same(codec.decode(HelloRequest, data), expected)


def test_a_corrupt_nested_message_is_refused() -> None:
    # betterproto2 alone reads the truncated tag inside field 17 as an empty Inner.
    data = b"\x8a\x01\x04\xff\xff\xff\xff"
    with pytest.raises(WireFormatError, match="truncated"):
        codec.decode(Everything, data)
    assert Everything.FromString(data).inner == Inner()


@pytest.mark.parametrize(
    "data",
    [
        b"\xc0\x80\x01\x01\xff",
        b"\xba\x01\x05" + bytes(5),
    ],  # a truncated varint; 5 bytes of fixed32s
    ids=["packed varint", "packed fixed32"],
)
def test_a_corrupt_packed_field_is_refused(data: bytes) -> None:
    with pytest.raises(WireFormatError):
        codec.decode(Everything, data)


def test_classes_it_does_not_cover_go_to_betterproto2() -> None:
    message = WithMap(name="a", counts={"x": 1, "y": -2})
    assert dataclass_codec.encode(message) == bytes(message)
    assert codec.decode(WithMap, bytes(message)) == message


def test_bytes_like_data_decodes_to_bytes_values() -> None:
    data = bytes(Everything(text="a", data=b"b", texts=["c"]))
    for bytes_like in (bytearray(data), memoryview(data)):
        decoded = codec.decode(Everything, bytes_like)  # type: ignore[arg-type]
        assert same(decoded, Everything.FromString(data))


def test_the_greeter_messages() -> None:
    request = HelloRequest(name="Ada", count=3)
    assert codec.encode(request) == bytes(request) == b"\n\x03Ada\x10\x03"
    assert codec.decode(HelloReply, b"\n\x05Hello").message == "Hello"
    assert codec.encode(HelloRequest()) == b""
