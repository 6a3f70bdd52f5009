"""Record filters: keep tap records by view, RPC method glob, layer and frame type.

The criteria combine with AND; an empty criterion accepts everything.

- ``view``: one of :data:`VIEWS`, each a level of the trace where every fact shows once
  (``frames``: HTTP/2 frames with the flow-control state and PING round trips they imply;
  ``messages``: RPCs and their decoded messages, no frames; ``rpcs``: only RPC starts and
  ends; ``all``: every record). The connection's open and close, its GOAWAY (as a frame or as
  a connection record) and decode errors show in every view, stalls and PING round trips in
  ``messages`` too. A view
  replaces ``layers``: giving both is a ValueError.
- ``layers``: the record's ``layer`` (``frame``, ``message``, ``rpc``, ``connection``).
- ``frame_types``: case-insensitive ``fnmatch`` globs against the frame type of frame-layer
  records (RFC 9113 names such as ``HEADERS``, ``UNKNOWN(0x0a)``; the preface is ``PREFACE``, a
  decode failure ``DECODE_ERROR``). Alone, it means "only these frames": records of other layers
  are dropped. With ``layers`` or a ``view`` too (``--trace-layer rpc --trace-frame HEADERS``)
  it constrains only the frame records among the layers asked for.
- ``methods``: ``fnmatch`` globs against the RPC's ``:path`` (``/greet.Greeter/*``; a glob
  without the leading ``/`` matches too). Records that carry no method (frames, connection
  records) take the method remembered for their ``(connection, stream)`` from an earlier
  RpcRecord, MessageRecord or HEADERS frame with ``:path``. Stream-0 records belong to no RPC:
  a method filter drops them, as it drops records of a stream whose method was never seen.

Memory is bounded: a stream is forgotten ``ended_streams`` RPC ends after its RpcRecord ``end``
(so late frames such as a trailing WINDOW_UPDATE still match), all streams of a connection at its
``close`` record, and at most ``max_streams`` live streams are kept (oldest forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from fnmatch import fnmatchcase

from greeter.tap.records import (
    ConnectionRecord,
    DecodeErrorRecord,
    FrameRecord,
    MessageRecord,
    PrefaceRecord,
    Record,
    RpcRecord,
)

_StreamKey = tuple[int, int]
_ALL = None
"""In a view: every record of the layer."""
_LIFECYCLE = frozenset({"open", "close", "goaway"})
_ERRORS = frozenset({"DECODE_ERROR"})
VIEWS: dict[str, dict[str, frozenset[str] | None]] = {
    # The GOAWAY frame says all its connection record does.
    "frames": {
        "frame": _ALL,
        "connection": frozenset({"open", "close", "window", "stall", "unstall", "ping_rtt"}),
    },
    "messages": {
        "frame": _ERRORS,
        "message": _ALL,
        "rpc": _ALL,
        "connection": _LIFECYCLE | {"stall", "unstall", "ping_rtt"},
    },
    "rpcs": {"frame": _ERRORS, "rpc": _ALL, "connection": _LIFECYCLE},
    "all": {"frame": _ALL, "message": _ALL, "rpc": _ALL, "connection": _ALL},
}
"""View name -> layer -> the frame types or events it shows (None: all of them)."""


def path_matches(globs: Iterable[str], path: str) -> bool:
    """Whether an RPC path (``/pkg.Service/Method``) matches one of the ``fnmatch`` globs, given
    with or without the leading ``/``."""
    bare = path.removeprefix("/")
    return any(fnmatchcase(path, glob) or fnmatchcase(bare, glob) for glob in globs)


def frame_type(record: Record) -> str | None:
    """The frame-layer type name of a record (``PREFACE``, ``DECODE_ERROR`` included)."""
    if isinstance(record, FrameRecord):
        return record.type
    if isinstance(record, PrefaceRecord):
        return "PREFACE"
    if isinstance(record, DecodeErrorRecord):
        return "DECODE_ERROR"
    return None


class RecordFilter:
    """A callable ``(record) -> bool`` keeping the records that match every given criterion."""

    def __init__(
        self,
        *,
        methods: Iterable[str] = (),
        layers: Iterable[str] = (),
        frame_types: Iterable[str] = (),
        view: str | None = None,
        max_streams: int = 65536,
        ended_streams: int = 1024,
    ) -> None:
        self._methods = tuple(methods)
        self._layers = frozenset(layers)
        if view is not None and view not in VIEWS:
            raise ValueError(f"view {view!r}: expected one of {', '.join(VIEWS)}")
        if view is not None and self._layers:
            raise ValueError("a view replaces layers: give one or the other")
        self._view = VIEWS[view] if view is not None else None
        self._frame_types = tuple(glob.upper() for glob in frame_types)
        self._max_streams = max_streams
        self._ended_streams = ended_streams
        self._live: OrderedDict[_StreamKey, str] = OrderedDict()
        self._ended: OrderedDict[_StreamKey, str] = OrderedDict()

    def __call__(self, record: Record) -> bool:
        method = self._method_of(record) if self._methods else None
        if self._layers and record.layer not in self._layers:
            return False
        name = frame_type(record)
        if self._view is not None and not self._in_view(self._view, record, name):
            return False
        if self._frame_types and name is None and not (self._layers or self._view):
            return False  # frame types alone: only frames
        if self._frame_types and name is not None:
            upper = name.upper()
            if not any(fnmatchcase(upper, glob) for glob in self._frame_types):
                return False
        if self._methods:
            return method is not None and path_matches(self._methods, method)
        return True

    @staticmethod
    def _in_view(view: dict[str, frozenset[str] | None], record: Record, name: str | None) -> bool:
        if record.layer not in view:
            return False
        kinds = view[record.layer]
        kind = name if name is not None else getattr(record, "event", None)
        return kinds is _ALL or kind in kinds

    def _method_of(self, record: Record) -> str | None:
        """The record's RPC method, learning and forgetting stream methods on the way."""
        key = (record.connection_id, getattr(record, "stream_id", 0))
        method = _own_method(record)
        if method is not None and key[1] != 0:
            self._remember(key, method)
        elif key in self._live:
            method = self._live[key]
        else:
            method = self._ended.get(key)
        if isinstance(record, RpcRecord) and record.event == "end":
            self._end(key)
        elif isinstance(record, ConnectionRecord) and record.event == "close":
            self._forget_connection(record.connection_id)
        return method if key[1] != 0 else None

    def _remember(self, key: _StreamKey, method: str) -> None:
        if key in self._live:
            return
        self._live[key] = method
        if len(self._live) > self._max_streams:
            self._live.popitem(last=False)

    def _end(self, key: _StreamKey) -> None:
        method = self._live.pop(key, None)
        if method is None:
            return
        self._ended[key] = method
        if len(self._ended) > self._ended_streams:
            self._ended.popitem(last=False)

    def _forget_connection(self, connection_id: int) -> None:
        for streams in (self._live, self._ended):
            for key in [key for key in streams if key[0] == connection_id]:
                del streams[key]


def _own_method(record: Record) -> str | None:
    """The method a record names itself: RpcRecord, MessageRecord, or a HEADERS ``:path``."""
    if isinstance(record, RpcRecord | MessageRecord):
        return record.method
    if isinstance(record, FrameRecord) and record.headers:
        for name, value in record.headers:
            if name == ":path":
                return value
    return None
