"""Protobuf wire format, schema-free (https://protobuf.dev/programming-guides/encoding/).

betterproto2 0.10 parses some corrupt input (the truncated varint ``ff ff ff ff``) into an empty
message, while the server must answer INTERNAL for undecodable bytes (doc/statuscodes.md), so
:func:`check_wire_format` walks the top-level records before decoding. :func:`iter_fields`
yields the same records for a ``protoc --decode_raw`` style view.

A record is a tag varint ``field_number << 3 | wire_type`` followed by the value.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from greeter.wire.errors import WireFormatError

VARINT = 0
I64 = 1
LEN = 2
SGROUP = 3  # deprecated groups: a start tag, the group's records, then an end tag
EGROUP = 4  # with the same field number
I32 = 5

NOT_A_GROUP = frozenset({VARINT, I64, LEN, I32})
"""Wire types a field may have when a schema does not name it (proto3 has no groups)."""
Schema = Mapping[int, frozenset[int]]
"""Field number -> the wire types its declared type allows."""

_MAX_FIELD_NUMBER = (1 << 29) - 1
_MAX_VARINT_SIZE = 10  # 64 bits in 7-bit groups; the 10th byte carries only bit 63
_FIXED_SIZE = {I64: 8, I32: 4}
_KIND = {VARINT: "VARINT", I64: "I64", LEN: "LEN", I32: "I32"}


@dataclass(frozen=True, slots=True)
class WireField:
    """One top-level record; ``offset`` is where its tag starts.

    ``value`` is an int for VARINT, I64 and I32 (unsigned, as on the wire), the payload bytes
    for LEN, and for SGROUP (wire type 3) the group's encoded records without the end tag.
    """

    number: int
    wire_type: int
    value: int | bytes
    offset: int


def iter_fields(data: bytes) -> Iterator[WireField]:
    """Yield the top-level records of ``data``; raise WireFormatError where corruption starts."""
    end = len(data)
    pos = 0
    while pos < end:
        offset = pos
        number, wire_type, pos = _read_tag(data, pos, end)
        value: int | bytes
        if wire_type == VARINT:
            value, pos = read_varint(data, pos, end)
        elif wire_type == SGROUP:
            contents_end, after = _skip_group(data, pos, end, number, offset)
            value, pos = data[pos:contents_end], after
        elif wire_type == EGROUP:
            raise _unmatched_end(number, offset)
        else:
            start, pos = _value_span(data, pos, end, wire_type, number=number, offset=offset)
            value = data[start:pos]
            if wire_type != LEN:
                value = int.from_bytes(value, "little")  # fixed64/fixed32 are little-endian
        yield WireField(number, wire_type, value, offset)


def check_wire_format(data: bytes, schema: Schema | None = None) -> None:
    """Raise WireFormatError unless ``data`` is a well-formed sequence of top-level records.

    With a `schema`, each record's wire type must also be one its field allows (fields the
    schema does not name: any but a group), in the same single pass. The contents of LEN values
    are not examined: they are the nested message's parser's business.
    """
    end = len(data)
    pos = 0
    # Inlined fast path for a one-byte tag (field 1..15) with a one-byte varint or length: nearly
    # every record of a small message. A function call per record would dominate the cost.
    while pos < end:
        tag = data[pos]
        if 0x08 <= tag < 0x80 and pos + 1 < end and data[pos + 1] < 0x80:
            wire_type = tag & 7
            if schema is not None and wire_type not in schema.get(tag >> 3, NOT_A_GROUP):
                raise _disallowed(tag >> 3, pos, wire_type, schema)
            if wire_type == LEN:
                offset = pos
                pos += 2 + data[pos + 1]
                if pos > end:
                    raise _truncated(tag >> 3, offset, LEN, data[offset + 1], end - offset - 2)
                continue
            if wire_type == VARINT:
                pos += 2
                continue
        pos = _skip_record(data, pos, end, schema)


def _disallowed(number: int, offset: int, wire_type: int, schema: Schema) -> WireFormatError:
    allowed = sorted(schema.get(number, NOT_A_GROUP))
    return WireFormatError(
        f"field {number} at offset {offset} has wire type {wire_type}, the schema allows {allowed}"
    )


def _skip_record(data: bytes, pos: int, end: int, schema: Schema | None = None) -> int:
    """Validate the record whose tag starts at ``pos``; return the offset after it."""
    offset = pos
    number, wire_type, pos = _read_tag(data, pos, end)
    if schema is not None and wire_type not in schema.get(number, NOT_A_GROUP):
        raise _disallowed(number, offset, wire_type, schema)
    if wire_type == SGROUP:
        return _skip_group(data, pos, end, number, offset)[1]
    if wire_type == EGROUP:
        raise _unmatched_end(number, offset)
    return _value_span(data, pos, end, wire_type, number=number, offset=offset)[1]


def _skip_group(data: bytes, pos: int, end: int, number: int, offset: int) -> tuple[int, int]:
    """Walk a group's records from ``pos`` (just after its SGROUP tag) to its matching EGROUP.

    Returns where the EGROUP tag starts and where it ends. Iterative, so hostile nesting depth
    costs a list entry per level, never Python recursion.
    """
    open_groups = [(number, offset)]
    while pos < end:
        tag_offset = pos
        inner, wire_type, pos = _read_tag(data, pos, end)
        if wire_type == SGROUP:
            open_groups.append((inner, tag_offset))
        elif wire_type == EGROUP:
            if inner != open_groups[-1][0]:
                raise _unmatched_end(inner, tag_offset)
            open_groups.pop()
            if not open_groups:
                return tag_offset, pos
        else:
            pos = _value_span(data, pos, end, wire_type, number=inner, offset=tag_offset)[1]
    number, offset = open_groups[-1]
    raise WireFormatError(f"SGROUP for field {number} at offset {offset} has no EGROUP")


def _read_tag(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Return the field number, wire type and the offset after the tag starting at ``pos``."""
    tag, after = read_varint(data, pos, end)
    number = tag >> 3
    wire_type = tag & 7
    if not 1 <= number <= _MAX_FIELD_NUMBER:
        raise WireFormatError(f"invalid field number {number} at offset {pos}")
    if wire_type > I32:  # 6 and 7 are unassigned
        raise WireFormatError(f"invalid wire type {wire_type} for field {number} at offset {pos}")
    return number, wire_type, after


