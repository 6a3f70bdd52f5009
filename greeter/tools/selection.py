"""Choosing RPCs in a JSON Lines trace: by method, outcome (status, duration) and peer.

Shared by the ``greeter trace`` commands. A trace is read whole (two passes): the first learns
each connection's peer (its ``open`` record, or an RPC ``start``) and decides each RPC
(``(conn, stream)``) from its ``start`` and ``end``; the second keeps the records of the chosen
RPCs, and the stream-0 records (SETTINGS, PING, GOAWAY, connection windows) of the connections
that hold a chosen RPC, or that match the peer filter when there is only that one. An RPC the
trace never ends is kept unless a status or duration criterion needs its end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from greeter.tap.filters import path_matches
from greeter.tap.outcome import OutcomeFilter, outcome

JsonObject = dict[str, Any]


def end_outcome(end: JsonObject) -> str:
    """The outcome label (greeter.tap.outcome) of an rpc ``end`` object."""
    return outcome(end.get("status"), end.get("status_name"), end.get("reset"))


def duration(start: JsonObject | None, end: JsonObject) -> float | None:
    """An RPC's duration: its end's ``duration``, else (traces written before it existed) the
    time between its start and end records."""
    if "duration" in end:
        return float(end["duration"])
    return end["t"] - start["t"] if start is not None else None


@dataclass(frozen=True)
class Selection:
    """RPC criteria for a trace (all combined with AND; empty ones accept everything)."""

    methods: tuple[str, ...] = ()
    """fnmatch globs on the RPC's path (with or without the leading ``/``)."""
    peers: tuple[str, ...] = ()
    """fnmatch globs on the connection's peer, ``host:port``."""
    outcome: OutcomeFilter = field(default_factory=OutcomeFilter)

    @property
    def active(self) -> bool:
        return bool(self.methods or self.peers or self.outcome.active)

    def apply(self, objects: Iterable[JsonObject]) -> list[JsonObject]:
        """The objects of the chosen RPCs and of their connections, in trace order."""
        objects = list(objects)
        if not self.active:
            return objects
        peers: dict[int, str] = {}
        starts: dict[tuple[int, int], JsonObject] = {}
        ends: dict[tuple[int, int], JsonObject] = {}
        for obj in objects:
            key = (obj["conn"], obj["stream"])
            if obj.get("peer") is not None:
                peers.setdefault(obj["conn"], obj["peer"])
            if obj["layer"] == "rpc":
                (starts if obj["event"] == "start" else ends).setdefault(key, obj)
        chosen = {
            key
            for key in starts.keys() | ends.keys()
            if self._chosen(starts.get(key), ends.get(key), peers.get(key[0]))
        }
        connections = {conn for conn, _ in chosen}
        if not (self.methods or self.outcome.active):  # a peer filter alone
            connections |= {conn for conn, peer in peers.items() if self._peer_matches(peer)}
        return [
            obj
            for obj in objects
            if ((obj["conn"], obj["stream"]) in chosen)
            or (obj["stream"] == 0 and obj["conn"] in connections)
        ]

    def _peer_matches(self, peer: str | None) -> bool:
        return not self.peers or (
            peer is not None and any(fnmatchcase(peer, p) for p in self.peers)
        )

    def _chosen(self, start: JsonObject | None, end: JsonObject | None, peer: str | None) -> bool:
        method = (start or end or {}).get("method", "")
        if self.methods and not path_matches(self.methods, method):
            return False
        if not self._peer_matches(peer):
            return False
        if end is None:
            return not self.outcome.active
        return self.outcome.matches(end_outcome(end), duration(start, end))
