"""How RPCs ended, and keeping only the RPCs that ended a given way (status, duration).

An RPC's *outcome* is the name of its gRPC status (``OK``, ``NOT_FOUND``; the number when it has
no name), else ``RST_STREAM <code>`` for a stream reset before any status, else ``no status``
(the RPC was cut: above a GOAWAY's last stream id, or open when the connection closed).

:class:`OutcomeFilter` holds the ``--trace-status`` / ``--trace-min-duration`` criteria and
matches an RPC's end against them; the trace commands apply it to JSON Lines traces, and
:class:`RpcGate` to a live trace. A live RPC's status and duration are known only at its end, so
the gate holds each RPC's records until then and passes them on (in their order) only if the end
matches; records of no RPC (stream 0) are dropped, as a method filter drops them. Memory is
bounded: at most ``max_held`` records are held at once; past that, the RPC holding records the
longest is left out of the trace (logged on ``greeter.tap``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from grpclib.const import Status

from greeter.tap.records import ConnectionRecord, Record, RpcRecord

log = logging.getLogger("greeter.tap")

ERROR = "error"
"""The status criterion matching every outcome but OK (another status, a reset, none)."""
STATUS_NAMES = {status.name: status.value for status in Status}
NO_STATUS = "no status"


def parse_status(value: str) -> str:
    """A ``--trace-status`` value: a status name (any case) or code, or ``error``.

    Returns the status name (or ``error``); raises ValueError naming the allowed values.
    """
    name = value.strip().upper()
    if value.strip().lower() == ERROR:
        return ERROR
    if name.isdigit():
        names = {code: status for status, code in STATUS_NAMES.items()}
        if int(name) in names:
            return names[int(name)]
    elif name in STATUS_NAMES:
        return name
    allowed = ", ".join([*STATUS_NAMES, "0..16", ERROR])
    raise ValueError(f"status {value!r}: expected one of {allowed}")


def outcome(status: int | None, status_name: str | None, reset: str | None) -> str:
    """The outcome label of an RPC end (module docstring)."""
    if status is not None:
        return status_name or str(status)
    if reset is not None:
        return f"RST_STREAM {reset}"
    return NO_STATUS


@dataclass(frozen=True, slots=True)
class OutcomeFilter:
    """Keep the RPCs whose outcome is one of ``statuses`` (names or ``error``; empty: any) and
    that lasted at least ``min_duration`` seconds."""

    statuses: frozenset[str] = frozenset()
    min_duration: float = 0.0

    @classmethod
    def of(cls, statuses: Iterable[str] = (), min_duration: float = 0.0) -> OutcomeFilter:
        """Parse ``statuses`` (:func:`parse_status`); ValueError for a negative duration."""
        if min_duration < 0:
            raise ValueError(f"minimum duration {min_duration}: expected seconds >= 0")
        return cls(frozenset(parse_status(value) for value in statuses), min_duration)

    @property
    def active(self) -> bool:
        """Whether it leaves out anything at all."""
        return bool(self.statuses) or self.min_duration > 0

    def matches(self, label: str, duration: float | None) -> bool:
        """Whether an RPC with this outcome label and duration is kept."""
        failed = label != Status.OK.name
        if self.statuses and not (label in self.statuses or (failed and ERROR in self.statuses)):
            return False
        return self.min_duration <= 0 or (duration is not None and duration >= self.min_duration)

    def matches_end(self, end: RpcRecord) -> bool:
        return self.matches(outcome(end.status, end.status_name, end.reset), end.duration)


_Key = tuple[int, int]


class RpcGate:
    """A record callback passing on the records of the RPCs whose end ``keep`` matches.

    See the module docstring; ``decided`` bounds how many ended RPCs it remembers, so that their
    late records (a WINDOW_UPDATE after the trailers) follow their RPC's fate.
    """

    def __init__(
        self,
        emit: Callable[[Record], object],
        keep: OutcomeFilter,
        *,
        max_held: int = 10_000,
        decided: int = 1024,
    ) -> None:
        self._emit = emit
        self._keep = keep
        self._max_held = max_held
        self._held: OrderedDict[_Key, list[Record]] = OrderedDict()
        self._count = 0
        self._decided: OrderedDict[_Key, bool] = OrderedDict()
        self._max_decided = decided
        self.left_out = 0
        """RPCs left out because they held too many records before their end."""

    def __call__(self, record: Record) -> None:
        stream_id = getattr(record, "stream_id", 0)
        if stream_id == 0:
            if isinstance(record, ConnectionRecord) and record.event == "close":
                self._forget(record.connection_id)
            return
        key = (record.connection_id, stream_id)
        fate = self._decided.get(key)
        if fate is not None:
            if fate:
                self._emit(record)
            return
        self._held.setdefault(key, []).append(record)
        self._count += 1
        if isinstance(record, RpcRecord) and record.event == "end":
            self._decide(key, self._keep.matches_end(record))
        elif self._count > self._max_held:
            oldest, records = next(iter(self._held.items()))
            log.warning(
                "trace filter: the RPC on c%d s%d held %d records before its end; "
                "it is left out of the trace",
                *oldest,
                len(records),
            )
            self.left_out += 1
            self._decide(oldest, False)

    def _decide(self, key: _Key, keep: bool) -> None:
        records = self._held.pop(key)
        self._count -= len(records)
        self._decided[key] = keep
        if len(self._decided) > self._max_decided:
            self._decided.popitem(last=False)
        if keep:
            for record in records:
                self._emit(record)

    def _forget(self, connection_id: int) -> None:
        """The connection closed: what it still holds belongs to no RPC that can end."""
        for key in [key for key in self._held if key[0] == connection_id]:
            self._count -= len(self._held.pop(key))
        for key in [key for key in self._decided if key[0] == connection_id]:
            del self._decided[key]
