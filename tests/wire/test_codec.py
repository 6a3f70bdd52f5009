"""greeter.wire.codec: corrupt request bytes never become a (silently wrong) message."""

from __future__ import annotations

import re

import pytest
from grpclib.health.v1.health_pb2 import HealthCheckRequest
from hypothesis import given
from hypothesis import strategies as st

from gen.greet import HelloReply, HelloRequest
from greeter.wire import codec
from greeter.wire.errors import WireFormatError


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff\xff\xff\xff", "truncated varint (betterproto2 alone returns an empty message)"),
        (b"\x0c", "EGROUP without SGROUP"),
        (b"\x1b\x08\x01\x1c", "a group (betterproto2 alone reads its contents as field 1)"),
        (b"\x08\x05", "string field 1 sent as a varint (betterproto2 alone stores an int)"),
        (b"\x0d\x00\x00\x00\x00", "string field 1 sent as fixed32"),
        (b"\x12\x05\x01", "LEN longer than the data"),
        (b"\x0a\x02\xff\xfe", "invalid UTF-8 in a string"),
    ],
)
def test_corrupt_bytes_are_refused(data: bytes, why: str) -> None:
    with pytest.raises((ValueError, KeyError)):
        codec.decode(HelloRequest, data)


def test_unknown_fields_of_any_wire_type_are_kept_out_of_known_ones() -> None:
    data = b"\x18\x05" + b"\x25\x00\x00\x00\x00" + bytes(HelloRequest(name="a", count=2))
    assert codec.decode(HelloRequest, data) == HelloRequest(name="a", count=2)


def test_google_protobuf_classes_decode_too() -> None:
    payload = HealthCheckRequest(service="greet.Greeter").SerializeToString()
    assert codec.decode(HealthCheckRequest, payload).service == "greet.Greeter"
    assert codec.wire_schema(HealthCheckRequest) is None


@given(name=st.text(max_size=50), count=st.integers(min_value=0, max_value=2**32 - 1))
def test_round_trip(name: str, count: int) -> None:
    request = HelloRequest(name=name, count=count)
    assert codec.decode(HelloRequest, codec.encode(request)) == request
    assert codec.decode(HelloReply, codec.encode(HelloReply(message=name))).message == name


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x08\x05", "field 1 at offset 0 has wire type 0, the schema allows [2]"),
        (
            b"\x0a\x00\x0d\x00\x00\x00\x00",
            "field 1 at offset 2 has wire type 5, the schema allows [2]",
        ),
        (
            b"\x10\x01\x1b\x1c",
            "field 3 at offset 2 has wire type 3, the schema allows [0, 1, 2, 5]",
        ),
        # A two-byte length takes the slow path: checked there too.
        (
            b"\x12\xc8\x01" + bytes(200),
            "field 2 at offset 0 has wire type 2, the schema allows [0]",
        ),
    ],
)
def test_wire_types_are_checked_in_the_same_pass(data: bytes, message: str) -> None:
    with pytest.raises(WireFormatError, match=re.escape(message)):
        codec.decode(HelloRequest, data)
