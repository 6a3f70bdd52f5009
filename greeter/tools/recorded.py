"""The RPCs of a JSON Lines trace as replay needs them: what the client sent, when, and in what
order against the replies (greeter/tools/replay.py replays them).

An RPC is the records of one (conn, stream) (docs/trace-format.md): its rpc ``start`` (method,
timeout, request metadata -- redacted values stay ``<redacted>``), its message records and its
``end``. The request direction is the ``start`` record's. The client's side becomes a list of
steps, in trace order: *send* a message (its bytes, compressed flag, time, and how many replies
had arrived before it) and *end* (the half-close: the request direction's END_STREAM, found in
the frame records; without frame records, after the last request). That order is the RPC's
shape -- unary, client, server or bidi streaming, requests interleaved with replies as recorded.

A request message the trace could not frame (its ``error``) is rebuilt when the request's DATA
frames are in the trace: a message refused from its prefix (over the peer's size limit) is the
recorded part of its payload followed by zeros up to the length the prefix announced, so the
target sees the same prefix; the RPC carries a note saying so. A message cut inside its payload
(the stream ended in it) cannot be sent whole-message by a gRPC client: the RPC is marked not
replayable, with the reason.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

PREFIX_SIZE = 5
TOO_LARGE = "bad message prefix"


@dataclass(frozen=True)
class Step:
    """One thing the client did: send a message, or end the request (half-close)."""

    kind: Literal["send", "end"]
    at: float
    """Seconds after the RPC's start."""
    replies_before: int
    """Replies the client had received when it did this."""
    data: bytes = b""
    compressed: bool = False
    ends: bool = False
    """A message whose DATA frame also carried the request's END_STREAM (the half-close
    step follows it; a replay sends both in one frame)."""


@dataclass
class RecordedRpc:
    """One RPC as the trace recorded it."""

    conn: int
    stream: int
    method: str = ""
    request_direction: str = ""
    started: float = 0.0
    """The ``start`` record's timestamp (the trace's clock)."""
    timeout: float | None = None
    metadata: list[tuple[str, str]] = field(default_factory=list)
    encoding: str = "identity"
    """The request direction's grpc-encoding."""
    steps: list[Step] = field(default_factory=list)
    responses: list[bytes] = field(default_factory=list)
    ended: bool = False
    status: int | None = None
    status_message: str = ""
    reset: str | None = None
    aborted: str | None = None
    notes: list[str] = field(default_factory=list)
    """What replay had to do differently from the trace (shown in the report)."""
    unreplayable: str | None = None
    """Why this RPC cannot be re-sent; None when it can."""
    data: bytearray = field(default_factory=bytearray, repr=False)
    """The request direction's DATA payloads so far (to rebuild a message the tap could not)."""
    framed: int = 0
    """Bytes of the request messages framed so far, as on the wire (prefix + Message-Length)."""
    ending: float | None = None
    """When the request's END_STREAM frame came; its end step follows the messages it carried."""

    @property
    def label(self) -> str:
        return f"conn {self.conn} stream {self.stream} {self.method}"

    @property
    def requests(self) -> list[bytes]:
        """The request messages, in order."""
        return [step.data for step in self.steps if step.kind == "send"]

    def skip_reason(self) -> str | None:
        """Why this RPC is not replayed at all, None when it is."""
        if self.unreplayable is not None:
            return self.unreplayable
        if not self.ended:
            return "the trace has no end for it (recorded while it ran?)"
        return None

    def comparable(self) -> str | None:
        """Why the replay's outcome cannot be compared with the trace's; None when it can."""
        if self.status is not None:
            return None
        if self.reset is not None:
            return f"reset in the trace ({self.reset}): no status to compare"
        return f"{self.status_message or 'no status'} in the trace: no status to compare"

    def add(
        self, kind: Literal["send", "end"], at: float, data: bytes = b"", flag: bool = False
    ) -> None:
        self.steps.append(Step(kind, at - self.started, len(self.responses), data, flag))


def load_rpcs(objects: Iterable[dict[str, object]]) -> list[RecordedRpc]:
    """Group a trace's records into RPCs, in the order they started (module docstring)."""
    rpcs: dict[tuple[int, int], RecordedRpc] = {}
    for obj in objects:
        key = (_int(obj.get("conn")), _int(obj.get("stream")))
        layer = obj.get("layer")
        if layer == "rpc" and obj.get("event") == "start":
            rpcs[key] = _started(key, obj)
            continue
        rpc = rpcs.get(key)
        if rpc is None:
            continue
        if layer == "frame":
            _end_pending(rpc)
            _frame(rpc, obj)
        elif layer == "message":
            _message(rpc, obj)
        elif layer == "rpc" and obj.get("event") == "end":
            _end_pending(rpc)
            _ended(rpc, obj)
    for rpc in rpcs.values():
        _end_pending(rpc)
        _unframed_tail(rpc)
        if rpc.unreplayable is None and not any(step.kind == "end" for step in rpc.steps):
            last = rpc.steps[-1].at if rpc.steps else 0.0
            rpc.steps.append(Step("end", last, rpc.steps[-1].replies_before if rpc.steps else 0))
        rpc.data = bytearray()
    return list(rpcs.values())


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _started(key: tuple[int, int], obj: dict[str, object]) -> RecordedRpc:
    timeout = obj.get("timeout")
    metadata = obj.get("metadata")
    pairs = [
        (str(pair[0]), str(pair[1]))
        for pair in (metadata if isinstance(metadata, list) else [])
        if isinstance(pair, list) and len(pair) == 2
    ]
    return RecordedRpc(
        *key,
        method=str(obj.get("method", "")),
        request_direction=str(obj.get("direction")),
        started=_float(obj.get("t")),
        timeout=float(timeout) if isinstance(timeout, int | float) else None,
        metadata=pairs,
    )


