"""The core's RPC shapes, bytes in and frames out, with a real h2 client as the peer.

The core knows nothing of handlers: each test plays the application, reacting to the core's
events with commands, and asserts the exact frames the core put on the wire (gRPC
doc/PROTOCOL-HTTP2.md "Responses": Response-Headers, Length-Prefixed-Messages, Trailers; or
Trailers-Only).
"""

from __future__ import annotations

import base64

import pytest
from grpclib.const import Status
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from greeter.core.config import CoreConfig
from greeter.core.events import (
    MessageReceived,
    RequestEnded,
    RequestReceived,
)
from greeter.wire.errors import StreamGoneError
from greeter.wire.framing import encode_message
from tests.support.core_pair import RESPONSE_HEADERS, Pair
from tests.support.h2peer import BIDI_HELLO, LOTS_OF_GREETINGS, LOTS_OF_REPLIES, SAY_HELLO

OK_TRAILERS = ("HEADERS", [("grpc-status", "0")], True)


def received(stream_id: int, path: str = SAY_HELLO, **fields: object) -> RequestReceived:
    values: dict[str, object] = {
        "metadata": (),
        "timeout": None,
        "authority": "localhost",
        "user_agent": None,
        "encoding": "identity",
    }
    values.update(fields)
    return RequestReceived(stream_id, path, **values)  # type: ignore[arg-type]


def message(stream_id: int, payload: bytes) -> MessageReceived:
    return MessageReceived(stream_id, payload, 5 + len(payload))


def test_initiate_advertises_limits_and_opens_the_connection_window() -> None:
    pair = Pair(CoreConfig(max_concurrent_streams=2, max_header_list_size=8192))
    settings, window = pair.frames[:2]
    assert settings.summary() == (
        "SETTINGS",
        {
            SettingCodes.HEADER_TABLE_SIZE: 4096,
            SettingCodes.ENABLE_PUSH: 0,
            SettingCodes.INITIAL_WINDOW_SIZE: 1024 * 1024,
            SettingCodes.MAX_FRAME_SIZE: 16384,
            SettingCodes.ENABLE_CONNECT_PROTOCOL: 0,
            SettingCodes.MAX_CONCURRENT_STREAMS: 2,
            SettingCodes.MAX_HEADER_LIST_SIZE: 8192,
        },
        False,
    )
    # RFC 9113 §6.9.2: the connection window starts at 65,535; the core opens it to 2 MiB.
    assert window.summary() == ("WINDOW_UPDATE", 2 * 1024 * 1024 - 65_535)
    assert pair.client.outbound_flow_control_window == 2 * 1024 * 1024


def test_unary() -> None:
    pair = Pair()
    sid = pair.open()
    pair.send_message(sid, b"\n\x05world", end=True)
    assert pair.take() == [
        received(sid),
        message(sid, b"\n\x05world"),
        RequestEnded(sid),
    ]
    pair.core.acknowledge(sid, 12)
    pair.core.send_message(sid, b"\n\x0bHello world")
    pair.core.send_trailers(sid, Status.OK)
    assert pair.pump() == []
    assert pair.wire(sid) == [
        ("HEADERS", RESPONSE_HEADERS, False),
        ("DATA", encode_message(b"\n\x0bHello world"), False),
        OK_TRAILERS,
    ]
    response = pair.response(sid)
    assert response.messages == [b"\n\x0bHello world"]
    assert response.ended
    assert response.reset is None
    assert pair.core.open_streams == 0


def test_unary_request_in_one_frame_with_headers_end_stream_elsewhere() -> None:
    # HEADERS, then DATA carrying message and END_STREAM in one frame, then nothing else.
    pair = Pair()
    sid = pair.open(end=False)
    pair.client.send_data(sid, encode_message(b"a") + encode_message(b""), end_stream=True)
    assert pair.pump() == [message(sid, b"a"), message(sid, b""), RequestEnded(sid)]


