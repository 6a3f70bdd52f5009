"""JSON in and out for `greeter call`: request values from an argument or stdin, replies as JSON.

Requests are a stream of JSON values, whitespace between them optional (``{"a": 1} {"a": 2}``,
or one per line); `JsonValues` takes them apart with `json.JSONDecoder.raw_decode` as text
arrives, so a value read from stdin is sent as soon as it is complete. Values become protobuf
messages by proto3's JSON mapping (google.protobuf.json_format); replies are printed the same
way, one compact line each (or indented with --pretty).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped]

STDIN = ("-", "@-")
"""The JSON arguments that mean "read the requests from stdin"."""
STDIN_FD = 0
READ_SIZE = 65536


class JsonInputError(ValueError):
    """A request that is not JSON, or not JSON for its message type."""


class JsonValues:
    """Successive JSON values from text fed in pieces; counted from 1 for error messages."""

    def __init__(self) -> None:
        self._decoder = json.JSONDecoder()
        self._pending = ""
        self.count = 0

    def feed(self, text: str, *, final: bool = False) -> list[Any]:
        """The values `text` completes; an unfinished one waits for more text, unless `final`
        (the end of the input), where text that is not a value raises JsonInputError."""
        self._pending += text
        values = []
        while rest := self._pending.lstrip():
            try:
                value, end = self._decoder.raw_decode(rest)
            except json.JSONDecodeError as exc:
                if final:
                    raise JsonInputError(
                        f"request {self.count + 1} is not JSON: {exc.msg} (line {exc.lineno}, "
                        f"column {exc.colno} of the request)"
                    ) from None
                break  # unfinished, or bad: the end of the input tells
            if end == len(rest) and not final and isinstance(value, int | float):
                break  # a number at the end of the text may go on in the next piece
            values.append(value)
            self._pending = rest[end:]
            self.count += 1
        return values


def parse_values(text: str) -> list[Any]:
    """Every JSON value in `text` (the command line's JSON argument)."""
    return JsonValues().feed(text, final=True)


async def stdin_values() -> AsyncIterator[Any]:
    """The JSON values on stdin, each as soon as it is read, until the end of the input.

    A daemon thread reads the file descriptor itself: a call that ends while stdin stays open
    (a terminal) exits without waiting for input that would never come, and no buffered reader's
    lock is left held at interpreter shutdown. JSON is UTF-8 (RFC 8259), whatever the locale.
    """
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        # An undecodable byte becomes U+FFFD: the JSON error (or the server) then says where.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            with contextlib.suppress(OSError):  # no readable stdin: as if empty
                while chunk := os.read(STDIN_FD, READ_SIZE):
                    loop.call_soon_threadsafe(pieces.put_nowait, decoder.decode(chunk))
            loop.call_soon_threadsafe(pieces.put_nowait, decoder.decode(b"", final=True))
            loop.call_soon_threadsafe(pieces.put_nowait, None)
        except RuntimeError:  # the loop is closed: the command is over
            return

    threading.Thread(target=read, name="greeter-stdin", daemon=True).start()
    values = JsonValues()
    while (piece := await pieces.get()) is not None:
        for value in values.feed(piece):
            yield value
    for value in values.feed("", final=True):
        yield value


def to_message(value: Any, message_class: type[Any], index: int) -> Any:
    """Request number `index` (from 1) as a `message_class`; JsonInputError naming the problem."""
    message = message_class()
    name = message.DESCRIPTOR.full_name
    # Only the well-known types (Duration, Struct, wrappers, ...) have JSON forms other than an
    # object; json_format's own error for, say, a list is unreadable.
    if not isinstance(value, dict) and not name.startswith("google.protobuf."):
        raise JsonInputError(f"request {index}: a {name} is a JSON object, not {value!r}")
    try:
        json_format.ParseDict(value, message)
    except json_format.ParseError as exc:
        why = " ".join(str(exc).split())  # json_format's messages span lines
        raise JsonInputError(f"request {index} is not a valid {name}: {why}") from None
    return message


def to_json(message: Any, *, pretty: bool = False, pool: Any = None) -> str:
    """`message` in proto3's JSON mapping: one line, or indented by two spaces with `pretty`.

    `pool` resolves the types inside `google.protobuf.Any` fields.
    """
    value = json_format.MessageToDict(message, descriptor_pool=pool)
    if pretty:
        return json.dumps(value, ensure_ascii=False, indent=2)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
