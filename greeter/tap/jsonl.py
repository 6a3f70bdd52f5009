"""JSON Lines encoding of tap records: one JSON object per record, schema version 1.

No I/O beyond reading a trace file in :func:`read_jsonl`.

The schema is documented in docs/trace-format.md. Every object starts with the same keys -- ``v``,
``layer``, ``type`` (frame layer) or ``event`` (rpc and connection layers), ``direction`` (``"in"``,
``"out"`` or ``null``), ``conn``, ``stream``, ``t`` and ``wall`` (UTC, ISO 8601, when the record has
one) -- followed by the record's own fields. Encodings: bytes become base64 strings under the field
name plus ``_b64``; header, metadata and settings lists become lists of ``[name, value]`` pairs
(order and duplicates kept); fields whose value is ``None`` (and a frame's ``padding`` of 0) are
left out.

Versioning: adding keys keeps ``v`` at 1; renaming or removing a key, or changing a key's
encoding, bumps ``v``. :func:`read_jsonl` refuses any version it does not know.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import importlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from greeter.tap.records import (
    ConnectionRecord,
    DecodeErrorRecord,
    FrameRecord,
    PrefaceRecord,
    RawField,
    Record,
    RpcRecord,
)
from greeter.wire.status_details import TYPE_URL_PREFIX, type_url

SCHEMA_VERSION = 1

# Record fields that become the common keys at the head of every object.
_HEAD_FIELDS = frozenset(
    {"connection_id", "stream_id", "timestamp", "wall", "direction", "type", "event"}
)


def message_type(message: object) -> str:
    """The protobuf full name of a message (``greet.HelloRequest``), else its Python path."""
    try:
        return type_url(message).removeprefix(TYPE_URL_PREFIX)
    except ValueError:
        cls = type(message)
        return f"{cls.__module__}.{cls.__qualname__}"


def to_json(record: Record) -> dict[str, object]:
    """The schema-1 JSON object of one record (see docs/trace-format.md)."""
    out: dict[str, object] = {"v": SCHEMA_VERSION, "layer": record.layer}
    out.update(_head(record))
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if field.name in _HEAD_FIELDS or value is None:
            continue
        if field.name == "padding" and value == 0:
            continue
        encoder = _ENCODERS.get(field.name, _plain)
        out.update(encoder(field.name, value))
    return out


def dumps(record: Record) -> str:
    """One JSON line (no newline) for ``record``; non-ASCII text is kept as UTF-8."""
    return json.dumps(to_json(record), separators=(",", ":"), ensure_ascii=False)


def read_jsonl(source: str | os.PathLike[str] | Iterable[str]) -> Iterator[dict[str, object]]:
    """Yield the objects of a trace: a path (``str`` or path-like) or an iterable of lines.

    Blank lines are skipped. Raises ValueError, naming the line, for a line that is not a JSON
    object or whose ``v`` is not a schema version this reader knows.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8") as lines:
            yield from _parse_lines(lines)
    else:
        yield from _parse_lines(source)


def _parse_lines(lines: Iterable[str]) -> Iterator[dict[str, object]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"trace line {number}: not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise ValueError(f"trace line {number}: expected a JSON object")
        version = obj.get("v")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"trace line {number}: unsupported trace schema version {version!r}"
                f" (this reader knows version {SCHEMA_VERSION})"
            )
        yield obj


def _head(record: Record) -> dict[str, object]:
    head: dict[str, object] = {}
    if isinstance(record, PrefaceRecord):
        head["type"] = "PREFACE"
    elif isinstance(record, DecodeErrorRecord):
        head["type"] = "DECODE_ERROR"
    elif isinstance(record, FrameRecord):
        head["type"] = record.type
    elif isinstance(record, RpcRecord | ConnectionRecord):
        head["event"] = record.event
    head["direction"] = record.direction
    head["conn"] = record.connection_id
    head["stream"] = getattr(record, "stream_id", 0)
    head["t"] = record.timestamp
    if record.wall is not None:
        head["wall"] = iso_wall(record.wall)
    return head


def iso_wall(seconds: float) -> str:
    """Seconds since the Unix epoch as UTC ISO 8601 with microseconds:
    ``2026-12-05T13:11:03.123456Z``."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _plain(name: str, value: object) -> dict[str, object]:
    if isinstance(value, bytes):
        return {f"{name}_b64": _b64(value)}
    if isinstance(value, tuple):  # flags
        return {name: list(value)}
    return {name: value}


def _pairs(name: str, value: tuple[tuple[str, object], ...]) -> dict[str, object]:
    return {name: [[key, item] for key, item in value]}


def _mapping(name: str, value: tuple[tuple[str, object], ...]) -> dict[str, object]:
    return {name: dict(value)}


def _priority(name: str, value: Any) -> dict[str, object]:
    return {name: dataclasses.asdict(value)}


def _decoded(name: str, value: object) -> dict[str, object]:
    return {name: decoded_json(value), "message_type": message_type(value)}


def _raw_fields(name: str, value: tuple[RawField, ...]) -> dict[str, object]:
    return {name: raw_fields_json(value)}


def _status_details(name: str, value: tuple[tuple[str, object], ...]) -> dict[str, object]:
    return {name: [_detail_json(url, detail) for url, detail in value]}


_ENCODERS: dict[str, Callable[[str, Any], dict[str, object]]] = {
    "headers": _pairs,
    "settings": _pairs,
    "metadata": _pairs,
    "timings": _mapping,
    "priority": _priority,
    "decoded": _decoded,
    "fields": _raw_fields,
    "status_details": _status_details,
}


def decoded_json(message: object) -> object:
    """A decoded message as JSON: betterproto2 ``to_dict()``, protobuf ``MessageToDict``,
    else its ``repr`` string."""
    to_dict = getattr(message, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if hasattr(message, "DESCRIPTOR"):  # google protobuf, imported only when one is traced
        json_format = importlib.import_module("google.protobuf.json_format")
        return json_format.MessageToDict(message)
    return repr(message)


def raw_fields_json(fields: tuple[RawField, ...]) -> list[dict[str, object]]:
    """``{"field", "wire", "value"}`` for ints, ``"value_b64"`` for bytes, ``"fields"`` nested."""
    out: list[dict[str, object]] = []
    for field in fields:
        item: dict[str, object] = {"field": field.number, "wire": field.wire_type}
        if isinstance(field.value, bytes):
            item["value_b64"] = _b64(field.value)
        elif isinstance(field.value, tuple):
            item["fields"] = raw_fields_json(field.value)
        else:
            item["value"] = field.value
        out.append(item)
    return out


def _detail_json(url: str, detail: object) -> dict[str, object]:
    item: dict[str, object] = {"type_url": url}
    if isinstance(detail, bytes):
        item["value_b64"] = _b64(detail)
    elif isinstance(detail, tuple):
        item["fields"] = raw_fields_json(detail)
    else:
        item["decoded"] = decoded_json(detail)
        item["message_type"] = message_type(detail)
    return item