def test_server_streaming_many_messages() -> None:
    pair = Pair()
    sid = pair.open(LOTS_OF_REPLIES)
    pair.send_message(sid, b"\x10\xc8\x01", end=True)
    assert pair.take() == [
        received(sid, LOTS_OF_REPLIES),
        message(sid, b"\x10\xc8\x01"),
        RequestEnded(sid),
    ]
    replies = [f"Hello #{i}".encode() for i in range(1, 201)]
    for reply in replies:
        pair.core.send_message(sid, reply)
        assert not pair.core.is_send_blocked(sid)
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    wire = pair.wire(sid)
    assert wire[0] == ("HEADERS", RESPONSE_HEADERS, False)
    # Messages queued in one turn share DATA frames (up to the peer's max frame size).
    frames = wire[1:-1]
    assert all(kind == "DATA" and not end for kind, _, end in frames)
    assert b"".join(data for _, data, _ in frames) == b"".join(encode_message(r) for r in replies)
    assert len(frames) == 1
    assert wire[-1] == OK_TRAILERS
    assert pair.response(sid).messages == replies


def test_client_streaming() -> None:
    pair = Pair()
    sid = pair.open(LOTS_OF_GREETINGS)
    names = [b"a", b"bb", b"", b"dddd"]
    for name in names:
        pair.send_message(sid, name)
    pair.end(sid)
    assert pair.take() == [
        received(sid, LOTS_OF_GREETINGS),
        *(message(sid, n) for n in names),
        RequestEnded(sid),
    ]
    pair.core.send_message(sid, b"Hello a, bb, , dddd")
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    assert pair.wire(sid) == [
        ("HEADERS", RESPONSE_HEADERS, False),
        ("DATA", encode_message(b"Hello a, bb, , dddd"), False),
        OK_TRAILERS,
    ]


def test_bidi_interleaves_requests_and_replies() -> None:
    pair = Pair()
    sid = pair.open(BIDI_HELLO)
    assert pair.take() == [received(sid, BIDI_HELLO)]
    for i, name in enumerate([b"one", b"two", b"three"]):
        pair.send_message(sid, name)
        assert pair.take() == [message(sid, name)]
        # The reply reaches the client before it sends the next request.
        pair.core.send_message(sid, b"Hello " + name)
        pair.pump()
        assert len(pair.response(sid).messages) == i + 1
        assert pair.response(sid).messages[-1] == b"Hello " + name
    pair.end(sid)
    assert pair.take() == [RequestEnded(sid)]
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    assert pair.response(sid).trailers == [("grpc-status", "0")]
    assert pair.response(sid).messages == [b"Hello one", b"Hello two", b"Hello three"]


def test_zero_messages_response_still_has_headers_then_trailers() -> None:
    # An explicit send_headers followed by trailers is a normal (not Trailers-Only) response.
    pair = Pair()
    sid = pair.open(LOTS_OF_REPLIES, end=True)
    pair.core.send_headers(sid)
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    assert pair.wire(sid) == [("HEADERS", RESPONSE_HEADERS, False), OK_TRAILERS]


@pytest.mark.parametrize("request_ended", [True, False])
def test_trailers_only(request_ended: bool) -> None:
    pair = Pair()
    sid = pair.open(end=request_ended)
    pair.core.send_trailers(sid, Status.NOT_FOUND, "no such name")
    pair.pump()
    trailers_only = (
        "HEADERS",
        [*RESPONSE_HEADERS, ("grpc-status", "5"), ("grpc-message", "no such name")],
        True,
    )
    # RFC 9113 §8.1: a complete response to a request still open is followed by
    # RST_STREAM(NO_ERROR), so the client stops sending a request nobody reads.
    tail = [] if request_ended else [("RST_STREAM", ErrorCodes.NO_ERROR)]
    assert pair.wire(sid) == [trailers_only, *tail]
    assert pair.response(sid).trailers is None
    assert pair.response(sid).ended
    assert pair.core.open_streams == 0


