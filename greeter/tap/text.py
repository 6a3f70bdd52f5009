"""Human-readable trace lines for tap records.

One head line per record, then indented detail lines (headers, message fields, metadata)::

    2026-12-05T13:11:03.123456Z +0.000000 c1 s1 <- frame HEADERS END_HEADERS len=40
        :path: /greet.Greeter/SayHello

Head line: UTC wall-clock time (ISO 8601, when the record has one), time since the origin,
connection, stream, direction (``<-`` received, ``->`` sent, ``··`` none), layer tag, summary. Byte
strings longer than ``max_bytes`` (and text longer than ``max_bytes`` characters) are cut with ``…``
and followed by their full size. ANSI colour only when asked: direction and layer tag coloured,
errors red. Output depends only on the records, so it can be compared against golden transcripts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from greeter.tap.jsonl import iso_wall, message_type
from greeter.tap.records import (
    BytesRecord,
    ConnectionRecord,
    DecodeErrorRecord,
    FrameRecord,
    MessageRecord,
    PrefaceRecord,
    RawField,
    Record,
    RpcRecord,
)

INDENT = "    "
ARROWS = {"in": "<-", "out": "->", None: "··"}
LAYER_TAGS = {
    "frame": "frame",
    "message": "msg  ",
    "rpc": "rpc  ",
    "connection": "conn ",
    "bytes": "bytes",
}
WIRE_TYPES = {0: "VARINT", 1: "I64", 2: "LEN", 3: "SGROUP", 4: "EGROUP", 5: "I32"}
TIMING_LABELS = {
    "response_headers": "headers",
    "first_request": "first request",
    "last_request": "last request",
    "first_response": "first response",
    "last_response": "last response",
    "trailers": "trailers",
}
CONNECTION_EVENTS = {"ping_rtt": "ping"}

_RESET = "\x1b[0m"
_RED = "\x1b[31m"
_DIRECTION_COLORS = {"in": "\x1b[32m", "out": "\x1b[34m"}
_LAYER_COLORS = {
    "frame": "\x1b[36m",
    "message": "\x1b[35m",
    "rpc": "\x1b[33m",
    "connection": "\x1b[90m",
    "bytes": "\x1b[90m",
}


@dataclasses.dataclass(frozen=True, slots=True)
class _Style:
    color: bool
    max_bytes: int

    def paint(self, text: str, code: str | None) -> str:
        return f"{code}{text}{_RESET}" if self.color and code else text

    def error(self, text: str) -> str:
        return self.paint(text, _RED)

    def blob(self, data: bytes) -> str:
        """``repr`` of bytes, cut at ``max_bytes`` with the full size after it."""
        if len(data) <= self.max_bytes:
            return repr(data)
        cut = repr(data[: self.max_bytes])
        return f"{cut[:-1]}…{cut[-1]} ({len(data)} bytes)"

    def text(self, value: str) -> str:
        if len(value) <= self.max_bytes:
            return value
        return f"{value[: self.max_bytes]}… ({len(value)} chars)"

    def value(self, value: object) -> str:
        """A message field value as ``repr``, with long bytes and strings cut."""
        if isinstance(value, bytes):
            return self.blob(value)
        if isinstance(value, str) and len(value) > self.max_bytes:
            return f"{value[: self.max_bytes]!r}… ({len(value)} chars)"
        return repr(value)


Lines = list[str]
"""The summary (rest of the head line) followed by the detail lines, already indented."""


class TextFormatter:
    """Formats records as trace text; times are relative to ``origin``.

    When ``origin`` is None the timestamp of the first record formatted becomes the origin.
    """

    def __init__(self, *, color: bool = False, max_bytes: int = 64, origin: float | None = None):
        self._style = _Style(color=color, max_bytes=max_bytes)
        self._origin = origin

    def format(self, record: Record) -> str:
        """The record's lines, joined by newlines, without a trailing newline."""
        if self._origin is None:
            self._origin = record.timestamp
        style = self._style
        summary, *details = _SUMMARIES[type(record)](record, style)
        direction = record.direction
        head = " ".join(
            (
                *([] if record.wall is None else [iso_wall(record.wall)]),
                f"{record.timestamp - self._origin:+.6f}",
                f"c{record.connection_id}",
                f"s{getattr(record, 'stream_id', 0)}",
                style.paint(ARROWS[direction], _DIRECTION_COLORS.get(direction or "")),
                style.paint(LAYER_TAGS[record.layer], _LAYER_COLORS[record.layer]),
                summary,
            )
        )
        return "\n".join([head, *details])


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}ms"


