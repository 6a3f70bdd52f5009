"""Flow control both ways (RFC 9113 §5.2, §6.9) as the core's bytes show it.

Receiving: credit for complete messages returns to the client only as the application calls
`acknowledge(flow_bytes)`; padding and the bytes of an incomplete message return at once, so a
message larger than the window never deadlocks. Sending: the core never exceeds the client's
window, reports `is_send_blocked`, and emits `SendUnblocked` when a WINDOW_UPDATE lets it finish.

h2 batches WINDOW_UPDATEs: one goes out once half of a window has been processed. The small
windows of SMALL (65,535 both) make the thresholds exact: 32,767 bytes.
"""

from __future__ import annotations

import pytest
from grpclib.const import Status
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from greeter.core.config import CoreConfig
from greeter.core.events import MessageReceived, RequestEnded, SendUnblocked, StreamReset
from greeter.wire.framing import encode_message
from tests.support.core_pair import RESPONSE_HEADERS, FlowControlStall, Pair

SMALL = CoreConfig(initial_window_size=65_535, connection_window_size=65_535)
PAYLOAD = bytes(range(250)) * 40  # 10,000 bytes: one DATA frame (max 16,384) per message
FLOW = 5 + len(PAYLOAD)


def stream_window(pair: Pair, sid: int) -> int:
    """The client's view of how much the core lets it send on `sid`."""
    return int(pair.client._get_stream_by_id(sid).outbound_flow_control_window)


def test_small_messages_are_credited_only_when_acknowledged() -> None:
    pair = Pair(SMALL)
    sid = pair.open()
    pair.take()
    for _ in range(6):
        pair.send_message(sid, PAYLOAD)
    events = pair.take()
    assert events == [MessageReceived(sid, PAYLOAD, FLOW)] * 6
    assert pair.window_updates() == []
    assert pair.client.outbound_flow_control_window == 65_535 - 6 * FLOW
    assert stream_window(pair, sid) == 65_535 - 6 * FLOW
    for _ in range(3):  # 30,015 bytes: below half the window
        pair.core.acknowledge(sid, FLOW)
        pair.pump()
    assert pair.window_updates() == []
    pair.core.acknowledge(sid, FLOW)  # 40,020 bytes: past half the window
    pair.pump()
    assert pair.window_updates() == [(0, 4 * FLOW), (sid, 4 * FLOW)]
    assert pair.client.outbound_flow_control_window == 65_535 - 2 * FLOW
    assert stream_window(pair, sid) == 65_535 - 2 * FLOW


def test_without_acknowledge_the_client_stalls_at_the_window() -> None:
    # The bound a slow application puts on what it receives: complete messages it has not
    # consumed never hold more than one window of credit.
    pair = Pair(SMALL)
    sid = pair.open()
    pair.take()
    with pytest.raises(FlowControlStall) as stall:
        for _ in range(20):
            pair.send_message(sid, PAYLOAD)
    events = pair.take()
    held = sum(e.flow_bytes for e in events if isinstance(e, MessageReceived))
    assert len(events) >= 6
    assert held <= 65_535
    # Consuming them reopens the window and the stalled message completes.
    pair.core.acknowledge(sid, held)
    pair.send(sid, stall.value.remaining)
    [event] = pair.take()
    assert isinstance(event, MessageReceived)
    assert event.payload == PAYLOAD


def test_a_message_larger_than_the_window_flows_without_acknowledge() -> None:
    pair = Pair(SMALL)
    sid = pair.open()
    pair.take()
    payload = bytes(range(256)) * 400  # 102,400 bytes > 65,535
    pair.send_message(sid, payload, end=True)
    events = pair.take()
    assert [type(e) for e in events] == [MessageReceived, RequestEnded]
    message = events[0]
    assert isinstance(message, MessageReceived)
    assert message.payload == payload
    # Only the final frame's bytes wait for acknowledge; earlier ones were credited at once.
    assert 0 < message.flow_bytes <= 16_384
    assert sum(inc for s, inc in pair.window_updates() if s == 0) >= len(payload) - 65_535


def test_three_mib_message_with_default_windows() -> None:
    pair = Pair()
    sid = pair.open()
    pair.take()
    payload = b"\xab" * (3 * 1024 * 1024)
    pair.send_message(sid, payload, end=True)
    events = pair.take()
    assert [type(e) for e in events] == [MessageReceived, RequestEnded]
    assert isinstance(events[0], MessageReceived)
    assert events[0].payload == payload
    pair.core.acknowledge(sid, events[0].flow_bytes)
    pair.core.send_message(sid, payload)
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    assert pair.response(sid).messages == [payload]
    assert pair.response(sid).trailers == [("grpc-status", "0")]


def test_padding_is_credited_at_once() -> None:
    pair = Pair(SMALL)
    sid = pair.open()
    pair.take()
    # 256 flow-controlled bytes of padding per frame (pad length byte + 255).
    for _ in range(127):
        pair.send_message(sid, b"tiny", pad_length=255)
    assert pair.window_updates() == []
    pair.send_message(sid, b"tiny", pad_length=255)  # 128 * 256 = 32,768 > 32,767
    assert pair.window_updates() == [(0, 32_768), (sid, 32_768)]
    assert pair.take() == [MessageReceived(sid, b"tiny", 9)] * 128


