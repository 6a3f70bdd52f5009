"""The send queue's frame cutter (greeter.core.stream_state.take_frame), for any queue and room."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from greeter.core.stream_state import take_frame

pieces = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=40), st.binary(min_size=1, max_size=40).map(memoryview)
    ),
    min_size=1,
    max_size=30,
)


@given(pieces, st.integers(min_value=1, max_value=100))
def test_frames_carry_the_queue_in_order_filling_each_frame(
    queue: list[bytes | memoryview], room: int
) -> None:
    expected = b"".join(bytes(piece) for piece in queue)
    frames = []
    while queue:
        frame = take_frame(queue, room)
        assert 0 < len(frame) <= room
        frames.append(bytes(frame))
    assert b"".join(frames) == expected
    # Every frame but the last is full: messages share frames.
    assert all(len(frame) == room for frame in frames[:-1])


def test_a_single_whole_piece_is_handed_on_without_a_copy() -> None:
    message = b"\x00\x00\x00\x00\x03abc"
    queue: list[bytes | memoryview] = [message]
    assert take_frame(queue, 100) is message
    assert queue == []
