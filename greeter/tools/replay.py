"""Replay a recorded JSON Lines trace: re-send each RPC's client messages, compare the replies.

Messages travel as the recorded bytes (a pass-through codec, nothing is re-encoded); decoding is
only for the difference report.

An RPC of the trace is the message records of one (conn, stream) plus its rpc ``start`` and
``end`` records (docs/trace-format.md). The request direction is the one that carried the request
headers -- the ``start`` record's direction: ``in`` in a server-side trace, ``out`` in a
client-side one. Every RPC is re-sent as a stream-stream call (all requests, then end of stream)
whatever its real cardinality -- the wire is the same -- and its replies and final status are
compared with the recorded ones: replies byte for byte, the status by code and message. RPCs the
trace shows as incomplete or reset (a cancellation) are listed as skipped, never as differences.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError, StreamTerminatedError

from greeter.tap.jsonl import read_jsonl
from greeter.tap.resolve import MessageTypes


class PassThroughCodec(CodecBase):
    """A grpclib codec for messages that are already bytes: encode and decode are identity."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return bytes(data)


@dataclass
class RecordedRpc:
    """One RPC as the trace recorded it."""

    conn: int
    stream: int
    method: str = ""
    request_direction: str = ""
    requests: list[bytes] = field(default_factory=list)
    responses: list[bytes] = field(default_factory=list)
    ended: bool = False
    status: int | None = None
    status_message: str = ""
    reset: str | None = None

    @property
    def label(self) -> str:
        return f"conn {self.conn} stream {self.stream} {self.method}"

    def skip_reason(self) -> str | None:
        """Why this RPC cannot be compared, None when it can."""
        if not self.ended:
            return "the trace has no end for it"
        if self.status is None:
            return f"reset in the trace ({self.reset or 'no status'})"
        return None


@dataclass(frozen=True)
class RpcOutcome:
    """What the target answered to one replayed RPC, and how it differs from the trace."""

    rpc: RecordedRpc
    replies: tuple[bytes, ...] = ()
    status: int | None = None
    status_message: str = ""
    differences: tuple[str, ...] = ()
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.differences


@dataclass(frozen=True)
class ReplayReport:
    """Every RPC's outcome; ``ok`` when none differs."""

    outcomes: tuple[RpcOutcome, ...]

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.outcomes)

    def text(self) -> str:
        """One line per RPC (plus one per difference) and a summary line."""
        lines: list[str] = []
        for outcome in self.outcomes:
            verdict = "skipped: " + outcome.skipped if outcome.skipped else "ok"
            if not outcome.ok:
                verdict = "DIFFERS"
            lines.append(f"{outcome.rpc.label}: {verdict}")
            lines.extend(f"    {difference}" for difference in outcome.differences)
        matched = sum(1 for o in self.outcomes if o.ok and not o.skipped)
        differing = sum(1 for o in self.outcomes if not o.ok)
        skipped = sum(1 for o in self.outcomes if o.skipped)
        lines.append(f"{matched} matched, {differing} differ, {skipped} skipped")
        return "\n".join(lines)


def load_rpcs(objects: Iterable[dict[str, object]]) -> list[RecordedRpc]:
    """Group a trace's message and rpc records into RPCs, in the order they started."""
    rpcs: dict[tuple[int, int], RecordedRpc] = {}
    messages: list[dict[str, object]] = []
    for obj in objects:
        layer = obj.get("layer")
        key = (_int(obj.get("conn")), _int(obj.get("stream")))
        if layer == "rpc" and obj.get("event") == "start":
            rpcs[key] = RecordedRpc(
                *key, method=str(obj.get("method", "")), request_direction=str(obj["direction"])
            )
        elif layer == "rpc" and obj.get("event") == "end" and key in rpcs:
            _record_end(rpcs[key], obj)
        elif layer == "message":
            messages.append(obj)
    for obj in messages:
        rpc = rpcs.get((_int(obj.get("conn")), _int(obj.get("stream"))))
        if rpc is not None:
            data = base64.b64decode(str(obj.get("data_b64", "")))
            is_request = obj.get("direction") == rpc.request_direction
            (rpc.requests if is_request else rpc.responses).append(data)
    return list(rpcs.values())


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1


