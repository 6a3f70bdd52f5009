"""The tap on a real exchange: the core (ServerConnection) and a real h2 client, bytes observed.

The harness `Tapped` attaches two taps to the same bytes: one as the server sees them
(role "server", fed by the core's byte observer) and one as the client sees them (role
"client", directions flipped). A fake clock makes every timing exact.
"""

from __future__ import annotations

import dataclasses
import gzip
from typing import Any, TypeVar

from google.protobuf import duration_pb2
from grpclib.const import Status
from h2.settings import SettingCodes

from gen.greet import HelloReply, HelloRequest
from greeter.core.server_connection import ServerConnection
from greeter.tap import (
    ConnectionRecord,
    Direction,
    FrameRecord,
    MessageRecord,
    MessageTypes,
    RawField,
    Record,
    RpcRecord,
    Tap,
    TextFormatter,
)
from greeter.wire import codec
from greeter.wire.framing import encode_message
from greeter.wire.status_details import encode_status
from tests.support.core_pair import Pair
from tests.support.h2peer import BIDI_HELLO, LOTS_OF_GREETINGS, LOTS_OF_REPLIES, SAY_HELLO

TYPES = MessageTypes.from_module("gen.greet")
FLIP: dict[Direction, Direction] = {"in": "out", "out": "in"}
R = TypeVar("R")


class Clock:
    """A clock that moves only when told; exact binary fractions keep float sums exact."""

    def __init__(self) -> None:
        self.now = 1.0
        self.latency = 0.0
        """Added before every observed chunk: a wire delay, for round-trip times."""

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Tapped:
    """A `Pair` whose core feeds a server-side tap and a client-side tap."""

    def __init__(
        self, *, peers: bool = True, tap_options: dict[str, Any] | None = None, **pair_kwargs: Any
    ) -> None:
        self.clock = Clock()
        self.records: list[Record] = []
        self.client_records: list[Record] = []
        self.tap = Tap(
            self.records.append,
            connection_id=7,
            role="server",
            peer="127.0.0.1:5000" if peers else None,
            types=TYPES,
            clock=self.clock,
            wall_clock=self.clock,
            **(tap_options or {}),
        )
        self.client_tap = Tap(
            self.client_records.append,
            connection_id=7,
            role="client",
            peer="127.0.0.1:50051" if peers else None,
            types=TYPES,
            clock=self.clock,
            wall_clock=self.clock,
        )
        self.pair = Pair(connect=False, **pair_kwargs)
        # Swapped before a single byte moved: the new core sends the server preface.
        self.pair.core = ServerConnection(on_bytes=self._observe)
        self.pair.core.initiate()
        self.pair.pump()

    def _observe(self, direction: Direction, data: bytes) -> None:
        self.clock.advance(self.clock.latency)
        self.tap.observe(direction, data)
        self.client_tap.observe(FLIP[direction], data)

    @property
    def core(self) -> ServerConnection:
        return self.pair.core

    def of(self, kind: type[R], **match: Any) -> list[R]:
        """Server-side records of one class whose fields equal `match`."""
        return [
            r
            for r in self.records
            if isinstance(r, kind) and all(getattr(r, k) == v for k, v in match.items())
        ]

    def rpc(self, stream_id: int, event: str) -> RpcRecord:
        (record,) = self.of(RpcRecord, stream_id=stream_id, event=event)
        return record

    def messages(self, stream_id: int) -> list[tuple[Direction, int, object]]:
        return [
            (m.direction, m.index, m.decoded) for m in self.of(MessageRecord, stream_id=stream_id)
        ]


def request(name: str, count: int = 0) -> bytes:
    return codec.encode(HelloRequest(name=name, count=count))


def reply(text: str) -> bytes:
    return codec.encode(HelloReply(message=text))


