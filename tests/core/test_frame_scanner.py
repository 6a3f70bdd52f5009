"""The defences' frame scanner: the same frame headers however the byte stream is cut."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from greeter.core.defences import CLIENT_PREFACE, FrameScanner

FRAME = st.tuples(
    st.integers(0, 40),  # length
    st.integers(0, 255),  # type
    st.integers(0, 255),  # flags
    st.integers(0, 2**32 - 1),  # stream id, reserved bit included
)


def wire(frames: list[tuple[int, int, int, int]]) -> bytes:
    return b"".join(
        length.to_bytes(3, "big") + bytes([kind, flags]) + sid.to_bytes(4, "big") + b"x" * length
        for length, kind, flags, sid in frames
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(FRAME, max_size=8), st.lists(st.integers(0, 400), max_size=12))
def test_any_cut_of_the_stream_yields_the_same_headers(
    frames: list[tuple[int, int, int, int]], cuts: list[int]
) -> None:
    data = CLIENT_PREFACE + wire(frames)
    scanner = FrameScanner(max_frame_size=1 << 14)
    seen, start = [], 0
    for cut in [*sorted(c for c in cuts if c < len(data)), len(data)]:
        seen += [(h.length, h.type, h.flags, h.stream_id) for h in scanner.feed(data[start:cut])]
        start = max(start, cut)
    assert seen == frames
