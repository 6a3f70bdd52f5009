"""greeter.wire.metadata: grpc-timeout, grpc-message and custom metadata (PROTOCOL-HTTP2.md)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greeter.wire.errors import InvalidTimeoutError
from greeter.wire.metadata import (
    decode_grpc_message,
    decode_metadata_value,
    encode_grpc_message,
    encode_metadata_value,
    encode_timeout,
    is_binary_key,
    is_reserved_header,
    parse_timeout,
    validate_metadata_key,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2H", 7200.0),
        ("3M", 180.0),
        ("5S", 5.0),
        ("250m", 0.25),
        ("1m", 0.001),
        ("1500u", 0.0015),
        ("7n", 7e-9),
        ("0S", 0.0),
        ("00000001S", 1.0),
        ("99999999H", 99_999_999 * 3600.0),
        ("12345678n", 0.012345678),
    ],
)
def test_parse_timeout(value: str, seconds: float) -> None:
    assert parse_timeout(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "",
        "S",
        "1",
        "123456789S",  # 9 digits: TimeoutValue is at most 8
        "1s",
        "1h",
        "1x",
        "-1S",
        "+1S",
        " 1S",
        "1S ",
        "1 S",
        "1.5S",
        "1_0S",
        "0x1S",
        "\u0661S",  # ARABIC-INDIC DIGIT ONE: a digit to str.isdigit(), not ASCII
        "1SS",
    ],
)
def test_malformed_timeouts(value: str) -> None:
    with pytest.raises(InvalidTimeoutError, match="malformed grpc-timeout"):
        parse_timeout(value)
    assert issubclass(InvalidTimeoutError, ValueError)


@pytest.mark.parametrize(
    ("seconds", "value"),
    [
        (1.0, "1S"),
        (0.5, "500m"),
        (1.1, "1100m"),
        (90, "90S"),
        (7200, "2H"),
        (0.000_001, "1u"),
        (1e-9, "1n"),
        (3e-8, "30n"),  # 3e-8 * 1e9 == 29.999999999999996
        (1e-12, "1n"),  # positive stays positive
        (0.099_999_999, "99999999n"),  # 8 digits fit
        (0.123_456_789_1, "123457u"),  # 9 digits do not: the next unit, rounded up
        (1.234_567_89, "1234568u"),
        (100_000.1, "100001S"),
        (0, "0n"),
        (-3.0, "0n"),
        (1e30, "99999999H"),
        (float("inf"), "99999999H"),
    ],
)
def test_encode_timeout(seconds: float, value: str) -> None:
    assert encode_timeout(seconds) == value


def test_encode_timeout_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        encode_timeout(float("nan"))


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-9, max_value=1e10))
def test_encoded_timeouts_parse_back_never_earlier(seconds: float) -> None:
    value = encode_timeout(seconds)
    assert len(value) <= 9
    parsed = parse_timeout(value)
    # Rounding is up, after rounding to the nearest nanosecond (which absorbs float noise).
    assert parsed >= seconds - 0.5e-9
    # At least 10**5 of the chosen unit once the finer one overflows 8 digits (units step by
    # at most 1000), so the rounding costs under 1e-5 of the timeout.
    assert parsed <= seconds * (1 + 1e-5) + 1e-9


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("plain text ~!", "plain text ~!"),
        ("100%", "100%25"),
        ("héllo\n100%", "h%C3%A9llo%0A100%25"),
        ("tab\there", "tab%09here"),
        ("\x7f", "%7F"),
        ("日本", "%E6%97%A5%E6%9C%AC"),
        (" padded ", "%20padded%20"),  # RFC 9113 section 8.2.1: no surrounding whitespace
        ("  ", "%20%20"),
        ("", ""),
        ("\ud800x", "?x"),  # a lone surrogate has no UTF-8 form: sent as "?"
    ],
)
def test_encode_grpc_message(text: str, wire: str) -> None:
    assert encode_grpc_message(text) == wire


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_grpc_message_round_trip(text: str) -> None:
    wire = encode_grpc_message(text)
    assert wire.isascii() and wire.isprintable()
    assert not wire.startswith(" ") and not wire.endswith(" ")
    assert decode_grpc_message(wire) == text


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        ("100%", "100%"),
        ("%zz%4", "%zz%4"),
        ("50%%25", "50%%"),
        ("%c3%a9", "é"),  # lower-case hex is accepted
        ("%C3", "\ufffd"),  # invalid UTF-8
        ("%FF%FEok", "\ufffd\ufffdok"),
    ],
)
def test_decode_grpc_message_is_lenient(wire: str, text: str) -> None:
    assert decode_grpc_message(wire) == text


def test_binary_keys() -> None:
    assert is_binary_key("trace-bin")
    assert not is_binary_key("trace")
    assert not is_binary_key("bin")
    assert not is_binary_key("trace-bin-not")


@pytest.mark.parametrize("length", range(7))
def test_binary_values_are_unpadded_and_decode_either_way(length: int) -> None:
    value = bytes(range(250, 250 - length, -1))
    wire = encode_metadata_value("x-bin", value)
    assert "=" not in wire
    assert decode_metadata_value("x-bin", wire) == value
    assert decode_metadata_value("x-bin", base64.b64encode(value).decode()) == value


@pytest.mark.parametrize(
    "wire",
    ["A", "AAAAA", "AA,BB", "AA==,BB==", "AA BB", "-_8", "A=A=", "é", "AA==="],
)
def test_malformed_binary_values(wire: str) -> None:
    with pytest.raises(ValueError, match="malformed base64"):
        decode_metadata_value("x-bin", wire)


def test_ascii_values() -> None:
    assert encode_metadata_value("x-key", "a value ~") == "a value ~"
    assert encode_metadata_value("x-key", "") == ""
    assert decode_metadata_value("x-key", "AA,BB") == "AA,BB"
    for value in ("tab\t", "new\nline", "é", "\x7f", " lead", "trail "):
        with pytest.raises(ValueError, match="x-key"):
            encode_metadata_value("x-key", value)


def test_value_type_must_match_the_key() -> None:
    with pytest.raises(TypeError, match="bytes"):
        encode_metadata_value("x-bin", "text")
    with pytest.raises(TypeError, match="str"):
        encode_metadata_value("x-key", b"bytes")


@pytest.mark.parametrize(
    "key",
    [
        ":path",
        ":authority",
        "content-type",
        "te",
        "grpc-timeout",
        "grpc-status-details-bin",
        "grpc-anything",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "host",
    ],
)
def test_reserved_headers(key: str) -> None:
    assert is_reserved_header(key)


@pytest.mark.parametrize("key", ["user-agent", "x-trace", "authorization", "grpc", "my-grpc-x"])
def test_custom_metadata_keys(key: str) -> None:
    assert not is_reserved_header(key)
    validate_metadata_key(key)


@pytest.mark.parametrize(
    "key", ["", "Upper", "with space", ":path", "a/b", "é", "key\n", "tab\t", "a:b"]
)
def test_invalid_metadata_keys(key: str) -> None:
    with pytest.raises(ValueError, match="invalid metadata key"):
        validate_metadata_key(key)


def test_valid_metadata_key_characters() -> None:
    validate_metadata_key("0123456789abcdefghijklmnopqrstuvwxyz_-.")