def test_grpc_message_is_percent_encoded_in_trailers() -> None:
    pair = Pair()
    sid = pair.open(end=True)
    pair.core.send_headers(sid)
    pair.core.send_trailers(sid, Status.INVALID_ARGUMENT, "héllo\n100%")
    pair.pump()
    assert pair.response(sid).trailers == [
        ("grpc-status", "3"),
        ("grpc-message", "h%C3%A9llo%0A100%25"),
    ]


def test_grpc_message_edge_spaces_are_encoded() -> None:
    # RFC 9113 §8.2.1 forbids leading/trailing whitespace in a field value.
    pair = Pair()
    sid = pair.open(end=True)
    pair.core.send_trailers(sid, Status.UNKNOWN, " padded ")
    pair.pump()
    assert pair.response(sid).trailer("grpc-message") == "%20padded%20"


def test_response_metadata_both_blocks_and_status_details() -> None:
    pair = Pair()
    sid = pair.open(end=True)
    pair.core.send_headers(sid, [("x-initial", "yes"), ("x-token-bin", b"\xff\xfe")])
    pair.core.send_message(sid, b"r")
    pair.core.send_trailers(
        sid,
        Status.NOT_FOUND,
        "gone",
        metadata=[("x-final", "done"), ("x-raw-bin", b"\x00")],
        details=b"\x08\x05",
    )
    pair.pump()
    assert pair.wire(sid) == [
        ("HEADERS", [*RESPONSE_HEADERS, ("x-initial", "yes"), ("x-token-bin", "//4")], False),
        ("DATA", encode_message(b"r"), False),
        (
            "HEADERS",
            [
                ("grpc-status", "5"),
                ("grpc-message", "gone"),
                ("grpc-status-details-bin", "CAU"),
                ("x-final", "done"),
                ("x-raw-bin", "AA"),
            ],
            True,
        ),
    ]


def test_request_metadata_reaches_the_application_in_wire_order() -> None:
    pair = Pair()
    token = b"\x00\x01\xfe\xff"
    sid = pair.open(
        timeout="250m",
        metadata=[
            ("x-first", "1"),
            ("user-agent", "grpc-python/1.70"),
            ("x-unpadded-bin", base64.b64encode(token).decode().rstrip("=")),
            ("x-padded-bin", base64.b64encode(token).decode()),
            ("grpc-previous-rpc-attempts", "1"),  # reserved: not custom metadata
            ("x-last", "z"),
        ],
    )
    assert pair.take() == [
        received(
            sid,
            timeout=0.25,
            user_agent="grpc-python/1.70",
            metadata=(
                ("x-first", "1"),
                ("user-agent", "grpc-python/1.70"),
                ("x-unpadded-bin", token),
                ("x-padded-bin", token),
                ("x-last", "z"),
            ),
        )
    ]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1S", 1.0), ("250m", 0.25), ("2H", 7200.0), ("99999999n", 0.099999999), ("0S", 0.0)],
)
def test_grpc_timeout_is_parsed(value: str, seconds: float) -> None:
    pair = Pair()
    sid = pair.open(timeout=value)
    assert pair.take() == [received(sid, timeout=seconds)]


@pytest.mark.parametrize("content_type", ["application/grpc+proto", "application/grpc; x=1"])
def test_grpc_content_type_variants_are_accepted(content_type: str) -> None:
    pair = Pair()
    sid = pair.open(content_type=content_type)
    assert pair.take() == [received(sid)]


@pytest.mark.parametrize(
    "bad",
    [
        [("grpc-status", "0")],
        [("content-type", "text/plain")],
        [(":status", "200")],
        [("te", "trailers")],
        [("connection", "close")],
        [("X-Upper", "v")],
        [("x-space", " v")],
        [("x-ascii", b"bytes-for-ascii-key")],
        [("x-data-bin", "str-for-binary-key")],
    ],
)
def test_send_headers_refuses_reserved_or_invalid_metadata(bad: list[tuple[str, object]]) -> None:
    pair = Pair()
    sid = pair.open(end=True)
    with pytest.raises((ValueError, TypeError)):
        pair.core.send_headers(sid, bad)  # type: ignore[arg-type]
    # Nothing was sent, and the stream is still usable.
    pair.pump()
    assert pair.wire(sid) == []
    pair.core.send_headers(sid, [("x-ok", "1")])
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    assert pair.response(sid).headers == [*RESPONSE_HEADERS, ("x-ok", "1")]
    assert pair.response(sid).trailers == [("grpc-status", "0")]


