"""Replay a recorded JSON Lines trace: re-send each RPC as its client did, compare the replies.

The RPCs come from greeter/tools/recorded.py. Each is re-sent on the channel given -- greeter's
own client (greeter.client.Channel, cleartext or TLS) in ``greeter replay``; this module only
needs grpclib's Channel contract (:class:`ReplayChannel`: tools may not import the client layer,
docs/architecture.md) and, to re-send compression, a ``compressing(encoding)`` scope such as
greeter.client.call_options -- as the trace shows it: its request metadata (a value
the trace redacted is taken from ``metadata``, the ``--metadata NAME=VALUE`` options, or left
out and reported as missing; the client sends its own user-agent), its timeout (``timeout`` for
an RPC recorded without one), its request compression (the recorded grpc-encoding, each message
compressed or not as recorded), and its shape: the recorded steps in order -- before each message
or the half-close the client waits for as many replies as had arrived at that point in the
trace, so unary, client, server and bidi streaming RPCs keep their interleaving. Messages travel
as the recorded bytes (a pass-through message type, nothing re-encoded); decoding is only for the
report.

Pacing: with ``pace="none"`` the RPCs go one after the other, each step as soon as its replies
are in; with ``pace="recorded"`` every RPC starts at its recorded offset from the first one
(overlapping RPCs overlap again) and every step waits for its recorded time as well.

Replies are compared byte for byte (decompressed) and the final status by code and message. An
RPC the trace cannot re-send (not ended, or a request cut on the wire) is skipped with the
reason; one whose recorded end has no status (reset, cut, no trailers) is re-sent and its outcome
shown, but not compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from greeter.tap.jsonl import read_jsonl
from greeter.tap.observer import REDACTED
from greeter.tap.resolve import MessageTypes
from greeter.tools.recorded import RecordedRpc, Step, load_rpcs
from greeter.wire import compression
from greeter.wire.metadata import decode_metadata_value

__all__ = [
    "RecordedRpc",
    "ReplayChannel",
    "ReplayReport",
    "RpcOutcome",
    "load_rpcs",
    "replay",
    "replay_file",
]

Pace = Literal["recorded", "none"]
PACES = ("recorded", "none")
LOCAL_MARGIN = 1.0
"""Seconds past an RPC's deadline that replay waits for the server's own DEADLINE_EXCEEDED."""
CLIENT_OWNED = frozenset({"user-agent"})
"""Recorded metadata the replaying client sets itself."""


class RawMessage:
    """A message that is already bytes: what replay sends and receives (nothing re-encoded)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # the protobuf message contract
        return self.data

    @classmethod
    def FromString(cls, data: bytes) -> RawMessage:
        return cls(bytes(data))


class ReplayCall(Protocol):
    """One call, as grpclib's Stream (greeter.client.call.ClientCall is one)."""

    async def __aenter__(self) -> ReplayCall: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> bool | None: ...

    async def send_request(self) -> None: ...

    async def send_message(
        self, message: RawMessage, *, end: bool = False, compress: bool | None = None
    ) -> None:
        """`compress`: whether this message is compressed with the call's compression; `end`:
        half-close with it (END_STREAM on its DATA frame)."""

    async def end(self) -> None: ...

    async def recv_message(self) -> RawMessage | None: ...


class ReplayChannel(Protocol):
    """What replay calls through: grpclib's Channel contract (greeter.client.Channel)."""

    def request(
        self,
        name: str,
        cardinality: Cardinality,
        request_type: type[RawMessage],
        reply_type: type[RawMessage],
        *,
        timeout: float | None = None,
        metadata: list[tuple[str, str | bytes]] | None = None,
    ) -> ReplayCall: ...


Compressing = Callable[[str | None], AbstractContextManager[object]]
"""``compressing(encoding)``: calls made inside compress their requests with `encoding`."""


def _no_compression(encoding: str | None) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class RpcOutcome:
    """What the target answered to one replayed RPC, and how it differs from the trace."""

    rpc: RecordedRpc
    replies: tuple[bytes, ...] = ()
    status: int | None = None
    status_message: str = ""
    differences: tuple[str, ...] = ()
    skipped: str | None = None
    unchecked: str | None = None
    """Why the outcome was not compared (the trace has no status), None when it was."""
    notes: tuple[str, ...] = ()

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
        """One line per RPC (plus one per note and difference) and a summary line."""
        lines: list[str] = []
        for outcome in self.outcomes:
            verdict = "ok"
            if outcome.skipped:
                verdict = f"skipped: {outcome.skipped}"
            elif outcome.unchecked:
                got = _status(outcome.status, outcome.status_message)
                verdict = f"not compared: {outcome.unchecked}; got {got}"
            if not outcome.ok:
                verdict = "DIFFERS"
            lines.append(f"{outcome.rpc.label}: {verdict}")
            lines.extend(f"    note: {note}" for note in outcome.notes)
            lines.extend(f"    {difference}" for difference in outcome.differences)
        counts = {
            "matched": sum(1 for o in self.outcomes if o.ok and not (o.skipped or o.unchecked)),
            "differ": sum(1 for o in self.outcomes if not o.ok),
            "skipped": sum(1 for o in self.outcomes if o.skipped),
        }
        summary = ", ".join(f"{count} {name}" for name, count in counts.items())
        unchecked = sum(1 for o in self.outcomes if o.unchecked and not o.skipped)
        if unchecked:
            summary += f", {unchecked} not compared"
        lines.append(summary)
        return "\n".join(lines)


