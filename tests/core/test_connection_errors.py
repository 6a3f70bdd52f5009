"""Bad input at the core level, each answered with exact frames.

Request-level rejections (HTTP 405/415, Trailers-Only statuses, RST_STREAM(PROTOCOL_ERROR)) end
one stream and leave the connection serving; connection-level garbage (HTTP/1.1, a bad preface)
ends the connection with GOAWAY(PROTOCOL_ERROR) (RFC 9113 §3.4, §5.4.1).
"""

from __future__ import annotations

import pytest
from grpclib.const import Status
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, GoAwayFrame, SettingsFrame, WindowUpdateFrame

from greeter.core.config import CoreConfig
from greeter.core.events import (
    ConnectionTerminated,
    DefenceTriggered,
    MessageReceived,
    RequestReceived,
    RequestRejected,
    RpcAborted,
)
from greeter.core.server_connection import ServerConnection
from greeter.wire.errors import StreamGoneError
from greeter.wire.framing import encode_message
from tests.support.core_pair import RESPONSE_HEADERS, Pair, RawPair
from tests.support.h2peer import PREFACE, FrameReader, request_headers


def trailers_only(status: Status, message: str) -> tuple[object, ...]:
    fields = [*RESPONSE_HEADERS, ("grpc-status", str(status.value)), ("grpc-message", message)]
    return ("HEADERS", fields, True)


def assert_connection_still_serves(pair: Pair) -> None:
    sid = pair.open(end=False)
    pair.send_message(sid, b"ping", end=True)
    events = pair.take()
    assert isinstance(events[0], RequestReceived)
    assert events[1] == MessageReceived(sid, b"ping", 9)
    pair.core.send_message(sid, b"pong")
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    assert pair.response(sid).messages == [b"pong"]
    assert pair.response(sid).trailers == [("grpc-status", "0")]


# -- HTTP-level refusals: 415 and 405 with grpc-status and a short body --------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/json", "application/grpc+json"]
)
@pytest.mark.parametrize("end", [True, False])
def test_content_type_not_grpc_is_415(content_type: str, end: bool) -> None:
    pair = Pair()
    sid = pair.open(content_type=content_type, end=end)
    message = f"invalid gRPC request content-type {content_type!r}"
    assert pair.take() == [RequestRejected(sid, message)]
    tail = [] if end else [("RST_STREAM", ErrorCodes.NO_ERROR)]
    assert pair.wire(sid) == [
        (
            "HEADERS",
            [
                (":status", "415"),
                ("content-type", "text/plain; charset=utf-8"),
                ("grpc-status", "13"),
                ("grpc-message", message),
            ],
            False,
        ),
        ("DATA", message.encode() + b"\n", True),
        *tail,
    ]
    assert pair.core.open_streams == 0
    assert_connection_still_serves(pair)


def test_missing_content_type_is_415() -> None:
    pair = Pair()
    sid = pair.open(content_type=None, end=True)
    assert pair.response(sid).trailer(":status") == "415"


def test_request_body_arriving_with_a_415_does_not_break_the_connection() -> None:
    pair = Pair()
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, request_headers(content_type="text/html"))
    pair.client.send_data(sid, encode_message(b"body"), end_stream=True)
    pair.pump()
    assert [type(e) for e in pair.take()] == [RequestRejected]
    assert_connection_still_serves(pair)


def test_method_not_post_is_405() -> None:
    pair = Pair()
    sid = pair.open(method="GET", end=True)
    message = "gRPC requires method POST"
    assert pair.take() == [RequestRejected(sid, message)]
    assert pair.wire(sid) == [
        (
            "HEADERS",
            [
                (":status", "405"),
                ("content-type", "text/plain; charset=utf-8"),
                ("grpc-status", "12"),
                ("grpc-message", message),
            ],
            False,
        ),
        ("DATA", message.encode() + b"\n", True),
    ]
    assert_connection_still_serves(pair)


@pytest.mark.parametrize("window", [0, 1, 25])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_refusal_body_never_exceeds_the_peer_s_window(window: int, method: str) -> None:
    """A peer whose streams start with a tiny window gets the status line and grpc-status with
    END_STREAM and no body (RFC 9113 §6.9.1: nothing beyond the window), not a connection error;
    other streams go on."""
    pair = Pair(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: window})
    content_type = "application/grpc" if method == "GET" else "text/html"
    sid = pair.open(method=method, content_type=content_type, end=True)
    [event] = pair.take()
    assert isinstance(event, RequestRejected)
    [(kind, fields, ended)] = pair.wire(sid)
    assert (kind, ended) == ("HEADERS", True)
    assert dict(fields)[":status"] in ("405", "415")
    assert pair.core.open_streams == 0
    pair.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 65_535})
    pair.pump()
    assert_connection_still_serves(pair)


