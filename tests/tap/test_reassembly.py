"""The tap's bounded message reassembly: any chunking gives the same messages; what it holds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greeter.tap.reassembly import Piece, Reassembler
from greeter.wire.errors import FramingError
from greeter.wire.framing import encode_message

LIMIT, KEEP = 10, 4


def expected(bodies: list[bytes]) -> list[Piece]:
    return [Piece(False, len(b), b if len(b) <= LIMIT else b[:KEEP]) for b in bodies]


@given(
    bodies=st.lists(st.binary(max_size=30), max_size=6),
    cuts=st.lists(st.integers(0, 200), max_size=8),
)
def test_any_chunking_gives_the_same_pieces(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_message(body) for body in bodies)
    reassembler = Reassembler(LIMIT, KEEP)
    pieces: list[Piece] = []
    last = 0
    for cut in [*sorted(c for c in cuts if c <= len(stream)), len(stream)]:
        pieces += reassembler.feed(stream[last:cut])
        last = cut
        assert reassembler.buffered <= 5 + max((len(b) for b in bodies), default=0)
    assert pieces == expected(bodies)
    assert reassembler.buffered == 0


def test_an_announced_giant_holds_only_the_bytes_kept() -> None:
    reassembler = Reassembler(LIMIT, KEEP)
    header = b"\x01" + (2**32 - 1).to_bytes(4, "big")  # 4 GiB announced, compressed
    assert reassembler.feed(header + b"abcdefgh") == []
    assert reassembler.buffered == 5 + 8
    assert reassembler._kept_size == KEEP  # what it holds of the 8 bytes received
    piece_count = len(reassembler.feed(b"x" * 1000))
    assert piece_count == 0


def test_an_empty_message_and_a_bad_flag() -> None:
    reassembler = Reassembler(LIMIT, KEEP)
    assert reassembler.feed(encode_message(b"")) == [Piece(False, 0, b"")]
    assert Piece(True, 5, b"ab").cut
    with pytest.raises(FramingError, match="invalid Compressed-Flag 2"):
        reassembler.feed(b"\x02\x00\x00\x00\x00")
