"""greeter.wire.framing: Length-Prefixed-Message encoding and reassembly (PROTOCOL-HTTP2.md)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greeter.wire.errors import FramingError, MessageTooLargeError
from greeter.wire.framing import (
    PREFIX_SIZE,
    FramedMessage,
    MessageDecoder,
    encode_message,
)

LIMIT = 4 * 1024 * 1024
MESSAGES = [
    FramedMessage(False, b"hello"),
    FramedMessage(False, b""),
    FramedMessage(True, bytes(range(256)) * 8),  # larger than most chunks below
    FramedMessage(False, b"\x00"),
    FramedMessage(True, b""),
    FramedMessage(False, b"tail"),
]


def encode_all(messages: list[FramedMessage]) -> bytes:
    return b"".join(encode_message(m.payload, compressed=m.compressed) for m in messages)


def boundaries(messages: list[FramedMessage]) -> list[int]:
    """Stream offsets at which each message ends."""
    ends, offset = [], 0
    for message in messages:
        offset += PREFIX_SIZE + len(message.payload)
        ends.append(offset)
    return ends


def test_encode_message_prefix() -> None:
    assert encode_message(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert encode_message(b"abc", compressed=True) == b"\x01\x00\x00\x00\x03abc"
    assert encode_message(b"") == b"\x00\x00\x00\x00\x00"
    assert encode_message(b"x" * 0x10203) == b"\x00\x00\x01\x02\x03" + b"x" * 0x10203


def test_drip_feed_in_chunks_of_every_size() -> None:
    stream = encode_all(MESSAGES)
    ends = boundaries(MESSAGES)
    for size in range(1, len(stream) + 1):
        decoder = MessageDecoder(LIMIT)
        received: list[FramedMessage] = []
        for start in range(0, len(stream), size):
            received += decoder.feed(stream[start : start + size])
            fed = min(start + size, len(stream))
            last_end = max((end for end in ends if end <= fed), default=0)
            assert decoder.buffered == fed - last_end, (size, fed)
        assert received == MESSAGES, size
        assert decoder.buffered == 0


def test_empty_chunks_change_nothing() -> None:
    decoder = MessageDecoder(LIMIT)
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\x00\x00") == []
    assert decoder.feed(b"") == []
    assert decoder.buffered == 2
    assert decoder.feed(b"\x00\x00\x01") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"z") == [FramedMessage(False, b"z")]


def test_large_message_across_data_frames() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    stream = encode_message(payload) + encode_message(b"next")
    for size in (16_384, 16_383, 65_535, 1 << 20):
        decoder = MessageDecoder(LIMIT)
        received = []
        for start in range(0, len(stream), size):
            received += decoder.feed(stream[start : start + size])
        assert received == [FramedMessage(False, payload), FramedMessage(False, b"next")]


def test_body_arriving_as_its_own_chunk_is_not_copied() -> None:
    decoder = MessageDecoder(LIMIT)
    body = b"b" * 1000
    assert decoder.feed(encode_message(body)[:PREFIX_SIZE]) == []
    (message,) = decoder.feed(body)
    assert message.payload is body


def test_message_at_the_limit_is_accepted() -> None:
    decoder = MessageDecoder(10)
    assert decoder.feed(encode_message(b"0123456789")) == [FramedMessage(False, b"0123456789")]


def test_too_large_is_decided_from_the_prefix_alone() -> None:
    decoder = MessageDecoder(LIMIT)
    prefix = b"\x00\xff\xff\xff\xff"  # 4 GiB - 1 announced; not one body byte is sent
    for index in range(PREFIX_SIZE - 1):
        assert decoder.feed(prefix[index : index + 1]) == []
    assert decoder.buffered == PREFIX_SIZE - 1
    with pytest.raises(MessageTooLargeError) as caught:
        decoder.feed(prefix[-1:])
    assert (caught.value.length, caught.value.limit) == (0xFFFF_FFFF, LIMIT)
    assert str(caught.value) == f"received message larger than max (4294967295 vs. {LIMIT})"


def test_too_large_in_one_chunk_after_valid_messages() -> None:
    decoder = MessageDecoder(100)
    with pytest.raises(MessageTooLargeError) as caught:
        decoder.feed(encode_message(b"ok") + b"\x01\x00\x00\x00\x65" + b"x" * 10)
    assert str(caught.value) == "received message larger than max (101 vs. 100)"


@pytest.mark.parametrize("flag", [2, 0x80, 0xFF])
def test_compressed_flag_other_than_0_or_1(flag: int) -> None:
    with pytest.raises(FramingError, match=f"Compressed-Flag {flag}"):
        MessageDecoder(LIMIT).feed(bytes([flag]) + b"\x00\x00\x00\x01x")


def test_bad_flag_found_after_reassembling_the_prefix() -> None:
    decoder = MessageDecoder(LIMIT)
    decoder.feed(encode_message(b"ok")[:3])
    decoder.feed(encode_message(b"ok")[3:] + b"\x02\x00")
    with pytest.raises(FramingError):
        decoder.feed(b"\x00\x00\x00")


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.builds(FramedMessage, st.booleans(), st.binary(max_size=300))),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
)
def test_any_split_reassembles(messages: list[FramedMessage], cuts: list[int]) -> None:
    stream = encode_all(messages)
    points = sorted({0, len(stream), *(cut for cut in cuts if cut < len(stream))})
    decoder = MessageDecoder(LIMIT)
    received = []
    for start, stop in itertools.pairwise(points):
        received += decoder.feed(stream[start:stop])
    assert received == messages
    assert decoder.buffered == 0
