"""Control-frame floods (PING, SETTINGS, empty DATA, WINDOW_UPDATE) and gRFC A8 ping strikes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import pytest
from hyperframe.frame import PingFrame, SettingsFrame

from greeter.tap.records import error_code_name as error_name
from tests.support.abuse import AbuseFactory, NotAMemoryAttack
from tests.support.attacker import Attacker
from tests.support.h2peer import (
    BIDI_HELLO,
    ENHANCE_YOUR_CALM,
    WAIT,
    data_frame,
    ping_frame,
    window_update_frame,
)

FLOOD_FRAMES = 10_000
"""Frames per flood: ten times the budget."""
BUDGET = 1_000
FLOOD_LIMITS = {
    "control_frame_budget": BUDGET,
    "control_frame_window": 1.0,
    # The ping policy would end a PING flood after three pings: switch it off here so that the
    # control-frame budget is what fires (test_ping_strikes covers the policy).
    "min_ping_interval": 0.0,
    "permit_ping_without_stream": True,
}


def _pings(attacker: Attacker) -> Iterator[bytes]:
    count = 0
    while True:
        count += 1
        yield ping_frame(count.to_bytes(8, "big"))


def _settings(attacker: Attacker) -> Iterator[bytes]:
    frame = SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 4096}).serialize()
    while True:
        yield frame


def _empty_data(attacker: Attacker) -> Iterator[bytes]:
    stream_id, headers = attacker.request(BIDI_HELLO)  # an open stream, its handler waiting
    yield headers
    frame = data_frame(stream_id, b"")  # no END_STREAM
    while True:
        yield frame


def _window_updates(attacker: Attacker) -> Iterator[bytes]:
    frame = window_update_frame(0, 1)  # credit the server never needed
    while True:
        yield frame


def _acks(kind: type[PingFrame] | type[SettingsFrame]) -> Callable[[Attacker], int]:
    return lambda attacker: sum(1 for f in attacker.frames_of(kind) if "ACK" in f.flags)


FLOODS = {
    "ping": (_pings, _acks(PingFrame)),
    "settings": (_settings, _acks(SettingsFrame)),
    "empty_data": (_empty_data, lambda attacker: attacker.received_bytes),
    "window_update": (_window_updates, lambda attacker: attacker.received_bytes),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", list(FLOODS))
def test_control_frame_flood(abuse: AbuseFactory, kind: str) -> None:
    """Ten thousand frames that make the server work without advancing any request."""
    frames, answers = FLOODS[kind]
    work = NotAMemoryAttack("each frame is handled and forgotten at once: CPU and output")
    with abuse(memory=work, limits=FLOOD_LIMITS) as run:
        attacker = run.attacker()
        with run.attack():
            sent = attacker.burst(frames(attacker), max_frames=FLOOD_FRAMES)
            goaway = attacker.wait_goaway()
            attacker.wait_eof()
        assert goaway.error_code == ENHANCE_YOUR_CALM, attacker.summary()
        assert goaway.additional_data == b"control frame flood"
        run.expect_log(attacker, r"WARNING .*defence control_frames fired")
        run.expect_log(attacker, r"WARNING .*closing connection from .*control frames")
        # Bounded output: no answer to the frames over the budget (PING and SETTINGS ACKs), and
        # nothing at all for empty DATA and WINDOW_UPDATE (bytes: the preface and the GOAWAY).
        answered = answers(attacker)
        if kind in ("ping", "settings"):
            assert answered <= BUDGET + 1, attacker.summary()
            output = f"{answered} ACKs"
        else:
            assert answered < 1024, attacker.summary()
            output = f"{answered} bytes out"
        run.record.outcome = (
            f"GOAWAY({error_name(goaway.error_code)}) after {sent} frames sent; {output}"
        )


def _acked(attacker: Attacker, opaque: bytes) -> bool:
    """The PING with `opaque` was acknowledged (or the server sent GOAWAY instead)."""
    return bool(attacker.goaways) or any(
        "ACK" in f.flags and f.opaque_data == opaque for f in attacker.frames_of(PingFrame)
    )


@pytest.mark.timeout(30)
def test_ping_strikes(abuse: AbuseFactory) -> None:
    """gRFC A8 with the defaults: PINGs on a connection without streams, one per round trip."""
    max_pings = 20
    work = NotAMemoryAttack("a few PINGs: the policy bounds the work of answering them")
    limits = {"min_ping_interval": 300.0, "max_ping_strikes": 2}
    with abuse(memory=work, limits=limits) as run:
        attacker = run.attacker()
        pings = 0
        with run.attack():
            for pings in range(1, max_pings + 1):
                opaque = pings.to_bytes(8, "big")
                attacker.send(ping_frame(opaque))
                attacker.wait_for(functools.partial(_acked, attacker, opaque), WAIT, "ACK")
                if attacker.goaways or attacker.eof:
                    break
            goaway = attacker.wait_goaway()
            attacker.wait_eof()
        assert goaway.error_code == ENHANCE_YOUR_CALM, attacker.summary()
        assert goaway.additional_data == b"too_many_pings"
        # The first PING is free, each later one is a strike, the third strike is too many.
        assert pings == 4, attacker.summary()
        run.expect_log(attacker, r"WARNING .*defence ping_strikes fired")
        run.record.outcome = (
            f"GOAWAY({error_name(goaway.error_code)}, too_many_pings) at PING {pings}"
        )
