"""Replay reproduces what the client sent: metadata, timeout, compression, shape, pacing, TLS,
and a request refused part-way through its message.

A session is recorded through the tap of greeter's in-process server (a JSONL trace) against an
Echo service whose replies show what the server saw -- the custom metadata, the deadline in
whole seconds, whether the request arrived compressed -- and a Chat service (bidi) whose order of
messages the server's trace shows. The session is then replayed, with the library call and with
`greeter replay`, against a fresh server that traces too: every reply must match (which it
cannot unless metadata, timeout and compression are re-sent), the replay's server-side order of
requests, replies and half-close must be the recorded one, `--pace recorded` must keep the
recorded gap between RPCs, and a redacted header is sent only when `--metadata` gives it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError

from gen.greet import HelloReply, HelloRequest
from greeter.client import Channel
from greeter.client.call import call_options
from greeter.core.config import CoreConfig
from greeter.server import Server, ServerConfig
from greeter.server.tls import client_context, server_context
from greeter.services.greeter import Greeter, GreeterStub
from greeter.tap.jsonl import read_jsonl
from greeter.tap.observer import TapFactory
from greeter.tap.resolve import MessageTypes
from greeter.tap.sinks import TraceWriter
from greeter.tools.recorded import load_rpcs
from tests.support.pki import Certs
from tests.tools.test_replay import greeter_replay, replay_to

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]

ECHO = "/test.Echo/Echo"
CHAT = "/test.Echo/Chat"
SECRET = "Bearer s3cret"
GAP = 0.3


class Echo:
    """Echo: the reply tells what the server saw. Chat: a reply per request, "bye" at the end."""

    def __mapping__(self) -> dict[str, Handler]:
        return {
            ECHO: Handler(self.echo, Cardinality.UNARY_UNARY, HelloRequest, HelloReply),
            CHAT: Handler(self.chat, Cardinality.STREAM_STREAM, HelloRequest, HelloReply),
        }

    async def echo(self, stream: Any) -> None:
        request = await stream.recv_message()
        seen = {
            key: base64.b64encode(value).decode() if isinstance(value, bytes) else value
            for key, value in stream.metadata.items()
            if key.startswith("x-") or key == "authorization"
        }
        remaining = stream.time_remaining()
        reply = {
            "name": request.name,
            "metadata": seen,
            "deadline": None if remaining is None else math.ceil(remaining),
            "compressed": stream.last_message_compressed,
        }
        await stream.send_message(HelloReply(message=json.dumps(reply, sort_keys=True)))

    async def chat(self, stream: Any) -> None:
        async for request in stream:
            await stream.send_message(HelloReply(message=f"got {request.name}"))
        await stream.send_message(HelloReply(message="bye"))


@asynccontextmanager
async def traced_server(
    trace: Path, *, config: ServerConfig | None = None, **kwargs: Any
) -> AsyncIterator[Server]:
    """Echo, Chat and Greeter served with a JSONL tap into `trace`."""
    limit = (config or ServerConfig()).limits.max_receive_message_size
    with trace.open("w", encoding="utf-8") as stream:
        writer = TraceWriter(stream, format="jsonl")
        tap = TapFactory(
            writer, types=MessageTypes.from_module("gen.greet"), max_message_size=limit
        )
        async with Server([Echo(), Greeter()], port=0, tap=tap, config=config, **kwargs) as server:
            yield server


async def unary(channel: Channel, name: str, **kwargs: Any) -> str:
    async with channel.request(
        ECHO, Cardinality.UNARY_UNARY, HelloRequest, HelloReply, **kwargs
    ) as call:  # type: ignore[arg-type]
        await call.send_message(HelloRequest(name=name), end=True)
        reply = await call.recv_message()
    assert reply is not None
    return str(reply.message)


async def chat(channel: Channel, names: str, *, interleaved: bool) -> list[str]:
    """Chat: with `interleaved`, each request waits for the previous reply; else all, then end."""
    got: list[str] = []
    async with channel.request(CHAT, Cardinality.STREAM_STREAM, HelloRequest, HelloReply) as call:  # type: ignore[arg-type]
        for name in names:
            await call.send_message(HelloRequest(name=name))
            if interleaved:
                got.append((await call.recv_message()).message)
        await call.end()
        while (reply := await call.recv_message()) is not None:
            got.append(reply.message)
    return got


async def record(trace: Path) -> None:
    async with traced_server(trace) as server, Channel(f"127.0.0.1:{server.port}") as channel:
        metadata = [("x-user", "bob"), ("x-blob-bin", b"\x00\x01"), ("authorization", SECRET)]
        echoed = json.loads(await unary(channel, "meta", metadata=metadata, timeout=7))
        assert echoed["metadata"] == {
            "x-user": "bob",
            "x-blob-bin": "AAE=",
            "authorization": SECRET,
        }
        assert echoed["deadline"] == 7
        with call_options(compression="gzip"):
            assert json.loads(await unary(channel, "zipped"))["compressed"] is True
        assert await chat(channel, "ab", interleaved=True) == ["got a", "got b", "bye"]
        assert await chat(channel, "cd", interleaved=False) == ["got c", "got d", "bye"]
        await asyncio.sleep(GAP)  # the recorded pause that --pace recorded must keep
        await unary(channel, "late")


def shape(trace: Path) -> list[list[str]]:
    """Per RPC, in order: the server-side sequence of request messages (`in`), replies (`out`)
    and the request's half-close (`end`)."""
    events: dict[tuple[object, object], list[str]] = {}
    ending: set[tuple[object, object]] = set()
    for obj in read_jsonl(trace):
        key = (obj["conn"], obj["stream"])
        if obj["layer"] == "rpc" and obj["event"] == "start":
            events[key] = []
        elif key in events and obj["layer"] == "message":
            events[key].append(str(obj["direction"]))
        elif key in events and obj["layer"] == "frame":
            # The messages of the END_STREAM frame are recorded after the frame: the half-close
            # is placed after them (at the RPC's next frame).
            if key in ending:
                ending.discard(key)
                events[key].append("end")
            flags = obj.get("flags")
            if obj["direction"] == "in" and isinstance(flags, list) and "END_STREAM" in flags:
                ending.add(key)
    return list(events.values())


