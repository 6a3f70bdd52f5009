"""Protobuf encoding and decoding of betterproto2 dataclasses, the same bytes and messages faster.

betterproto2 0.10 encodes every field through generic helpers and enters
`warnings.catch_warnings()` to build each field's default value, on every message; it decodes
through a generator of `ParsedField` dataclasses reading a `BytesIO` one byte at a time. In a
busy client that was over a quarter of a unary call's CPU (benchmarks/client_cpu.py with the
codec replaced by constants); benchmarks/codec.py times both codecs. This module compiles, once
per message class, a plan from the same field metadata betterproto2 reads
(`_betterproto.meta_by_field_name`) and then encodes and decodes without the generic steps:

- encoding writes the fields in betterproto2's order (the dataclass's), skips a field equal to
  its default (computed once per class) or None, and appends the unknown fields, as
  `Message.__bytes__` does: the same bytes;
- decoding runs on bytes `protowire.check_wire_format` has already accepted (codec.decode does
  that first), so every tag, length and wire type is known to be well-formed; it converts each
  value as `Message._postprocess_single` does (int32 truncated to 32 bits, enums through their
  class, sint zig-zag, ...), keeps the last of repeated singular fields and the records of
  unknown fields, as `Message.load` does. A nested message's bytes and a packed field's are
  checked too, where betterproto2 alone makes a wrong message or a stray exception of them.

Classes with a part this module does not cover go to betterproto2 itself, whole: map fields,
fields that unwrap a well-known wrapper type, and pydantic dataclasses (betterproto2 validates
those while encoding). tests/wire/test_dataclass_codec.py compares both codecs on every field
kind with hypothesis.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import betterproto2

from greeter.wire import protowire
from greeter.wire.errors import WireFormatError

_VARINT_TYPES = frozenset(betterproto2.WIRE_VARINT_TYPES)
_FIXED_FORMATS = {
    betterproto2.TYPE_DOUBLE: "<d",
    betterproto2.TYPE_FLOAT: "<f",
    betterproto2.TYPE_FIXED32: "<I",
    betterproto2.TYPE_FIXED64: "<Q",
    betterproto2.TYPE_SFIXED32: "<i",
    betterproto2.TYPE_SFIXED64: "<q",
}
_ZIGZAG_TYPES = frozenset({betterproto2.TYPE_SINT32, betterproto2.TYPE_SINT64})
_SIGNED_TYPES = {
    betterproto2.TYPE_INT32: 32,
    betterproto2.TYPE_INT64: 64,
    betterproto2.TYPE_ENUM: 64,
}
_UNSIGNED_TYPES = {betterproto2.TYPE_UINT32: 32, betterproto2.TYPE_UINT64: 64}
_PACKED_TYPES = frozenset(betterproto2.PACKED_TYPES)
_WIRE_TYPES_OF_SCALARS = (
    (betterproto2.WIRE_VARINT_TYPES, protowire.VARINT),
    (betterproto2.WIRE_FIXED_32_TYPES, protowire.I32),
    (betterproto2.WIRE_FIXED_64_TYPES, protowire.I64),
    (betterproto2.WIRE_LEN_DELIM_TYPES, protowire.LEN),
)
_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    """betterproto2's varint of `value` (a negative one as 64-bit two's complement)."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    encoded: bytes = betterproto2.encode_varint(value)
    return encoded


def _zigzag(value: int) -> bytes:
    return _varint(value << 1 if value >= 0 else (value << 1) ^ ~0)


def _utf8(value: str) -> bytes:
    return value.encode("utf-8")


def _as_is(value: bytes) -> bytes:
    return value


# -- the plans -------------------------------------------------------------------------------------


def _metas(cls: type[Any]) -> dict[str, Any] | None:
    """A betterproto2 class's field metadata by name; None for a class left to its own methods
    (not betterproto2's, or with a map, a wrapper type, or pydantic validation)."""
    if not (isinstance(cls, type) and issubclass(cls, betterproto2.Message)):
        return None
    pydantic = getattr(betterproto2, "pydantic", None)
    if pydantic is not None and pydantic.dataclasses.is_pydantic_dataclass(cls):
        return None
    metas: dict[str, Any] = getattr(cls, "_betterproto").meta_by_field_name  # noqa: B009 (classproperty)
    if any(meta.map_meta or meta.unwrap for meta in metas.values()):
        return None
    return metas


def _wire_type(proto_type: str) -> int:
    """The wire type of one value of `proto_type` (a map or message: LEN)."""
    for proto_types, wire_type in _WIRE_TYPES_OF_SCALARS:
        if proto_type in proto_types:
            return wire_type
    return protowire.LEN


