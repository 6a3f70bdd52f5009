"""greeter.wire.compression: grpc-encoding gzip / deflate / identity (gRPC doc/compression.md)."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib

import pytest

from greeter.wire.compression import (
    ACCEPT_ENCODING,
    IDENTITY,
    compress,
    decompress,
    is_supported,
)
from greeter.wire.errors import DecompressedTooLargeError, DecompressionError

MiB = 1024 * 1024
PAYLOADS = [b"", b"hello", bytes(range(256)) * 300, b"\x00" * 100_000]


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def test_supported_tokens() -> None:
    assert [is_supported(token) for token in ACCEPT_ENCODING.split(",")] == [True] * 3
    assert IDENTITY in ACCEPT_ENCODING.split(",")
    for token in ("GZIP", "Deflate", "snappy", "zstd", "", "gzip "):
        assert not is_supported(token)


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate"])
@pytest.mark.parametrize("payload", PAYLOADS, ids=len)
def test_round_trip(encoding: str, payload: bytes) -> None:
    assert decompress(encoding, compress(encoding, payload), MiB) == payload


def test_wire_formats() -> None:
    # gzip is RFC 1952 (magic 1f 8b); deflate is the RFC 1950 zlib format (CMF 0x78).
    assert compress("gzip", b"x")[:2] == b"\x1f\x8b"
    assert gzip.decompress(compress("gzip", b"payload")) == b"payload"
    assert compress("deflate", b"x")[0] == 0x78
    assert zlib.decompress(compress("deflate", b"payload")) == b"payload"
    assert compress("identity", b"same") == b"same"


def test_gzip_from_the_stdlib_and_several_members() -> None:
    assert decompress("gzip", gzip.compress(b"abc"), MiB) == b"abc"
    # RFC 1952 section 2.2: a gzip body may be a series of members.
    assert decompress("gzip", gzip.compress(b"abc") + gzip.compress(b"def"), MiB) == b"abcdef"


@pytest.mark.parametrize("payload", PAYLOADS, ids=len)
def test_raw_deflate_fallback(payload: bytes) -> None:
    assert decompress("deflate", raw_deflate(payload), MiB) == payload


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_zip_bomb_is_stopped_at_the_limit(encoding: str) -> None:
    bomb = compress(encoding, bytes(10 * MiB))
    assert len(bomb) < 64 * 1024
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(DecompressedTooLargeError) as caught:
            decompress(encoding, bomb, MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 0.5
    # Bounded by the limit, not the 10 MiB: CPython's zlib gathers output in blocks and joins
    # them, so the limit is briefly held twice.
    assert peak < 3 * MiB
    assert caught.value.limit == MiB


def test_limit_is_inclusive() -> None:
    body = compress("gzip", b"a" * 1000)
    assert decompress("gzip", body, 1000) == b"a" * 1000
    with pytest.raises(DecompressedTooLargeError):
        decompress("gzip", body, 999)
    with pytest.raises(DecompressedTooLargeError):
        decompress("deflate", raw_deflate(b"a" * 1000), 999)
    with pytest.raises(DecompressedTooLargeError):
        decompress("identity", b"a" * 1000, 999)


def test_limit_spans_gzip_members() -> None:
    body = gzip.compress(bytes(600_000)) + gzip.compress(bytes(600_000))
    with pytest.raises(DecompressedTooLargeError):
        decompress("gzip", body, MiB)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_corrupt_bodies(encoding: str) -> None:
    good = compress(encoding, b"hello world" * 100)
    flipped = bytearray(good)
    flipped[-3] ^= 0xFF  # inside the CRC-32 / Adler-32 trailer
    for body in (
        b"",
        b"\xff" * 40,
        good[:-1],  # truncated trailer
        good[: len(good) // 2],  # truncated deflate blocks
        good + b"\x00",  # trailing garbage
        good + b"garbage after the stream",
        bytes(flipped),
    ):
        with pytest.raises(DecompressionError):
            decompress(encoding, body, MiB)


def test_truncated_raw_deflate() -> None:
    with pytest.raises(DecompressionError, match="truncated"):
        decompress("deflate", raw_deflate(bytes(range(256)) * 10)[:-5], MiB)


def test_unknown_encoding() -> None:
    with pytest.raises(ValueError, match="snappy"):
        decompress("snappy", b"", MiB)
    with pytest.raises(ValueError, match="GZIP"):
        compress("GZIP", b"")
