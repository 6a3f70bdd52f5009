"""Request/response message codec for handlers: strict decoding, plain encoding.

Message classes are duck-typed: anything with `FromString` and
`SerializeToString` (betterproto2 dataclasses, google protobuf messages). google protobuf's parser
is strict by itself; betterproto2 0.10's is not: it turns a truncated varint into an empty
message, a group into a string, a varint into an int stored in a `str` field. So before a
betterproto2 class parses, the bytes must be well-formed protobuf (protowire.check_wire_format)
and every field the schema knows must arrive with a wire type its type allows.
"""

from __future__ import annotations

from typing import Any

import betterproto2

from greeter.wire import protowire

_WIRE_TYPES_OF_SCALARS = (
    (betterproto2.WIRE_VARINT_TYPES, protowire.VARINT),
    (betterproto2.WIRE_FIXED_32_TYPES, protowire.I32),
    (betterproto2.WIRE_FIXED_64_TYPES, protowire.I64),
    (betterproto2.WIRE_LEN_DELIM_TYPES, protowire.LEN),
)


def _allowed_wire_types(proto_type: str, repeated: bool) -> frozenset[int]:
    for proto_types, wire_type in _WIRE_TYPES_OF_SCALARS:
        if proto_type in proto_types:
            # Repeated numeric fields may come packed (one LEN record) or not (protobuf
            # encoding guide, "Packed Repeated Fields": parsers must accept both).
            packable = repeated and proto_type in betterproto2.PACKED_TYPES
            return frozenset({wire_type, protowire.LEN} if packable else {wire_type})
    return frozenset({protowire.LEN})


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


def decode(message_type: type[Any], payload: bytes) -> Any:
    """Parse `payload` as `message_type`; raise ValueError (or the parser's error) if corrupt."""
    # One pass checks both the framing and, for a betterproto2 class, the wire types: unknown
    # fields may have any but a group (proto3 has none, and betterproto2 would read a group's
    # contents as top-level fields).
    protowire.check_wire_format(payload, wire_schema(message_type))
    return message_type.FromString(payload)


def encode(message: Any) -> bytes:
    """Serialize a message (betterproto2 or google protobuf)."""
    data: bytes = message.SerializeToString()
    return data