def _value_encoder(proto_type: str) -> Callable[[Any], bytes]:
    """A field value's bytes without its tag (and, for LEN types, without its length)."""
    if proto_type in _ZIGZAG_TYPES:
        return _zigzag
    if proto_type in _VARINT_TYPES:
        return _varint
    if proto_type in _FIXED_FORMATS:
        pack: Callable[[Any], bytes] = struct.Struct(_FIXED_FORMATS[proto_type]).pack
        return pack
    if proto_type == betterproto2.TYPE_STRING:
        return _utf8
    if proto_type == betterproto2.TYPE_MESSAGE:
        return encode
    return _as_is  # bytes


FieldWriter = Callable[[bytearray, Any], None]


def _field_writer(meta: Any) -> FieldWriter:
    """How one field's (non-default) value is written, as `Message.__bytes__` writes it."""
    encode_value = _value_encoder(meta.proto_type)
    wire_type = _wire_type(meta.proto_type)
    key = _varint(meta.number << 3 | wire_type)
    if meta.repeated and meta.proto_type in _PACKED_TYPES:
        packed_key = _varint(meta.number << 3 | protowire.LEN)

        def write_packed(out: bytearray, items: Any) -> None:
            packed = b"".join([encode_value(item) for item in items])
            out += packed_key
            out += _varint(len(packed))
            out += packed

        return write_packed
    if wire_type == protowire.LEN:

        def write_delimited(out: bytearray, value: Any) -> None:
            data = encode_value(value)
            out += key
            out += _varint(len(data))
            out += data

        if not meta.repeated:
            return write_delimited

        def write_each(out: bytearray, items: Any) -> None:
            for item in items:
                write_delimited(out, item)

        return write_each

    # A repeated field of a packable type was handled above, so this one is singular.
    def write_scalar(out: bytearray, value: Any) -> None:
        out += key
        out += encode_value(value)

    return write_scalar


def _writers(cls: type[Any], metas: dict[str, Any]) -> tuple[tuple[str, Any, FieldWriter], ...]:
    """(field name, default value, writer) of each field, in betterproto2's order."""
    defaults = getattr(cls, "_betterproto").default_gen  # noqa: B009 (classproperty)
    writers = []
    for name, meta in metas.items():
        with warnings.catch_warnings():
            # As betterproto2 builds defaults: a deprecated field's default must not warn.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            default = defaults[name]()
        writers.append((name, default, _field_writer(meta)))
    return tuple(writers)


def encode(message: Any) -> bytes:
    """`message`'s protobuf bytes: the bytes betterproto2 writes (`SerializeToString` for a class
    this module leaves to it, or another kind of message)."""
    plan = _plan(type(message))
    if plan is None:
        data: bytes = message.SerializeToString()
        return data
    out = bytearray()
    for name, default, write in plan.writers:
        value = getattr(message, name)
        if value is None or value == default:
            continue  # defaults are not written (proto3); None is an unset optional or oneof
        write(out, value)
    out += message._unknown_fields
    return bytes(out)


# -- decoding --------------------------------------------------------------------------------------


def _allowed_wire_types(proto_type: str, repeated: bool) -> frozenset[int]:
    # Repeated numeric fields may come packed (one LEN record) or not (protobuf encoding
    # guide, "Packed Repeated Fields": parsers must accept both).
    packable = repeated and proto_type in _PACKED_TYPES
    return frozenset(
        {_wire_type(proto_type), protowire.LEN} if packable else {_wire_type(proto_type)}
    )


_schemas: dict[type[Any], dict[int, frozenset[int]] | None] = {}


def wire_schema(message_type: type[Any]) -> dict[int, frozenset[int]] | None:
    """Field number → allowed wire types for a betterproto2 class; None for other classes."""
    if message_type not in _schemas:
        schema = None
        if issubclass(message_type, betterproto2.Message):
            meta: Any = getattr(message_type, "_betterproto")  # noqa: B009 (mypy misreads the classproperty)
            schema = {
                field.number: _allowed_wire_types(field.proto_type, bool(field.repeated))
                for field in meta.meta_by_field_name.values()
            }
        _schemas[message_type] = schema
    return _schemas[message_type]


_SET, _APPEND, _EXTEND = 0, 1, 2
"""What a decoded value does to its field: replaces it, or is appended, or its items are."""


def _signed(bits: int) -> Callable[[int], int]:
    mask, sign_bit = (1 << bits) - 1, 1 << (bits - 1)

    def to_signed(value: int) -> int:
        return ((value & mask) ^ sign_bit) - sign_bit

    return to_signed


