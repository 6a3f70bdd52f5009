"""The wire tap of one connection: raw bytes of both directions in, records of four layers out.

It implements the server's
``ConnectionObserver`` protocol (``observe(direction, data)``, ``close(reason)``) and never
raises into the connection it watches: an internal error emits one DecodeErrorRecord (offset
-1) and silences the tap.

For every frame the :class:`~greeter.tap.frames.FrameDecoder` of its direction completes, the
tap emits the frame record (secret header values replaced by :data:`REDACTED`), then what it
implies: message and rpc records (:mod:`greeter.tap.rpc`), window, stall, PING, GOAWAY and
close records (:mod:`greeter.tap.flow`). Derived records carry the frame's timestamp.

Streams (RFC 9113 section 5.1): a stream is tracked from request HEADERS with a stream id above
every earlier one (section 5.1.1) until END_STREAM was seen both ways or RST_STREAM; then its
state is dropped. At most :data:`MAX_TRACKED_STREAMS` are tracked; opening one more forgets
the oldest (whose later frames are still shown, but derive nothing). PUSH_PROMISE (unused by
gRPC) opens nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Literal

from greeter.tap.capture import ByteCapture
from greeter.tap.flow import FlowControl
from greeter.tap.frames import FrameDecoder
from greeter.tap.records import (
    ConnectionRecord,
    DecodeErrorRecord,
    Direction,
    FrameRecord,
    PrefaceRecord,
    Record,
)
from greeter.tap.resolve import MessageTypes
from greeter.tap.rpc import MAX_MESSAGE_SIZE, Calls, Headers

DEFAULT_REDACT = frozenset(
    {"authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"}
)
"""Header names whose values never leave the tap (compared case-insensitively)."""
REDACTED = "<redacted>"
MAX_TRACKED_STREAMS = 1024
MAX_PENDING_PINGS = 16
_OTHER: dict[Direction, Direction] = {"in": "out", "out": "in"}


class Tap:
    """Decodes one connection's bytes into records and hands each to ``emit``, in order.

    ``role`` says what the tapped endpoint is: for ``"server"`` the client preface and the
    requests arrive ``"in"``; for ``"client"`` they leave ``"out"``. ``types`` decodes messages
    of known methods; ``clock`` timestamps records and ``wall_clock`` gives their UTC ``wall``
    time (inject fake ones in tests);
    ``max_streams`` caps the streams tracked at once (module docstring); ``max_message_size``
    bounds what it reassembles and inflates per message (use the endpoint's receive limit);
    ``max_body`` (default ``max_message_size``) caps the bytes each record keeps of a DATA
    payload, an unknown frame's payload or a message (greeter/tap/rpc.py).
    ``raw`` adds the raw bytes to the trace (greeter/tap/capture.py): a ``transport`` record
    when :meth:`connected` is called and a bytes record before each chunk's decoded records.
    """

    def __init__(
        self,
        emit: Callable[[Record], None],
        *,
        connection_id: int,
        role: Literal["server", "client"],
        peer: str | None = None,
        types: MessageTypes | None = None,
        redact: Iterable[str] = DEFAULT_REDACT,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_streams: int = MAX_TRACKED_STREAMS,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_body: int | None = None,
        raw: bool = False,
    ) -> None:
        self._emit = emit
        self._max_body = max_message_size if max_body is None else max_body
        self._capture = (
            ByteCapture(
                emit,
                connection_id=connection_id,
                role=role,
                peer=peer,
                clock=clock,
                wall_clock=wall_clock,
            )
            if raw
            else None
        )
        self._max_streams = max_streams
        self._connection_id = connection_id
        self._peer = peer
        self._clock = clock
        self._wall_clock = wall_clock
        self._redact = frozenset(name.lower() for name in redact)
        self._requests: Direction = "in" if role == "server" else "out"
        self._decoders = {
            direction: FrameDecoder(
                connection_id,
                direction,
                expect_preface=direction == self._requests,
                clock=clock,
                wall_clock=wall_clock,
            )
            for direction in ("in", "out")
        }
        self._flow = FlowControl(emit, connection_id)
        self._calls = Calls(
            emit,
            connection_id=connection_id,
            requests=self._requests,
            peer=peer,
            types=types,
            max_message_size=max_message_size,
            max_body=self._max_body,
        )
        self._streams: dict[int, set[Direction]] = {}
        """Tracked stream id -> the directions that sent END_STREAM."""
        self._last_stream_id = 0
        self._block_ends: dict[Direction, bool] = {"in": False, "out": False}
        """END_STREAM of the HEADERS whose block is still in CONTINUATIONs, per direction."""
        self._pings: dict[tuple[Direction, bytes], float] = {}
        self._silent = False
        self._handlers: dict[str, Callable[[FrameRecord], None]] = {
            "DATA": self._on_data,
            "HEADERS": self._on_headers,
            "CONTINUATION": self._on_headers,
            "RST_STREAM": self._on_reset,
            "SETTINGS": self._flow.on_settings,
            "WINDOW_UPDATE": self._flow.on_window_update,
            "PING": self._on_ping,
            "GOAWAY": self._on_goaway,
        }

    def observe(self, direction: Direction, data: bytes) -> None:
        """Feed a chunk of bytes the endpoint received (``"in"``) or sent (``"out"``)."""
        if self._silent:
            return
        try:
            if self._capture is not None:
                self._capture.observe(direction, data)
            for record in self._decoders[direction].feed(data):
                if type(record) is FrameRecord:
                    self._on_frame(record)
                else:
                    self._emit(record)
                    if type(record) is PrefaceRecord:
                        at = (record.timestamp, record.wall)
                        self._emit(self._connection_record(record.direction, at))
        except Exception as exc:  # a tap must never break the connection it watches
            self._fail(direction, exc)

    def connected(self, local: str | None, remote: str | None, tls: bool) -> None:
        """The socket's addresses, before any byte: a ``transport`` record when ``raw``."""
        if self._capture is not None and not self._silent:
            self._capture.connected(local, remote, tls)

    @property
    def tracked_streams(self) -> int:
        """Streams whose state the tap holds (open, or waiting for the other direction's end)."""
        return len(self._streams)

    def close(self, reason: str) -> None:
        """The connection is gone: emit ``close`` and forget every stream."""
        if self._silent:
            return
        self._silent = True
        now = self._clock(), self._wall_clock()
        for stream_id in list(self._streams):
            with contextlib.suppress(Exception):
                self._calls.cut(stream_id, self._requests, now, f"connection closed: {reason}")
            self._drop(stream_id)
        with contextlib.suppress(Exception):
            self._emit(self._connection_record(None, now, reason))

    def _fail(self, direction: Direction, exc: Exception) -> None:
        self._silent = True
        with contextlib.suppress(Exception):
            reason = f"internal tap error: {exc!r}"
            now, wall = self._clock(), self._wall_clock()
            self._emit(
                DecodeErrorRecord(self._connection_id, direction, now, reason, -1, wall=wall)
            )

    def _on_frame(self, record: FrameRecord) -> None:
        if record.headers is not None and self._redact:
            record = self._redacted(record, record.headers)
        self._emit(self._capped(record))
        handler = self._handlers.get(record.type)
        if handler is not None:
            handler(record)

    def _capped(self, record: FrameRecord) -> FrameRecord:
        """The record with at most ``max_body`` bytes of payload (``length`` keeps the size);
        the tap itself goes on with the whole frame."""
        cap = self._max_body
        if len(record.data or b"") > cap or len(record.payload or b"") > cap:
            data = record.data[:cap] if record.data is not None else None
            payload = record.payload[:cap] if record.payload is not None else None
            return dataclasses.replace(record, data=data, payload=payload)
        return record

    def _redacted(self, record: FrameRecord, headers: Headers) -> FrameRecord:
        if not any(name.lower() in self._redact for name, _ in headers):
            return record
        hidden = tuple(
            (name, REDACTED if name.lower() in self._redact else value) for name, value in headers
        )
        return dataclasses.replace(record, headers=hidden)

    def _on_headers(self, record: FrameRecord) -> None:
        direction = record.direction
        if record.type == "HEADERS":
            self._block_ends[direction] = "END_STREAM" in record.flags
        if record.headers is None:
            return  # the block goes on in CONTINUATION frames
        stream_id = record.stream_id
        end = self._block_ends[direction]
        if stream_id in self._streams:
            self._calls.on_headers(record, record.headers, end)
        elif direction == self._requests and stream_id > self._last_stream_id:
            self._open(record, record.headers)
        else:
            return
        if end:
            self._end_stream(stream_id, direction)

    def _open(self, record: FrameRecord, headers: Headers) -> None:
        stream_id = record.stream_id
        self._last_stream_id = stream_id
        if len(self._streams) >= self._max_streams:
            self._drop(next(iter(self._streams)))  # the oldest: dicts keep insertion order
        self._streams[stream_id] = set()
        self._flow.open_stream(record)
        self._calls.start(record, headers)

    def _on_data(self, record: FrameRecord) -> None:
        end = "END_STREAM" in record.flags
        self._calls.on_data(record, end)
        self._flow.on_data(record)
        if end:
            self._end_stream(record.stream_id, record.direction)

    def _on_reset(self, record: FrameRecord) -> None:
        self._calls.on_reset(record)
        self._drop(record.stream_id)

    def _end_stream(self, stream_id: int, direction: Direction) -> None:
        ended = self._streams.get(stream_id)
        if ended is not None:
            ended.add(direction)
            if len(ended) == 2:
                self._drop(stream_id)

    def _drop(self, stream_id: int) -> None:
        if self._streams.pop(stream_id, None) is not None:
            self._flow.drop_stream(stream_id)
            self._calls.drop(stream_id)

    def _on_ping(self, record: FrameRecord) -> None:
        """A PING's ACK comes the other way with the same 8 bytes (RFC 9113 section 6.7)."""
        key = (record.direction, record.ping_data or b"")
        if "ACK" not in record.flags:
            if len(self._pings) >= MAX_PENDING_PINGS:
                del self._pings[next(iter(self._pings))]
            self._pings[key] = record.timestamp
            return
        sender = _OTHER[record.direction]
        sent = self._pings.pop((sender, key[1]), None)
        if sent is not None:
            rtt = record.timestamp - sent
            self._emit(
                ConnectionRecord(
                    self._connection_id,
                    sender,
                    record.timestamp,
                    0,
                    "ping_rtt",
                    duration=rtt,
                    wall=record.wall,
                )
            )

    def _on_goaway(self, record: FrameRecord) -> None:
        # RFC 9113 §6.8: streams above the last stream id were never processed by the server;
        # the RPCs the client opened there are over (a gRPC client retries them elsewhere). A
        # client's GOAWAY names server-initiated streams, which gRPC has none of.
        last = record.last_stream_id
        if last is not None and record.direction != self._requests:  # the server's GOAWAY
            for stream_id in [s for s in self._streams if s > last]:
                why = f"above GOAWAY's last stream id {last}: never processed"
                self._calls.cut(stream_id, record.direction, (record.timestamp, record.wall), why)
                self._drop(stream_id)
        self._emit(
            ConnectionRecord(
                self._connection_id,
                record.direction,
                record.timestamp,
                0,
                "goaway",
                error_code=record.error_code,
                last_stream_id=record.last_stream_id,
                reason=(record.debug_data or b"").decode("utf-8", "backslashreplace"),
                wall=record.wall,
            )
        )

    def _connection_record(
        self, direction: Direction | None, at: tuple[float, float | None], reason: str | None = None
    ) -> ConnectionRecord:
        """``open`` (from the preface) or ``close`` (with its reason) at ``at`` (timestamp,
        wall), naming the peer."""
        event: Literal["open", "close"] = "open" if reason is None else "close"
        now, wall = at
        return ConnectionRecord(
            self._connection_id, direction, now, 0, event, reason=reason, peer=self._peer, wall=wall
        )


class TapFactory:
    """One :class:`Tap` per connection, all emitting to ``emit``: pass it as ``Server(tap=...)``,
    ``Proxy(tap=...)`` or ``Channel(tap=...)`` (role ``"client"`` for the last)."""

    def __init__(
        self,
        emit: Callable[[Record], None],
        *,
        role: Literal["server", "client"] = "server",
        types: MessageTypes | None = None,
        redact: Iterable[str] = DEFAULT_REDACT,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_body: int | None = None,
        raw: bool = False,
    ) -> None:
        if max_body is not None and max_body < 0:
            raise ValueError(f"max_body {max_body}: expected bytes >= 0")
        self.emit = emit
        self.role: Literal["server", "client"] = role
        self.types = types
        self.redact = tuple(redact)
        self.max_message_size = max_message_size
        """Largest message each Tap reassembles and decompresses (default gRPC's 4 MiB)."""
        self.max_body = max_body
        """Bytes of a payload or message a record keeps (None: ``max_message_size``)."""
        self.raw = raw
        """Each Tap also emits the raw bytes (``--trace-bytes``, what ``trace pcapng`` needs)."""

    def __call__(self, connection_id: int, peer: str | None) -> Tap:
        return Tap(
            self.emit,
            connection_id=connection_id,
            role=self.role,
            peer=peer,
            types=self.types,
            redact=self.redact,
            max_message_size=self.max_message_size,
            max_body=self.max_body,
            raw=self.raw,
        )
