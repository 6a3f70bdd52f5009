"""Streams and the connection coming and going: stream limits, resets, GOAWAY both ways.

RFC 9113 §5.1.2 (REFUSED_STREAM over the limit), §6.4 (RST_STREAM), §6.8 (GOAWAY, the two-step
graceful shutdown with a PING round trip).
"""

from __future__ import annotations

import pytest
from grpclib.const import Status
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame, PingFrame, SettingsFrame

from greeter.core.config import CoreConfig
from greeter.core.events import (
    ConnectionTerminated,
    Event,
    MessageReceived,
    RequestEnded,
    RequestReceived,
    RequestRejected,
    ShutdownAcknowledged,
    StreamReset,
)
from greeter.core.server_connection import MAX_STREAM_ID, SHUTDOWN_PING
from greeter.wire.errors import StreamGoneError
from tests.support.core_pair import Pair, RawPair
from tests.support.h2peer import header_frames, request_headers


def answer(pair: Pair, sid: int, reply: bytes = b"done") -> None:
    pair.core.send_message(sid, reply)
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    assert pair.response(sid).messages == [reply]
    assert pair.response(sid).trailers == [("grpc-status", "0")]


# -- max concurrent streams -----------------------------------------------------------------------


def test_stream_over_the_limit_is_refused_and_the_connection_lives() -> None:
    # An eager client opens three streams before reading the core's SETTINGS (max 2).
    pair = Pair(CoreConfig(max_concurrent_streams=2), connect=False)
    a, b, c = (pair.open(pump=False) for _ in range(3))
    pair.pump()
    settings = pair.connection_frames(SettingsFrame)[0]
    assert settings[1][SettingCodes.MAX_CONCURRENT_STREAMS] == 2
    assert settings[1][SettingCodes.MAX_HEADER_LIST_SIZE] == 16 * 1024
    events = pair.take()
    assert [type(e) for e in events] == [RequestReceived, RequestReceived, RequestRejected]
    assert events[2] == RequestRejected(c, "refused: over SETTINGS_MAX_CONCURRENT_STREAMS")
    assert pair.wire(c) == [("RST_STREAM", ErrorCodes.REFUSED_STREAM)]
    assert pair.response(c).reset == ErrorCodes.REFUSED_STREAM
    assert not pair.core.closed
    assert pair.connection_frames(GoAwayFrame) == []
    # Both admitted RPCs work; once one finishes, a new stream is admitted.
    pair.send_message(a, b"a", end=True)
    answer(pair, a)
    d = pair.open(end=True)
    assert [type(e) for e in pair.take()[-2:]] == [RequestReceived, RequestEnded]
    pair.end(b)
    answer(pair, b)
    answer(pair, d)


def test_refused_and_rejected_streams_do_not_count() -> None:
    pair = Pair(CoreConfig(max_concurrent_streams=1))
    for _ in range(5):
        sid = pair.open(content_type="text/plain", end=True)  # 415: never an RPC
        assert dict(pair.response(sid).headers or [])[":status"] == "415"
    sid = pair.open(end=True)
    assert isinstance(pair.take()[-2], RequestReceived)
    answer(pair, sid)


# -- resets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [ErrorCodes.CANCEL, ErrorCodes.INTERNAL_ERROR])
def test_peer_reset_is_reported_and_later_commands_fail(code: ErrorCodes) -> None:
    pair = Pair()
    sid = pair.open()
    pair.send_message(sid, b"half")
    pair.core.send_headers(sid)
    pair.pump()
    pair.take()
    pair.reset(sid, code)
    assert pair.take() == [StreamReset(sid, code)]
    assert pair.core.open_streams == 0
    with pytest.raises(StreamGoneError):
        pair.core.send_message(sid, b"too late")
    with pytest.raises(StreamGoneError):
        pair.core.send_trailers(sid, Status.OK)
    assert not pair.core.is_send_blocked(sid)
    pair.core.acknowledge(sid, 9)  # no-op, no error
    pair.core.reset_stream(sid)  # no-op: nothing on the wire
    pair.pump()
    assert pair.wire(sid)[-1][0] == "HEADERS"


def test_peer_reset_while_send_is_blocked() -> None:
    pair = Pair(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 10}, auto_ack=False)
    sid = pair.open(end=True)
    pair.core.send_message(sid, bytes(1000))
    pair.pump()
    assert pair.core.is_send_blocked(sid)
    pair.take()
    sent = len(pair.wire(sid))
    pair.reset(sid)
    assert pair.take() == [StreamReset(sid, ErrorCodes.CANCEL)]
    assert not pair.core.is_send_blocked(sid)
    pair.client.increment_flow_control_window(65_535)
    assert pair.pump() == []
    assert len(pair.wire(sid)) == sent  # the abandoned bytes are never sent


def test_reset_of_one_stream_leaves_the_others() -> None:
    pair = Pair()
    a = pair.open()
    b = pair.open()
    pair.reset(a)
    pair.send_message(b, b"still here", end=True)
    assert MessageReceived(b, b"still here", 15) in pair.take()
    answer(pair, b)


# -- graceful shutdown (RFC 9113 §6.8) ------------------------------------------------------------