def test_unary_rpc_messages_timings_and_status() -> None:
    t = Tapped()
    stream_id = t.pair.open(SAY_HELLO, timeout="250m", metadata=[("x-user", "bob")])
    t.clock.advance(0.25)
    t.pair.send_message(stream_id, request("world"), end=True)
    t.clock.advance(0.25)
    t.core.send_message(stream_id, reply("Hello world"))
    t.pair.pump()
    t.clock.advance(0.5)
    t.core.send_trailers(stream_id, Status.OK)
    t.pair.pump()

    start = t.rpc(stream_id, "start")
    assert (start.direction, start.timestamp, start.method) == ("in", 1.0, SAY_HELLO)
    assert (start.authority, start.timeout, start.peer) == ("localhost", 0.25, "127.0.0.1:5000")
    assert start.metadata == (("x-user", "bob"),)
    (ask, answer) = t.of(MessageRecord, stream_id=stream_id)
    assert (ask.direction, ask.index, ask.method, ask.decoded) == (
        "in",
        1,
        SAY_HELLO,
        HelloRequest(name="world"),
    )
    assert (ask.compressed, ask.length, ask.encoding, ask.data) == (
        False,
        7,
        "identity",
        b"\n\x05world",
    )
    assert (answer.direction, answer.index, answer.decoded) == ("out", 1, HelloReply("Hello world"))
    end = t.rpc(stream_id, "end")
    assert (end.direction, end.status, end.status_name, end.status_message) == (
        "out",
        0,
        "OK",
        None,
    )
    assert (end.requests, end.responses, end.reset) == (1, 1, None)
    assert end.timings == (
        ("response_headers", 0.5),
        ("first_request", 0.25),
        ("last_request", 0.25),
        ("first_response", 0.5),
        ("last_response", 0.5),
        ("trailers", 1.0),
    )
    assert t.tap.tracked_streams == 0


def test_server_streaming_rpc() -> None:
    t = Tapped()
    stream_id = t.pair.open(LOTS_OF_REPLIES)
    t.pair.send_message(stream_id, request("you", 3), end=True)
    for i in range(3):
        t.clock.advance(0.125)
        t.core.send_message(stream_id, reply(f"hi {i}"))
        t.pair.pump()
    t.core.send_trailers(stream_id, Status.OK)
    t.pair.pump()

    assert t.messages(stream_id) == [
        ("in", 1, HelloRequest(name="you", count=3)),
        ("out", 1, HelloReply("hi 0")),
        ("out", 2, HelloReply("hi 1")),
        ("out", 3, HelloReply("hi 2")),
    ]
    end = t.rpc(stream_id, "end")
    assert (end.method, end.requests, end.responses) == (LOTS_OF_REPLIES, 1, 3)
    assert dict(end.timings)["first_response"] == 0.125
    assert dict(end.timings)["last_response"] == 0.375


def test_client_streaming_rpc() -> None:
    t = Tapped()
    stream_id = t.pair.open(LOTS_OF_GREETINGS)
    for name in ("a", "b"):
        t.clock.advance(0.25)
        t.pair.send_message(stream_id, request(name))
    t.clock.advance(0.25)
    t.pair.send_message(stream_id, request("c"), end=True)
    t.core.send_message(stream_id, reply("hi a, b, c"))
    t.core.send_trailers(stream_id, Status.OK)
    t.pair.pump()

    assert t.messages(stream_id) == [
        ("in", 1, HelloRequest(name="a")),
        ("in", 2, HelloRequest(name="b")),
        ("in", 3, HelloRequest(name="c")),
        ("out", 1, HelloReply("hi a, b, c")),
    ]
    end = t.rpc(stream_id, "end")
    assert (end.requests, end.responses) == (3, 1)
    assert dict(end.timings)["first_request"] == 0.25
    assert dict(end.timings)["last_request"] == 0.75
    assert t.tap.tracked_streams == 0


def test_bidi_streaming_rpc_interleaved() -> None:
    t = Tapped()
    stream_id = t.pair.open(BIDI_HELLO)
    for name in ("x", "y"):
        t.pair.send_message(stream_id, request(name))
        t.core.send_message(stream_id, reply(f"hi {name}"))
        t.pair.pump()
    t.pair.end(stream_id)
    t.core.send_trailers(stream_id, Status.OK)
    t.pair.pump()

    assert t.messages(stream_id) == [
        ("in", 1, HelloRequest(name="x")),
        ("out", 1, HelloReply("hi x")),
        ("in", 2, HelloRequest(name="y")),
        ("out", 2, HelloReply("hi y")),
    ]
    assert (t.rpc(stream_id, "end").requests, t.rpc(stream_id, "end").responses) == (2, 2)