def test_head_gets_a_405_without_a_body() -> None:
    """RFC 9110 §9.3.2: a response to HEAD carries no content."""
    pair = Pair()
    sid = pair.open(method="HEAD", end=True)
    assert pair.take() == [RequestRejected(sid, "gRPC requires method POST")]
    [(kind, fields, ended)] = pair.wire(sid)
    assert (kind, dict(fields)[":status"], ended) == ("HEADERS", "405", True)
    assert_connection_still_serves(pair)


# -- te -------------------------------------------------------------------------------------------


def test_te_other_than_trailers_is_a_stream_protocol_error() -> None:
    pair = Pair(validate=False)  # h2's client refuses to send te: gzip itself
    sid = pair.open(te="gzip")
    [event] = pair.take()
    assert isinstance(event, RequestRejected)
    assert event.reason.startswith("malformed request")
    assert pair.wire(sid) == [("RST_STREAM", ErrorCodes.PROTOCOL_ERROR)]
    assert pair.response(sid).reset == ErrorCodes.PROTOCOL_ERROR
    assert_connection_still_serves(pair)


def test_te_missing_is_accepted() -> None:
    # Decision (greeter.core.headers.parse_request): like grpc-go and C-core, serve it.
    pair = Pair()
    sid = pair.open(te=None)
    assert [type(e) for e in pair.take()] == [RequestReceived]
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    assert pair.response(sid).trailer("grpc-status") == "0"


# -- grpc-timeout ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["123456789S", "1", "S", "1s", "-1S", "1.5S", "abc", "1 S", "\u0661S", "1SS"]
)
@pytest.mark.parametrize("end", [True, False])
def test_malformed_grpc_timeout_is_trailers_only_internal(value: str, end: bool) -> None:
    pair = Pair(validate=False)  # keep the value byte-exact (no whitespace normalisation)
    sid = pair.open(timeout=value, end=end)
    [event] = pair.take()
    assert isinstance(event, RequestRejected)
    assert event.reason.startswith("malformed grpc-timeout: ")
    wire = pair.wire(sid)
    assert wire[0][0] == "HEADERS"
    assert wire[0][2] is True
    assert wire[0][1][:4] == [*RESPONSE_HEADERS, ("grpc-status", "13")]
    assert wire[1:] == ([] if end else [("RST_STREAM", ErrorCodes.NO_ERROR)])
    assert_connection_still_serves(pair)


def test_eight_digit_grpc_timeout_is_accepted() -> None:
    pair = Pair()
    sid = pair.open(timeout="99999999S")
    assert pair.take() == [
        RequestReceived(
            sid, "/greet.Greeter/SayHello", (), 99_999_999.0, "localhost", None, "identity"
        )
    ]


# -- encodings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["br", "snappy", "GZIP", "zstd"])
def test_unknown_grpc_encoding_is_unimplemented_with_accept_encoding(encoding: str) -> None:
    pair = Pair()
    sid = pair.open(encoding=encoding, end=True)
    message = f"grpc-encoding {encoding!r} is not supported"
    assert pair.take() == [RequestRejected(sid, message)]
    assert pair.wire(sid) == [trailers_only(Status.UNIMPLEMENTED, message)]
    # grpc-accept-encoding names what the client may use instead (compression.md).
    assert pair.response(sid).trailer("grpc-accept-encoding") == "identity,deflate,gzip"


def test_malformed_binary_metadata_is_internal() -> None:
    pair = Pair()
    sid = pair.open(metadata=[("x-id-bin", "not base64!")], end=True)
    assert pair.take() == [RequestRejected(sid, "malformed x-id-bin value")]
    assert pair.wire(sid) == [trailers_only(Status.INTERNAL, "malformed x-id-bin value")]


# -- message size ---------------------------------------------------------------------------------


def test_length_prefix_above_the_limit_is_decided_from_the_prefix() -> None:
    limit = 4 * 1024 * 1024
    pair = Pair()
    sid = pair.open()
    pair.take()
    # Only the 5-byte prefix and one body byte, no END_STREAM: the core cannot wait for more.
    pair.send(sid, b"\x00" + (limit + 1).to_bytes(4, "big") + b"x")
    message = f"received message larger than max ({limit + 1} vs. {limit})"
    assert pair.take() == [RpcAborted(sid, Status.RESOURCE_EXHAUSTED, message)]
    assert pair.wire(sid) == [
        trailers_only(Status.RESOURCE_EXHAUSTED, message),
        ("RST_STREAM", ErrorCodes.NO_ERROR),
    ]
    assert pair.core.open_streams == 0
    assert_connection_still_serves(pair)


