"""The client role of the core, bytes in and out: against the server role and a hand-driven server.

Every call ends with exactly one CallEnded whose status is what PROTOCOL-HTTP2.md and
doc/http-grpc-status-mapping.md name; GOAWAY lets calls up to its last stream id finish and marks
the others as never processed.
"""

from __future__ import annotations

import gzip

import h2.events
import pytest
from grpclib.const import Status
from h2.errors import ErrorCodes
from h2.stream import StreamClosedBy

from greeter.core.config import CoreConfig
from greeter.core.events import (
    CallEnded,
    ConnectionTerminated,
    MessageReceived,
    RequestEnded,
    RequestReceived,
    ResponseStarted,
)
from greeter.wire.errors import UnavailableError
from greeter.wire.framing import encode_message
from greeter.wire.status_details import encode_status
from tests.support.core_link import Link, RawServer

PATH = "/greet.Greeter/SayHello"
GRPC_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]


def ended(events: list[object]) -> list[CallEnded]:
    return [e for e in events if isinstance(e, CallEnded)]


def test_a_unary_call_with_metadata_both_ways() -> None:
    link = Link()
    sid = link.client.start_call(
        PATH, metadata=[("x-id", "7"), ("x-raw-bin", b"\x00\x01")], timeout=5
    )
    link.client.send_message(sid, b"ping")
    link.client.end_request(sid)
    link.pump()
    request, message, end = link.take_server()
    assert isinstance(request, RequestReceived)
    assert request.metadata == (("x-id", "7"), ("x-raw-bin", b"\x00\x01"))
    assert request.timeout is not None and 4.9 < request.timeout <= 5
    assert message == MessageReceived(sid, b"ping", 9)
    assert end == RequestEnded(sid)
    link.server.send_headers(sid, [("x-initial", "a")])
    link.server.send_message(sid, b"pong")
    link.server.send_trailers(sid, Status.OK, "", [("x-trailing", "b")])
    link.pump()
    started, reply, done = link.take_client()
    assert started == ResponseStarted(sid, (("x-initial", "a"),))
    assert reply == MessageReceived(sid, b"pong", 9)
    assert done == CallEnded(sid, Status.OK, "", (("x-trailing", "b"),))
    assert link.client.open_streams == 0


def test_trailers_only_error_with_details() -> None:
    link = Link()
    sid = link.client.start_call(PATH)
    link.client.end_request(sid)
    link.pump()
    details = encode_status(Status.NOT_FOUND.value, "nobody", [])
    link.server.send_trailers(sid, Status.NOT_FOUND, "nobody ✓ here", details=details)
    link.pump()
    assert link.take_client() == [CallEnded(sid, Status.NOT_FOUND, "nobody ✓ here", (), details)]


def test_request_and_response_compression() -> None:
    link = Link()
    sid = link.client.start_call(PATH, compression_encoding="gzip")
    link.client.send_message(sid, b"x" * 1000, compress=True)
    link.client.end_request(sid)
    link.pump()
    request, message, _ = link.take_server()
    assert isinstance(request, RequestReceived) and request.encoding == "gzip"
    assert isinstance(message, MessageReceived)
    assert message.compressed and message.payload == b"x" * 1000
    link.server.send_message(sid, b"y" * 1000, compress=True)
    link.server.send_trailers(sid, Status.OK)
    link.pump()
    reply = [e for e in link.take_client() if isinstance(e, MessageReceived)]
    assert reply[0].compressed and reply[0].payload == b"y" * 1000


def test_graceful_shutdown_finishes_calls_in_flight_and_refuses_new_ones() -> None:
    link = Link()
    first = link.client.start_call(PATH)
    link.pump()
    link.server.start_shutdown()  # GOAWAY(2^31-1) + PING
    link.pump()  # the PING ACK makes the server send the final GOAWAY(last = first)
    assert [e for e in link.take_client() if isinstance(e, ConnectionTerminated)] == [
        ConnectionTerminated(0, 2**31 - 1, "", local=False),
        ConnectionTerminated(0, first, "", local=False),
    ]
    with pytest.raises(UnavailableError):
        link.client.start_call(PATH)
    link.client.send_message(first, b"late but fine")
    link.client.end_request(first)
    link.pump()
    link.server.send_trailers(first, Status.OK)
    link.pump()
    assert ended(link.take_client()) == [CallEnded(first, Status.OK, "")]


