"""Message compression named by grpc-encoding (gRPC doc/compression.md).

"gzip" is RFC 1952 and "deflate" the zlib format of RFC 1950, which is what grpc C-core and
grpc-js send; a "deflate" body without a zlib header is read as raw deflate (RFC 1951) because
some implementations send that. Decompression is bounded by the receive limit: zlib is asked for
at most ``max_size + 1`` bytes, so a zip bomb never allocates more than the limit.
"""

from __future__ import annotations

import zlib

from greeter.wire.errors import DecompressedTooLargeError, DecompressionError

IDENTITY = "identity"
GZIP = "gzip"
DEFLATE = "deflate"
# Advertised in grpc-accept-encoding (compression.md: the encodings the receiver can decompress).
ACCEPT_ENCODING = "identity,deflate,gzip"

_SUPPORTED = frozenset((IDENTITY, GZIP, DEFLATE))
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer (RFC 1952)
_ZLIB_WBITS = zlib.MAX_WBITS  # zlib header and Adler-32 trailer (RFC 1950)
_RAW_WBITS = -zlib.MAX_WBITS  # bare deflate blocks (RFC 1951)


def is_supported(encoding: str) -> bool:
    """Whether ``encoding`` is a grpc-encoding token we implement (tokens are lower-case)."""
    return encoding in _SUPPORTED


def compress(encoding: str, data: bytes) -> bytes:
    """Compress one message body; ``identity`` returns ``data`` itself."""
    if encoding == IDENTITY:
        return data
    if encoding == GZIP:
        return zlib.compress(data, wbits=_GZIP_WBITS)
    if encoding == DEFLATE:
        return zlib.compress(data, wbits=_ZLIB_WBITS)
    raise ValueError(f"unsupported grpc-encoding {encoding!r}")


def decompress(encoding: str, data: bytes, max_size: int) -> bytes:
    """Decompress one message body to at most ``max_size`` bytes.

    Raises DecompressionError, DecompressedTooLargeError, or ValueError for an encoding that
    :func:`is_supported` rejects.
    """
    if encoding == GZIP:
        return _gunzip(data, max_size)
    if encoding == DEFLATE:
        wbits = _ZLIB_WBITS if _has_zlib_header(data) else _RAW_WBITS
        out, unused = _inflate(DEFLATE, data, wbits, max_size)
        if unused:
            raise DecompressionError(DEFLATE, f"{len(unused)} bytes of garbage after the stream")
        return out
    if encoding == IDENTITY:
        if len(data) > max_size:
            raise DecompressedTooLargeError(max_size)
        return data
    raise ValueError(f"unsupported grpc-encoding {encoding!r}")


def _has_zlib_header(data: bytes) -> bool:
    # RFC 1950 section 2.2: CM (low nibble of CMF) is 8 for deflate, CINFO (high nibble) is at
    # most 7, and CMF*256 + FLG is a multiple of 31. Raw deflate rarely passes all three.
    return (
        len(data) >= 2
        and data[0] & 0x0F == 8
        and data[0] >> 4 <= 7
        and (data[0] << 8 | data[1]) % 31 == 0
    )


def _gunzip(data: bytes, max_size: int) -> bytes:
    # RFC 1952 section 2.2: a gzip stream is a series of members, decoded as their concatenation
    # (grpc-go's gzip.Reader accepts several too). Anything after a member that is not another
    # valid member fails its header check and is reported as corrupt.
    parts: list[bytes] = []
    budget = max_size
    while True:
        out, data = _inflate(GZIP, data, _GZIP_WBITS, budget)
        parts.append(out)
        budget -= len(out)
        if not data:
            return b"".join(parts)


def _inflate(encoding: str, data: bytes, wbits: int, max_size: int) -> tuple[bytes, bytes]:
    """Inflate one stream; return its output and the bytes that follow the stream."""
    inflater = zlib.decompressobj(wbits)
    try:
        # max_length caps the output buffer: one byte past the limit proves it is exceeded
        # without inflating the rest.
        out = inflater.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise DecompressionError(encoding, f"inflate failed: {exc}") from exc
    if len(out) > max_size:
        raise DecompressedTooLargeError(max_size)
    if not inflater.eof:
        raise DecompressionError(encoding, "truncated")
    return out, inflater.unused_data