def test_unknown_method_shows_wire_fields() -> None:
    t = Tapped()
    stream_id = t.pair.open("/other.Service/Call")
    nested = b"\x1a\x07\n\x05inner"  # field 3: a message whose field 1 is "inner"
    t.pair.send_message(stream_id, b"\x08\x96\x01\x12\x02hi" + nested, end=True)

    (message,) = t.of(MessageRecord, stream_id=stream_id)
    assert (message.method, message.decoded, message.error) == ("/other.Service/Call", None, None)
    assert message.fields == (
        RawField(1, 0, 150),
        RawField(2, 2, b"hi"),
        RawField(3, 2, (RawField(1, 2, b"inner"),)),
    )


def test_corrupt_message_keeps_raw_bytes_and_says_why() -> None:
    t = Tapped()
    stream_id = t.pair.open(SAY_HELLO)
    t.pair.send_message(stream_id, b"\xff\xff\xff\xff", end=True)

    (message,) = t.of(MessageRecord, stream_id=stream_id)
    assert (message.decoded, message.fields, message.data) == (None, None, b"\xff\xff\xff\xff")
    assert message.error is not None
    assert "HelloRequest" in message.error


def test_known_type_rejecting_the_bytes_still_shows_fields() -> None:
    t = Tapped()
    stream_id = t.pair.open(SAY_HELLO)
    t.pair.send_message(stream_id, b"\x08\x01", end=True)  # name (a string) sent as a varint

    (message,) = t.of(MessageRecord, stream_id=stream_id)
    assert message.decoded is None
    assert message.fields == (RawField(1, 0, 1),)
    assert message.error is not None


def test_gzip_compressed_request() -> None:
    t = Tapped()
    stream_id = t.pair.open(SAY_HELLO, encoding="gzip")
    body = gzip.compress(request("zipped"))
    t.pair.send(stream_id, encode_message(body, compressed=True), end=True)

    (message,) = t.of(MessageRecord, stream_id=stream_id)
    assert (message.compressed, message.encoding, message.length) == (True, "gzip", len(body))
    assert (message.data, message.decoded) == (request("zipped"), HelloRequest(name="zipped"))


def test_the_tap_inflates_no_more_than_its_message_limit() -> None:
    """A 60 KB gzip body of 64 MiB of zeros: the tap stops at its limit (the server's receive
    limit in `greeter serve --trace`) instead of inflating it all for the trace."""
    t = Tapped(tap_options={"max_message_size": 1 << 20})
    stream_id = t.pair.open(SAY_HELLO, encoding="gzip")
    bomb = gzip.compress(bytes(64 << 20))
    t.pair.send(stream_id, encode_message(bomb, compressed=True), end=True)
    [message] = t.of(MessageRecord, stream_id=stream_id)
    assert message.error == "decompressed message larger than max (1048576)"
    assert message.data == bomb  # the compressed bytes, as received


def test_a_message_over_the_limit_is_its_size_and_first_bytes_and_decoding_goes_on() -> None:
    """Issue 11 item 5: the tap holds no more than its limit of a message a peer announces as
    larger; it keeps the first max_body bytes, skips the rest and reads the next message."""
    t = Tapped(tap_options={"max_message_size": 100, "max_body": 16})
    stream_id = t.pair.open(BIDI_HELLO)
    big = request("x" * 1000)
    t.pair.send(stream_id, encode_message(big) + encode_message(request("after")), frame_size=300)
    t.pair.end(stream_id)
    first, second = t.of(MessageRecord, stream_id=stream_id)
    assert (first.length, first.size, first.data) == (len(big), len(big), big[:16])
    assert first.error == f"message of {len(big)} bytes exceeds the limit 100"
    assert (first.decoded, first.fields) == (None, None)
    assert (second.index, second.decoded, second.error) == (2, HelloRequest(name="after"), None)
    text = TextFormatter().format(first).splitlines()[0]
    assert text.endswith(f"message #1 {len(big)} bytes (first 16 bytes kept) error: {first.error}")


