"""Request bytes at every boundary: drip-fed input, messages across DATA frames, compression.

HTTP/2 may split the client's byte stream anywhere (TCP) and gRPC messages may be split across
DATA frames anywhere (PROTOCOL-HTTP2.md: "a message may be split across DATA frames"); the core's
events must not depend on either.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import zlib

import pytest
from grpclib.const import Status
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hypothesis import given, settings
from hypothesis import strategies as st

from greeter.core.config import CoreConfig
from greeter.core.events import Event, MessageReceived, RequestEnded, RequestReceived, RpcAborted
from greeter.core.server_connection import ServerConnection
from greeter.wire.framing import encode_message
from tests.support.core_pair import RESPONSE_HEADERS, Pair
from tests.support.h2peer import BIDI_HELLO

MESSAGES = [b"first", b"", bytes(range(200)), b"x" * 70, b"last"]


@functools.cache
def unary_transcript() -> tuple[bytes, list[Event]]:
    """The client's bytes for one unary RPC (with metadata), and the core's events for them."""
    pair = Pair()
    sid = pair.open(timeout="5S", metadata=[("x-a", "b"), ("x-t-bin", "AAEC")])
    pair.send_message(sid, b"\n\x05world", end=True)
    return bytes(pair.sent), pair.take()


@functools.cache
def streaming_transcript() -> tuple[bytes, list[Event]]:
    """A bidi request whose messages straddle DATA frames of 7 bytes, plus a padded frame."""
    pair = Pair()
    sid = pair.open(BIDI_HELLO)
    stream = b"".join(encode_message(m) for m in MESSAGES)
    pair.send(sid, stream[:-9], frame_size=7)
    pair.send(sid, stream[-9:], pad_length=3)
    pair.end(sid)
    return bytes(pair.sent), pair.take()


def replay(data: bytes, cuts: list[int]) -> tuple[list[Event], bytes]:
    """Feed `data` to a fresh core split at `cuts`; return its events and everything it sent."""
    core = ServerConnection()
    core.initiate()
    events: list[Event] = []
    out = bytearray(core.data_to_send())
    bounds = [0, *sorted(cuts), len(data)]
    for start, stop in itertools.pairwise(bounds):
        events += core.receive_data(data[start:stop])
        out += core.data_to_send()
    return events, bytes(out)


@pytest.fixture(scope="module")
def transcripts() -> dict[str, tuple[bytes, list[Event]]]:
    return {"unary": unary_transcript(), "streaming": streaming_transcript()}


def test_transcripts_have_the_expected_events(
    transcripts: dict[str, tuple[bytes, list[Event]]],
) -> None:
    _, unary = transcripts["unary"]
    assert [type(e) for e in unary] == [RequestReceived, MessageReceived, RequestEnded]
    assert isinstance(unary[0], RequestReceived)
    assert unary[0].metadata == (("x-a", "b"), ("x-t-bin", b"\x00\x01\x02"))
    _, streaming = transcripts["streaming"]
    assert [e.payload for e in streaming if isinstance(e, MessageReceived)] == MESSAGES
    assert isinstance(streaming[-1], RequestEnded)


@pytest.mark.parametrize("kind", ["unary", "streaming"])
def test_drip_feed_in_chunks_of_every_size(
    kind: str, transcripts: dict[str, tuple[bytes, list[Event]]]
) -> None:
    data, expected = transcripts[kind]
    reference_events, reference_out = replay(data, [])
    assert reference_events == expected
    for size in range(1, 65):
        events, out = replay(data, list(range(size, len(data), size)))
        assert events == expected, f"chunk size {size}"
        assert out == reference_out, f"chunk size {size}"


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_drip_feed_random_splits(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["unary", "streaming"]))
    transcript, expected = unary_transcript() if kind == "unary" else streaming_transcript()
    cuts = data.draw(st.lists(st.integers(0, len(transcript)), max_size=30))
    events, _ = replay(transcript, cuts)
    assert events == expected


def test_messages_split_across_data_frames_at_every_boundary() -> None:
    stream = encode_message(b"abc") + encode_message(b"") + encode_message(b"0123456789")
    for cut in range(1, len(stream)):
        pair = Pair()
        sid = pair.open()
        pair.take()
        pair.send(sid, stream[:cut])
        pair.send(sid, stream[cut:], end=True)
        events = pair.take()
        assert [e.payload for e in events if isinstance(e, MessageReceived)] == [
            b"abc",
            b"",
            b"0123456789",
        ], f"cut {cut}"
        assert events[-1] == RequestEnded(sid)
        # Bytes of messages the first frame completes are due on acknowledge; the tail of it
        # (an incomplete message) was returned at once; the second frame's bytes are all due.
        completed = max((b for b in (8, 13) if b <= cut), default=0)
        due = completed + len(stream) - cut
        assert sum(e.flow_bytes for e in events if isinstance(e, MessageReceived)) == due


def test_flow_bytes_count_only_what_the_completing_frame_held() -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    stream = encode_message(b"0123456789")  # 15 bytes
    pair.send(sid, stream[:6])
    assert pair.take() == []
    pair.send(sid, stream[6:])
    # The first 6 bytes were returned to the window at once; 9 remain due on consumption.
    assert pair.take() == [MessageReceived(sid, b"0123456789", 9)]


def test_several_messages_in_one_data_frame() -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    pair.send(sid, b"".join(encode_message(m) for m in MESSAGES), end=True)
    assert pair.take() == [
        *(MessageReceived(sid, m, 5 + len(m)) for m in MESSAGES),
        RequestEnded(sid),
    ]


def test_one_message_per_byte_sized_frame() -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    pair.send(sid, encode_message(b"hello") * 2, frame_size=1, end=True)
    assert pair.take() == [
        MessageReceived(sid, b"hello", 1),
        MessageReceived(sid, b"hello", 1),
        RequestEnded(sid),
    ]


def test_zero_length_data_without_end_stream_is_not_end_of_stream() -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    for _ in range(3):
        pair.client.send_data(sid, b"")
    pair.pump()
    assert pair.take() == []
    assert pair.core.open_streams == 1
    pair.send_message(sid, b"after")
    assert pair.take() == [MessageReceived(sid, b"after", 10)]
    pair.client.send_data(sid, b"", end_stream=True)  # an empty frame CAN end the stream
    assert pair.pump() == [RequestEnded(sid)]


def test_zero_length_data_inside_a_message_changes_nothing() -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    stream = encode_message(b"split")
    pair.send(sid, stream[:3])
    pair.client.send_data(sid, b"")
    pair.send(sid, stream[3:], end=True)
    assert pair.take() == [MessageReceived(sid, b"split", 7), RequestEnded(sid)]


def test_end_stream_on_headers_is_a_request_without_messages() -> None:
    pair = Pair()
    sid = pair.open(end=True)
    events = pair.take()
    assert [type(e) for e in events] == [RequestReceived, RequestEnded]
    assert events[1] == RequestEnded(sid)


@pytest.mark.parametrize("headers_sent", [False, True])
def test_end_stream_inside_a_message_is_internal(headers_sent: bool) -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    if headers_sent:
        pair.core.send_headers(sid)
    pair.send(sid, encode_message(b"0123456789")[:8], end=True)
    message = "request ended inside a message"
    assert pair.take() == [RpcAborted(sid, Status.INTERNAL, message)]
    status = [("grpc-status", "13"), ("grpc-message", "request ended inside a message")]
    if headers_sent:
        assert pair.wire(sid) == [
            ("HEADERS", RESPONSE_HEADERS, False),
            ("HEADERS", status, True),
        ]
    else:
        assert pair.wire(sid) == [("HEADERS", [*RESPONSE_HEADERS, *status], True)]
    assert pair.core.open_streams == 0


def test_end_stream_inside_a_prefix_is_internal() -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    pair.send(sid, b"\x00\x00", end=True)
    assert pair.take() == [RpcAborted(sid, Status.INTERNAL, "request ended inside a message")]


def test_invalid_compressed_flag_is_internal() -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    pair.send(sid, b"\x02\x00\x00\x00\x01x")
    [event] = pair.take()
    assert isinstance(event, RpcAborted)
    assert event.status == Status.INTERNAL
    assert pair.response(sid).trailer("grpc-status") == "13"
    assert pair.wire(sid)[-1] == ("RST_STREAM", ErrorCodes.NO_ERROR)


def test_data_behind_a_bad_frame_in_the_same_read_is_dropped() -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    pair.client.send_data(sid, b"\x07\x00\x00\x00\x00")
    pair.client.send_data(sid, encode_message(b"more"), end_stream=True)
    pair.pump()
    assert [type(e) for e in pair.take()] == [RpcAborted]
    assert pair.core.open_streams == 0
    assert pair.response(sid).trailer("grpc-status") == "13"


# -- compression (gRPC doc/compression.md) ---------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
    ],
)
def test_compressed_messages_are_decompressed(encoding: str, compress: object) -> None:
    pair = Pair()
    sid = pair.open(encoding=encoding)
    assert pair.take()[0] == RequestReceived(
        sid, "/greet.Greeter/SayHello", (), None, "localhost", None, encoding
    )
    body = compress(b"hello " * 100)  # type: ignore[operator]
    pair.send(sid, encode_message(body, compressed=True))
    pair.send_message(sid, b"plain too")  # flag 0 with a grpc-encoding is allowed
    pair.end(sid)
    assert pair.take() == [
        MessageReceived(sid, b"hello " * 100, 5 + len(body), compressed=True),
        MessageReceived(sid, b"plain too", 14),
        RequestEnded(sid),
    ]


@pytest.mark.parametrize("encoding", [None, "identity"])
def test_compressed_flag_without_grpc_encoding_is_internal(encoding: str | None) -> None:
    pair = Pair()
    sid = pair.open(encoding=encoding)
    pair.take()
    pair.send(sid, encode_message(gzip.compress(b"x"), compressed=True), end=True)
    message = "compressed message without grpc-encoding"
    assert pair.take() == [RpcAborted(sid, Status.INTERNAL, message)]
    assert pair.wire(sid) == [
        ("HEADERS", [*RESPONSE_HEADERS, ("grpc-status", "13"), ("grpc-message", message)], True)
    ]


def test_corrupt_gzip_body_is_internal() -> None:
    pair = Pair()
    sid = pair.open(encoding="gzip")
    pair.take()
    body = bytearray(gzip.compress(b"hello world" * 10))
    body[12] ^= 0xFF
    pair.send(sid, encode_message(bytes(body), compressed=True), end=True)
    [event] = pair.take()
    assert isinstance(event, RpcAborted)
    assert event.status == Status.INTERNAL
    assert event.message.startswith("corrupt gzip message")
    assert pair.response(sid).trailer("grpc-status") == "13"


def test_gzip_bomb_above_the_limit_is_resource_exhausted() -> None:
    limit = 64 * 1024
    pair = Pair(CoreConfig(max_receive_message_size=limit))
    sid = pair.open(encoding="gzip")
    pair.take()
    bomb = gzip.compress(bytes(limit + 1))
    assert len(bomb) < 1024
    pair.send(sid, encode_message(bomb, compressed=True), end=True)
    message = f"decompressed message larger than max ({limit})"
    assert pair.take() == [RpcAborted(sid, Status.RESOURCE_EXHAUSTED, message)]
    assert pair.response(sid).trailer("grpc-status") == "8"


def test_gzip_exactly_at_the_limit_is_accepted() -> None:
    limit = 64 * 1024
    pair = Pair(CoreConfig(max_receive_message_size=limit))
    sid = pair.open(encoding="gzip")
    pair.take()
    pair.send(sid, encode_message(gzip.compress(bytes(limit)), compressed=True), end=True)
    events = pair.take()
    assert isinstance(events[0], MessageReceived)
    assert events[0].payload == bytes(limit)


def test_client_trailers_end_the_request() -> None:
    # gRPC clients never send trailers, but HTTP/2 allows them; they end the request.
    pair = Pair()
    sid = pair.open()
    pair.send_message(sid, b"m")
    pair.take()
    pair.client.send_headers(sid, [(b"x-client-trailer", b"1")], end_stream=True)
    assert pair.pump() == [RequestEnded(sid)]


def test_abort_while_response_data_waits_sends_the_data_then_the_status() -> None:
    pair = Pair(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 10}, auto_ack=False)
    sid = pair.open()
    pair.take()
    pair.core.send_message(sid, b"0123456789abcdef")  # 21 bytes, 10 may go
    pair.send(sid, b"\x09\x00\x00\x00\x00")  # invalid Compressed-Flag
    [event] = pair.take()
    assert isinstance(event, RpcAborted)
    assert pair.response(sid).trailers is None  # the status waits behind the message
    pair.client.increment_flow_control_window(100, sid)
    pair.pump()
    response = pair.response(sid)
    assert response.messages == [b"0123456789abcdef"]
    assert response.trailer("grpc-status") == "13"
    assert pair.core.open_streams == 0
