"""gRPC header values: grpc-timeout, grpc-message and custom metadata.

Grammar from gRPC doc/PROTOCOL-HTTP2.md ("Requests", "Responses"); HTTP/2 field rules from
RFC 9113 section 8.2. Keys are compared as given: HTTP/2 field names are lower-case (RFC 9113
section 8.2.1, enforced by h2 on receipt) and :func:`validate_metadata_key` enforces it on send.
"""

from __future__ import annotations

import base64
import math
import re
from urllib.parse import quote, unquote

from greeter.wire.errors import InvalidTimeoutError

_NANOS_PER_SECOND = 10**9
# TimeoutUnit -> nanoseconds, coarsest first.
_TIMEOUT_UNITS = (
    ("H", 3600 * _NANOS_PER_SECOND),
    ("M", 60 * _NANOS_PER_SECOND),
    ("S", _NANOS_PER_SECOND),
    ("m", 10**6),
    ("u", 10**3),
    ("n", 1),
)
_UNIT_NANOS = dict(_TIMEOUT_UNITS)
_HOUR_NANOS = _UNIT_NANOS["H"]
_MAX_TIMEOUT_VALUE = 99_999_999  # TimeoutValue is at most 8 digits

# Percent-Byte-Unencoded: space and VCHAR except "%"; every other byte is sent as %XX.
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != ord("%"))
# Transport-owned keys that custom metadata may neither set nor see.
_RESERVED_KEYS = frozenset(
    (
        "content-type",
        "te",
        # Connection-specific fields, forbidden in HTTP/2 (RFC 9113 section 8.2.2); "host" is
        # superseded by :authority (section 8.3.1).
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "host",
    )
)
# Header-Name -> 1*( %x30-39 / %x61-7A / "_" / "-" / "." )
_KEY_PATTERN = re.compile(r"[0-9a-z_.\-]+")


def parse_timeout(value: str) -> float:
    """Parse ``Timeout -> TimeoutValue TimeoutUnit`` into seconds.

    TimeoutValue is 1 to 8 ASCII digits ("0" included); TimeoutUnit is one of H M S m u n.
    """
    digits = value[:-1]
    nanos = _UNIT_NANOS.get(value[-1:])
    # isascii() first: str.isdigit() alone also accepts non-ASCII digits such as "٣".
    if nanos is None or not (1 <= len(digits) <= 8 and digits.isascii() and digits.isdigit()):
        raise InvalidTimeoutError(
            f"malformed grpc-timeout {value!r}: expected 1-8 digits then one of H M S m u n"
        )
    # int / int is correctly rounded, so "1m" is exactly the float nearest 0.001.
    return int(digits) * nanos / _NANOS_PER_SECOND