def _value_span(
    data: bytes, pos: int, end: int, wire_type: int, *, number: int, offset: int
) -> tuple[int, int]:
    """Return the start and end of the VARINT, I64, LEN or I32 value at ``pos``.

    For LEN the span is the payload, after its length varint.
    """
    if wire_type == VARINT:
        return pos, read_varint(data, pos, end)[1]
    if wire_type == LEN:
        size, pos = read_varint(data, pos, end)
    else:
        size = _FIXED_SIZE[wire_type]
    if pos + size > end:
        raise _truncated(number, offset, wire_type, size, end - pos)
    return pos, pos + size


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Return the varint at ``pos`` and the offset after it."""
    start = pos
    stop = min(end, pos + _MAX_VARINT_SIZE)
    value = 0
    shift = 0
    while pos < stop:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if shift == 63 and byte > 1:
                raise WireFormatError(f"varint at offset {start} overflows 64 bits")
            return value, pos
        shift += 7
    if pos - start == _MAX_VARINT_SIZE:
        raise WireFormatError(f"varint at offset {start} is longer than 10 bytes")
    raise WireFormatError(f"varint at offset {start} is truncated by the end of the data")


def _truncated(number: int, offset: int, wire_type: int, size: int, left: int) -> WireFormatError:
    return WireFormatError(
        f"{_KIND[wire_type]} field {number} at offset {offset} needs {size} bytes, {left} remain"
    )


def _unmatched_end(number: int, offset: int) -> WireFormatError:
    return WireFormatError(f"EGROUP for field {number} at offset {offset} matches no SGROUP")
