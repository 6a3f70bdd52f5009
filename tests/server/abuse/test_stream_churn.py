"""Stream churn: Rapid Reset, MadeYouReset and more streams than the server allows."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from greeter.tap.records import error_code_name as error_name
from tests.support.abuse import STREAM_STATE, AbuseFactory, AbuseRun, MemoryBound, NotAMemoryAttack
from tests.support.attacker import Attacker
from tests.support.h2peer import (
    BIDI_HELLO,
    CANCEL,
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    REFUSED_STREAM,
    SAY_HELLO,
    WAIT,
    data_frame,
    hello_message,
    request_headers,
    rst_frame,
)

ATTACK_STREAMS = 5_000
"""Streams per burst: 25 times the reset budget."""
RESET_LIMITS = {"reset_budget": 200, "reset_window": 1.0}
HANDLERS = MemoryBound(
    ATTACK_STREAMS * STREAM_STATE,
    "a handler per stream, all started before the loop runs one",
    admitted=RESET_LIMITS["reset_budget"] * STREAM_STATE,
)


def _assert_churn_goaway(attacker: Attacker, sent: int) -> str:
    goaway = attacker.wait_goaway()
    attacker.wait_eof()
    assert goaway.error_code == ENHANCE_YOUR_CALM, attacker.summary()
    assert goaway.additional_data == b"too many stream resets"
    return (
        f"GOAWAY({error_name(goaway.error_code)}) at stream {goaway.last_stream_id}"
        f" ({sent} of {ATTACK_STREAMS} streams sent)"
    )


def _expect_churn_log(run: AbuseRun, attacker: Attacker) -> None:
    run.expect_log(attacker, r"WARNING .*defence stream_resets fired")
    run.expect_log(attacker, r"WARNING .*closing connection from .*stream resets")


@pytest.mark.timeout(30)
def test_rapid_reset(abuse: AbuseFactory) -> None:
    """CVE-2023-44487: open a stream (its handler starts), cancel it at once; thousands of times."""
    with abuse(memory=HANDLERS, limits=RESET_LIMITS) as run:
        attacker = run.attacker()

        def frames() -> Iterator[bytes]:
            while True:
                stream_id, headers = attacker.request(BIDI_HELLO)
                yield headers + rst_frame(stream_id, CANCEL)

        with run.attack():
            sent = attacker.burst(frames(), max_frames=ATTACK_STREAMS)
            run.record.outcome = _assert_churn_goaway(attacker, sent)
        _expect_churn_log(run, attacker)


def _te_gzip(attacker: Attacker) -> bytes:
    headers = [h for h in request_headers(SAY_HELLO) if h[0] != "te"] + [("te", "gzip")]
    return attacker.request(headers=headers)[1]


def _oversized_prefix(attacker: Attacker) -> bytes:
    stream_id, headers = attacker.request(SAY_HELLO)
    return headers + data_frame(stream_id, b"\x00" + (2**31 - 1).to_bytes(4, "big"))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("request_kind", ["te_gzip", "oversized_prefix"])
def test_made_you_reset(abuse: AbuseFactory, request_kind: str) -> None:
    """CVE-2025-8671: requests the server itself must reset (malformed, or a message too large)."""
    build = {"te_gzip": _te_gzip, "oversized_prefix": _oversized_prefix}[request_kind]
    memory = (  # a refused request never gets a handler; a too-large message waits in one
        NotAMemoryAttack("each request refused at its headers: CPU and output")
        if request_kind == "te_gzip"
        else HANDLERS
    )
    with abuse(memory=memory, limits=RESET_LIMITS) as run:
        attacker = run.attacker()

        def frames() -> Iterator[bytes]:
            while True:
                yield build(attacker)

        with run.attack():
            sent = attacker.burst(frames(), max_frames=ATTACK_STREAMS)
            run.record.outcome = _assert_churn_goaway(attacker, sent)
        # Before the budget ran out the server did answer each stream itself.
        first = attacker.streams[1]
        if request_kind == "te_gzip":
            assert first.reset_code is not None and first.reset_code != NO_ERROR
        else:
            assert first.trailers is not None
            assert ("grpc-status", "8") in first.trailers  # RESOURCE_EXHAUSTED
        _expect_churn_log(run, attacker)


@pytest.mark.timeout(30)
def test_too_many_streams(abuse: AbuseFactory) -> None:
    """More streams than SETTINGS_MAX_CONCURRENT_STREAMS: the excess is refused, nothing else."""
    limit, excess = 100, 50  # excess below the reset budget: refusals count as resets
    small = NotAMemoryAttack("150 streams hold about 0.3 MiB: the limit bounds handlers at once")
    with abuse(memory=small, limits={"max_concurrent_streams": limit}) as run:
        attacker = run.attacker()
        assert attacker.frames_of(type(attacker.frames[0]))  # the server's SETTINGS arrived
        opened = [attacker.request(BIDI_HELLO) for _ in range(limit + excess)]
        admitted = [sid for sid, _ in opened[:limit]]
        refused = [sid for sid, _ in opened[limit:]]
        with run.attack():
            attacker.send(b"".join(frame for _, frame in opened))
            attacker.wait_for(
                lambda: set(refused) <= set(attacker.resets()), WAIT, "RST_STREAM of the excess"
            )
            attacker.ping_round_trip()
        resets = attacker.resets()
        assert {resets[sid] for sid in refused} == {REFUSED_STREAM}
        assert not set(admitted) & set(resets), "an admitted stream was reset"
        assert not attacker.goaways

        # The admitted streams still run: the first one answers and finishes normally.
        first = admitted[0]
        attacker.send(data_frame(first, hello_message("one")))
        attacker.wait_for(
            lambda: b"Hello one" in attacker.streams[first].data, WAIT, "reply on stream 1"
        )
        attacker.send(data_frame(first, b"", end_stream=True))
        attacker.wait_for(lambda: attacker.streams[first].finished, WAIT, "end of stream 1")
        assert ("grpc-status", "0") in (attacker.streams[first].trailers or [])
        # Its slot is free again: one more stream is admitted.
        late, headers = attacker.request(BIDI_HELLO)
        attacker.send(headers + data_frame(late, hello_message("late"), end_stream=True))
        attacker.wait_for(lambda: attacker.streams[late].finished, WAIT, f"stream {late}")
        assert attacker.streams[late].reset_code is None
        assert b"Hello late" in attacker.streams[late].data
        run.expect_log(attacker, r"refused: over SETTINGS_MAX_CONCURRENT_STREAMS")
        run.record.outcome = f"{len(refused)} x RST_STREAM(REFUSED_STREAM), connection alive"


@pytest.mark.timeout(30)
def test_stream_flood_in_one_read(abuse: AbuseFactory) -> None:
    """10,000 streams opened (not ended) in one write: refused, and the loop never stalls."""
    streams = 10_000
    memory = MemoryBound(
        streams * STREAM_STATE,
        "a handler per stream",
        admitted=100 * STREAM_STATE,  # SETTINGS_MAX_CONCURRENT_STREAMS: the rest are refused
    )
    with abuse(memory=memory, limits=RESET_LIMITS) as run:
        attacker = run.attacker()
        blob = b"".join(attacker.request(SAY_HELLO)[1] for _ in range(streams))
        with run.attack():
            started = time.monotonic()
            attacker.send(blob)
            goaway = attacker.wait_goaway(20)
            took = time.monotonic() - started
            attacker.wait_eof()
        run.record.outcome = (
            f"GOAWAY({error_name(goaway.error_code)}) after {took:.2f} s for {len(blob)} bytes"
        )
        assert goaway.error_code == ENHANCE_YOUR_CALM
        assert took < 1.0, f"one {len(blob)}-byte write kept the server busy for {took:.2f} s"
