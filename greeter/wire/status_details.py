"""grpc-status-details-bin: a google.rpc.Status message carrying a handler's error details.

grpclib's own codec for this needs googleapis-common-protos; the
message is three fields, so it is encoded here by hand. google/rpc/status.proto: code = 1 int32,
message = 2 string, details = 3 repeated google.protobuf.Any {type_url = 1, value = 2}.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from greeter.wire import protowire

TYPE_URL_PREFIX = "type.googleapis.com/"


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int32 values are sign-extended to ten bytes
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(field_number: int, data: bytes) -> bytes:
    return _varint(field_number << 3 | 2) + _varint(len(data)) + data


def type_url(message: Any) -> str:
    """The Any type URL of a google protobuf or betterproto2 message."""
    descriptor = getattr(message, "DESCRIPTOR", None)
    if descriptor is not None:
        return TYPE_URL_PREFIX + str(descriptor.full_name)
    # betterproto2 registers each generated message in its package's message pool.
    module = sys.modules.get(type(message).__module__)
    pool = getattr(module, "default_message_pool", None)
    url = pool.type_to_url.get(type(message)) if pool is not None else None
    if url is None:
        raise ValueError(f"cannot name the protobuf type of {type(message).__name__}")
    return str(url)


def encode_status(code: int, message: str, details: Iterable[Any]) -> bytes:
    """Serialize google.rpc.Status; each detail is packed into an Any."""
    out = bytearray()
    if code:
        out += _varint(1 << 3) + _varint(code)
    if message:
        out += _length_delimited(2, message.encode())
    for detail in details:
        packed = _length_delimited(1, type_url(detail).encode()) + _length_delimited(
            2, detail.SerializeToString()
        )
        out += _length_delimited(3, packed)
    return bytes(out)


def decode_status_details(data: bytes) -> list[tuple[str, bytes]]:
    """The details of a serialized google.rpc.Status: (type URL, packed message) per Any.

    Raises WireFormatError when `data` is not protobuf. Fields it does not know are skipped, as
    protobuf parsers do.
    """
    details: list[tuple[str, bytes]] = []
    for field in protowire.iter_fields(data):
        if field.number != 3 or not isinstance(field.value, bytes):
            continue
        url, value = "", b""
        for part in protowire.iter_fields(field.value):
            if part.number == 1 and isinstance(part.value, bytes):
                url = part.value.decode("utf-8", "replace")
            elif part.number == 2 and isinstance(part.value, bytes):
                value = part.value
        details.append((url, value))
    return details