def _value_decoder(meta: Any, field_type: Any) -> Callable[[Any], Any] | None:
    """A wire value's Python value, as `Message._postprocess_single` makes it; None: the bytes."""
    proto_type = meta.proto_type
    if proto_type in _SIGNED_TYPES:
        to_signed = _signed(_SIGNED_TYPES[proto_type])
        if proto_type == betterproto2.TYPE_ENUM:
            return lambda value: field_type(to_signed(value))
        return to_signed
    if proto_type in _UNSIGNED_TYPES:
        mask = (1 << _UNSIGNED_TYPES[proto_type]) - 1
        return lambda value: value & mask
    if proto_type in _ZIGZAG_TYPES:
        mask = (1 << (32 if proto_type == betterproto2.TYPE_SINT32 else 64)) - 1
        return lambda value: ((value & mask) >> 1) ^ -((value & mask) & 1)
    if proto_type == betterproto2.TYPE_BOOL:
        return lambda value: value > 0
    if proto_type in _FIXED_FORMATS:
        unpack = struct.Struct(_FIXED_FORMATS[proto_type]).unpack
        return lambda value: unpack(value)[0]
    if proto_type == betterproto2.TYPE_STRING:
        return lambda value: str(value, "utf-8")
    if proto_type == betterproto2.TYPE_MESSAGE:
        message_type = field_type

        def nested(value: bytes) -> Any:
            protowire.check_wire_format(value, wire_schema(message_type))
            return decode(message_type, value)

        return nested
    return None  # bytes


def _packed_decoder(meta: Any, decode_value: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """The items of a packed repeated field's LEN payload."""
    size = (
        struct.calcsize(_FIXED_FORMATS[meta.proto_type]) if meta.proto_type in _FIXED_FORMATS else 0
    )
    assert decode_value is not None

    def items(payload: bytes) -> list[Any]:
        if size:
            if len(payload) % size:
                raise WireFormatError(
                    f"packed field {meta.number} has {len(payload)} bytes, not a multiple of {size}"
                )
            return [decode_value(payload[at : at + size]) for at in range(0, len(payload), size)]
        values, pos, end = [], 0, len(payload)
        while pos < end:
            value, pos = protowire.read_varint(payload, pos, end)
            values.append(decode_value(value))
        return values

    return items


Reader = tuple[str, Callable[[Any], Any] | None, int]
"""A field's name, its value decoder (None: the bytes as they are) and what the value does."""


def _readers(cls: type[Any], metas: dict[str, Any]) -> dict[int, Reader]:
    """Tag (field number and wire type) → the field's reader."""
    classes = getattr(cls, "_betterproto").cls_by_field  # noqa: B009 (classproperty)
    readers: dict[int, Reader] = {}
    for name, meta in metas.items():
        decode_value = _value_decoder(meta, classes[name])
        wire_type = _wire_type(meta.proto_type)
        if meta.repeated and meta.proto_type in _PACKED_TYPES:
            # Parsers must take a packable field both packed and not (protobuf encoding guide).
            readers[meta.number << 3 | protowire.LEN] = (
                name,
                _packed_decoder(meta, decode_value),
                _EXTEND,
            )
        readers[meta.number << 3 | wire_type] = (
            name,
            decode_value,
            _APPEND if meta.repeated else _SET,
        )
    return readers


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one class's messages are written and read, built once per class."""

    writers: tuple[tuple[str, Any, FieldWriter], ...]
    readers: dict[int, Reader]


_plans: dict[type[Any], _Plan | None] = {}


def _plan(cls: type[Any]) -> _Plan | None:
    """`cls`'s plan; None for a class left to its own methods."""
    try:
        return _plans[cls]
    except KeyError:
        metas = _metas(cls)
        plan = None if metas is None else _Plan(_writers(cls, metas), _readers(cls, metas))
        _plans[cls] = plan
        return plan


def decode(cls: type[Any], data: bytes) -> Any:
    """A `cls` message from `data`, which `protowire.check_wire_format` accepted with `cls`'s wire
    schema: the message betterproto2's `FromString` makes (a class this module leaves to it: that
    is what runs)."""
    plan = _plan(cls)
    if plan is None:
        return cls.FromString(data)
    if data.__class__ is not bytes:
        data = bytes(data)  # a memoryview's or bytearray's slices would not be bytes values
    readers = plan.readers
    message = cls()
    read_varint = protowire.read_varint
    pos, end = 0, len(data)
    # A one-byte varint (tag, length or value) is read inline, a longer one by a call: nearly
    # every varint of a small message is one byte, and a call for each would double the cost.
    while pos < end:
        start = pos
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = read_varint(data, pos, end)
        wire_type = tag & 7
        value: Any
        if wire_type == protowire.LEN:
            size = data[pos]
            if size < 0x80:
                pos += 1
            else:
                size, pos = read_varint(data, pos, end)
            value = data[pos : pos + size]
            pos += size
        elif wire_type == protowire.VARINT:
            value = data[pos]
            if value < 0x80:
                pos += 1
            else:
                value, pos = read_varint(data, pos, end)
        else:
            size = 8 if wire_type == protowire.I64 else 4
            value = data[pos : pos + size]
            pos += size
        field = readers.get(tag)
        if field is None:
            message._unknown_fields += data[start:pos]
            continue
        name, decode_value, effect = field
        if decode_value is not None:
            value = decode_value(value)
        if effect == _SET:
            setattr(message, name, value)
        elif effect == _APPEND:
            getattr(message, name).append(value)
        else:
            getattr(message, name).extend(value)
    return message
