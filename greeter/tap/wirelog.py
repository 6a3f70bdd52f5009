"""Assert on the wire in tests: a record collector for the wire tap (the ``wire_log`` fixture's).

Rule: uses only the tap's records and TapFactory; no I/O. The pytest fixture lives in
greeter.tap.pytest_plugin, so importing this module never needs pytest.

What it offers:

- :class:`WireLog`, a tap sink (a callable taking records) that keeps every record it is given
  and answers questions about them: :meth:`~WireLog.frames`, :meth:`~WireLog.messages`,
  :meth:`~WireLog.rpcs`, :meth:`~WireLog.connection_events` and :meth:`~WireLog.trailers`.
  :meth:`~WireLog.tap` returns a :class:`~greeter.tap.TapFactory` emitting into the log, to be
  passed as ``Server(tap=...)``, ``Proxy(tap=...)`` or, with ``role="client"``,
  ``Channel(tap=...)``.
- the pytest fixture ``wire_log`` (greeter.tap.pytest_plugin): a fresh, empty
  :class:`WireLog` per test, in any project that installs greeter::

      async def test_say_hello(wire_log: WireLog) -> None:
          async with Server([Greeter()], port=0, tap=wire_log.tap(types="gen.greet")) as server:
              ...  # call it
          assert wire_log.trailers(1)["grpc-status"] == "0"
          assert all(f.length <= 16384 for f in wire_log.frames("DATA", direction="out"))

Records arrive on the event loop's thread as the server reads and writes bytes, so a query
made right after a call returns sees everything up to the response's last frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from typing import Literal

from greeter.tap.observer import DEFAULT_REDACT, TapFactory
from greeter.tap.records import (
    ConnectionEvent,
    ConnectionRecord,
    Direction,
    FrameRecord,
    MessageRecord,
    Record,
    RpcEvent,
    RpcRecord,
)
from greeter.tap.resolve import MessageTypes

__all__ = ["WireLog"]

_OTHER: dict[Direction, Direction] = {"in": "out", "out": "in"}
_HEADER_BLOCKS = ("HEADERS", "CONTINUATION")


class WireLog:
    """Collects tap records (call it with a record) and queries them.

    Every query returns the matching records in the order the tap emitted them; a filter left at
    ``None`` matches everything. ``direction`` is seen from the tapped endpoint (``"in"``
    received, ``"out"`` sent). Records of several connections and taps may share one log;
    ``connection_id`` tells them apart where a stream id alone would be ambiguous.
    """

    def __init__(self) -> None:
        self.records: list[Record] = []
        """Every record received, in order."""

    def __call__(self, record: Record) -> None:
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def clear(self) -> None:
        """Forget every record collected so far."""
        self.records.clear()

    def tap(
        self,
        role: Literal["server", "client"] = "server",
        types: MessageTypes | str | None = None,
        *,
        redact: Iterable[str] = DEFAULT_REDACT,
    ) -> TapFactory:
        """A tap factory emitting into this log.

        ``types`` decodes messages into their classes: a :class:`MessageTypes`, or the name of
        a generated module (``"gen.greet"``) to read them from. Without it, messages are shown
        as protobuf wire fields.
        """
        if isinstance(types, str):
            types = MessageTypes.from_module(types)
        return TapFactory(self, role=role, types=types, redact=redact)

    def frames(
        self,
        type: str | None = None,
        direction: Direction | None = None,
        stream_id: int | None = None,
        *,
        connection_id: int | None = None,
    ) -> list[FrameRecord]:
        """HTTP/2 frames; ``type`` is the RFC 9113 name (``"DATA"``, ``"SETTINGS"``, ...)."""
        return [
            r
            for r in self.records
            if isinstance(r, FrameRecord)
            and (type is None or r.type == type)
            and (direction is None or r.direction == direction)
            and (stream_id is None or r.stream_id == stream_id)
            and (connection_id is None or r.connection_id == connection_id)
        ]

    def messages(
        self,
        method: str | None = None,
        direction: Direction | None = None,
        *,
        stream_id: int | None = None,
        connection_id: int | None = None,
    ) -> list[MessageRecord]:
        """gRPC messages; ``method`` is a ``:path`` or a glob of one (``/greet.Greeter/*``)."""
        return [
            r
            for r in self.records
            if isinstance(r, MessageRecord)
            and (method is None or (r.method is not None and fnmatchcase(r.method, method)))
            and (direction is None or r.direction == direction)
            and (stream_id is None or r.stream_id == stream_id)
            and (connection_id is None or r.connection_id == connection_id)
        ]

    def rpcs(
        self,
        event: RpcEvent | None = None,
        method: str | None = None,
        *,
        connection_id: int | None = None,
    ) -> list[RpcRecord]:
        """RPC ``start`` and ``end`` records; ``method`` as for :meth:`messages`."""
        return [
            r
            for r in self.records
            if isinstance(r, RpcRecord)
            and (event is None or r.event == event)
            and (method is None or fnmatchcase(r.method, method))
            and (connection_id is None or r.connection_id == connection_id)
        ]

    def connection_events(
        self, event: ConnectionEvent | None = None, *, connection_id: int | None = None
    ) -> list[ConnectionRecord]:
        """Connection records: ``open``, ``window``, ``stall``, ``unstall``, ``ping_rtt``,
        ``goaway``, ``close``."""
        return [
            r
            for r in self.records
            if isinstance(r, ConnectionRecord)
            and (event is None or r.event == event)
            and (connection_id is None or r.connection_id == connection_id)
        ]

    def trailers(self, stream_id: int, *, connection_id: int | None = None) -> dict[str, str]:
        """The last header block the response direction sent on ``stream_id``, as a dict.

        Works for either tap role: the request direction is that of the header block that
        opened the stream (the one with ``:path``), the response direction the other. Once the
        RPC has ended this is its trailers (or its Trailers-Only block); a name sent twice keeps
        its last value. Raises LookupError when no such block was seen.
        """
        blocks = [
            frame
            for frame in self.frames(stream_id=stream_id, connection_id=connection_id)
            if frame.type in _HEADER_BLOCKS and frame.headers is not None
        ]
        request = next(
            (frame for frame in blocks if any(name == ":path" for name, _ in frame.headers or ())),
            None,
        )
        if request is None:
            raise LookupError(f"no request headers seen on stream {stream_id}")
        responses = [frame for frame in blocks if frame.direction == _OTHER[request.direction]]
        if not responses:
            raise LookupError(f"no response header block seen on stream {stream_id}")
        return dict(responses[-1].headers or ())
