"""Request/response message codec for handlers: strict decoding, plain encoding.

Message classes are duck-typed: anything with `FromString` and
`SerializeToString` (betterproto2 dataclasses, google protobuf messages). google protobuf's parser
is strict by itself; betterproto2 0.10's is not: it turns a truncated varint into an empty
message, a group into a string, a varint into an int stored in a `str` field. So before a
betterproto2 class parses, the bytes must be well-formed protobuf (protowire.check_wire_format)
and every field the schema knows must arrive with a wire type its type allows.

betterproto2 classes are then encoded and decoded by greeter.wire.dataclass_codec (the bytes and
messages betterproto2 makes, several times faster: benchmarks/codec.py); other classes by their
own methods.
"""

from __future__ import annotations

from typing import Any

from greeter.wire import dataclass_codec, protowire
from greeter.wire.dataclass_codec import wire_schema

__all__ = ["decode", "encode", "wire_schema"]


def decode(message_type: type[Any], payload: bytes) -> Any:
    """Parse `payload` as `message_type`; raise ValueError (or the parser's error) if corrupt."""
    # One pass checks both the framing and, for a betterproto2 class, the wire types: unknown
    # fields may have any but a group (proto3 has none, and betterproto2 would read a group's
    # contents as top-level fields).
    protowire.check_wire_format(payload, wire_schema(message_type))
    return dataclass_codec.decode(message_type, payload)


def encode(message: Any) -> bytes:
    """Serialize a message (betterproto2 or google protobuf)."""
    return dataclass_codec.encode(message)