def last_messages_with_end(trace: Path) -> int:
    """Request DATA frames that carry a message and END_STREAM together."""
    return sum(
        1
        for obj in read_jsonl(trace)
        if obj["layer"] == "frame"
        and obj["type"] == "DATA"
        and obj["direction"] == "in"
        and obj["length"]
        and "END_STREAM" in obj["flags"]  # type: ignore[operator]
    )


def starts(trace: Path) -> list[float]:
    return [
        float(obj["t"])  # type: ignore[arg-type]
        for obj in read_jsonl(trace)
        if obj["layer"] == "rpc" and obj["event"] == "start"
    ]


async def test_replay_reproduces_metadata_timeout_compression_and_shape(tmp_path: Path) -> None:
    recorded, replayed = tmp_path / "recorded.jsonl", tmp_path / "replayed.jsonl"
    await record(recorded)
    async with traced_server(replayed) as server:
        report = await replay_to(
            recorded,
            f"127.0.0.1:{server.port}",
            pace="recorded",
            metadata={"authorization": SECRET},
        )
    assert report.ok, report.text()
    assert "5 matched, 0 differ, 0 skipped" in report.text()
    # Where the client waited for replies, the server sees the recorded order again; where it
    # did not (Chat "cd"), the network decides the server's order, but the steps say it.
    # (Paced, the RPCs overlap as recorded, so the replay's trace may list them in another order.)
    interleaved, unary_shape = ["in", "out", "in", "out", "end", "out"], ["in", "end", "out"]
    assert shape(recorded)[2] == interleaved
    assert interleaved in shape(replayed)
    assert shape(recorded).count(unary_shape) == shape(replayed).count(unary_shape) == 3
    # A last message that shared its frame with END_STREAM is replayed that way too.
    assert last_messages_with_end(recorded) == last_messages_with_end(replayed) >= 3
    steps = load_rpcs(read_jsonl(recorded))[3].steps
    assert [(step.kind, step.replies_before) for step in steps] == [
        ("send", 0),
        ("send", 0),
        ("end", 0),
    ]
    gaps = [b - a for a, b in zip(starts(replayed), starts(replayed)[1:], strict=False)]
    assert gaps[-1] >= GAP * 0.9