@pytest.mark.parametrize("headers_sent", [False, True])
def test_send_trailers_refusing_metadata_leaves_the_stream_usable(headers_sent: bool) -> None:
    pair = Pair()
    sid = pair.open(end=True)
    if headers_sent:
        pair.core.send_headers(sid)
    with pytest.raises(ValueError, match="reserved"):
        pair.core.send_trailers(sid, Status.OK, metadata=[("grpc-custom", "1")])
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    assert pair.response(sid).trailer("grpc-status") == "0"
    assert pair.response(sid).ended
    assert pair.core.open_streams == 0


def test_send_headers_twice_is_an_error() -> None:
    pair = Pair()
    sid = pair.open(end=True)
    pair.core.send_headers(sid)
    with pytest.raises(RuntimeError):
        pair.core.send_headers(sid)


def test_commands_after_trailers_raise_stream_gone() -> None:
    pair = Pair()
    sid = pair.open(end=True)
    pair.core.send_trailers(sid, Status.OK)
    with pytest.raises(StreamGoneError):
        pair.core.send_message(sid, b"late")
    with pytest.raises(StreamGoneError):
        pair.core.send_trailers(sid, Status.OK)
    with pytest.raises(StreamGoneError):
        pair.core.send_headers(sid)
    with pytest.raises(StreamGoneError):
        pair.core.send_message(99, b"never opened")
    # Harmless no-ops on a finished stream.
    pair.core.acknowledge(sid, 10)
    pair.core.reset_stream(sid)
    assert not pair.core.is_send_blocked(sid)


def test_application_reset_sends_rst_stream_cancel() -> None:
    pair = Pair()
    sid = pair.open()
    pair.core.reset_stream(sid)
    pair.pump()
    assert pair.wire(sid) == [("RST_STREAM", ErrorCodes.CANCEL)]
    assert pair.response(sid).reset == ErrorCodes.CANCEL
    assert pair.core.open_streams == 0


def test_large_response_message_is_split_into_frames_of_the_peer_max_frame_size() -> None:
    pair = Pair()
    sid = pair.open(end=True)
    payload = bytes(range(256)) * 400  # 102,400 bytes: sent without a copy (memoryview)
    pair.core.send_message(sid, payload)
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    data_frames = [w for w in pair.wire(sid) if w[0] == "DATA"]
    assert all(len(f[1]) <= 16384 for f in data_frames)
    assert b"".join(f[1] for f in data_frames) == encode_message(payload)
    assert pair.response(sid).messages == [payload]


def test_many_concurrent_rpcs_are_independent() -> None:
    pair = Pair()
    sids = [pair.open(end=False) for _ in range(10)]
    for sid in reversed(sids):
        pair.send_message(sid, str(sid).encode(), end=True)
    for sid in sids:
        pair.core.send_message(sid, b"re:" + str(sid).encode())
        pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    for sid in sids:
        assert pair.response(sid).messages == [b"re:" + str(sid).encode()]
        assert pair.response(sid).trailers == [("grpc-status", "0")]


def test_large_response_metadata_spans_continuation_frames() -> None:
    pair = Pair()
    sid = pair.open(end=True)
    metadata = [(f"x-m{i}", "v" * 200) for i in range(100)]  # ~21 KB > max frame size 16,384
    pair.core.send_headers(sid, metadata)
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    kinds = [type(w.frame).__name__ for w in pair.frames if w.stream_id == sid]
    assert kinds == ["HeadersFrame", "ContinuationFrame", "HeadersFrame"]
    assert pair.response(sid).headers == [*RESPONSE_HEADERS, *metadata]
