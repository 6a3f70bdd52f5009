"""Peers that stall: zero-window and non-reading clients, slowloris, idle and dead connections."""

from __future__ import annotations

import functools
import time

import pytest
from hyperframe.frame import PingFrame, SettingsFrame

from greeter.tap.records import error_code_name as error_name
from tests.support.abuse import (
    AbuseFactory,
    MemoryBound,
    NotAMemoryAttack,
    cpu_seconds,
    poll_proc,
    server_holds_connection,
)
from tests.support.attacker import Attacker
from tests.support.h2peer import (
    LOTS_OF_REPLIES,
    NO_ERROR,
    PREFACE,
    WAIT,
    data_frame,
    hello_message,
    window_update_frame,
)

BIG_WINDOW = 2**31 - 1
REPLIES = 1_000_000
"""Replies of about 1 KB each: a server that queued them all would need a gigabyte."""
NAME = "x" * 1_000
STALL = 1.0
QUEUED_REPLIES = MemoryBound(REPLIES * len(NAME), "the replies queued without back-pressure")
"""A handler blocked by the peer's window or socket: the server holds one reply, not all."""
TIME = NotAMemoryAttack("one connection held open: the limit bounds time and file descriptors")


@pytest.mark.timeout(30)
def test_zero_window_reader(abuse: AbuseFactory) -> None:
    """INITIAL_WINDOW_SIZE 0 on a huge server stream: the handler waits, memory stays flat."""
    timeouts = {"write_stall": 30.0}  # the send-progress limit is tested below
    with abuse(memory=QUEUED_REPLIES, timeouts=timeouts) as run:
        attacker = run.attacker(settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
        stream_id, headers = attacker.request(LOTS_OF_REPLIES)
        with run.attack():
            attacker.send(headers + data_frame(stream_id, hello_message(NAME, REPLIES), True))
            view = attacker.streams[stream_id]
            attacker.wait_for(lambda: view.headers is not None, WAIT, "response headers")
            # The handler is blocked, not spinning: over one second the server uses little CPU
            # (the polite client's calls included) and sends no DATA.
            started_cpu, started = cpu_seconds(run.pid), time.monotonic()
            assert not attacker.poll(lambda: view.data_frames > 0 or attacker.eof, 1.0)
            busy = (cpu_seconds(run.pid) - started_cpu) / (time.monotonic() - started)
            assert busy < 0.6, f"server CPU {busy:.0%} while its only stream is blocked"
            # A little window lets exactly that much through, then it blocks again.
            attacker.send(window_update_frame(stream_id, 3_000))
            attacker.wait_for(lambda: len(view.data) >= 3_000, WAIT, "3,000 bytes of replies")
            assert not attacker.poll(lambda: len(view.data) > 3_000, 0.2)
        assert not view.finished and not attacker.goaways
        run.record.outcome = f"handler blocked (server CPU {busy:.0%}); 3000-byte window -> 3000 B"


@pytest.mark.timeout(30)
def test_zero_window_stream_is_reset_after_write_stall(abuse: AbuseFactory) -> None:
    """The send-progress limit (`write_stall`): a stream that cannot send for that long is reset."""
    with abuse(memory=QUEUED_REPLIES, timeouts={"write_stall": STALL}) as run:
        attacker = run.attacker(settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
        stream_id, headers = attacker.request(LOTS_OF_REPLIES)
        with run.attack():
            attacker.send(headers + data_frame(stream_id, hello_message(NAME, REPLIES), True))
            view = attacker.streams[stream_id]
            attacker.wait_for(lambda: view.headers is not None, WAIT, "HEADERS")
            # The stream that cannot send for STALL seconds is reset (its handler cancelled);
            # the connection itself stays, for its other streams.
            attacker.wait_for(lambda: view.reset_code == 0x8, STALL + 3, "RST_STREAM(CANCEL)")
            assert not attacker.eof
        run.record.outcome = f"stream reset with CANCEL after {STALL} s without window"


@pytest.mark.timeout(30)
def test_non_reading_client_is_dropped(abuse: AbuseFactory) -> None:
    """Windows wide open but the socket never read: back-pressure, then the write-stall limit."""
    with abuse(memory=QUEUED_REPLIES, timeouts={"write_stall": STALL}) as run:
        attacker = run.attacker(
            settings={SettingsFrame.INITIAL_WINDOW_SIZE: BIG_WINDOW},
            connection_window=BIG_WINDOW - 65_535,
            read=False,
        )
        stream_id, headers = attacker.request(LOTS_OF_REPLIES)
        with run.attack():
            attacker.send(headers + data_frame(stream_id, hello_message(NAME, REPLIES), True))
            line = run.expect_log(attacker, r"closing connection from .*read nothing", 10)

            def released() -> bool:
                return not server_holds_connection(run.pid, run.port, attacker.port)

            dropped = poll_proc(released, 3.0)
        assert dropped, (
            f"logged {line!r} but the server still holds the socket: transport.close() waits to"
            " flush the buffer to a peer that does not read"
        )
        attacker.start_reading()
        attacker.wait_eof()
        run.record.outcome = (
            f"dropped after {STALL} s; client then read {attacker.received_bytes} B"
        )


@pytest.mark.timeout(30)
@pytest.mark.parametrize("style", ["silent", "trickle"])
def test_slowloris(abuse: AbuseFactory, style: str) -> None:
    """No client preface (silent), or one byte of it every 0.5 s (trickle): closed in time."""
    handshake = 1.0
    with abuse(memory=TIME, timeouts={"handshake": handshake}) as run:
        attacker = run.attacker(handshake=False)
        with run.attack():
            if style == "trickle":
                for byte in PREFACE:  # at most 24 bytes, 0.5 s apart
                    if not attacker.send(bytes([byte])) or attacker.poll(lambda: attacker.eof, 0.5):
                        break
            elapsed = attacker.wait_eof(handshake + 3)
        goaway = attacker.wait_goaway(0)
        assert goaway.error_code == NO_ERROR
        assert handshake - 0.1 <= elapsed <= handshake + 1.5, elapsed
        run.expect_log(attacker, rf"closing connection from .*no HTTP/2 preface within {handshake}")
        run.record.outcome = f"GOAWAY({error_name(goaway.error_code)}) + close at {elapsed:.2f} s"


@pytest.mark.timeout(30)
def test_idle_connection(abuse: AbuseFactory) -> None:
    """A completed handshake and then nothing: GOAWAY and close after the idle limit."""
    idle = 1.0
    with abuse(memory=TIME, timeouts={"idle": idle}) as run:
        attacker = run.attacker()
        with run.attack():
            elapsed = attacker.wait_eof(idle + 3)
        goaway = attacker.wait_goaway(0)
        assert goaway.error_code == NO_ERROR
        assert idle - 0.1 <= elapsed <= idle + 1.5, elapsed
        run.expect_log(attacker, rf"closing connection from .*idle for {idle}")
        run.record.outcome = f"GOAWAY({error_name(goaway.error_code)}) + close at {elapsed:.2f} s"


@pytest.mark.timeout(30)
def test_keepalive_detects_dead_peer(abuse: AbuseFactory) -> None:
    """A peer that never ACKs the server's keepalive PING is closed; one that ACKs stays."""
    interval, timeout = 0.5, 0.25
    timeouts = {"keepalive_time": interval, "keepalive_timeout": timeout, "idle": None}
    with abuse(memory=TIME, timeouts=timeouts) as run:
        dead = run.attacker()
        alive = run.attacker()
        with run.attack():
            acked = 0
            for _ in range(3):  # the live peer answers three keepalive PINGs
                alive.wait_for(
                    functools.partial(_more_pings_than, alive, acked),
                    interval + 2,
                    "keepalive PING",
                )
                ping = _server_pings(alive)[acked]
                ack = PingFrame(0, opaque_data=ping.opaque_data)
                ack.flags.add("ACK")
                alive.send(ack.serialize())
                acked += 1
            elapsed = dead.wait_eof(WAIT)
        assert _server_pings(dead), "the dead peer was closed without a keepalive PING"
        goaway = dead.wait_goaway(0)
        assert interval + timeout - 0.1 <= elapsed <= interval + timeout + 1.5, elapsed
        run.expect_log(dead, r"closing connection from .*keepalive PING not acknowledged")
        assert not alive.eof and not alive.goaways, alive.summary()
        alive.ping_round_trip()
        run.record.outcome = (
            f"dead peer: PING, GOAWAY({error_name(goaway.error_code)}) + close at {elapsed:.2f} s;"
            f" live peer answered {acked} PINGs and stays"
        )


@pytest.mark.timeout(30)
def test_keepalive_timeout_longer_than_interval(abuse: AbuseFactory) -> None:
    """keepalive_time 0.5 s, keepalive_timeout 1 s (valid in grpc-go): closed by about 1.5 s."""
    interval, timeout = 0.5, 1.0
    timeouts = {"keepalive_time": interval, "keepalive_timeout": timeout, "idle": None}
    with abuse(memory=TIME, timeouts=timeouts) as run:
        dead = run.attacker()
        with run.attack():
            elapsed = dead.wait_eof(interval + timeout + 2.0)
        run.record.outcome = f"closed at {elapsed:.2f} s; {len(_server_pings(dead))} PINGs"


def _more_pings_than(attacker: Attacker, count: int) -> bool:
    return len(_server_pings(attacker)) > count


def _server_pings(attacker: Attacker) -> list[PingFrame]:
    return [f for f in attacker.frames_of(PingFrame) if "ACK" not in f.flags]