async def test_a_redacted_header_is_reported_missing(tmp_path: Path) -> None:
    recorded, replayed = tmp_path / "recorded.jsonl", tmp_path / "replayed.jsonl"
    await record(recorded)
    [first, *_] = load_rpcs(read_jsonl(recorded))
    assert ("authorization", "<redacted>") in first.metadata
    async with traced_server(replayed) as server:
        code, output = await greeter_replay(recorded, f"127.0.0.1:{server.port}")
        given, given_output = await greeter_replay(
            recorded, f"127.0.0.1:{server.port}", "--metadata", f"Authorization={SECRET}"
        )
    assert code == 1, output
    assert "note: metadata authorization is redacted in the trace: sent without it" in output
    assert f"{ECHO}: DIFFERS" in output
    assert "4 matched, 1 differ, 0 skipped" in output
    assert given == 0, given_output
    assert "5 matched, 0 differ, 0 skipped" in given_output


async def test_a_request_refused_part_way_is_replayed_from_its_recorded_bytes(
    tmp_path: Path,
) -> None:
    """The server refuses a 200 000-byte request from its prefix (limit 1 KiB) before the whole
    message came: the trace holds only part of it. Replay sends that part, zeros for the rest,
    so the target sees the same prefix and refuses it the same way."""
    recorded, replayed = tmp_path / "recorded.jsonl", tmp_path / "replayed.jsonl"
    config = ServerConfig(limits=CoreConfig(max_receive_message_size=1024))
    async with (
        traced_server(recorded, config=config) as server,
        Channel(f"127.0.0.1:{server.port}") as channel,
    ):
        with pytest.raises(GRPCError) as refused:
            await GreeterStub(channel).say_hello(HelloRequest(name="x" * 200_000), timeout=5)
        assert refused.value.status == Status.RESOURCE_EXHAUSTED
    [rpc] = load_rpcs(read_jsonl(recorded))
    assert rpc.status == Status.RESOURCE_EXHAUSTED.value
    [note] = rpc.notes
    assert note.startswith("request #1: the trace holds ")
    assert "of its 200004 bytes" in note
    held = int(note.split("holds ")[1].split(" ")[0])
    assert 0 < held < 200_004
    assert len(rpc.requests[0]) == 200_004 and rpc.requests[0][:3] == b"\x0a\xc0\x9a"
    async with traced_server(replayed, config=config) as server:
        report = await replay_to(recorded, f"127.0.0.1:{server.port}")
    assert report.ok, report.text()
    assert "note: request #1: the trace holds" in report.text()


async def test_a_request_cut_inside_its_message_is_not_replayed_and_says_why() -> None:
    lines = [
        {"v": 1, "layer": "rpc", "event": "start", "direction": "in", "conn": 1, "stream": 1,
         "t": 1.0, "method": "/greet.Greeter/SayHello", "metadata": []},
        {"v": 1, "layer": "message", "direction": "in", "conn": 1, "stream": 1, "t": 1.1,
         "method": "/greet.Greeter/SayHello", "index": 1, "compressed": False, "length": 0,
         "encoding": "identity", "data_b64": "",
         "error": "stream ended inside a message (3 bytes buffered)"},
        {"v": 1, "layer": "rpc", "event": "end", "direction": "out", "conn": 1, "stream": 1,
         "t": 1.2, "method": "/greet.Greeter/SayHello", "status": 13, "metadata": []},
    ]  # fmt: skip
    [rpc] = load_rpcs(lines)
    assert rpc.skip_reason() == (
        "request #1 is cut on the wire (stream ended inside a message (3 bytes buffered)):"
        " a gRPC client sends whole messages"
    )


async def test_replay_over_tls(tmp_path: Path, certs: Certs) -> None:
    recorded, replayed = tmp_path / "recorded.jsonl", tmp_path / "replayed.jsonl"
    tls = server_context(str(certs.server_cert), str(certs.server_key))
    async with (
        traced_server(recorded, ssl=tls) as server,
        Channel(f"127.0.0.1:{server.port}", ssl=client_context(str(certs.ca))) as channel,
    ):
        assert await chat(channel, "ab", interleaved=True) == ["got a", "got b", "bye"]
    async with traced_server(replayed, ssl=tls) as server:
        target = f"127.0.0.1:{server.port}"
        report = await replay_to(recorded, target, ssl=client_context(str(certs.ca)))
        code, output = await greeter_replay(recorded, target, "--tls-ca", str(certs.ca))
    assert report.ok, report.text()
    assert code == 0, output
    assert "1 matched, 0 differ, 0 skipped" in output