def _pair_lines(pairs: tuple[tuple[str, str], ...], style: _Style) -> Lines:
    return [f"{INDENT}{name}: {style.text(value)}" for name, value in pairs]


def _frame(record: FrameRecord, style: _Style) -> Lines:
    parts = [record.type]
    if record.flags:
        parts.append("|".join(record.flags))
    parts.append(f"len={record.length}")
    parts += _frame_payload(record, style)
    if record.padding:
        parts.append(f"pad={record.padding}")
    return [" ".join(parts), *_pair_lines(record.headers or (), style)]


def _frame_payload(record: FrameRecord, style: _Style) -> list[str]:
    """Summary words for the payload fields the frame's type fills (records.py table)."""
    parts: list[str] = []
    if record.promised_stream_id is not None:
        parts.append(f"promised=s{record.promised_stream_id}")
    if record.priority is not None:
        prio = record.priority
        exclusive = " exclusive" if prio.exclusive else ""
        parts.append(f"depends_on=s{prio.depends_on} weight={prio.weight}{exclusive}")
    if record.settings:
        parts += [f"{name}={value}" for name, value in record.settings]
    if record.window_increment is not None:
        parts.append(f"+{record.window_increment}")
    if record.error_code is not None:
        parts.append(_error_code(record.error_code, style))
    if record.last_stream_id is not None:
        parts.append(f"last=s{record.last_stream_id}")
    if record.debug_data:
        parts.append(style.blob(record.debug_data))
    if record.ping_data is not None:
        parts.append(record.ping_data.hex())
    if record.payload is not None:
        parts.append(style.blob(record.payload))
    if record.data:  # DATA bytes as sent (gRPC prefix included), cut at max_bytes with the size
        parts.append(style.blob(record.data))
    return parts


def _error_code(name: str, style: _Style) -> str:
    return name if name == "NO_ERROR" else style.error(name)


def _preface(record: PrefaceRecord, style: _Style) -> Lines:
    return ["PREFACE"]


def _decode_error(record: DecodeErrorRecord, style: _Style) -> Lines:
    return [style.error(f"DECODE_ERROR at byte {record.offset}: {record.reason}")]


def _message(record: MessageRecord, style: _Style) -> Lines:
    name = message_type(record.decoded) if record.decoded is not None else "message"
    head = f"{name} #{record.index} {record.length} bytes"
    if record.compressed:
        inflated = "" if record.size is None else f", {record.size} bytes decompressed"
        head += f" ({record.encoding}{inflated})"
    # The whole message's size: known when inflated, or when it was not compressed.
    whole = record.size if record.size is not None or record.compressed else record.length
    if whole is not None and len(record.data) < whole:
        head += f" (first {len(record.data)} bytes kept)"
    if record.decoded is not None:
        return [head, *_decoded_lines(record.decoded, style)]
    if record.fields is not None:
        return [head, *_raw_field_lines(record.fields, style, INDENT)]
    error = f" {style.error(f'error: {record.error}')}" if record.error else ""
    return [head + error, INDENT + style.blob(record.data)]


def _decoded_lines(message: Any, style: _Style) -> Lines:
    """One line per dataclass field (betterproto2), else the message's own text form."""
    if dataclasses.is_dataclass(message):
        return [
            f"{INDENT}{field.name}: {style.value(getattr(message, field.name))}"
            for field in dataclasses.fields(message)
        ]
    return [INDENT + line for line in str(message).splitlines()]