def _record_end(rpc: RecordedRpc, obj: dict[str, object]) -> None:
    rpc.ended = True
    status = obj.get("status")
    rpc.status = status if isinstance(status, int) else None
    rpc.status_message = str(obj.get("status_message") or "")
    reset = obj.get("reset")
    rpc.reset = str(reset) if reset is not None else None


async def call(channel: Channel, rpc: RecordedRpc, timeout: float) -> tuple[list[bytes], int, str]:
    """Send ``rpc``'s requests as one stream-stream call; return (replies, status, message)."""
    replies: list[bytes] = []
    try:
        async with channel.request(
            rpc.method, Cardinality.STREAM_STREAM, bytes, bytes, timeout=timeout
        ) as stream:
            await stream.send_request()
            for message in rpc.requests:
                await stream.send_message(message)
            await stream.end()
            while (reply := await stream.recv_message()) is not None:
                replies.append(reply)
    except GRPCError as exc:
        return replies, exc.status.value, exc.message or ""
    except TimeoutError:
        return replies, Status.DEADLINE_EXCEEDED.value, f"no answer within {timeout} s (replay)"
    except StreamTerminatedError as exc:
        return replies, Status.UNAVAILABLE.value, f"stream terminated: {exc} (replay)"
    return replies, Status.OK.value, ""


def compare(
    rpc: RecordedRpc,
    replies: list[bytes],
    status: int,
    message: str,
    types: MessageTypes | None = None,
) -> list[str]:
    """The differences between the recorded and the new replies and status, as report lines."""
    differences: list[str] = []
    for index in range(max(len(rpc.responses), len(replies))):
        recorded = rpc.responses[index] if index < len(rpc.responses) else None
        got = replies[index] if index < len(replies) else None
        if recorded == got:
            continue
        differences.append(
            f"reply #{index + 1}: recorded {_describe(rpc.method, recorded, types)},"
            f" got {_describe(rpc.method, got, types)}"
        )
    if (rpc.status, rpc.status_message) != (status, message):
        differences.append(
            f"status: recorded {_status(rpc.status, rpc.status_message)},"
            f" got {_status(status, message)}"
        )
    return differences


def _status(code: int | None, message: str) -> str:
    name = Status(code).name if code in Status._value2member_map_ else str(code)
    return f"{name} {message!r}" if message else name


def _describe(method: str, data: bytes | None, types: MessageTypes | None) -> str:
    """A reply for the report: the decoded message when the type is known, else its bytes."""
    if data is None:
        return "nothing"
    if types is not None:
        decoded = decode_reply(types, method, data)
        if decoded is not None:
            return repr(decoded)
    return f"{len(data)} bytes {data[:64]!r}"


def decode_reply(types: MessageTypes, method: str, data: bytes) -> object | None:
    """The response message class of ``method`` parsing ``data``, None when unknown/invalid."""
    pair = types.lookup(method)
    if pair is None:
        return None
    try:
        decoded: object = pair[1].FromString(data)
    except Exception:  # any parse failure: the report shows the bytes instead
        return None
    return decoded


async def replay(
    rpcs: Iterable[RecordedRpc],
    host: str,
    port: int,
    *,
    types: MessageTypes | None = None,
    timeout: float = 10.0,
) -> ReplayReport:
    """Re-send every RPC to ``host:port`` one after the other; report how each compares."""
    outcomes: list[RpcOutcome] = []
    channel = Channel(host, port, codec=PassThroughCodec())
    try:
        for rpc in rpcs:
            skipped = rpc.skip_reason()
            if skipped is not None:
                outcomes.append(RpcOutcome(rpc, skipped=skipped))
                continue
            replies, status, message = await call(channel, rpc, timeout)
            differences = compare(rpc, replies, status, message, types)
            outcomes.append(RpcOutcome(rpc, tuple(replies), status, message, tuple(differences)))
    finally:
        channel.close()
    return ReplayReport(tuple(outcomes))


async def replay_file(
    path: str | os.PathLike[str],
    host: str,
    port: int,
    *,
    types: MessageTypes | None = None,
    timeout: float = 10.0,
) -> ReplayReport:
    """:func:`replay` the RPCs of the JSON Lines trace at ``path``."""
    return await replay(load_rpcs(read_jsonl(path)), host, port, types=types, timeout=timeout)