def test_a_call_above_the_goaway_last_stream_id_is_unprocessed() -> None:
    server = RawServer()
    one = server.client.start_call(PATH)
    three = server.client.start_call(PATH)
    server.pump()
    server.h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=one)
    events = server.pump()
    assert events[0] == CallEnded(
        three,
        Status.UNAVAILABLE,
        f"the server did not process the call (GOAWAY, last stream {one})",
        unprocessed=True,
    )
    assert server.client.open_streams == 1  # `one` may still finish


def test_refused_stream_is_unprocessed() -> None:
    server = RawServer()
    sid = server.client.start_call(PATH)
    server.pump()
    server.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
    (end,) = server.pump()
    assert end == CallEnded(
        sid, Status.UNAVAILABLE, "stream reset by the server: REFUSED_STREAM", unprocessed=True
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([(":status", "404"), ("content-type", "text/html")], Status.UNIMPLEMENTED),
        ([(":status", "503")], Status.UNAVAILABLE),
        ([(":status", "500"), ("content-type", "application/grpc")], Status.UNKNOWN),
        ([(":status", "200"), ("content-type", "text/html")], Status.UNKNOWN),
        ([(":status", "200")], Status.UNKNOWN),
    ],
    ids=["404", "503", "500", "html", "no-content-type"],
)
def test_a_response_that_is_not_grpc_ends_the_call(
    headers: list[tuple[str, str]], status: Status
) -> None:
    server = RawServer()
    sid = server.client.start_call(PATH)
    server.pump()
    server.respond(sid, headers)
    (end,) = ended(server.pump())
    assert end.status == status
    assert server.client.open_streams == 0


@pytest.mark.parametrize(
    ("trailers", "status", "message"),
    [
        ([("grpc-message", "no status")], Status.UNKNOWN, "no status"),
        ([("x-other", "1")], Status.UNKNOWN, "missing grpc-status"),
        ([("grpc-status", "99")], Status.UNKNOWN, "invalid grpc-status '99'"),
        ([("grpc-status", "x")], Status.UNKNOWN, "invalid grpc-status 'x'"),
    ],
)
def test_trailers_without_a_valid_grpc_status_are_unknown(
    trailers: list[tuple[str, str]], status: Status, message: str
) -> None:
    server = RawServer()
    sid = server.client.start_call(PATH)
    server.pump()
    server.respond(sid, GRPC_HEADERS)
    server.respond(sid, trailers, end=True)
    (end,) = ended(server.pump())
    assert (end.status, end.message) == (status, message)


def test_an_oversized_message_is_resource_exhausted_and_the_stream_reset() -> None:
    server = RawServer(CoreConfig(max_receive_message_size=100))
    sid = server.client.start_call(PATH)
    server.pump()
    server.respond(sid, GRPC_HEADERS)
    server.h2.send_data(sid, encode_message(b"z" * 101))
    (end,) = ended(server.pump())
    assert end.status == Status.RESOURCE_EXHAUSTED
    assert "101" in end.message
    assert any(
        isinstance(e, h2.events.StreamReset) and e.stream_id == sid for e in server.h2_events
    )


def test_a_compressed_message_in_an_encoding_not_offered_is_internal() -> None:
    server = RawServer()
    sid = server.client.start_call(PATH)
    server.pump()
    server.respond(sid, [*GRPC_HEADERS, ("grpc-encoding", "snappy")])
    (end,) = ended(server.pump())
    assert (end.status, end.message) == (
        Status.INTERNAL,
        "response grpc-encoding 'snappy' was not offered",
    )