def _raw_field_lines(fields: tuple[RawField, ...], style: _Style, indent: str) -> Lines:
    lines: Lines = []
    for field in fields:
        label = f"{indent}{field.number} {WIRE_TYPES.get(field.wire_type, field.wire_type)}:"
        if isinstance(field.value, tuple):
            lines.append(label)
            lines += _raw_field_lines(field.value, style, indent + "  ")
        else:
            lines.append(f"{label} {style.value(field.value)}")
    return lines


def _rpc(record: RpcRecord, style: _Style) -> Lines:
    return _rpc_start(record, style) if record.event == "start" else _rpc_end(record, style)


def _rpc_start(record: RpcRecord, style: _Style) -> Lines:
    parts = ["start", record.method]
    if record.peer is not None:
        parts.append(f"from {record.peer}")
    if record.authority is not None:
        parts.append(f"authority={record.authority}")
    if record.timeout is not None:
        parts.append(f"timeout={record.timeout}s")
    return [" ".join(parts), *_pair_lines(record.metadata, style)]


def _rpc_end(record: RpcRecord, style: _Style) -> Lines:
    parts = ["end", record.method]
    if record.status is not None:
        status = record.status_name or str(record.status)
        if record.status_message:
            status += f" {record.status_message!r}"
        parts.append(status if record.status == 0 else style.error(status))
    elif record.status_message:  # cut: no status ever came (closed, or above a GOAWAY)
        parts.append(style.error(f"({record.status_message})"))
    if record.reset is not None:
        parts.append(f"reset={_error_code(record.reset, style)}")
    if record.duration is not None:
        parts.append(f"duration={_ms(record.duration)}")
    parts.append(f"requests={record.requests} ({record.request_bytes} bytes)")
    parts.append(f"responses={record.responses} ({record.response_bytes} bytes)")
    if record.timings:
        timings = ", ".join(
            f"{TIMING_LABELS.get(name, name)} +{_ms(seconds)}" for name, seconds in record.timings
        )
        parts.append(f"({timings})")
    return [" ".join(parts), *_pair_lines(record.metadata, style), *_details(record, style)]


def _details(record: RpcRecord, style: _Style) -> Lines:
    lines: Lines = []
    for url, detail in record.status_details or ():
        lines.append(f"{INDENT}detail {url}")
        if isinstance(detail, tuple):
            lines += _raw_field_lines(detail, style, INDENT * 2)
        elif isinstance(detail, bytes):
            lines.append(INDENT * 2 + style.blob(detail))
        else:
            lines += [INDENT + line for line in _decoded_lines(detail, style)]
    return lines


def _connection(record: ConnectionRecord, style: _Style) -> Lines:
    parts: list[str] = [CONNECTION_EVENTS.get(record.event, record.event)]
    parts += _windows("conn", record.connection_in, record.connection_out)
    parts += _windows("stream", record.stream_in, record.stream_out)
    if record.duration is not None:
        parts.append(("rtt=" if record.event == "ping_rtt" else "after ") + _ms(record.duration))
    if record.error_code is not None:
        parts.append(_error_code(record.error_code, style))
    if record.last_stream_id is not None:
        parts.append(f"last=s{record.last_stream_id}")
    if record.peer is not None:
        parts.append(f"peer={record.peer}")
    if record.local is not None:
        parts.append(f"local={record.local}")
    if record.tls:
        parts.append("tls")
    if record.reason is not None:
        parts.append(repr(record.reason))
    return [" ".join(parts)]


def _bytes(record: BytesRecord, style: _Style) -> Lines:
    return [f"{len(record.data)} {style.blob(record.data)}"]


def _windows(scope: str, window_in: int | None, window_out: int | None) -> list[str]:
    """``conn in=65535 out=0``: the windows that are known, nothing when neither is."""
    pairs = (("in", window_in), ("out", window_out))
    known = [f"{name}={value}" for name, value in pairs if value is not None]
    return [" ".join([scope, *known])] if known else []


_SUMMARIES: dict[type, Callable[[Any, _Style], Lines]] = {
    FrameRecord: _frame,
    PrefaceRecord: _preface,
    DecodeErrorRecord: _decode_error,
    MessageRecord: _message,
    RpcRecord: _rpc,
    ConnectionRecord: _connection,
    BytesRecord: _bytes,
}
