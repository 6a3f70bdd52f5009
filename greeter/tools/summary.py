"""A trace's summary: per method and outcome, how many RPCs, how long, how much, what went wrong.

Fed with JSON Lines objects (a trace file, or live records through ``greeter.tap.jsonl.to_json``:
only the ``rpc`` and ``connection`` layers and RST_STREAM frames matter, see :data:`NEEDS`).
One row per (method, outcome) (outcomes: greeter/tap/outcome.py), with:

- the RPC count and the p50, p99 (nearest rank) and max of their durations;
- messages and bytes each way (the ``end`` records' counts);
- resets: RST_STREAM frames on the RPCs' streams, either way, before or after their end;
- stalls: flow-control stalls of the RPCs' stream windows and their total time (a stall still
  on at the RPC's end counts until that end);
- GOAWAYs: RPCs still open when their connection saw a GOAWAY.

RPCs the trace starts but never ends get the outcome ``no end in trace`` and last until the
trace's last record. Below the rows: the
connections, their GOAWAYs by error code, connection-window stalls and PING round trips.
Durations are kept as 8-byte floats per RPC (exact percentiles); everything else is counters.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from greeter.tap.jsonl import to_json
from greeter.tap.records import Record
from greeter.tools.selection import JsonObject, duration, end_outcome

NO_END = "no end in trace"
ENDED_RPCS = 4096
"""Ended RPCs remembered for a late RST_STREAM (it comes right after the end, if at all)."""
NEEDS = frozenset({"rpc", "connection"})
"""The layers the summary reads (plus RST_STREAM frames)."""
_Key = tuple[int, int]


@dataclass
class _Open:
    """What the summary counts for an RPC until its end."""

    start: JsonObject
    resets: int = 0
    stalls: int = 0
    stalled: float = 0.0
    stalled_since: float | None = None
    goaways: int = 0


@dataclass
class Row:
    """The totals of one (method, outcome)."""

    durations: array[float] = field(default_factory=lambda: array("d"))
    requests: int = 0
    responses: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    resets: int = 0
    stalls: int = 0
    stalled: float = 0.0
    goaways: int = 0

    @property
    def count(self) -> int:
        return len(self.durations)

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile of the durations (``fraction`` 0.5 for p50)."""
        ordered = sorted(self.durations)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class TraceSummary:
    """Accumulates JSON Lines objects (:meth:`add`); :meth:`rows` and :meth:`text` report."""

    def __init__(self) -> None:
        self._open: dict[_Key, _Open] = {}
        self._ended: dict[_Key, Row] = {}
        """Ended RPCs -> their row, for RST_STREAM frames that come after the end."""
        self._rows: dict[tuple[str, str], Row] = {}
        self.connections: set[int] = set()
        self.goaways: Counter[str] = Counter()
        self.connection_stalls = 0
        self.connection_stalled = 0.0
        self.ping_rtts: array[float] = array("d")
        self.last = -math.inf
        """The latest timestamp seen."""

    def add_all(self, objects: Iterable[JsonObject]) -> TraceSummary:
        for obj in objects:
            self.add(obj)
        return self

    def add(self, obj: JsonObject) -> None:
        """Count one record (objects of other layers than :data:`NEEDS` are ignored)."""
        layer = obj["layer"]
        key = (obj["conn"], obj["stream"])
        self.connections.add(obj["conn"])
        self.last = max(self.last, obj["t"])
        if layer == "rpc":
            if obj["event"] == "start":
                self._open[key] = _Open(obj)
            else:
                self._end(key, obj)
        elif layer == "connection":
            self._connection(key, obj)
        elif layer == "frame" and obj.get("type") == "RST_STREAM":
            rpc = self._open.get(key)
            if rpc is not None:
                rpc.resets += 1
            elif key in self._ended:
                self._ended[key].resets += 1

    def add_record(self, record: Record) -> None:
        """Count one live record (converted as in JSON Lines when the summary reads it)."""
        if record.layer in NEEDS or getattr(record, "type", None) == "RST_STREAM":
            self.add(to_json(record))

    def _end(self, key: _Key, end: JsonObject) -> None:
        rpc = self._open.pop(key, None)
        row = self._row(end["method"], end_outcome(end))
        row.durations.append(duration(rpc.start if rpc else None, end) or 0.0)
        row.requests += end.get("requests", 0)
        row.responses += end.get("responses", 0)
        row.request_bytes += end.get("request_bytes", 0)
        row.response_bytes += end.get("response_bytes", 0)
        if rpc is not None:
            self._close(rpc, row, end["t"])
        self._ended[key] = row
        if len(self._ended) > ENDED_RPCS:
            del self._ended[next(iter(self._ended))]

    @staticmethod
    def _close(rpc: _Open, row: Row, now: float) -> None:
        """Add what the RPC counted to its row; a stall still on lasts until ``now``."""
        still = now - rpc.stalled_since if rpc.stalled_since is not None else 0.0
        row.resets += rpc.resets
        row.stalls += rpc.stalls
        row.stalled += rpc.stalled + still
        row.goaways += rpc.goaways

    def _connection(self, key: _Key, obj: JsonObject) -> None:
        event = obj["event"]
        rpc = self._open.get(key) if key[1] else None
        if event == "stall":
            if rpc is not None:
                rpc.stalls += 1
                rpc.stalled_since = obj["t"]
            elif key[1] == 0:
                self.connection_stalls += 1
        elif event == "unstall":
            if rpc is not None and rpc.stalled_since is not None:
                rpc.stalled += obj.get("duration", obj["t"] - rpc.stalled_since)
                rpc.stalled_since = None
            elif key[1] == 0:
                self.connection_stalled += obj.get("duration", 0.0)
        elif event == "goaway":
            self.goaways[obj.get("error_code", "?")] += 1
            for (conn, _), open_rpc in self._open.items():
                if conn == key[0]:
                    open_rpc.goaways += 1
        elif event == "ping_rtt":
            self.ping_rtts.append(obj.get("duration", 0.0))

    def _row(self, method: str, label: str) -> Row:
        return self._rows.setdefault((method, label), Row())

    def rows(self) -> list[tuple[str, str, Row]]:
        """(method, outcome, row), by method then outcome; RPCs still open count as
        :data:`NO_END`, lasting until the last record seen."""
        rows = dict(self._rows)
        for rpc in self._open.values():
            row = rows.setdefault((rpc.start["method"], NO_END), Row())
            row.durations.append(self.last - rpc.start["t"])
            self._close(rpc, row, self.last)
        return [(method, label, rows[method, label]) for method, label in sorted(rows)]

    def text(self) -> str:
        """The summary as an aligned table plus the connection lines."""
        header = (
            "method",
            "status",
            "count",
            "p50",
            "p99",
            "max",
            "req msgs",
            "req bytes",
            "resp msgs",
            "resp bytes",
            "resets",
            "stalls",
            "stalled",
            "goaways",
        )
        table = [header]
        for method, label, row in self.rows():
            table.append(
                (
                    method,
                    label,
                    str(row.count),
                    _ms(row.percentile(0.5)),
                    _ms(row.percentile(0.99)),
                    _ms(max(row.durations)),
                    str(row.requests),
                    str(row.request_bytes),
                    str(row.responses),
                    str(row.response_bytes),
                    str(row.resets),
                    str(row.stalls),
                    _ms(row.stalled),
                    str(row.goaways),
                )
            )
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        lines = [
            "  ".join(
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
            for line in table
        ]
        return "\n".join([*lines, *self._footer()])

    def _footer(self) -> list[str]:
        goaways = ", ".join(f"{count} {code}" for code, count in sorted(self.goaways.items()))
        lines = [
            f"connections: {len(self.connections)}",
            f"GOAWAY: {sum(self.goaways.values())}" + (f" ({goaways})" if goaways else ""),
            f"connection-window stalls: {self.connection_stalls}"
            f" ({_ms(self.connection_stalled)} in all)",
        ]
        if self.ping_rtts:
            rtts = sorted(self.ping_rtts)
            lines.append(
                f"PING round trips: {len(rtts)} (median {_ms(rtts[(len(rtts) - 1) // 2])},"
                f" max {_ms(rtts[-1])})"
            )
        return lines


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}ms"


def summarize(objects: Iterable[dict[str, Any]]) -> TraceSummary:
    """The summary of a whole trace."""
    return TraceSummary().add_all(objects)