def encode_timeout(seconds: float) -> str:
    """Encode ``seconds`` as a grpc-timeout value of at most 8 digits.

    The value is taken to the nearest nanosecond. The shortest unit that states it exactly wins,
    so 1.0 is "1S"; otherwise the finest unit that fits, rounded up as grpc-go does so the peer's
    deadline is never earlier than ours; a positive timeout below 1 ns is "1n". Zero and
    negative timeouts give "0n", as grpc-go sends: the deadline has passed and the peer answers
    DEADLINE_EXCEEDED. Values beyond the largest encodable timeout, +inf included, are clamped
    to "99999999H" (about 11,400 years). NaN raises ValueError.
    """
    if math.isnan(seconds):
        raise ValueError("grpc-timeout cannot encode NaN")
    if seconds >= _MAX_TIMEOUT_VALUE * 3600:
        return f"{_MAX_TIMEOUT_VALUE}H"
    if seconds <= 0:
        return "0n"
    # Rounding to whole nanoseconds absorbs float error: 3e-08 * 1e9 is 29.999999999999996,
    # which must be "30n". A positive timeout stays positive.
    nanos = max(1, round(seconds * _NANOS_PER_SECOND))
    for unit, size in _TIMEOUT_UNITS:
        count, rest = divmod(nanos, size)
        if rest == 0 and count <= _MAX_TIMEOUT_VALUE:
            return f"{count}{unit}"
    for unit, size in reversed(_TIMEOUT_UNITS[1:-1]):  # "n" fits only if the first loop returned
        count = -(-nanos // size)  # ceiling division
        if count <= _MAX_TIMEOUT_VALUE:
            return f"{count}{unit}"
    return f"{-(-nanos // _HOUR_NANOS)}H"


def encode_grpc_message(text: str) -> str:
    """Percent-encode a status message for grpc-message (PROTOCOL-HTTP2.md "Responses").

    The UTF-8 bytes outside 0x20-0x7E and "%" itself become %XX in upper-case hex. A leading or
    trailing space is encoded too, because RFC 9113 section 8.2.1 forbids a field value that
    starts or ends with whitespace and h2 peers reject one. Lone surrogates, which have no UTF-8
    form, are sent as "?" rather than failing the status.
    """
    encoded = quote(text, safe=_MESSAGE_SAFE, errors="replace")
    core = encoded.strip(" ")
    if len(core) == len(encoded):
        return encoded
    lead = len(encoded) - len(encoded.lstrip(" "))
    return "%20" * lead + core + "%20" * (len(encoded) - lead - len(core))


def decode_grpc_message(value: str) -> str:
    """Decode grpc-message leniently.

    The spec says a malformed value "should not error": a malformed %-sequence is kept
    literally and bytes that are not UTF-8 become U+FFFD.
    """
    return unquote(value, errors="replace")


def is_binary_key(key: str) -> bool:
    """Whether values of ``key`` are binary, i.e. base64 on the wire (names end in "-bin")."""
    return key.endswith("-bin")


def encode_metadata_value(key: str, value: str | bytes) -> str:
    """Encode a custom metadata value for the wire.

    "-bin" keys take bytes, sent as unpadded base64 (PROTOCOL-HTTP2.md: implementations SHOULD
    emit un-padded values). Other keys take a str of printable ASCII 0x20-0x7E (ASCII-Value)
    that does not start or end with a space (RFC 9113 section 8.2.1). A value of the wrong type
    raises TypeError, a disallowed character ValueError.
    """
    if is_binary_key(key):
        if not isinstance(value, bytes):
            raise TypeError(f"metadata {key!r} is binary (-bin): its value must be bytes")
        return base64.b64encode(value).rstrip(b"=").decode("ascii")
    if not isinstance(value, str):
        raise TypeError(f"metadata {key!r} is ASCII: its value must be str (or name it -bin)")
    if not (value.isascii() and value.isprintable()):
        raise ValueError(f"metadata {key!r}: value {value!r} is not printable ASCII 0x20-0x7E")
    if value[:1] == " " or value[-1:] == " ":
        raise ValueError(f"metadata {key!r}: value {value!r} starts or ends with a space")
    return value


def decode_metadata_value(key: str, value: str) -> str | bytes:
    """Decode a received custom metadata value: bytes for "-bin" keys, else ``value`` itself.

    Base64 is accepted padded or unpadded (PROTOCOL-HTTP2.md: implementations MUST accept both),
    standard alphabet only (RFC 4648 section 4). A comma-joined value (two fields merged by an
    intermediary) is rejected like any other non-base64 character, as grpc-go does: one bytes
    value cannot hold two, and concatenating them would corrupt both. Raises ValueError.
    """
    if not is_binary_key(key):
        return value
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except ValueError as exc:  # binascii.Error, or a non-ASCII character
        raise ValueError(f"metadata {key!r}: malformed base64 value {value!r}") from exc


def is_reserved_header(key: str) -> bool:
    """Whether ``key`` belongs to the transport rather than to custom metadata.

    Pseudo-headers, content-type, te, every "grpc-" key (PROTOCOL-HTTP2.md: names starting with
    "grpc-" are reserved for gRPC) and HTTP/2 connection-specific fields. user-agent is not:
    applications may read it.
    """
    return key.startswith((":", "grpc-")) or key in _RESERVED_KEYS


def validate_metadata_key(key: str) -> None:
    """Raise ValueError unless ``key`` is a Header-Name: one or more of 0-9 a-z _ - ."""
    if _KEY_PATTERN.fullmatch(key) is None:
        raise ValueError(f"invalid metadata key {key!r}: allowed are 0-9 a-z _ - .")
