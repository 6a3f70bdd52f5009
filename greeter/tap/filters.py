"""Record filters: keep tap records by RPC method glob, by layer and by frame type.

The three criteria combine with AND; an empty criterion accepts everything.

- ``layers``: the record's ``layer`` (``frame``, ``message``, ``rpc``, ``connection``).
- ``frame_types``: case-insensitive ``fnmatch`` globs against the frame type of frame-layer
  records (RFC 9113 names such as ``HEADERS``, ``UNKNOWN(0x0a)``; the preface is ``PREFACE``, a
  decode failure ``DECODE_ERROR``). Alone, it means "only these frames": records of other layers
  are dropped. With ``layers`` too (``--trace-layer rpc --trace-frame HEADERS``) it constrains
  only the frame records among the layers asked for.
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
        max_streams: int = 65536,
        ended_streams: int = 1024,
    ) -> None:
        self._methods = tuple(methods)
        self._layers = frozenset(layers)
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
        if self._frame_types and name is None and not self._layers:
            return False  # frame types alone: only frames
        if self._frame_types and name is not None:
            upper = name.upper()
            if not any(fnmatchcase(upper, glob) for glob in self._frame_types):
                return False
        if self._methods:
            return method is not None and self._method_matches(method)
        return True

    def _method_matches(self, method: str) -> bool:
        bare = method.removeprefix("/")
        return any(fnmatchcase(method, glob) or fnmatchcase(bare, glob) for glob in self._methods)

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