def test_prefix_alone_above_the_limit_is_enough() -> None:
    pair = Pair(CoreConfig(max_receive_message_size=100))
    sid = pair.open()
    pair.take()
    pair.send(sid, b"\x00\xff\xff\xff\xff")
    [event] = pair.take()
    assert event == RpcAborted(
        sid, Status.RESOURCE_EXHAUSTED, "received message larger than max (4294967295 vs. 100)"
    )


def test_message_exactly_at_the_limit_is_accepted() -> None:
    pair = Pair(CoreConfig(max_receive_message_size=100))
    sid = pair.open()
    pair.take()
    pair.send_message(sid, bytes(100))
    assert pair.take() == [MessageReceived(sid, bytes(100), 105)]
    pair.send_message(sid, bytes(101))
    [event] = pair.take()
    assert isinstance(event, RpcAborted)
    assert event.status == Status.RESOURCE_EXHAUSTED


def test_data_still_in_flight_after_our_reset_is_ignored_and_its_window_returned() -> None:
    """RFC 9113 §5.1: frames that arrive on a stream after we reset it are ignored, not each
    answered with RST_STREAM(STREAM_CLOSED); their bytes still return connection credit."""
    pair = RawPair(CoreConfig(max_receive_message_size=1000))
    pair.headers(1, request_headers())
    message = encode_message(bytes(60_000))
    chunks = [message[i : i + 16_384] for i in range(0, len(message), 16_384)]
    for chunk in chunks:
        pair.data(1, chunk)
    resets = [w for w in pair.wire(1) if w[0] == "RST_STREAM"]
    assert len(resets) == 1  # the abort, nothing per late frame
    credit = sum(w[1] for w in pair.wire(0) if w[0] == "WINDOW_UPDATE")
    assert credit >= len(message) - 16_384  # the late frames' bytes came back to the connection
    events = pair.headers(3, request_headers())
    assert isinstance(events[0], RequestReceived)


def test_a_peer_that_keeps_sending_on_a_reset_stream_spends_the_control_frame_budget() -> None:
    """Ignoring late frames must not open a hole: each one costs the peer like a control frame
    (they carry no request progress), so an endless stream of them ends in GOAWAY."""
    budget = 50
    pair = RawPair(CoreConfig(max_receive_message_size=10, control_frame_budget=budget))
    pair.headers(1, request_headers())
    pair.data(1, encode_message(bytes(100)))
    events = []
    for _ in range(budget + 5):
        events += pair.data(1, b"x" * 10)
    assert any(isinstance(e, DefenceTriggered) for e in events)
    [goaway] = [w for w in pair.frames if w.summary()[0] == "GOAWAY"]
    assert goaway.frame.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert len([w for w in pair.wire(1) if w[0] == "RST_STREAM"]) == 1


# -- malformed header blocks, built by hand (h2's client would refuse them) ----------------------


GOOD = request_headers()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([h for h in GOOD if h[0] != ":path"], id="missing-path"),
        pytest.param([h for h in GOOD if h[0] != ":method"], id="missing-method"),
        pytest.param([*GOOD, (b":path", b"/x")], id="pseudo-after-regular"),
        pytest.param([(b":path", b"/x"), *GOOD], id="repeated-pseudo"),
        pytest.param([(b":status", b"200"), *GOOD], id="response-pseudo"),
        pytest.param([*GOOD, (b"X-Upper", b"v")], id="upper-case-name"),
        pytest.param([*GOOD, (b"connection", b"keep-alive")], id="connection-header"),
        pytest.param([*GOOD, (b"x-bad", b"a\nb")], id="newline-in-value"),
        pytest.param([*GOOD, (b"te", b"trailers, deflate")], id="te-list"),
    ],
)
def test_malformed_request_is_rst_protocol_error_and_connection_lives(
    headers: list[tuple[bytes, bytes]],
) -> None:
    client = RawPair()
    events = client.headers(1, headers, end=True)
    assert len(events) == 1
    assert isinstance(events[0], RequestRejected)
    assert client.wire(1) == [("RST_STREAM", ErrorCodes.PROTOCOL_ERROR)]
    assert not client.core.closed
    events = client.headers(3, GOOD)
    events += client.data(3, encode_message(b"ok"), end=True)
    assert [type(e).__name__ for e in events] == [
        "RequestReceived",
        "MessageReceived",
        "RequestEnded",
    ]


