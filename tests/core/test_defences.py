"""The core's defences against hostile peers (docs/security.md), bytes in, bytes out.

Every defence runs against a fake clock: a budget exactly at its limit passes, one more fires, and
a new window starts afresh. A firing defence is a `DefenceTriggered` event, then GOAWAY (parsed
with hyperframe: error code and debug data) and `ConnectionTerminated(local=True)`. Traffic of
well-behaved clients (slow cancels, grpc-style keepalive, BDP pings, window updates while a large
response streams) must not fire anything.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import hpack
import pytest
from grpclib.const import Status
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from greeter.core import headers
from greeter.core.budget import RateBudget
from greeter.core.config import CoreConfig
from greeter.core.connection import KEEPALIVE_PING
from greeter.core.events import (
    ConnectionTerminated,
    DefenceTriggered,
    Event,
    KeepaliveAcknowledged,
    RequestReceived,
    StreamReset,
)
from greeter.wire.framing import encode_message
from tests.support.core_pair import Pair, RawPair
from tests.support.h2peer import request_headers

CALM = ErrorCodes.ENHANCE_YOUR_CALM


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def defences(events: list[Event]) -> list[DefenceTriggered]:
    return [e for e in events if isinstance(e, DefenceTriggered)]


def goaways(frames: Iterator[object] | list[object]) -> list[GoAwayFrame]:
    return [f for f in frames if isinstance(f, GoAwayFrame)]


def assert_fired(events: list[Event], name: str, code: int = CALM) -> None:
    """The defence fired once, then the connection was terminated locally with the same code."""
    fired = defences(events)
    assert [(d.name, d.error_code) for d in fired] == [(name, code)]
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].local is True
    assert events[-1].error_code == code


def last_goaway(pair: Pair | RawPair) -> GoAwayFrame:
    frames = goaways([w.frame for w in pair.frames])
    assert frames, "no GOAWAY sent"
    return frames[-1]


# -- the budget itself -----------------------------------------------------------------------------


def test_budget_allows_exactly_the_limit_then_refuses() -> None:
    budget = RateBudget(5, 1.0)
    assert all(budget.spend(10.0) for _ in range(5))
    assert not budget.spend(10.0)


def test_budget_is_refilled_after_a_whole_window() -> None:
    budget = RateBudget(5, 1.0)
    assert budget.spend(10.0, 5)
    assert budget.spend(11.0, 5)  # a new window
    assert not budget.spend(11.0)


def test_budget_drains_continuously_so_window_edges_give_no_double_burst() -> None:
    budget = RateBudget(10, 1.0)
    assert budget.spend(0.0, 10)
    assert budget.spend(0.5, 5)  # half a window drained half the bucket
    assert not budget.spend(0.5)
    steady = RateBudget(10, 1.0)
    assert all(steady.spend(t / 10) for t in range(1000))  # 10 per second for 100 s


def test_budget_ignores_a_clock_that_steps_back() -> None:
    budget = RateBudget(2, 1.0)
    assert budget.spend(5.0, 2)
    assert not budget.spend(3.0)  # no refill from the past


def test_budget_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        RateBudget(10, 0.0)
    with pytest.raises(ValueError):
        RateBudget(-1, 1.0)


# -- stream churn: Rapid Reset (CVE-2023-44487) and MadeYouReset (CVE-2025-8671) -------------------


def open_and_reset(pair: Pair, count: int) -> list[Event]:
    for _ in range(count):
        sid = pair.open(pump=False)
        pair.client.reset_stream(sid, ErrorCodes.CANCEL)
    return pair.pump()


def test_rapid_reset_at_the_budget_passes_one_more_fires() -> None:
    clock = FakeClock()
    pair = Pair(clock=clock)
    events = open_and_reset(pair, 200)  # the default budget: 200 per second
    assert defences(events) == []
    assert sum(isinstance(e, StreamReset) for e in events) == 200
    events = open_and_reset(pair, 1)
    assert_fired(events, "stream_resets")
    goaway = last_goaway(pair)
    assert goaway.error_code == CALM
    assert goaway.additional_data == b"too many stream resets"
    assert goaway.last_stream_id == 401
    assert pair.core.closed and pair.core.open_streams == 0


def test_rapid_reset_budget_starts_afresh_in_a_new_window() -> None:
    clock = FakeClock()
    pair = Pair(CoreConfig(reset_budget=50, reset_window=1.0), clock=clock)
    assert defences(open_and_reset(pair, 50)) == []
    clock.now += 1.0
    assert defences(open_and_reset(pair, 50)) == []
    assert_fired(open_and_reset(pair, 1), "stream_resets")


def test_resets_in_one_read_fire_before_the_rest_is_processed() -> None:
    # One TCP read holding 300 HEADERS+RST_STREAM pairs: the 11th reset fires and nothing after
    # it reaches the application.
    clock = FakeClock()
    pair = Pair(CoreConfig(reset_budget=10), clock=clock)
    events = open_and_reset(pair, 300)
    assert sum(isinstance(e, RequestReceived) for e in events) == 11
    assert_fired(events, "stream_resets")


def test_slow_cancels_over_two_windows_do_not_fire() -> None:
    clock = FakeClock()
    pair = Pair(CoreConfig(reset_budget=60), clock=clock)
    events: list[Event] = []
    for _ in range(100):  # 100 cancels over 2 s: 50 per second, under 60
        events += open_and_reset(pair, 1)
        clock.now += 0.02
    assert defences(events) == []
    assert not pair.core.closed


def test_resets_after_a_complete_response_are_not_counted() -> None:
    clock = FakeClock()
    pair = Pair(CoreConfig(reset_budget=3), clock=clock)
    for _ in range(10):
        sid = pair.open()
        pair.core.send_trailers(sid, Status.OK)
        pair.pump()
        assert pair.response(sid).ended
        pair.feed(RstStreamFrame(sid, error_code=8).serialize())  # a late cancel
        clock.now += 0.0
    assert defences(pair.events) == []


def test_malformed_requests_count_against_the_reset_budget() -> None:
    # MadeYouReset: the peer makes the server reset streams (RST_STREAM(PROTOCOL_ERROR)).
    clock = FakeClock()
    client = RawPair(CoreConfig(reset_budget=3), clock=clock)
    bad = [*request_headers(), (b"connection", b"close")]
    events: list[Event] = []
    for sid in (1, 3, 5):
        events += client.headers(sid, bad, end=True)
    assert defences(events) == []
    assert client.wire(5) == [("RST_STREAM", ErrorCodes.PROTOCOL_ERROR)]
    assert_fired(client.headers(7, bad, end=True), "stream_resets")
    assert goaways([w.frame for w in client.frames])[-1].error_code == CALM


def test_refused_streams_count_against_the_reset_budget() -> None:
    clock = FakeClock()
    pair = Pair(CoreConfig(max_concurrent_streams=1, reset_budget=3), clock=clock)
    pair.open()  # holds the only slot
    client = pair.client
    client.local_settings.acknowledge()  # let h2's client open more than the server allows
    client.remote_settings[SettingCodes.MAX_CONCURRENT_STREAMS] = 100
    client.remote_settings.acknowledge()
    for _ in range(3):
        pair.open()
    assert defences(pair.take()) == []
    pair.open()
    assert_fired(pair.take(), "stream_resets")


def test_aborted_rpcs_count_against_the_reset_budget() -> None:
    clock = FakeClock()
    pair = Pair(CoreConfig(reset_budget=2), clock=clock)
    compressed_without_encoding = b"\x01\x00\x00\x00\x01x"
    for _ in range(2):
        sid = pair.open()
        pair.send(sid, compressed_without_encoding)
    assert defences(pair.take()) == []
    sid = pair.open()
    pair.send(sid, compressed_without_encoding)
    assert_fired(pair.take(), "stream_resets")


# -- control-frame floods --------------------------------------------------------------------------

UNKNOWN_FRAME = b"\x00\x00\x00\x20\x00\x00\x00\x00\x00"  # type 0x20, empty, stream 0
FLOODS = {
    "SETTINGS": SettingsFrame(0).serialize(),
    "PRIORITY": PriorityFrame(3, depends_on=0, stream_weight=16).serialize(),
    "WINDOW_UPDATE": WindowUpdateFrame(0, window_increment=1).serialize(),
    "GOAWAY": GoAwayFrame(0, last_stream_id=0, error_code=0).serialize(),
    "unknown type": UNKNOWN_FRAME,
    "PING ACK": PingFrame(0, b"whatever", flags=["ACK"]).serialize(),
}
# The pings themselves are judged by the keepalive policy first; turned off here.
NO_PING_POLICY = {"min_ping_interval": 0.0, "permit_ping_without_stream": True}


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_control_frame_flood_at_the_budget_passes_one_more_fires(kind: str) -> None:
    clock = FakeClock()
    # The handshake's SETTINGS frame was the first control frame of this window.
    client = RawPair(CoreConfig(control_frame_budget=10, **NO_PING_POLICY), clock=clock)
    assert defences(client.send(FLOODS[kind] * 9)) == []
    assert not client.core.closed
    events = client.send(FLOODS[kind])
    assert_fired(events, "control_frames")
    assert kind.split(maxsplit=1)[0] in events[0].detail
    goaway = goaways([w.frame for w in client.frames])[-1]
    assert (goaway.error_code, goaway.additional_data) == (CALM, b"control frame flood")


def test_ping_flood_without_policy_is_caught_by_the_control_budget() -> None:
    clock = FakeClock()
    client = RawPair(CoreConfig(control_frame_budget=10, **NO_PING_POLICY), clock=clock)
    events = client.send(PingFrame(0, b"12345678").serialize() * 100)
    assert_fired(events, "control_frames")
    # The flood never reached h2: no PING ACK was queued for it.
    assert not any(isinstance(w.frame, PingFrame) for w in client.frames)


def test_empty_data_flood_fires() -> None:
    clock = FakeClock()
    client = RawPair(CoreConfig(control_frame_budget=10), clock=clock)
    client.headers(1, request_headers())
    assert defences(client.send(DataFrame(1, b"").serialize() * 9)) == []
    assert_fired(client.send(DataFrame(1, b"").serialize()), "control_frames")


def test_padding_only_data_flood_fires() -> None:
    clock = FakeClock()
    client = RawPair(CoreConfig(control_frame_budget=10), clock=clock)
    client.headers(1, request_headers())
    padded = DataFrame(1, b"", pad_length=3, flags=["PADDED"]).serialize()
    assert defences(client.send(padded * 9)) == []
    assert_fired(client.send(padded), "control_frames")


def test_control_frame_budget_starts_afresh_in_a_new_window() -> None:
    clock = FakeClock()
    client = RawPair(CoreConfig(control_frame_budget=10), clock=clock)
    clock.now += 1.0
    assert defences(client.send(FLOODS["SETTINGS"] * 10)) == []
    clock.now += 1.0
    assert defences(client.send(FLOODS["SETTINGS"] * 10)) == []
    assert_fired(client.send(FLOODS["SETTINGS"]), "control_frames")


def test_end_of_request_data_frames_are_not_control_frames() -> None:
    clock = FakeClock()
    client = RawPair(CoreConfig(control_frame_budget=2), clock=clock)
    for sid in range(1, 40, 2):
        client.headers(sid, request_headers())
        client.data(sid, b"", end=True)  # an empty END_STREAM DATA ends the request: progress
    assert defences(client.core.receive_data(b"")) == []
    assert not client.core.closed


def test_window_updates_while_the_server_is_blocked_are_free() -> None:
    clock = FakeClock()
    pair = Pair(
        CoreConfig(control_frame_budget=5),
        client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 0},
        clock=clock,
    )
    sid = pair.open()
    pair.core.send_message(sid, b"x" * 100)  # stream window 0: blocked
    pair.pump()
    assert pair.core.is_send_blocked(sid)
    events = pair.feed(WindowUpdateFrame(0, window_increment=1).serialize() * 50)
    assert defences(events) == []


def test_window_updates_of_a_client_reading_a_large_stream_do_not_fire() -> None:
    clock = FakeClock()
    pair = Pair(CoreConfig(control_frame_budget=5), clock=clock)
    sid = pair.open(end=True)
    for _ in range(64):  # 4 MiB, far beyond both windows: the client's updates keep it going
        pair.core.send_message(sid, b"y" * 65536)
        pair.pump()
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    assert len(pair.response(sid).messages) == 64
    assert defences(pair.events) == []


# -- keepalive enforcement, gRFC A8 (grpc-go's EnforcementPolicy) ----------------------------------


def ping(pair: Pair, data: bytes = b"clientka") -> list[Event]:
    pair.client.ping(data)
    return pair.pump()


def test_pings_without_streams_get_two_strikes_then_too_many_pings() -> None:
    clock = FakeClock()
    pair = Pair(clock=clock)
    for _ in range(3):  # the first PING is free, then strikes 1 and 2
        assert defences(ping(pair)) == []
        clock.now += 60.0
    events = ping(pair)
    assert_fired(events, "ping_strikes")
    goaway = last_goaway(pair)
    assert (goaway.error_code, goaway.additional_data) == (CALM, b"too_many_pings")


def test_pings_without_streams_must_be_two_hours_apart() -> None:
    # grpc-go with PermitWithoutStream=false: even 5-minute pings are strikes while idle.
    clock = FakeClock()
    pair = Pair(clock=clock)
    for _ in range(3):
        assert defences(ping(pair)) == []
        clock.now += 300.0
    assert_fired(ping(pair), "ping_strikes")
    clock2 = FakeClock()
    idle_ok = Pair(clock=clock2)
    for _ in range(10):
        assert defences(ping(idle_ok)) == []
        clock2.now += 7200.0


def test_a_grpc_client_pinging_once_per_interval_during_a_call_is_fine() -> None:
    clock = FakeClock()
    pair = Pair(clock=clock)
    pair.open()  # a long-lived streaming call that sends nothing
    for _ in range(20):
        assert defences(ping(pair)) == []
        clock.now += 300.0
    assert not pair.core.closed


def test_pings_sooner_than_the_interval_during_a_call_are_strikes() -> None:
    clock = FakeClock()
    pair = Pair(clock=clock)
    pair.open()
    for _ in range(3):
        assert defences(ping(pair)) == []
        clock.now += 299.0
    assert_fired(ping(pair), "ping_strikes")


def test_permit_without_stream_applies_the_interval_while_idle() -> None:
    clock = FakeClock()
    pair = Pair(CoreConfig(permit_ping_without_stream=True), clock=clock)
    for _ in range(10):
        assert defences(ping(pair)) == []
        clock.now += 300.0


def test_response_data_forgives_strikes_like_bdp_pings_need() -> None:
    # A BDP-probing client (grpc-go, C-core) pings whenever it receives DATA.
    clock = FakeClock()
    pair = Pair(clock=clock)
    sid = pair.open()
    for _ in range(50):
        pair.core.send_message(sid, b"chunk")
        pair.pump()
        assert defences(ping(pair)) == []
        clock.now += 0.01
    assert not pair.core.closed


def test_ping_strikes_are_judged_per_ping_in_one_read() -> None:
    clock = FakeClock()
    pair = Pair(clock=clock)
    for n in range(5):
        pair.client.ping(b"burst%03d" % n)
    events = pair.pump()
    assert_fired(events, "ping_strikes")
    acks = [w for w in pair.frames if isinstance(w.frame, PingFrame) and "ACK" in w.frame.flags]
    assert len(acks) == 5  # h2 acknowledged the read's pings before the policy judged them


# -- server keepalive ------------------------------------------------------------------------------


def test_keepalive_ping_and_its_ack() -> None:
    pair = Pair()
    pair.core.send_keepalive_ping()
    events = pair.pump()
    sent = [w.frame for w in pair.frames if isinstance(w.frame, PingFrame)]
    assert sent[-1].opaque_data == KEEPALIVE_PING
    assert "ACK" not in sent[-1].flags
    assert events == [KeepaliveAcknowledged()]


def test_a_foreign_ping_ack_is_not_a_keepalive_ack() -> None:
    client = RawPair()
    events = client.send(PingFrame(0, b"notours!", flags=["ACK"]).serialize())
    assert events == []


def test_keepalive_after_close_is_a_no_op() -> None:
    pair = Pair()
    pair.core.close()
    pair.core.data_to_send()
    pair.core.send_keepalive_ping()
    assert pair.core.data_to_send() == b""


# -- header limits: CONTINUATION floods and HPACK bombs --------------------------------------------


def headers_frame(sid: int, block: bytes, *, end_headers: bool) -> bytes:
    frame = HeadersFrame(sid, block)
    frame.flags.add("END_STREAM")
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


def continuation(sid: int, block: bytes, *, end_headers: bool = False) -> bytes:
    frame = ContinuationFrame(sid, block)
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


def buffered_header_bytes(client: RawPair) -> int:
    """What h2 holds of an unfinished header block (frames buffered plus unparsed input)."""
    incoming = client.core._h2.incoming_buffer
    return sum(len(f.data) for f in incoming._headers_buffer) + len(incoming._data)


def test_continuation_flood_of_empty_frames_is_cut_at_h2s_limit_of_64_frames() -> None:
    # h2 4.4 allows 64 frames per header block (HEADERS included), then PROTOCOL_ERROR; the
    # core's scan applies the same limit first, so the defence is named without h2's text.
    client = RawPair()
    block = client.encoder.encode(request_headers())
    events = client.send(headers_frame(1, block[:5], end_headers=False))
    sent = 0
    while not events and sent < 10_000:
        events = client.send(continuation(1, b""))
        sent += 1
    assert sent == 64  # the 64th CONTINUATION is the 65th frame of the block
    assert_fired(events, "header_block", ErrorCodes.PROTOCOL_ERROR)
    assert goaways([w.frame for w in client.frames])[-1].error_code == ErrorCodes.PROTOCOL_ERROR


def test_continuation_flood_with_payload_is_cut_at_the_block_byte_cap() -> None:
    # 64 frames of 16 KiB would let h2 buffer 1 MiB; the core's scan stops the block at
    # max_header_list_size + 1 KiB before h2 buffers it.
    client = RawPair()
    cap = CoreConfig().max_header_list_size + 1024
    events = client.send(headers_frame(1, b"\x00" * 1000, end_headers=False))
    high_water = sent = 0
    while not events and sent < 10_000:
        events = client.send(continuation(1, b"\x00" * 1000))
        high_water = max(high_water, buffered_header_bytes(client))
        sent += 1
    assert (sent + 1) * 1000 > cap >= sent * 1000  # the frame that crossed the cap was refused
    assert high_water <= cap
    assert_fired(events, "header_block")
    goaway = goaways([w.frame for w in client.frames])[-1]
    assert (goaway.error_code, goaway.additional_data) == (CALM, b"header block too large")


def test_one_read_holding_a_whole_continuation_flood_is_refused_before_h2_sees_it() -> None:
    client = RawPair()
    flood = headers_frame(1, b"\x00" * 16384, end_headers=False)
    flood += b"".join(continuation(1, b"\x00" * 16384) for _ in range(62))
    flood += continuation(1, b"\x00" * 16384, end_headers=True)
    assert_fired(client.send(flood), "header_block")
    assert buffered_header_bytes(client) == 0


def test_one_headers_frame_over_a_small_block_cap_is_refused() -> None:
    # A block in one frame (END_HEADERS) is checked as a CONTINUATION chain is: the cap
    # (max_header_block_size) may be below the frame size.
    client = RawPair(CoreConfig(max_header_block_size=1000))
    assert_fired(client.send(headers_frame(1, b"\x00" * 1001, end_headers=True)), "header_block")
    assert buffered_header_bytes(client) == 0


def test_one_headers_frame_at_a_small_block_cap_passes_the_scan() -> None:
    client = RawPair(CoreConfig(max_header_block_size=1000))
    events = client.send(headers_frame(1, b"\x00" * 1000, end_headers=True))
    assert not any(isinstance(event, DefenceTriggered) for event in events)


def test_hpack_bomb_is_cut_by_the_decoded_list_limit() -> None:
    # A 4,000-byte literal added to the dynamic table, then referenced 1,000 times: 5 KB on the
    # wire, 4 MB decoded. Measured: h2's decoder stops at max_header_list_size (DenialOfService).
    client = RawPair()
    encoder = hpack.Encoder()
    block = bytearray(encoder.encode(request_headers()))
    block += b"\x40" + encoder.encode([(b"x-b", b"a" * 4000)], huffman=False)[1:]
    block += b"\xbe" * 1000  # indexed field 62: the newest dynamic-table entry
    tracemalloc.start()
    try:
        events = client.send(headers_frame(1, bytes(block), end_headers=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_fired(events, "header_list")
    assert goaways([w.frame for w in client.frames])[-1].error_code == CALM
    assert peak < 256 * 1024, f"decoding the bomb peaked at {peak} bytes"


def test_hpack_bomb_request_header_block_is_within_the_block_cap() -> None:
    # Sanity for the test above: the bomb is small on the wire, so the decoded cap is what stops it.
    encoder = hpack.Encoder()
    block = encoder.encode(request_headers()) + b"\x40" + b"\x00" * 4005 + b"\xbe" * 1000
    assert len(block) < CoreConfig().max_header_list_size


def test_corrupt_hpack_ends_the_connection_without_an_exception() -> None:
    # Measured: h2 4.4 answers an undecodable block with PROTOCOL_ERROR (RFC 9113 §4.3 asks for
    # COMPRESSION_ERROR); either way the HPACK state is lost and the connection must end.
    client = RawPair()
    events = client.send(headers_frame(1, b"\xff\xff\xff\xff\x0f", end_headers=True))
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code == ErrorCodes.PROTOCOL_ERROR
    assert goaways([w.frame for w in client.frames])[-1].error_code == ErrorCodes.PROTOCOL_ERROR


def test_legitimate_large_headers_in_continuations_are_served() -> None:
    client = RawPair()
    block = client.encoder.encode([*request_headers(), (b"x-big", b"v" * 15000)], huffman=False)
    data = headers_frame(1, block[:6000], end_headers=False)
    data += continuation(1, block[6000:12000]) + continuation(1, block[12000:], end_headers=True)
    events = client.send(data)
    assert isinstance(events[0], RequestReceived)
    assert defences(events) == []


# -- errors never escape ---------------------------------------------------------------------------


def test_a_bug_in_the_core_becomes_goaway_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("boom")

    client = RawPair()
    monkeypatch.setattr(headers, "parse_request", broken)
    events = client.headers(1, request_headers())
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ConnectionTerminated)
    assert (event.error_code, event.local) == (ErrorCodes.INTERNAL_ERROR, True)
    assert "RuntimeError: boom" in event.reason
    assert goaways([w.frame for w in client.frames])[-1].error_code == ErrorCodes.INTERNAL_ERROR
    assert client.core.receive_data(DataFrame(1, encode_message(b"x")).serialize()) == []


def test_a_broken_clock_is_an_internal_error_not_an_exception() -> None:
    def clock() -> float:
        raise OSError("clock gone")

    client = RawPair(handshake=False, clock=clock)
    [event] = client.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert isinstance(event, ConnectionTerminated)
    assert event.error_code == ErrorCodes.INTERNAL_ERROR


def test_rst_stream_on_an_unknown_stream_does_not_raise() -> None:
    client = RawPair()
    events = client.send(RstStreamFrame(9, error_code=8).serialize())
    assert isinstance(events[-1], ConnectionTerminated)