def test_a_compressed_flag_without_grpc_encoding_is_internal() -> None:
    server = RawServer()
    sid = server.client.start_call(PATH)
    server.pump()
    server.respond(sid, GRPC_HEADERS)
    server.h2.send_data(sid, encode_message(gzip.compress(b"q"), compressed=True))
    (end,) = ended(server.pump())
    assert (end.status, end.message) == (
        Status.INTERNAL,
        "compressed message without grpc-encoding",
    )


def test_a_reset_mid_message_and_an_end_without_trailers() -> None:
    server = RawServer()
    one = server.client.start_call(PATH)
    three = server.client.start_call(PATH)
    server.pump()
    for sid in (one, three):
        server.respond(sid, GRPC_HEADERS)
        server.h2.send_data(sid, encode_message(b"abcdef")[:7])
    server.h2.reset_stream(one, ErrorCodes.INTERNAL_ERROR)
    server.h2.end_stream(three)
    events = ended(server.pump())
    assert events == [
        CallEnded(one, Status.INTERNAL, "stream reset by the server: INTERNAL_ERROR"),
        CallEnded(three, Status.INTERNAL, "response ended inside a message"),
    ]


def test_a_cut_connection_ends_every_call_unavailable() -> None:
    link = Link()
    one = link.client.start_call(PATH)
    three = link.client.start_call(PATH)
    link.pump()
    assert link.client.connection_lost("reset by peer") == [
        CallEnded(one, Status.UNAVAILABLE, "connection lost: reset by peer"),
        CallEnded(three, Status.UNAVAILABLE, "connection lost: reset by peer"),
    ]
    with pytest.raises(UnavailableError):
        link.client.start_call(PATH)


def test_the_server_stream_limit_is_respected() -> None:
    link = Link(server=CoreConfig(max_concurrent_streams=1))
    link.client.start_call(PATH)
    link.pump()
    assert not link.client.accepts_calls
    with pytest.raises(UnavailableError):
        link.client.start_call(PATH)


def test_a_response_that_ends_before_the_request_resets_the_stream() -> None:
    # Without the reset the stream stays half-open in h2 for ever and counts against the
    # server's SETTINGS_MAX_CONCURRENT_STREAMS (grpc-go resets it too).
    server = RawServer()
    sid = server.client.start_call(PATH)
    server.client.send_message(sid, b"more to come")
    server.pump()
    server.respond(sid, [*GRPC_HEADERS, ("grpc-status", "0")], end=True)
    assert ended(server.pump()) == [CallEnded(sid, Status.OK, "")]
    resets = [e for e in server.h2_events if isinstance(e, h2.events.StreamReset)]
    assert [(e.stream_id, e.error_code) for e in resets] == [(sid, ErrorCodes.CANCEL)]
    assert server.client._h2.open_outbound_streams == 0


def test_ended_calls_leave_no_h2_stream_behind_on_either_side() -> None:
    """Each ended RPC's stream is handed back to h2 at once, completed or cancelled: h2 holds
    only open streams (it would otherwise keep closed ones until its next count)."""
    link = Link()
    for number in range(50):
        sid = link.client.start_call(PATH)
        link.client.send_message(sid, b"ping")
        if number % 5 == 0:
            link.pump()
            link.client.reset_stream(sid)
        else:
            link.client.end_request(sid)
            link.pump()
            link.server.send_headers(sid)
            link.server.send_message(sid, b"pong")
            link.server.send_trailers(sid, Status.OK)
        link.pump()
    assert link.client.open_streams == link.server.open_streams == 0
    assert len(link.client._h2.streams) == len(link.server._h2.streams) == 0
    # h2 still knows how each one closed (it answers frames that arrive late by that).
    closed_by = link.client._h2._closed_streams
    assert len(closed_by) == 50
    assert closed_by[1] == StreamClosedBy.SEND_RST_STREAM
    assert closed_by[3] == StreamClosedBy.RECV_END_STREAM
