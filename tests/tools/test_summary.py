"""The trace summary and the RPC selection of the `greeter trace` commands, on the canned trace.

The canned exchange (tests/support/canned.py) has exact times, so every number of the summary is
known: seven RPCs on one connection, one NOT_FOUND, one reset by the client, one stalled for
1.125 s, a PING of one tick.
"""

from __future__ import annotations

import pytest

from greeter.tap.jsonl import to_json
from greeter.tap.outcome import OutcomeFilter
from greeter.tools.selection import JsonObject, Selection
from greeter.tools.summary import NO_END, TraceSummary, summarize
from tests.support.canned import Canned, canned_exchange


@pytest.fixture(scope="module")
def canned() -> Canned:
    return canned_exchange()


@pytest.fixture(scope="module")
def objects(canned: Canned) -> list[JsonObject]:
    return [to_json(record) for record in canned.records]


def test_rows_per_method_and_outcome(objects: list[JsonObject]) -> None:
    rows = {(method, label): row for method, label, row in summarize(objects).rows()}
    assert list(rows) == [
        ("/greet.Greeter/BidiHello", "OK"),
        ("/greet.Greeter/LotsOfGreetings", "OK"),
        ("/greet.Greeter/LotsOfReplies", "OK"),
        ("/greet.Greeter/LotsOfReplies", "RST_STREAM CANCEL"),
        ("/greet.Greeter/SayHello", "NOT_FOUND"),
        ("/greet.Greeter/SayHello", "OK"),
    ]
    hello = rows["/greet.Greeter/SayHello", "OK"]  # s1 (0.375 s) and the stalled s13 (1.625 s)
    assert (hello.count, hello.percentile(0.5), hello.percentile(0.99), max(hello.durations)) == (
        2,
        0.375,
        1.625,
        1.625,
    )
    assert (hello.requests, hello.request_bytes, hello.responses, hello.response_bytes) == (
        2,
        12 + 107,
        2,
        18 + 113,
    )
    assert (hello.stalls, hello.stalled, hello.resets, hello.goaways) == (1, 1.125, 0, 0)
    cancelled = rows["/greet.Greeter/LotsOfReplies", "RST_STREAM CANCEL"]
    assert (cancelled.count, cancelled.resets, cancelled.responses) == (1, 1, 1)


def test_text_has_a_header_a_line_per_row_and_the_connection_lines(
    objects: list[JsonObject],
) -> None:
    lines = summarize(objects).text().splitlines()
    assert " ".join(lines[0].split()) == (
        "method status count p50 p99 max req msgs req bytes resp msgs resp bytes resets stalls "
        "stalled goaways"
    )
    assert lines[6].split() == [
        "/greet.Greeter/SayHello",
        "OK",
        "2",
        "375.000ms",
        "1625.000ms",
        "1625.000ms",
        "2",
        "119",
        "2",
        "131",
        "0",
        "1",
        "1125.000ms",
        "0",
    ]
    assert lines[7:] == [
        "connections: 1",
        "GOAWAY: 0",
        "connection-window stalls: 0 (0.000ms in all)",
        "PING round trips: 1 (median 125.000ms, max 125.000ms)",
    ]


def test_rpcs_without_an_end_and_goaways_they_saw(objects: list[JsonObject]) -> None:
    start = next(o for o in objects if o["layer"] == "rpc")
    goaway = {
        "layer": "connection",
        "event": "goaway",
        "conn": 1,
        "stream": 0,
        "t": start["t"] + 2,
        "error_code": "NO_ERROR",
    }
    summary = TraceSummary().add_all([start, goaway])
    [(method, label, row)] = summary.rows()
    assert (method, label, row.count, row.goaways, row.durations[0]) == (
        "/greet.Greeter/SayHello",
        NO_END,
        1,
        1,
        2.0,
    )
    assert summary.goaways == {"NO_ERROR": 1}


def test_a_trace_without_durations_uses_start_and_end(objects: list[JsonObject]) -> None:
    old = [{k: v for k, v in o.items() if k != "duration"} for o in objects]
    rows = {(m, label): row for m, label, row in summarize(old).rows()}
    assert rows["/greet.Greeter/SayHello", "OK"].percentile(0.99) == 1.625


def streams(objects: list[JsonObject]) -> set[int]:
    return {o["stream"] for o in objects}


def test_selection_by_status_keeps_those_rpcs_and_their_connection(
    canned: Canned, objects: list[JsonObject]
) -> None:
    chosen = Selection(outcome=OutcomeFilter.of(["NOT_FOUND"])).apply(objects)
    assert streams(chosen) == {0, canned.stream_ids["error"]}
    assert [o for o in chosen if o["stream"]] == [
        o for o in objects if o["stream"] == canned.stream_ids["error"]
    ]


def test_selection_by_method_duration_and_peer(canned: Canned, objects: list[JsonObject]) -> None:
    ids = canned.stream_ids
    lots = Selection(methods=("greet.Greeter/Lots*",)).apply(objects)
    assert streams(lots) == {0, ids["server_streaming"], ids["client_streaming"], ids["cancel"]}
    slow = Selection(outcome=OutcomeFilter.of(min_duration=0.7)).apply(objects)
    assert streams(slow) == {0, ids["bidi"], ids["stall"]}
    assert Selection(peers=("127.0.0.1:*",)).apply(objects) == objects
    assert Selection(peers=("10.*",)).apply(objects) == []
    assert Selection().apply(objects) == objects