def request_metadata(
    rpc: RecordedRpc, supplied: Mapping[str, str]
) -> tuple[list[tuple[str, str | bytes]], list[str]]:
    """The metadata to send (redacted values from `supplied`) and notes on what is missing."""
    pairs: list[tuple[str, str | bytes]] = []
    notes: list[str] = []
    for name, value in rpc.metadata:
        if name in CLIENT_OWNED:
            continue
        if value == REDACTED and name not in supplied:
            notes.append(f"metadata {name} is redacted in the trace: sent without it")
            continue
        sent = supplied[name] if value == REDACTED else value
        pairs.append((name, decode_metadata_value(name, sent)))
    return pairs, notes


class _Replayer:
    """Re-sends RPCs on one channel and compares their outcomes."""

    def __init__(
        self,
        channel: ReplayChannel,
        *,
        compressing: Compressing,
        types: MessageTypes | None,
        timeout: float,
        pace: Pace,
        metadata: Mapping[str, str],
    ) -> None:
        self.channel = channel
        self.compressing = compressing
        self.types = types
        self.timeout = timeout
        self.pace = pace
        self.metadata = metadata

    async def outcome(self, rpc: RecordedRpc) -> RpcOutcome:
        skipped = rpc.skip_reason()
        if skipped is not None:
            return RpcOutcome(rpc, skipped=skipped, notes=tuple(rpc.notes))
        pairs, missing = request_metadata(rpc, self.metadata)
        notes = (*rpc.notes, *missing)
        replies, status, message = await self.call(rpc, pairs)
        unchecked = rpc.comparable()
        differences = () if unchecked else tuple(compare(rpc, replies, status, message, self.types))
        return RpcOutcome(rpc, tuple(replies), status, message, differences, None, unchecked, notes)

    async def call(
        self, rpc: RecordedRpc, metadata: list[tuple[str, str | bytes]]
    ) -> tuple[list[bytes], int, str]:
        """Re-send ``rpc``'s steps; return (replies, status, status message)."""
        replies: list[bytes] = []
        # A recorded deadline is re-sent; an RPC recorded without one gets none on the wire
        # either, only a local bound (self.timeout) so that replay never waits forever.
        bound = rpc.timeout if rpc.timeout is not None else self.timeout
        encoding = rpc.encoding if compression.is_supported(rpc.encoding) else None
        loop = asyncio.get_running_loop()
        started = loop.time()
        with self.compressing(encoding):  # read when the call is made
            call = self.channel.request(
                rpc.method,
                Cardinality.STREAM_STREAM,
                RawMessage,
                RawMessage,
                timeout=rpc.timeout,
                metadata=metadata,
            )
        try:
            async with asyncio.timeout(bound + LOCAL_MARGIN), call:
                await call.send_request()
                for step in rpc.steps:
                    if self.pace == "recorded":
                        await asyncio.sleep(max(0.0, started + step.at - loop.time()))
                    if not await _replies_until(call, replies, step):
                        break  # the RPC ended before the trace's next step
                    await _take(call, step)
                await _replies_until(call, replies, None)
        except GRPCError as exc:
            return replies, exc.status.value, exc.message or ""
        except TimeoutError:
            return replies, Status.DEADLINE_EXCEEDED.value, f"no answer within {bound} s (replay)"
        except StreamTerminatedError as exc:
            return replies, Status.UNAVAILABLE.value, f"stream terminated: {exc} (replay)"
        return replies, Status.OK.value, ""


async def _replies_until(call: ReplayCall, replies: list[bytes], step: Step | None) -> bool:
    """Receive until as many replies as `step` saw (all, for None); False if the RPC ended."""
    while step is None or len(replies) < step.replies_before:
        reply = await call.recv_message()
        if reply is None:
            return False
        replies.append(reply.data)
    return True


async def _take(call: ReplayCall, step: Step) -> None:
    if step.kind == "end":
        await call.end()
    else:
        await call.send_message(RawMessage(step.data), end=step.ends, compress=step.compressed)


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
    channel: ReplayChannel,
    *,
    compressing: Compressing = _no_compression,
    types: MessageTypes | None = None,
    timeout: float = 10.0,
    pace: Pace = "none",
    metadata: Mapping[str, str] | None = None,
) -> ReplayReport:
    """Re-send every RPC on ``channel``; report how each compares (module docstring).

    ``Channel(target, ssl=...)`` of greeter.client with ``compressing=lambda encoding:
    call_options(compression=encoding)`` is what ``greeter replay`` passes.
    """
    if pace not in PACES:
        raise ValueError(f"pace {pace!r}: expected one of {', '.join(PACES)}")
    rpcs = list(rpcs)
    replayer = _Replayer(
        channel,
        compressing=compressing,
        types=types,
        timeout=timeout,
        pace=pace,
        metadata=metadata or {},
    )
    if pace == "none":
        outcomes = [await replayer.outcome(rpc) for rpc in rpcs]
    else:
        outcomes = list(await asyncio.gather(*(_at_offset(replayer, r, rpcs) for r in rpcs)))
    return ReplayReport(tuple(outcomes))


async def _at_offset(replayer: _Replayer, rpc: RecordedRpc, rpcs: list[RecordedRpc]) -> RpcOutcome:
    """``rpc`` replayed as long after the first RPC's start as it started in the trace."""
    await asyncio.sleep(max(0.0, rpc.started - rpcs[0].started))
    return await replayer.outcome(rpc)


async def replay_file(
    path: str | os.PathLike[str],
    channel: ReplayChannel,
    *,
    compressing: Compressing = _no_compression,
    types: MessageTypes | None = None,
    timeout: float = 10.0,
    pace: Pace = "none",
    metadata: Mapping[str, str] | None = None,
) -> ReplayReport:
    """:func:`replay` the RPCs of the JSON Lines trace at ``path``."""
    return await replay(
        load_rpcs(read_jsonl(path)),
        channel,
        compressing=compressing,
        types=types,
        timeout=timeout,
        pace=pace,
        metadata=metadata,
    )