def test_records_keep_at_most_max_body_bytes_of_a_body() -> None:
    """A message within the limit but above max_body keeps its size and its first bytes, and
    is not decoded (its decoded form would hold it whole); DATA frames are cut the same way."""
    t = Tapped(tap_options={"max_body": 8})
    stream_id = t.pair.open(SAY_HELLO, encoding="gzip")
    body = request("y" * 100)
    framed = encode_message(gzip.compress(body), compressed=True)
    t.pair.send(stream_id, framed, end=True)
    (message,) = t.of(MessageRecord, stream_id=stream_id)
    assert (message.size, message.data, message.decoded, message.error) == (
        len(body),
        body[:8],
        None,
        None,
    )
    (data,) = t.of(FrameRecord, stream_id=stream_id, type="DATA")
    assert (data.length, data.data) == (len(framed), framed[:8])
    t.core.send_trailers(stream_id, Status.OK)
    t.pair.pump()
    assert t.rpc(stream_id, "end").request_bytes == len(framed)


def test_corrupt_gzip_body_is_an_error_with_the_compressed_bytes() -> None:
    t = Tapped()
    stream_id = t.pair.open(SAY_HELLO, encoding="gzip")
    t.pair.send(stream_id, encode_message(b"not gzip", compressed=True), end=True)

    message = t.of(MessageRecord, stream_id=stream_id, direction="in")[0]
    assert (message.data, message.decoded) == (b"not gzip", None)
    assert message.error is not None
    assert message.error.startswith("corrupt gzip message:")


def test_bad_prefix_and_truncated_message_are_one_error_record() -> None:
    t = Tapped()
    first = t.pair.open(BIDI_HELLO)
    t.pair.send(first, b"\x02\x00\x00\x00\x01x")  # Compressed-Flag 2: the core aborts too
    second = t.pair.open(BIDI_HELLO)
    t.pair.send(second, encode_message(request("cut"))[:-2], end=True)

    (bad,) = t.of(MessageRecord, stream_id=first)
    assert bad.error is not None
    assert "Compressed-Flag 2" in bad.error
    (cut,) = t.of(MessageRecord, stream_id=second)
    assert (cut.index, cut.data, cut.error) == (
        1,
        b"",
        "stream ended inside a message (8 bytes buffered)",
    )


def test_error_status_with_percent_encoded_message_and_details() -> None:
    t = Tapped()
    stream_id = t.pair.open(SAY_HELLO)
    t.pair.send_message(stream_id, request(""), end=True)
    details = encode_status(
        3, "name is empty", [HelloReply("try a name"), duration_pb2.Duration(seconds=5)]
    )
    t.core.send_trailers(
        stream_id, Status.INVALID_ARGUMENT, "name is empty: 100% ✗", details=details
    )
    t.pair.pump()

    trailers = t.of(FrameRecord, stream_id=stream_id, direction="out")[-1]
    assert trailers.headers is not None
    assert ("grpc-message", "name is empty: 100%25 %E2%9C%97") in trailers.headers
    end = t.rpc(stream_id, "end")
    assert (end.status, end.status_name) == (3, "INVALID_ARGUMENT")
    assert end.status_message == "name is empty: 100% ✗"
    assert end.status_details == (
        ("type.googleapis.com/greet.HelloReply", HelloReply("try a name")),
        ("type.googleapis.com/google.protobuf.Duration", (RawField(1, 0, 5),)),
    )
    # Trailers-Only: no Response-Headers, no response message.
    assert end.timings == (("first_request", 0.0), ("last_request", 0.0), ("trailers", 0.0))


def test_client_cancel_ends_the_rpc_with_the_reset_code() -> None:
    t = Tapped()
    stream_id = t.pair.open(BIDI_HELLO)
    t.pair.send_message(stream_id, request("bye"))
    t.clock.advance(0.5)
    t.pair.reset(stream_id)  # RST_STREAM(CANCEL)

    end = t.rpc(stream_id, "end")
    assert (end.direction, end.reset, end.status, end.requests) == ("in", "CANCEL", None, 1)
    assert end.timestamp - t.rpc(stream_id, "start").timestamp == 0.5
    assert t.tap.tracked_streams == 0