@pytest.mark.parametrize("ending", ["trailers", "peer-reset", "core-reset", "abort"])
def test_unconsumed_messages_return_to_the_connection_window_when_the_stream_ends(
    ending: str,
) -> None:
    pair = Pair(SMALL)
    sid = pair.open()
    pair.take()
    for _ in range(4):
        pair.send_message(sid, PAYLOAD)
    assert pair.window_updates() == []
    unconsumed = 4 * FLOW
    if ending == "trailers":
        pair.end(sid)
        pair.core.send_trailers(sid, Status.OK)
        pair.pump()
    elif ending == "peer-reset":
        pair.reset(sid)
        assert pair.take()[-1] == StreamReset(sid, ErrorCodes.CANCEL)
    elif ending == "core-reset":
        pair.core.reset_stream(sid)
        pair.pump()
    else:
        pair.send(sid, b"\x05\x00\x00\x00\x00")  # invalid Compressed-Flag: the core aborts
        unconsumed += 5
    assert (0, unconsumed) in pair.window_updates()
    assert pair.client.outbound_flow_control_window == 65_535
    assert pair.core.open_streams == 0


def test_acknowledging_after_the_stream_ended_is_not_double_counted() -> None:
    pair = Pair(SMALL)
    sid = pair.open()
    pair.take()
    for _ in range(4):
        pair.send_message(sid, PAYLOAD)
    pair.end(sid)
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    before = pair.window_updates()
    for _ in range(4):
        pair.core.acknowledge(sid, FLOW)
    pair.pump()
    assert pair.window_updates() == before


def test_data_arriving_while_trailers_wait_is_credited_and_dropped() -> None:
    pair = Pair(SMALL, client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 0})
    sid = pair.open()
    pair.take()
    pair.core.send_message(sid, b"reply")
    pair.core.send_trailers(sid, Status.OK)  # queued behind the blocked message
    pair.pump()
    assert pair.core.is_send_blocked(sid)
    for _ in range(4):
        pair.send_message(sid, PAYLOAD)
    assert pair.take() == []  # nobody reads them: no MessageReceived
    assert (0, 4 * FLOW) in pair.window_updates()


# -- sending: back-pressure -----------------------------------------------------------------------


def test_send_is_blocked_by_a_small_client_window_and_unblocked_by_window_update() -> None:
    pair = Pair(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 100}, auto_ack=False)
    sid = pair.open(end=True)
    pair.take()
    payload = bytes(range(250)) * 4  # 1,000 bytes
    pair.core.send_message(sid, payload)
    assert pair.core.is_send_blocked(sid)
    pair.pump()
    wire = pair.wire(sid)
    assert wire == [
        ("HEADERS", RESPONSE_HEADERS, False),
        ("DATA", encode_message(payload)[:100], False),
    ]
    pair.core.send_trailers(sid, Status.OK)  # queued after the pending data
    pair.pump()
    assert len(pair.wire(sid)) == 2
    pair.client.increment_flow_control_window(500, sid)
    assert pair.pump() == []  # still 405 bytes to go
    assert pair.wire(sid)[2] == ("DATA", encode_message(payload)[100:600], False)
    assert pair.core.is_send_blocked(sid)
    pair.client.increment_flow_control_window(405, sid)
    assert pair.pump() == [SendUnblocked(sid)]
    assert not pair.core.is_send_blocked(sid)
    assert pair.wire(sid)[3:] == [
        ("DATA", encode_message(payload)[600:], False),
        ("HEADERS", [("grpc-status", "0")], True),
    ]
    assert pair.response(sid).messages == [payload]
    assert pair.core.open_streams == 0


def test_send_blocked_by_the_connection_window() -> None:
    # The client's connection window (65,535 by default) is shared by all streams.
    pair = Pair(auto_ack=False)
    a = pair.open(end=True)
    b = pair.open(end=True)
    pair.take()
    pair.core.send_message(a, bytes(60_000))
    pair.core.send_message(b, bytes(10_000))
    assert not pair.core.is_send_blocked(a)
    assert pair.core.is_send_blocked(b)
    pair.pump()
    pair.client.increment_flow_control_window(20_000)  # connection-level WINDOW_UPDATE
    assert pair.pump() == [SendUnblocked(b)]
    pair.core.send_trailers(b, Status.OK)
    pair.pump()
    assert pair.response(b).messages == [bytes(10_000)]


def test_settings_change_of_initial_window_unblocks() -> None:
    pair = Pair(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 0}, auto_ack=False)
    sid = pair.open(end=True)
    pair.take()
    pair.core.send_message(sid, b"x" * 50)
    pair.pump()
    assert pair.wire(sid) == [("HEADERS", RESPONSE_HEADERS, False)]
    pair.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 65_535})
    assert pair.pump() == [SendUnblocked(sid)]
    assert pair.wire(sid)[1] == ("DATA", encode_message(b"x" * 50), False)


def test_trailers_after_blocked_data_when_the_client_half_closes_meanwhile() -> None:
    # The client ends its request while the core's trailers wait behind blocked data.
    pair = Pair(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 10}, auto_ack=False)
    sid = pair.open()
    pair.take()
    pair.core.send_message(sid, b"0123456789abcdef")
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    pair.end(sid)
    assert pair.take() == []
    pair.client.increment_flow_control_window(100, sid)
    assert pair.pump() == [SendUnblocked(sid)]
    response = pair.response(sid)
    assert response.messages == [b"0123456789abcdef"]
    assert response.trailers == [("grpc-status", "0")]
    assert response.reset is None
    assert pair.core.open_streams == 0


def test_large_response_respects_the_client_window_throughout() -> None:
    # h2's client raises FlowControlError if the core ever sends past its window.
    pair = Pair(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    sid = pair.open(end=True)
    payload = bytes(range(256)) * 1024  # 256 KiB through a 1,000-byte stream window
    pair.core.send_message(sid, payload)
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    assert pair.response(sid).messages == [payload]
    assert SendUnblocked(sid) in pair.events
