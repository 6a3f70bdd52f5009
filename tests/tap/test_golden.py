"""Golden transcripts of the canned exchange (tests/support/canned.py): text and JSON Lines output.

The server tap's records of the canned exchange -- all four RPC kinds, an error status, a
cancellation, a flow-control stall and its release, a PING, the close -- are rendered with
``TextFormatter(color=False)`` into tests/tap/golden/canned.txt, with ``color=True`` into
canned-color.txt, with ``greeter.tap.jsonl.dumps`` into canned.jsonl (one line per record,
every file ending with a newline), and the records of the text trace's default view,
``messages``, into canned-messages.txt; each must match its committed file byte for byte.

When the tap, the formatter or the schema change on purpose, regenerate the files and review the
diff before committing it::

    GREETER_UPDATE_GOLDEN=1 .venv/bin/pytest tests/tap/test_golden.py

With ``GREETER_UPDATE_GOLDEN=1`` the test rewrites the golden files instead of comparing them,
and fails, saying so: a run in that mode checks nothing and must never count as a pass.
The semantic tests below never read the files, so a regenerated golden cannot hide a
regression in what the transcript says.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gen.greet import HelloReply, HelloRequest
from greeter.tap import (
    ConnectionRecord,
    DecodeErrorRecord,
    FrameRecord,
    MessageRecord,
    Record,
    RecordFilter,
    RpcRecord,
    TextFormatter,
    dumps,
    read_jsonl,
)
from tests.support.canned import (
    ERROR_MESSAGE,
    PEER,
    PING_PAYLOAD,
    STALL_WAIT,
    START,
    TICK,
    WALL_START,
    Canned,
    canned_exchange,
)

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("GREETER_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def canned() -> Canned:
    return canned_exchange()


def render(records: list[Record], format: Callable[[Record], str | None]) -> str:
    lines = (format(record) for record in records)
    return "".join(line + "\n" for line in lines if line is not None)


def viewed(view: str) -> Callable[[Record], str | None]:
    """The text of the records the view shows (what `greeter serve --trace` writes)."""
    keep, formatter = RecordFilter(view=view), TextFormatter(color=False)
    return lambda record: formatter.format(record) if keep(record) else None


RENDERERS: dict[str, Callable[[], Callable[[Record], str | None]]] = {
    "canned.txt": lambda: TextFormatter(color=False).format,
    "canned-color.txt": lambda: TextFormatter(color=True).format,
    "canned.jsonl": lambda: dumps,
    "canned-messages.txt": lambda: viewed("messages"),
}


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_transcript_matches_golden(canned: Canned, name: str) -> None:
    text = render(canned.records, RENDERERS[name]())
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        pytest.fail(f"{path} rewritten (GREETER_UPDATE_GOLDEN=1): review the diff, rerun without")
    assert path.exists(), f"{path} missing: run with GREETER_UPDATE_GOLDEN=1 to create it"
    golden = path.read_bytes().decode("utf-8")
    if text != golden:  # a readable first difference rather than a wall of text
        for number, (got, want) in enumerate(
            zip(text.splitlines(), golden.splitlines(), strict=False), start=1
        ):
            assert got == want, f"{name} line {number} differs (GREETER_UPDATE_GOLDEN=1 rewrites)"
    assert text == golden, f"{name} differs in length (GREETER_UPDATE_GOLDEN=1 rewrites)"


def test_exchange_is_deterministic(canned: Canned) -> None:
    again = canned_exchange()
    assert render(again.records, dumps) == render(canned.records, dumps)
    assert render(again.records, TextFormatter().format) == render(
        canned.records, TextFormatter().format
    )


def test_golden_jsonl_reads_back(canned: Canned) -> None:
    objects = list(read_jsonl(GOLDEN / "canned.jsonl"))
    assert len(objects) == len(canned.records)
    assert objects[-1]["event"] == "close"


def test_every_expected_frame_type_both_ways(canned: Canned) -> None:
    seen = {(r.type, r.direction) for r in canned.records if isinstance(r, FrameRecord)}
    for expected in [
        ("SETTINGS", "in"),
        ("SETTINGS", "out"),
        ("HEADERS", "in"),
        ("HEADERS", "out"),
        ("DATA", "in"),
        ("DATA", "out"),
        ("WINDOW_UPDATE", "in"),
        ("WINDOW_UPDATE", "out"),
        ("RST_STREAM", "in"),
        ("PING", "in"),
        ("PING", "out"),
    ]:
        assert expected in seen, expected
    assert not any(isinstance(r, DecodeErrorRecord) for r in canned.records)


def test_messages_decoded_as_greet_types(canned: Canned) -> None:
    messages = [r for r in canned.records if isinstance(r, MessageRecord)]
    assert len(messages) == 19
    for message in messages:
        expected = HelloRequest if message.direction == "in" else HelloReply
        assert isinstance(message.decoded, expected), message
        assert message.error is None
    unary = [m.decoded for m in messages if m.stream_id == canned.stream_ids["unary"]]
    assert unary == [HelloRequest(name="world"), HelloReply(message="Hello world")]
    replies = [
        m.decoded
        for m in messages
        if m.stream_id == canned.stream_ids["server_streaming"] and m.direction == "out"
    ]
    assert replies == [HelloReply(message=f"Hello w #{i}") for i in (1, 2, 3)]
    jsonl = [dumps(m) for m in messages]
    assert all('"message_type":"greet.Hello' in line for line in jsonl)


def test_rpc_ends_in_order(canned: Canned) -> None:
    ends = [r for r in canned.records if isinstance(r, RpcRecord) and r.event == "end"]
    assert [(r.stream_id, r.status, r.reset) for r in ends] == [
        (canned.stream_ids["unary"], 0, None),
        (canned.stream_ids["server_streaming"], 0, None),
        (canned.stream_ids["client_streaming"], 0, None),
        (canned.stream_ids["bidi"], 0, None),
        (canned.stream_ids["error"], 5, None),
        (canned.stream_ids["cancel"], None, "CANCEL"),
        (canned.stream_ids["stall"], 0, None),
    ]
    assert [(r.requests, r.responses) for r in ends] == [
        (1, 1),
        (1, 3),
        (3, 1),
        (2, 2),
        (1, 0),
        (1, 1),
        (1, 1),
    ]
    starts = [r for r in canned.records if isinstance(r, RpcRecord) and r.event == "start"]
    assert len(starts) == len(ends)
    assert all(r.peer == PEER for r in starts)


def test_error_message_percent_encoded_on_the_wire_decoded_in_the_rpc(canned: Canned) -> None:
    stream_id = canned.stream_ids["error"]
    (trailers,) = [
        r
        for r in canned.records
        if isinstance(r, FrameRecord) and r.stream_id == stream_id and r.direction == "out"
    ]
    assert trailers.headers is not None
    assert ("grpc-message", "no such name: %C3%BC%25") in trailers.headers
    assert "END_STREAM" in trailers.flags  # Trailers-Only
    (end,) = [r for r in canned.records if isinstance(r, RpcRecord) and r.stream_id == stream_id][
        1:
    ]
    assert (end.status_name, end.status_message) == ("NOT_FOUND", ERROR_MESSAGE)


def test_stall_and_unstall_with_duration(canned: Canned) -> None:
    stream_id = canned.stream_ids["stall"]
    flow = [
        r
        for r in canned.records
        if isinstance(r, ConnectionRecord) and r.event in ("stall", "unstall")
    ]
    assert [(r.event, r.direction, r.stream_id) for r in flow] == [
        ("stall", "out", stream_id),
        ("unstall", "out", stream_id),
    ]
    assert flow[1].duration == STALL_WAIT + TICK
    update = canned.records[canned.records.index(flow[1]) - 2]
    assert isinstance(update, FrameRecord)
    assert (update.type, update.direction, update.window_increment) == ("WINDOW_UPDATE", "in", 64)


def test_ping_round_trip_and_close(canned: Canned) -> None:
    pings = [r for r in canned.records if isinstance(r, FrameRecord) and r.type == "PING"]
    assert [(r.direction, r.flags, r.ping_data) for r in pings] == [
        ("in", (), PING_PAYLOAD),
        ("out", ("ACK",), PING_PAYLOAD),
    ]
    (rtt,) = [
        r for r in canned.records if isinstance(r, ConnectionRecord) and r.event == "ping_rtt"
    ]
    assert (rtt.direction, rtt.duration) == ("in", TICK)
    close = canned.records[-1]
    assert isinstance(close, ConnectionRecord)
    assert (close.event, close.reason, close.peer) == ("close", "closed", PEER)


def test_every_record_has_the_wall_clock_of_its_timestamp(canned: Canned) -> None:
    """Issue 11: wall-clock time beside the monotonic timestamp, read at the same moment."""
    assert all(r.wall == WALL_START + r.timestamp - START for r in canned.records)
    assert dumps(canned.records[0]).endswith('"t":100.125,"wall":"2026-01-15T09:30:00.125000Z"}')


def test_rpc_ends_carry_duration_and_bytes_each_way(canned: Canned) -> None:
    starts = {
        r.stream_id: r for r in canned.records if isinstance(r, RpcRecord) and r.event == "start"
    }
    for end in (r for r in canned.records if isinstance(r, RpcRecord) and r.event == "end"):
        assert end.duration == end.timestamp - starts[end.stream_id].timestamp
        messages = [
            m
            for m in canned.records
            if isinstance(m, MessageRecord) and m.stream_id == end.stream_id
        ]
        sizes = {d: sum(5 + m.length for m in messages if m.direction == d) for d in ("in", "out")}
        assert (end.request_bytes, end.response_bytes) == (sizes["in"], sizes["out"])
        assert all(m.size == len(m.data) for m in messages)
    unary = next(r for r in canned.records if isinstance(r, RpcRecord) and r.event == "end")
    # "world" is 7 bytes of protobuf, "Hello world" 13: each plus the 5-byte prefix.
    assert (unary.duration, unary.request_bytes, unary.response_bytes) == (0.375, 12, 18)