def test_secret_headers_never_leave_the_tap() -> None:
    t = Tapped()
    stream_id = t.pair.open(
        SAY_HELLO, metadata=[("authorization", "Bearer s3cret-token"), ("x-user", "bob")]
    )
    t.pair.send_message(stream_id, request("me"), end=True)
    t.core.send_headers(stream_id, [("set-cookie", "session=s3cret-cookie")])
    t.core.send_trailers(stream_id, Status.OK)
    t.pair.pump()

    everything = repr(t.records) + repr(t.client_records)
    assert "s3cret" not in everything
    assert t.rpc(stream_id, "start").metadata == (
        ("authorization", "<redacted>"),
        ("x-user", "bob"),
    )
    response_headers = t.of(FrameRecord, stream_id=stream_id, direction="out", type="HEADERS")[0]
    assert response_headers.headers is not None
    assert ("set-cookie", "<redacted>") in response_headers.headers


def tapped_pair(tap: Tap) -> Pair:
    """A connected `Pair` whose core feeds only `tap`."""
    pair = Pair(connect=False)
    pair.core = ServerConnection(on_bytes=tap.observe)
    pair.core.initiate()
    pair.pump()
    return pair


def test_redaction_names_are_case_insensitive_and_replace_the_defaults() -> None:
    records: list[Record] = []
    tap = Tap(records.append, connection_id=1, role="server", redact=["X-Secret"])
    tapped_pair(tap).open(SAY_HELLO, metadata=[("x-secret", "hush"), ("authorization", "visible")])

    (start,) = [r for r in records if isinstance(r, RpcRecord)]
    assert start.metadata == (("x-secret", "<redacted>"), ("authorization", "visible"))
    assert "hush" not in repr(records)


def test_stream_cap_forgets_the_oldest() -> None:
    records: list[Record] = []
    tap = Tap(records.append, connection_id=1, role="server", max_streams=2)
    pair = tapped_pair(tap)
    streams = [pair.open(BIDI_HELLO) for _ in range(5)]
    assert tap.tracked_streams == 2
    pair.send_message(streams[0], request("forgotten"))
    pair.send_message(streams[-1], request("tracked"))

    assert [m.stream_id for m in records if isinstance(m, MessageRecord)] == [streams[-1]]


def test_window_records_follow_data_and_window_updates() -> None:
    t = Tapped()
    stream_id = t.pair.open(SAY_HELLO)
    t.pair.send_message(stream_id, request("world"), end=True)

    data = t.of(FrameRecord, stream_id=stream_id, type="DATA", direction="in")[0]
    after = t.records[t.records.index(data) + 2]  # the DATA frame, its message, then the window
    assert isinstance(after, ConnectionRecord)
    assert (after.event, after.stream_id) == ("window", stream_id)
    # The core advertised 1 MiB per stream and opened its connection window to 2 MiB.
    assert (after.stream_in, after.connection_in) == (1024 * 1024 - 12, 2 * 1024 * 1024 - 12)
    assert (after.stream_out, after.connection_out) == (65_535, 65_535)


def test_flow_control_stall_and_release_with_duration() -> None:
    t = Tapped(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 100}, auto_ack=False)
    stream_id = t.pair.open(SAY_HELLO)
    t.pair.send_message(stream_id, request("big"), end=True)
    t.clock.advance(0.5)
    t.core.send_message(stream_id, reply("x" * 200))
    t.pair.pump()
    assert t.core.is_send_blocked(stream_id)

    (stall,) = t.of(ConnectionRecord, event="stall")
    assert (stall.direction, stall.stream_id, stall.timestamp) == ("out", stream_id, 1.5)
    window = t.records[t.records.index(stall) - 1]
    assert isinstance(window, ConnectionRecord)
    assert (window.event, window.stream_out) == ("window", 0)
    t.clock.advance(0.75)
    t.pair.client.increment_flow_control_window(1000, stream_id)
    t.pair.pump()

    (unstall,) = t.of(ConnectionRecord, event="unstall")
    assert (unstall.direction, unstall.stream_id, unstall.duration) == ("out", stream_id, 0.75)
    assert not t.core.is_send_blocked(stream_id)
    stalls = [r for r in t.client_records if isinstance(r, ConnectionRecord) and "stall" in r.event]
    assert [(r.event, r.direction) for r in stalls] == [("stall", "in"), ("unstall", "in")]


