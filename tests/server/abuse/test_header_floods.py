"""Header blocks built to exhaust memory: the CONTINUATION flood and the HPACK bomb."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hpack import NeverIndexedHeaderTuple
from hyperframe.frame import ContinuationFrame, HeadersFrame

from greeter.tap.records import error_code_name as error_name
from tests.support.abuse import AbuseFactory, MemoryBound, NotAMemoryAttack
from tests.support.h2peer import (
    DEFAULT_MAX_FRAME_SIZE,
    ENHANCE_YOUR_CALM,
    PROTOCOL_ERROR,
    SAY_HELLO,
    request_headers,
)

CONTINUATION_FRAMES = 4_000
"""Frames per flood: with 16 KiB each, 62.5 MiB that a server buffering them would hold."""
HEADER_LIMITS = {"max_header_list_size": 16 * 1024}


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("payload", "expected_code", "defence"),
    [
        # 16 KiB fragments: greeter's cap on the bytes of one block (16 KiB + 1 KiB) fires.
        (DEFAULT_MAX_FRAME_SIZE, ENHANCE_YOUR_CALM, "header_block"),
        # Empty fragments (the 2024 variant: no bytes, all work): h2's cap of 64 frames fires.
        (0, PROTOCOL_ERROR, "header_block"),
    ],
    ids=["16KiB_frames", "empty_frames"],
)
def test_continuation_flood(
    abuse: AbuseFactory, payload: int, expected_code: int, defence: str
) -> None:
    """HEADERS without END_HEADERS, then thousands of CONTINUATION frames that never end it."""
    memory = (
        MemoryBound(
            CONTINUATION_FRAMES * payload,
            "a block's fragments kept until END_HEADERS",
            admitted=HEADER_LIMITS["max_header_list_size"] + 1024,  # the block cap
        )
        if payload
        else NotAMemoryAttack("empty fragments: work per frame, no bytes to keep")
    )
    with abuse(memory=memory, limits=HEADER_LIMITS) as run:
        attacker = run.attacker()
        stream_id = attacker.new_stream_id()
        block = attacker.encoder.encode(request_headers(SAY_HELLO))
        junk = b"\x00" * payload  # never decoded: the block never ends

        def frames() -> Iterator[bytes]:
            yield HeadersFrame(stream_id, block).serialize()  # no END_HEADERS
            while True:
                yield ContinuationFrame(stream_id, junk).serialize()

        with run.attack():
            sent = attacker.burst(frames(), max_frames=CONTINUATION_FRAMES + 1)
            goaway = attacker.wait_goaway()
            attacker.wait_eof()
        assert goaway.error_code == expected_code, attacker.summary()
        run.expect_log(attacker, rf"WARNING .*defence {defence} fired")
        run.expect_log(attacker, r"WARNING .*closing connection from")
        run.record.outcome = (
            f"GOAWAY({error_name(goaway.error_code)}, {bytes(goaway.additional_data)!r});"
            f" {sent - 1} CONTINUATION frames sent"
        )


@pytest.mark.timeout(30)
def test_hpack_bomb(abuse: AbuseFactory) -> None:
    """A 4 KB header put in the HPACK dynamic table, then referenced 10,000 times (40 MB)."""
    references = 10_000  # one byte each: the block stays within one 16 KiB frame
    value = "a" * 4_000  # name + value + 32 fits the default 4,096-byte dynamic table
    memory = MemoryBound(
        references * len(value),
        "the header list decoded",
        admitted=HEADER_LIMITS["max_header_list_size"],
    )
    with abuse(memory=memory, limits=HEADER_LIMITS) as run:
        attacker = run.attacker()
        # Stream 1: a valid request that leaves x-bomb in the table (it is the newest entry).
        _, loader = attacker.request(SAY_HELLO, extra=[("x-bomb", value)])
        # Stream 3: never-indexed literals leave the table alone, then the one-byte references.
        stream_id = attacker.new_stream_id()
        plain = [NeverIndexedHeaderTuple(k, v) for k, v in request_headers(SAY_HELLO)]
        prefix = attacker.encoder.encode(plain)
        match = attacker.encoder.header_table.search(b"x-bomb", value.encode())
        assert match is not None and match[2] is not None, "x-bomb is not in the dynamic table"
        index = match[0]
        assert index < 127, index  # one byte: 1xxxxxxx (RFC 7541 §6.1)
        bomb = prefix + bytes([0x80 | index]) * references
        frame = HeadersFrame(stream_id, bomb)
        frame.flags.add("END_HEADERS")
        with run.attack():
            attacker.send(loader)
            attacker.send(frame.serialize())
            goaway = attacker.wait_goaway()
            attacker.wait_eof()
        assert goaway.error_code == ENHANCE_YOUR_CALM, attacker.summary()
        run.expect_log(attacker, r"WARNING .*defence header_list fired")
        run.expect_log(attacker, r"WARNING .*closing connection from .*Oversized header block")
        run.record.outcome = (
            f"GOAWAY({error_name(goaway.error_code)}) for a {len(bomb)}-byte block decoding to"
            f" {references * (6 + len(value) + 32) // 1024} KiB"
        )