def test_raw_data_frame_with_padding_reaches_the_application() -> None:
    client = RawPair()
    client.headers(1, GOOD)
    frame = DataFrame(1, encode_message(b"padded"), pad_length=40)
    frame.flags.add("PADDED")
    frame.flags.add("END_STREAM")
    events = client.send(frame.serialize())
    assert [type(e).__name__ for e in events] == ["MessageReceived", "RequestEnded"]
    assert isinstance(events[0], MessageReceived)
    assert events[0].payload == b"padded"
    assert events[0].flow_bytes == 11  # the 41 padding bytes were returned at once


# -- connection-level garbage ---------------------------------------------------------------------


def goaway_after(data: bytes) -> tuple[list[object], list[object]]:
    core = ServerConnection()
    core.initiate()
    reader = FrameReader()
    frames = reader.feed(core.data_to_send())
    events: list[object] = list(core.receive_data(data))
    frames += reader.feed(core.data_to_send())
    return events, [f.frame for f in frames]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", id="http1"),
        pytest.param(
            b"POST /greet.Greeter/SayHello HTTP/1.1\r\nContent-Type: application/grpc\r\n\r\n",
            id="http1-post",
        ),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", id="bad-preface"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="tls-client-hello"),
        pytest.param(PREFACE + b"\x00\x00\x04\x00\x00\x00\x00\x00\x00abcd", id="data-on-stream-0"),
        pytest.param(PREFACE + b"\x00\x00\x03\x04\x00\x00\x00\x00\x00abc", id="bad-settings-len"),
    ],
)
def test_garbage_ends_the_connection_with_goaway_protocol_error(data: bytes) -> None:
    events, frames = goaway_after(data)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ConnectionTerminated)
    assert event.local is True
    assert event.last_stream_id == 0
    assert [type(f) for f in frames[:2]] == [SettingsFrame, WindowUpdateFrame]
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert len(goaways) == 1, frames
    assert goaways[0].error_code in (ErrorCodes.PROTOCOL_ERROR, ErrorCodes.FRAME_SIZE_ERROR)
    assert goaways[0].error_code == event.error_code
    assert goaways[0].last_stream_id == 0


def test_http1_request_is_protocol_error() -> None:
    events, frames = goaway_after(b"GET / HTTP/1.1\r\n\r\n")
    assert events[0] == ConnectionTerminated(
        ErrorCodes.PROTOCOL_ERROR, 0, "Invalid HTTP/2 preamble.", local=True
    )
    assert isinstance(frames[-1], GoAwayFrame)
    assert frames[-1].error_code == ErrorCodes.PROTOCOL_ERROR


def test_after_a_connection_error_the_core_is_inert() -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    events = pair.feed(b"\x00\x00\x04\x00\x00\x00\x00\x00\x00abcd")  # DATA on stream 0
    assert [type(e) for e in events] == [ConnectionTerminated]
    assert pair.core.closed
    assert pair.connection_frames(GoAwayFrame)[-1] == (
        "GOAWAY",
        sid,
        ErrorCodes.PROTOCOL_ERROR,
    )
    assert pair.core.receive_data(b"anything") == []
    assert pair.core.data_to_send() == b""
    with pytest.raises(StreamGoneError):
        pair.core.send_message(sid, b"x")


def test_header_list_above_the_advertised_limit_ends_the_connection() -> None:
    # HPACK state cannot be trusted after a block the decoder refused half-way, so h2 makes it
    # a connection error (ENHANCE_YOUR_CALM); the limit was advertised in SETTINGS.
    pair = Pair(CoreConfig(max_header_list_size=8192))
    pair.open(metadata=[("x-big", "a" * 9000)])
    defence, event = pair.take()
    assert defence == DefenceTriggered("header_list", defence.detail, ErrorCodes.ENHANCE_YOUR_CALM)
    assert isinstance(event, ConnectionTerminated)
    assert event.local is True
    assert event.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert pair.connection_frames(GoAwayFrame) == [("GOAWAY", 0, ErrorCodes.ENHANCE_YOUR_CALM)]


def test_header_list_just_below_the_limit_is_served() -> None:
    pair = Pair(CoreConfig(max_header_list_size=8192))
    sid = pair.open(metadata=[("x-big", "a" * 7000)])
    [event] = pair.take()
    assert isinstance(event, RequestReceived)
    assert event.metadata == (("x-big", "a" * 7000),)
    assert sid == event.stream_id
