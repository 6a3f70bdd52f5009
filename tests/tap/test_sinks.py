"""Sinks: the trace writer, the async record queue and fan-out."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from greeter.tap.filters import RecordFilter
from greeter.tap.records import PrefaceRecord, Record
from greeter.tap.sinks import RecordQueue, TraceWriter, fan_out
from tests.support.records import HEADERS, frame


class Terminal(io.StringIO):
    """A StringIO that says it is a terminal and counts flushes."""

    flushes = 0

    def isatty(self) -> bool:
        return True

    def flush(self) -> None:
        self.flushes += 1


def preface(timestamp: float) -> PrefaceRecord:
    return PrefaceRecord(1, "in", timestamp)


def test_text_writer_writes_and_flushes_each_record() -> None:
    out = Terminal()
    write = TraceWriter(out, color=False)
    write(preface(5.0))
    write(HEADERS)
    assert out.getvalue() == (
        "+0.000000 c1 s0 <- frame PREFACE\n"
        "+5.000000 c1 s1 <- frame HEADERS END_HEADERS len=40\n"
        "    :path: /greet.Greeter/SayHello\n"
        "    content-type: application/grpc\n"
    )
    assert out.flushes == 2


def test_colour_follows_the_terminal_unless_forced() -> None:
    tty = Terminal()
    TraceWriter(tty)(preface(0.0))
    assert "\x1b[" in tty.getvalue()
    plain = io.StringIO()
    TraceWriter(plain)(preface(0.0))
    assert "\x1b[" not in plain.getvalue()
    forced = io.StringIO()
    TraceWriter(forced, color=True)(preface(0.0))
    assert "\x1b[" in forced.getvalue()


def test_jsonl_writer_is_never_coloured() -> None:
    out = Terminal()
    write = TraceWriter(out, format="jsonl")
    write(preface(1.5))
    write(HEADERS)
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["PREFACE", "HEADERS"]
    assert "\x1b[" not in out.getvalue()


def test_writer_applies_its_filter() -> None:
    out = io.StringIO()
    write = TraceWriter(out, format="jsonl", filter=RecordFilter(frame_types=["PING"]))
    write(frame("PING", ping_data=bytes(8)))
    write(frame("DATA", 1))
    assert [json.loads(line)["type"] for line in out.getvalue().splitlines()] == ["PING"]


def test_unknown_format_rejected() -> None:
    with pytest.raises(ValueError, match="unknown trace format 'xml'"):
        TraceWriter(io.StringIO(), format="xml")  # type: ignore[arg-type]


def test_fan_out_calls_every_callback_in_order() -> None:
    seen: list[tuple[str, Record]] = []
    both = fan_out(lambda r: seen.append(("a", r)), lambda r: seen.append(("b", r)))
    both(HEADERS)
    assert seen == [("a", HEADERS), ("b", HEADERS)]


@pytest.mark.asyncio
async def test_queue_delivers_records_put_before_and_while_waiting() -> None:
    queue = RecordQueue()
    queue.put(preface(1.0))
    received: list[Record] = []

    async def consume() -> None:
        received.extend([record async for record in queue])

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    queue.put(preface(2.0))
    await asyncio.sleep(0)
    queue.put(preface(3.0))
    queue.close()
    await asyncio.wait_for(consumer, 1)
    assert [record.timestamp for record in received] == [1.0, 2.0, 3.0]


@pytest.mark.asyncio
async def test_queue_drops_oldest_when_full() -> None:
    queue = RecordQueue(maxsize=2)
    for timestamp in (1.0, 2.0, 3.0, 4.0):
        queue.put(preface(timestamp))
    assert queue.dropped == 2
    assert len(queue) == 2
    queue.close()
    queue.put(preface(5.0))  # ignored after close
    assert [record.timestamp async for record in queue] == [3.0, 4.0]


@pytest.mark.asyncio
async def test_close_ends_a_waiting_iteration_and_cancellation_is_clean() -> None:
    queue = RecordQueue()
    waiting = asyncio.create_task(anext(queue))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    queue.put(preface(1.0))  # the cancelled waiter is not woken twice
    assert await anext(queue) == preface(1.0)
    ended = asyncio.create_task(anext(queue))
    await asyncio.sleep(0)
    queue.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(ended, 1)


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize must be at least 1"):
        RecordQueue(maxsize=0)
