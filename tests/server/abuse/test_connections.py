"""Whole connections as the weapon: more than the cap, and bytes that are not HTTP/2 at all."""

from __future__ import annotations

import collections
import contextlib
import random
import ssl
import time

import pytest

from greeter.tap.records import error_code_name as error_name
from tests.support.abuse import AbuseFactory, MemoryBound, NotAMemoryAttack
from tests.support.h2peer import FRAME_SIZE_ERROR, LOTS_OF_GREETINGS, NO_ERROR, PROTOCOL_ERROR

EXTRA_CONNECTIONS = 50


@pytest.mark.timeout(30)
def test_connection_cap(abuse: AbuseFactory) -> None:
    """max_connections 5, four of them busy (an open LotsOfGreetings each): a flood of new
    connections is admitted by closing the connection idle longest (GOAWAY, NO_ERROR), never a
    busy one; the polite client (grpcio) reconnects when it is the one closed and loses no call;
    a newcomer is refused only when every connection has an RPC."""
    cap = 5
    fds = NotAMemoryAttack("55 connections hold about 1 MiB: the cap protects file descriptors")
    with abuse(memory=fds, max_connections=cap) as run:  # the polite client is connection 1
        busy = [run.attacker() for _ in range(cap - 1)]
        for attacker in busy:
            _, headers = attacker.request(LOTS_OF_GREETINGS)
            attacker.send(headers)
            attacker.ping_round_trip()  # the request is in: the connection is busy
        with run.attack():  # each handshake: its SETTINGS came, it was admitted
            newcomers = [run.attacker() for _ in range(EXTRA_CONNECTIONS)]

        # Each admission past the cap closed one idle connection: an earlier newcomer or, between
        # its calls, the polite client (which reconnects, closing another in turn). While the
        # polite client is mid-call every connection is busy, and a newcomer is refused.
        ended = [n for n in newcomers[:-1] if n.poll(n.goaway_or_closed, 5)]
        reasons = [n.goaways[0].additional_data for n in ended if n.goaways]
        shed = [r for r in reasons if r.startswith(b"connection cap (5) reached")]
        assert set(reasons) - set(shed) <= {b"too many connections"}, reasons
        assert len(shed) >= EXTRA_CONNECTIONS // 2, reasons
        assert all(n.goaways[0].error_code == NO_ERROR for n in ended if n.goaways)
        run.expect_log(None, r"closing connection from .*connection cap \(5\) reached")
        for attacker in busy:  # never shed, still served
            assert not attacker.goaways, attacker.summary()
            assert b"Hello b" in bytes(attacker.unary("b").data), attacker.summary()
        run.record.outcome = (
            f"{len(shed)} idle connections closed for {EXTRA_CONNECTIONS} newcomers; busy ones kept"
        )


@pytest.mark.timeout(30)
def test_cli_limits(abuse: AbuseFactory) -> None:
    """The same limits through `greeter serve` flags: a slowloris peer is closed at the handshake
    timeout; one over the cap of 2 is admitted by closing the connection idle longest."""
    fds = NotAMemoryAttack("three connections: the limits bound time and file descriptors")
    cli = ["--handshake-timeout", "1", "--max-connections", "2"]
    with abuse(memory=fds, cli=cli) as run:
        slow = run.attacker(handshake=False)  # connection 2 of 2, sends nothing
        with run.attack():
            over = run.attacker()  # admitted: SETTINGS came
            over.ping_round_trip()
            elapsed = slow.wait_eof(4)
        # Closed by the handshake timeout (1 s), not sooner (e.g. shed for the newcomer instead).
        assert 0.9 <= elapsed <= 2.5, elapsed
        run.expect_log(slow, r"no HTTP/2 preface within 1(\.0)? s")
        run.expect_log(None, r"closing connection from .*connection cap \(2\) reached")
        run.record.outcome = (
            f"3rd connection admitted, an idle one closed; silent one gone at {elapsed:.2f} s"
        )


def _tls_client_hello() -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the ServerHello
        tls.do_handshake()
    return outgoing.read()


GARBAGE = {
    "random_bytes": lambda: random.Random(11).randbytes(4096),
    "http1_request": lambda: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "tls_client_hello": _tls_client_hello,
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", list(GARBAGE))
def test_garbage_instead_of_preface(abuse: AbuseFactory, kind: str) -> None:
    """Not HTTP/2: GOAWAY(PROTOCOL_ERROR) (RFC 9113 §3.4) and a close, no traceback."""
    garbage = GARBAGE[kind]()
    with abuse(memory=NotAMemoryAttack("a few KiB, refused at the preface")) as run:
        attacker = run.attacker(handshake=False)
        with run.attack():
            attacker.send(garbage)
            goaway = attacker.wait_goaway()
            attacker.wait_eof()
        assert goaway.error_code == PROTOCOL_ERROR, attacker.summary()
        run.expect_log(attacker, r"WARNING .*closing connection from")
        run.record.outcome = f"GOAWAY({error_name(goaway.error_code)}) + close"


@pytest.mark.timeout(30)
def test_garbage_frames_after_preface(abuse: AbuseFactory) -> None:
    """A valid preface, then random bytes, on 20 connections (seeded): each closed promptly."""
    idle = 2.0  # what closes them if nothing else does
    small = NotAMemoryAttack("20 connections of 2 KiB each, refused at their first bad frame")
    with abuse(memory=small, timeouts={"idle": idle}) as run:
        attackers = [run.attacker() for _ in range(20)]  # preface + SETTINGS exchanged
        with run.attack():
            for seed, attacker in enumerate(attackers):
                attacker.send(random.Random(seed).randbytes(2048))
            deadline = time.monotonic() + idle + 1
            for attacker in attackers:
                attacker.poll(attacker.closed, max(0.0, deadline - time.monotonic()))
        outcomes = [
            error_name(a.goaways[0].error_code) + f" {bytes(a.goaways[0].additional_data)!r}"
            if a.goaways
            else ("EOF" if a.eof else "open")
            for a in attackers
        ]
        run.record.outcome = f"{dict(collections.Counter(outcomes))}"
        assert all(a.goaways and a.goaways[0].error_code != NO_ERROR for a in attackers), outcomes


@pytest.mark.timeout(30)
def test_oversized_frame_header(abuse: AbuseFactory) -> None:
    """Frame headers announcing 16 MiB (> MAX_FRAME_SIZE 16 KiB), the body sent but one byte."""
    connections, length = 4, 2**24 - 1
    memory = MemoryBound(
        connections * length, "each 16 MiB frame buffered whole before it is parsed", admitted=0
    )
    with abuse(memory=memory) as run:
        attackers = [run.attacker() for _ in range(connections)]
        header = length.to_bytes(3, "big") + bytes([0x0, 0x0]) + (1).to_bytes(4, "big")  # DATA
        chunk = b"\x00" * (1024 * 1024)
        with run.attack():
            for attacker in attackers:
                attacker.send(header)
                for sent in range(0, length - 1, len(chunk)):  # at most 16 chunks
                    if attacker.eof or not attacker.send(
                        chunk[: min(len(chunk), length - 1 - sent)]
                    ):
                        break
            for attacker in attackers:
                attacker.poll(attacker.goaway_or_closed, 1.0)
        codes = [error_name(a.goaways[0].error_code) if a.goaways else "none" for a in attackers]
        run.record.outcome = f"GOAWAYs {codes}"
        assert codes == [error_name(FRAME_SIZE_ERROR)] * connections, attackers[0].summary()