def _frame(rpc: RecordedRpc, obj: dict[str, object]) -> None:
    if obj.get("direction") != rpc.request_direction:
        return
    flags = obj.get("flags")
    if obj.get("type") == "DATA":
        rpc.data += base64.b64decode(str(obj.get("data_b64", "")))
    if obj.get("type") in ("DATA", "HEADERS") and isinstance(flags, list) and "END_STREAM" in flags:
        rpc.ending = _float(obj.get("t"))


def _end_pending(rpc: RecordedRpc) -> None:
    """The END_STREAM frame's messages have all been recorded: the half-close comes now."""
    if rpc.ending is not None:
        last = rpc.steps[-1] if rpc.steps else None
        if last is not None and last.kind == "send" and last.at >= rpc.ending - rpc.started:
            rpc.steps[-1] = dataclasses.replace(last, ends=True)  # recorded from that frame
        rpc.add("end", rpc.ending)
        rpc.ending = None


def _message(rpc: RecordedRpc, obj: dict[str, object]) -> None:
    data = base64.b64decode(str(obj.get("data_b64", "")))
    error = obj.get("error")
    if obj.get("direction") != rpc.request_direction:
        if not (error and not data):
            rpc.responses.append(data)
        return
    rpc.encoding = str(obj.get("encoding", "identity"))
    at = _float(obj.get("t"))
    if not (error and not data):  # decoded, or at least framed (an error beside the bytes)
        rpc.add("send", at, data, obj.get("compressed") is True)
        rpc.framed += PREFIX_SIZE + max(_int(obj.get("length")), 0)
        return
    if rpc.unreplayable is not None:
        return
    partial = _rebuilt(rpc, str(error), _int(obj.get("index")), _int(obj.get("length")))
    if isinstance(partial, str):
        rpc.unreplayable = partial
    else:
        rpc.add("send", at, partial)


def _unframed_tail(rpc: RecordedRpc) -> None:
    """A request message whose prefix is in the DATA frames but that the tap never recorded (it
    records a message over the limit only once the message is complete, and the server reset
    the stream first): rebuilt like one recorded with the size error when the RPC ended
    RESOURCE_EXHAUSTED, else the RPC was cut inside it."""
    offset = rpc.framed
    if rpc.unreplayable is not None or len(rpc.data) < offset + PREFIX_SIZE:
        return
    length = int.from_bytes(rpc.data[offset + 1 : offset + PREFIX_SIZE], "big")
    index = len(rpc.requests) + 1
    # grpc-status 8 (RESOURCE_EXHAUSTED): refused from its prefix, over the receive limit.
    error = TOO_LARGE if rpc.status == 8 else "cut before its end"
    partial = _rebuilt(rpc, error, index, length)
    if isinstance(partial, str):
        rpc.unreplayable = partial
        return
    end = next((i for i, step in enumerate(rpc.steps) if step.kind == "end"), len(rpc.steps))
    rpc.steps.insert(end, Step("send", rpc.steps[end - 1].at if end else 0.0, 0, partial))


def _rebuilt(rpc: RecordedRpc, error: str, index: int, length: int) -> bytes | str:
    """The bytes to send for request message `index` the tap could not frame, or why none."""
    if not error.startswith(TOO_LARGE) or length <= 0:
        return f"request #{index} is cut on the wire ({error}): a gRPC client sends whole messages"
    offset = rpc.framed
    if len(rpc.data) < offset + PREFIX_SIZE:
        return (
            f"request #{index} ({error}): the trace has no DATA frames to rebuild it from "
            "(record all layers)"
        )
    if rpc.data[offset] != 0:
        return f"request #{index} ({error}): compressed, so its bytes cannot be rebuilt"
    held = bytes(rpc.data[offset + PREFIX_SIZE : offset + PREFIX_SIZE + length])
    rpc.notes.append(
        f"request #{index}: the trace holds {len(held)} of its {length} bytes ({error}); "
        f"replayed with the missing {length - len(held)} as zeros"
    )
    return held + bytes(length - len(held))


def _ended(rpc: RecordedRpc, obj: dict[str, object]) -> None:
    rpc.ended = True
    status = obj.get("status")
    rpc.status = status if isinstance(status, int) else None
    rpc.status_message = str(obj.get("status_message") or "")
    reset, aborted = obj.get("reset"), obj.get("aborted")
    rpc.reset = str(reset) if reset is not None else None
    rpc.aborted = str(aborted) if aborted is not None else None