def test_graceful_shutdown_two_step_goaway() -> None:
    pair = Pair()
    in_flight = pair.open()
    pair.take()
    pair.core.start_shutdown()
    events = pair.pump()
    goaways = pair.connection_frames(GoAwayFrame)
    pings = pair.connection_frames(PingFrame)
    # First GOAWAY names the largest id; PING, ACKed by the client, then the final GOAWAY.
    assert goaways == [
        ("GOAWAY", MAX_STREAM_ID, ErrorCodes.NO_ERROR),
        ("GOAWAY", in_flight, ErrorCodes.NO_ERROR),
    ]
    assert pings == [("PING", SHUTDOWN_PING, False)]
    assert events == [ShutdownAcknowledged(in_flight)]
    order = [w.summary()[0] for w in pair.frames if isinstance(w.frame, GoAwayFrame | PingFrame)]
    assert order == ["GOAWAY", "PING", "GOAWAY"]
    # The in-flight RPC still completes after both GOAWAYs.
    pair.send_message(in_flight, b"late request", end=True)
    assert MessageReceived(in_flight, b"late request", 17) in pair.take()
    answer(pair, in_flight)
    # A stream opened afterwards is refused.
    late = pair.open(end=True)
    assert pair.take() == [RequestRejected(late, "refused: stream opened after GOAWAY")]
    assert pair.wire(late) == [("RST_STREAM", ErrorCodes.REFUSED_STREAM)]


def test_stream_opened_before_the_ping_ack_is_served() -> None:
    # The reason for two steps: a request already on the wire when the first GOAWAY left.
    pair = Pair()
    pair.core.start_shutdown()
    sid = pair.open(end=True, pump=False)
    events = pair.pump()
    assert [type(e) for e in events] == [RequestReceived, RequestEnded, ShutdownAcknowledged]
    assert events[-1] == ShutdownAcknowledged(sid)
    answer(pair, sid)


def test_start_shutdown_is_idempotent() -> None:
    pair = Pair()
    pair.core.start_shutdown()
    pair.core.start_shutdown()
    pair.pump()
    assert len(pair.connection_frames(GoAwayFrame)) == 2
    assert len(pair.connection_frames(PingFrame)) == 1


def test_an_unrelated_ping_ack_does_not_finish_shutdown() -> None:
    pair = Pair()
    pair.core.start_shutdown()
    pair.core.data_to_send()  # dropped: the client never sees the shutdown PING
    pair.client.ping(b"client!!")
    assert pair.pump() == []
    assert pair.connection_frames(PingFrame) == [("PING", b"client!!", True)]


def test_close_sends_a_final_goaway_and_forgets_streams() -> None:
    pair = Pair()
    sid = pair.open()
    pair.core.close(ErrorCodes.NO_ERROR, "bye")
    pair.pump()
    assert pair.connection_frames(GoAwayFrame) == [("GOAWAY", sid, ErrorCodes.NO_ERROR)]
    assert pair.core.closed
    assert pair.core.open_streams == 0
    with pytest.raises(StreamGoneError):
        pair.core.send_message(sid, b"x")


# -- peer GOAWAY ----------------------------------------------------------------------------------


def test_peer_goaway_no_error_lets_in_flight_streams_finish() -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    frame = GoAwayFrame(0, last_stream_id=0, error_code=ErrorCodes.NO_ERROR, additional_data=b"bye")
    events = pair.feed(frame.serialize())
    assert events == [ConnectionTerminated(ErrorCodes.NO_ERROR, 0, "bye", local=False)]
    assert not pair.core.closed
    pair.send_message(sid, b"after goaway", end=True)
    assert MessageReceived(sid, b"after goaway", 17) in pair.take()
    answer(pair, sid)


def test_peer_goaway_with_an_error_closes_everything() -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    frame = GoAwayFrame(0, last_stream_id=0, error_code=ErrorCodes.INTERNAL_ERROR)
    events = pair.feed(frame.serialize())
    assert events == [ConnectionTerminated(ErrorCodes.INTERNAL_ERROR, 0, "", local=False)]
    assert pair.core.closed
    assert pair.core.open_streams == 0
    with pytest.raises(StreamGoneError):
        pair.core.send_message(sid, b"x")
    assert pair.core.receive_data(b"\x00" * 9) == []


def one_read(pair: RawPair, *frames: bytes) -> list[Event]:
    return pair.send(b"".join(frames))


@pytest.mark.parametrize(
    ("headers", "answer_frames"),
    [
        (request_headers(method="GET"), ["HEADERS", "DATA"]),  # 405 with a short body
        (request_headers(te="gzip"), ["RST_STREAM"]),  # malformed: a stream error
    ],
    ids=["rejected", "malformed"],
)
def test_a_request_answered_in_the_read_that_holds_a_goaway_no_error(
    headers: list[tuple[str, str]], answer_frames: list[str]
) -> None:
    # h2 closes its state machine at the GOAWAY while parsing the read, before the core answers
    # the request that came first: the answer must still go out (found by the fuzz test).
    pair = RawPair()
    block = pair.encoder.encode(headers)
    goaway = GoAwayFrame(0, last_stream_id=1, error_code=ErrorCodes.NO_ERROR).serialize()
    events = one_read(pair, header_frames(1, block, end_stream=True), goaway)
    assert [type(e) for e in events] == [RequestRejected, ConnectionTerminated]
    assert events[-1] == ConnectionTerminated(ErrorCodes.NO_ERROR, 1, "", local=False)
    assert [summary[0] for summary in pair.wire(1)] == answer_frames
    assert not pair.core.closed


def test_a_request_in_the_read_that_holds_an_error_goaway_is_moot() -> None:
    pair = RawPair()
    block = pair.encoder.encode(request_headers(method="GET"))
    goaway = GoAwayFrame(0, last_stream_id=0, error_code=ErrorCodes.PROTOCOL_ERROR).serialize()
    events = one_read(pair, header_frames(1, block, end_stream=True), goaway)
    assert events == [ConnectionTerminated(ErrorCodes.PROTOCOL_ERROR, 0, "", local=False)]
    assert pair.core.closed
    assert pair.wire(1) == []
