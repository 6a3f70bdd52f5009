"""Trace views (each fact once per view), RPC outcomes and the live gate on the canned exchange.

Issue 11: the default text trace showed every fact twice (a DATA frame and its message, HEADERS
and the RPC start); a view shows one level. The gate keeps the records of the RPCs whose end
matches a status or duration, holding them until that end.
"""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from greeter.tap import (
    ConnectionRecord,
    DecodeErrorRecord,
    FrameRecord,
    MessageRecord,
    Record,
    RecordFilter,
    RpcRecord,
)
from greeter.tap.filters import VIEWS
from greeter.tap.outcome import OutcomeFilter, RpcGate, outcome, parse_status
from tests.support.canned import Canned, canned_exchange


@pytest.fixture(scope="module")
def canned() -> Canned:
    return canned_exchange()


def viewed(view: str, records: list[Record]) -> list[Record]:
    keep = RecordFilter(view=view)
    return [record for record in records if keep(record)]


def kinds(records: list[Record]) -> Counter[str]:
    return Counter(
        f"{r.layer}:{getattr(r, 'event', None) or getattr(r, 'type', '')}" for r in records
    )


def test_messages_view_has_rpcs_and_messages_and_no_frame_or_window(canned: Canned) -> None:
    shown = viewed("messages", canned.records)
    assert not any(isinstance(r, FrameRecord) for r in shown)
    assert set(kinds(shown)) == {
        "connection:open",
        "rpc:start",
        "message:",
        "connection:stall",
        "connection:unstall",
        "rpc:end",
        "connection:ping_rtt",
        "connection:close",
    }
    everything = [r for r in canned.records if isinstance(r, MessageRecord | RpcRecord)]
    assert [r for r in shown if isinstance(r, MessageRecord | RpcRecord)] == everything


def test_frames_view_has_frames_and_flow_control_but_no_rpc_or_message(canned: Canned) -> None:
    """Every frame and connection record but `goaway`, which repeats the GOAWAY frame."""
    shown = viewed("frames", canned.records)
    assert not any(isinstance(r, MessageRecord | RpcRecord) for r in shown)
    frames = [
        r
        for r in canned.records
        if r.layer == "frame" or (isinstance(r, ConnectionRecord) and r.event != "goaway")
    ]
    assert shown == frames


def test_rpcs_view_is_one_line_per_start_and_end(canned: Canned) -> None:
    shown = viewed("rpcs", canned.records)
    assert kinds(shown) == Counter(
        {"rpc:start": 7, "rpc:end": 7, "connection:open": 1, "connection:close": 1}
    )


def test_all_view_keeps_everything_and_decode_errors_show_in_every_view(canned: Canned) -> None:
    assert viewed("all", canned.records) == canned.records
    error = DecodeErrorRecord(1, "in", 0.0, "bad", 0)
    assert all(viewed(view, [error]) == [error] for view in VIEWS)


def test_each_view_shows_a_goaway_once() -> None:
    goaway_frame = FrameRecord(1, "out", 0.0, 0, "GOAWAY", (), 0, 8, last_stream_id=1)
    goaway = ConnectionRecord(1, "out", 0.0, 0, "goaway", last_stream_id=1)
    shown = {view: viewed(view, [goaway_frame, goaway]) for view in VIEWS}
    assert shown == {
        "frames": [goaway_frame],
        "messages": [goaway],
        "rpcs": [goaway],
        "all": [goaway_frame, goaway],
    }


def test_a_view_with_frame_types_narrows_its_frames() -> None:
    keep = RecordFilter(view="frames", frame_types=["PING"])
    ping = FrameRecord(1, "in", 0.0, 0, "PING", (), 0, 8, ping_data=bytes(8))
    settings = FrameRecord(1, "in", 0.0, 0, "SETTINGS", (), 0, 0, settings=())
    window = ConnectionRecord(1, "in", 0.0, 0, "window", 1, 1)
    assert [r for r in (ping, settings, window) if keep(r)] == [ping, window]


def test_bad_views() -> None:
    with pytest.raises(ValueError, match="view 'wire': expected one of frames, messages"):
        RecordFilter(view="wire")
    with pytest.raises(ValueError, match="a view replaces layers"):
        RecordFilter(view="rpcs", layers=["rpc"])


def test_status_values() -> None:
    assert [parse_status(v) for v in ("ok", "5", "Not_Found", "ERROR", "16")] == [
        "OK",
        "NOT_FOUND",
        "NOT_FOUND",
        "error",
        "UNAUTHENTICATED",
    ]
    for bad in ("17", "NOPE", ""):
        with pytest.raises(ValueError, match=r"expected one of OK, CANCELLED, .*0\.\.16, error"):
            parse_status(bad)


def test_outcomes_and_their_filter() -> None:
    assert outcome(5, "NOT_FOUND", None) == "NOT_FOUND"
    assert outcome(None, None, "CANCEL") == "RST_STREAM CANCEL"
    assert outcome(None, None, None) == "no status"
    errors = OutcomeFilter.of(["error"])
    assert [errors.matches(x, 1.0) for x in ("OK", "NOT_FOUND", "no status")] == [
        False,
        True,
        True,
    ]
    slow = OutcomeFilter.of(["OK"], min_duration=0.5)
    assert [slow.matches("OK", d) for d in (0.4, 0.5, None)] == [False, True, False]
    assert not OutcomeFilter.of().active
    with pytest.raises(ValueError, match="minimum duration -1"):
        OutcomeFilter.of(min_duration=-1)


def test_the_gate_passes_the_records_of_matching_rpcs_whole_and_in_order(canned: Canned) -> None:
    passed: list[Record] = []
    gate = RpcGate(passed.append, OutcomeFilter.of(["error"]))
    for record in canned.records:
        gate(record)
    failing = {canned.stream_ids["error"], canned.stream_ids["cancel"]}
    expected = [r for r in canned.records if getattr(r, "stream_id", 0) in failing]
    assert sorted(passed, key=canned.records.index) == expected
    assert {r.stream_id for r in passed if isinstance(r, RpcRecord)} == failing


def test_the_gate_with_a_minimum_duration(canned: Canned) -> None:
    passed: list[Record] = []
    gate = RpcGate(passed.append, OutcomeFilter.of(min_duration=1.0))
    for record in canned.records:
        gate(record)
    assert {getattr(r, "stream_id", 0) for r in passed} == {canned.stream_ids["stall"]}


def gated_ok_rpcs(canned: Canned, max_held: int) -> tuple[list[int], int]:
    passed: list[Record] = []
    gate = RpcGate(passed.append, OutcomeFilter.of(["OK"]), max_held=max_held)
    for record in canned.records:
        gate(record)
    return sorted({r.stream_id for r in passed if isinstance(r, RpcRecord)}), gate.left_out


def test_the_gate_holds_a_bounded_number_of_records(
    canned: Canned, caplog: pytest.LogCaptureFixture
) -> None:
    """An RPC holding more than max_held records before its end is left out, and said so: the
    unary call s1 (11 records) fits in 12, the longer streaming calls do not."""
    ids = canned.stream_ids
    every_ok = [ids[name] for name in ("unary", "server_streaming", "client_streaming", "bidi")]
    assert gated_ok_rpcs(canned, 10_000) == ([*every_ok, ids["stall"]], 0)
    with caplog.at_level(logging.WARNING, logger="greeter.tap"):
        assert gated_ok_rpcs(canned, 12) == ([ids["unary"]], 4)
    assert "the RPC on c1 s3 held 13 records before its end; it is left out" in caplog.text
