"""Where tap records go: a trace writer, an async queue of records, and a fan-out.

No sockets and no threads; asyncio only for :class:`RecordQueue`, whose ``put`` must be called on
the event loop's thread (the tap calls it from the connection's ``data_received``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Literal, TextIO

from greeter.tap import jsonl
from greeter.tap.records import Record
from greeter.tap.text import TextFormatter

RecordCallback = Callable[[Record], object]
TraceFormat = Literal["text", "jsonl"]


class TraceWriter:
    """A record callback writing each kept record to ``stream`` as one text or JSONL entry.

    ``color=None`` colours text output only when ``stream`` is a terminal; JSONL is never
    coloured. Every entry ends with a newline and is flushed at once, so a trace that is
    followed with ``tail -f`` or piped into ``jq`` is always current.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        format: TraceFormat = "text",
        filter: Callable[[Record], bool] | None = None,
        color: bool | None = None,
    ) -> None:
        if format == "text":
            use_color = stream.isatty() if color is None else color
            self._format: Callable[[Record], str] = TextFormatter(color=use_color).format
        elif format == "jsonl":
            self._format = jsonl.dumps
        else:
            raise ValueError(f"unknown trace format {format!r} (expected 'text' or 'jsonl')")
        self._stream = stream
        self._filter = filter

    def __call__(self, record: Record) -> None:
        if self._filter is not None and not self._filter(record):
            return
        self._stream.write(self._format(record) + "\n")
        self._stream.flush()


class RecordQueue:
    """An async iterator of records fed by the synchronous callback :meth:`put`.

    Holds at most ``maxsize`` records: when full, the oldest is dropped and counted in
    ``dropped`` (a slow consumer must never slow down the connection). :meth:`close` ends the
    iteration once the records already queued have been delivered.
    """

    def __init__(self, maxsize: int = 10000) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize}")
        self._records: deque[Record] = deque()
        self._maxsize = maxsize
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._records)

    def put(self, record: Record) -> None:
        """Queue a record (ignored after :meth:`close`); never blocks."""
        if self._closed:
            return
        if len(self._records) >= self._maxsize:
            self._records.popleft()
            self.dropped += 1
        self._records.append(record)
        self._wake()

    def close(self) -> None:
        """End the iteration after the queued records."""
        self._closed = True
        self._wake()

    def __aiter__(self) -> RecordQueue:
        return self

    async def __anext__(self) -> Record:
        while not self._records:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._records.popleft()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def fan_out(*callbacks: RecordCallback) -> Callable[[Record], None]:
    """One callback calling each of ``callbacks`` in order (an exception stops the rest)."""

    def call_all(record: Record) -> None:
        for callback in callbacks:
            callback(record)

    return call_all