def test_ping_round_trip_times_both_ways() -> None:
    t = Tapped()
    t.clock.latency = 0.125
    t.pair.client.ping(b"12345678")
    t.pair.pump()
    t.core.start_shutdown()  # GOAWAY, then a PING whose ACK proves the client saw it
    t.pair.pump()

    rtts = [(r.direction, r.duration) for r in t.of(ConnectionRecord, event="ping_rtt")]
    assert rtts == [("in", 0.125), ("out", 0.125)]


def test_goaway_and_close() -> None:
    t = Tapped()
    t.pair.client.close_connection(error_code=0, additional_data=b"client leaving")
    t.pair.pump()
    t.tap.close("connection lost")
    t.tap.observe("in", b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")  # ignored after close

    goaway, close = t.of(ConnectionRecord)[-2:]
    assert (goaway.event, goaway.direction, goaway.error_code) == ("goaway", "in", "NO_ERROR")
    assert (goaway.last_stream_id, goaway.reason) == (0, "client leaving")
    assert (close.event, close.direction, close.reason) == ("close", None, "connection lost")
    assert close.peer == "127.0.0.1:5000"
    assert t.records[-1] is close
    (opened,) = t.of(ConnectionRecord, event="open")
    assert (opened.direction, opened.peer) == ("in", "127.0.0.1:5000")


def mirrored(record: Record) -> Record:
    """What the client-side tap must emit for a server-side record."""
    flipped = FLIP[record.direction] if record.direction is not None else None
    if isinstance(record, ConnectionRecord):
        return dataclasses.replace(
            record,
            direction=flipped,
            connection_in=record.connection_out,
            connection_out=record.connection_in,
            stream_in=record.stream_out,
            stream_out=record.stream_in,
        )
    return dataclasses.replace(record, direction=flipped)


def test_client_role_sees_the_mirror_of_the_server_role() -> None:
    t = Tapped(peers=False, client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 100})
    stream_id = t.pair.open(SAY_HELLO, metadata=[("authorization", "x")])
    t.pair.send_message(stream_id, request("world"), end=True)
    t.clock.advance(0.25)
    t.core.send_message(stream_id, reply("y" * 150))
    t.core.send_trailers(stream_id, Status.OK)
    t.pair.pump()
    cancelled = t.pair.open(BIDI_HELLO)
    t.pair.reset(cancelled)
    t.pair.client.ping(b"pingpong")
    t.pair.pump()

    assert len(t.client_records) == len(t.records) > 30
    assert t.client_records == [mirrored(record) for record in t.records]
    kinds = {type(r).__name__ for r in t.client_records}
    assert kinds >= {"FrameRecord", "MessageRecord", "RpcRecord", "ConnectionRecord"}
    events = {r.event for r in t.client_records if isinstance(r, ConnectionRecord)}
    assert events >= {"open", "window", "stall", "unstall", "ping_rtt"}
    start = next(r for r in t.client_records if isinstance(r, RpcRecord))
    assert (start.direction, start.event) == ("out", "start")


def test_rpcs_cut_by_goaway_or_a_closed_connection_get_an_end_record() -> None:
    """Issue 11: an RPC above the final GOAWAY's last stream id, and one still open when the
    connection closes, each get an `end` record saying why (no status, no reset)."""
    t = Tapped()
    processed = t.pair.open(SAY_HELLO)
    t.pair.send(processed, encode_message(request("a")), end=True)  # no handler answers
    late = t.pair.open(SAY_HELLO, pump=False)
    t.core.close(reason="bye")  # final GOAWAY naming `processed` as the last stream
    t.pair.pump()
    ends = t.of(RpcRecord, event="end")
    [cut] = [r for r in ends if r.stream_id == late]
    assert cut.status is None and cut.reset is None and cut.aborted == "cut"
    assert cut.status_message == f"cut: above GOAWAY's last stream id {processed}: never processed"
    t.tap.close("peer closed")
    [closed] = [r for r in t.of(RpcRecord, event="end") if r.stream_id == processed]
    assert closed.status_message == "cut: connection closed: peer closed"
    assert closed.aborted == "cut"
