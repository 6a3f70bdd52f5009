"""The canned exchange: one deterministic, in-process connection the golden transcripts record.

Not a test module. The server is the real sans-IO core
(``greeter.core.server_connection.ServerConnection``) with a server-role :class:`~greeter.tap.Tap`
on its byte observer; the client is a real ``h2`` client joined to it by the ``Pair`` harness of
tests.support.core_pair (no sockets). The test plays the application side with the core's
commands. Nothing random reaches the wire: fixed
``:authority`` and ``user-agent``, a fixed PING payload, and a fake clock (monotonic and wall)
that advances by :data:`TICK` before every chunk of bytes the core reads or writes (plus explicit
waits), so every timestamp, wall time, window and duration is exact.

The exchange, in order (stream ids are the client's odd ids):

====  ===========================================================================================
s1    SayHello("world") -> "Hello world", OK
s3    LotsOfReplies(name "w", count 3) -> three replies, OK
s5    LotsOfGreetings("a", "b", "c") -> "Hello a, b, c", OK
s7    BidiHello: two ping-pong rounds, OK
s9    SayHello("nobody") -> Trailers-Only NOT_FOUND "no such name: ü%" (percent-encoded on the
      wire, decoded in the rpc end record)
s11   LotsOfReplies(name "c", count 10): one reply, then the client resets the stream (CANCEL)
--    the client lowers SETTINGS_INITIAL_WINDOW_SIZE to 64 (SETTINGS and its ACK)
s13   SayHello with a 100-character name: the reply (113 bytes framed) exceeds the 64-byte stream
      window, so the server's send stalls; one second later the client returns 64 bytes with a
      stream WINDOW_UPDATE (unstall), the rest of the reply and the trailers follow, OK
--    a PING from the client with payload ``canned01`` and its ACK (round trip: one tick)
--    the tap is closed with the reason ``"closed"``
====  ===========================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from grpclib.const import Status
from h2.settings import SettingCodes

from gen.greet import HelloReply, HelloRequest
from greeter.core.events import Event, MessageReceived
from greeter.core.server_connection import ServerConnection
from greeter.tap import Direction, MessageTypes, Record, Tap
from greeter.wire import codec
from tests.support.core_pair import Pair
from tests.support.h2peer import (
    BIDI_HELLO,
    LOTS_OF_GREETINGS,
    LOTS_OF_REPLIES,
    SAY_HELLO,
)

CONNECTION_ID = 1
PEER = "127.0.0.1:50000"
USER_AGENT = "greeter-canned/1.0"
PING_PAYLOAD = b"canned01"
ERROR_MESSAGE = "no such name: ü%"
STALL_WINDOW = 64
LONG_NAME = "x" * 100
START = 100.0
WALL_START = 1_768_469_400.0
"""The wall clock at START: 2026-01-15T09:30:00Z (an integer, so wall times stay exact)."""
TICK = 0.125
"""Clock advance before every observed chunk; a binary fraction, so all sums stay exact."""
STALL_WAIT = 1.0
"""How long the client leaves the stalled stream without window before replenishing it."""


class Clock:
    """A fake monotonic clock that moves only when told; :meth:`wall` is its UTC wall clock."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_START + self.now - START

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Canned:
    """The result of :func:`canned_exchange`: every server-side record, in order."""

    records: list[Record]
    stream_ids: dict[str, int]
    """Scenario name -> stream id (``unary``, ``server_streaming``, ...)."""


def request(name: str, count: int = 0) -> bytes:
    return codec.encode(HelloRequest(name=name, count=count))


def reply(text: str) -> bytes:
    return codec.encode(HelloReply(message=text))


class _Exchange:
    """The two ends and the application role played by the test."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.records: list[Record] = []
        self.tap = Tap(
            self.records.append,
            connection_id=CONNECTION_ID,
            role="server",
            peer=PEER,
            types=MessageTypes.from_module("gen.greet"),
            clock=self.clock,
            wall_clock=self.clock.wall,
        )
        self.pair = Pair(connect=False)
        # Swapped before a single byte moved: this core sends the server preface, observed.
        self.pair.core = ServerConnection(on_bytes=self._observe)
        self.core = self.pair.core
        self.core.initiate()
        self.pump()

    def _observe(self, direction: Direction, data: bytes) -> None:
        self.clock.advance(TICK)
        self.tap.observe(direction, data)

    def pump(self) -> list[Event]:
        """Move bytes both ways; the application consumes every request message at once."""
        events = self.pair.pump()
        for event in events:
            if isinstance(event, MessageReceived):
                self.core.acknowledge(event.stream_id, event.flow_bytes)
        return events

    def open(self, path: str) -> int:
        return self.pair.open(path, metadata=[("user-agent", USER_AGENT)])

    def ask(self, stream_id: int, name: str, count: int = 0, *, end: bool = False) -> None:
        self.pair.send_message(stream_id, request(name, count), end=end)
        self.pump()

    def answer(self, stream_id: int, text: str) -> None:
        self.core.send_message(stream_id, reply(text))
        self.pump()

    def finish(self, stream_id: int, status: Status = Status.OK, message: str = "") -> None:
        self.core.send_trailers(stream_id, status, message)
        self.pump()


def canned_exchange() -> Canned:
    """Play the canned exchange (module docstring) and return the server tap's records."""
    x = _Exchange()
    ids: dict[str, int] = {}

    ids["unary"] = s = x.open(SAY_HELLO)
    x.ask(s, "world", end=True)
    x.answer(s, "Hello world")
    x.finish(s)

    ids["server_streaming"] = s = x.open(LOTS_OF_REPLIES)
    x.ask(s, "w", 3, end=True)
    for index in range(1, 4):
        x.answer(s, f"Hello w #{index}")
    x.finish(s)

    ids["client_streaming"] = s = x.open(LOTS_OF_GREETINGS)
    for name in ("a", "b"):
        x.ask(s, name)
    x.ask(s, "c", end=True)
    x.answer(s, "Hello a, b, c")
    x.finish(s)

    ids["bidi"] = s = x.open(BIDI_HELLO)
    for name in ("x", "y"):
        x.ask(s, name)
        x.answer(s, f"Hello {name}")
    x.pair.end(s)
    x.finish(s)

    ids["error"] = s = x.open(SAY_HELLO)
    x.ask(s, "nobody", end=True)
    x.finish(s, Status.NOT_FOUND, ERROR_MESSAGE)

    ids["cancel"] = s = x.open(LOTS_OF_REPLIES)
    x.ask(s, "c", 10, end=True)
    x.answer(s, "Hello c #1")
    x.pair.reset(s)  # RST_STREAM(CANCEL)
    x.pump()

    x.pair.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: STALL_WINDOW})
    x.pump()
    x.pair.auto_ack = False  # the client reads the reply but returns no window by itself
    ids["stall"] = s = x.open(SAY_HELLO)
    x.ask(s, LONG_NAME, end=True)
    x.answer(s, f"Hello {LONG_NAME}")
    if not x.core.is_send_blocked(s):  # pragma: no cover - the scenario itself is broken
        raise AssertionError("the long reply did not stall")
    x.clock.advance(STALL_WAIT)
    x.pair.client.acknowledge_received_data(STALL_WINDOW, s)  # h2 sends WINDOW_UPDATE(64)
    x.pump()
    if x.core.is_send_blocked(s):  # pragma: no cover
        raise AssertionError("the WINDOW_UPDATE did not release the reply")
    x.finish(s)
    x.pair.auto_ack = True

    x.pair.client.ping(PING_PAYLOAD)
    x.pump()

    x.tap.close("closed")
    return Canned(x.records, ids)
