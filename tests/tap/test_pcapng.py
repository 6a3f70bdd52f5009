"""pcapng captures of real connections, read by tshark as a capture of the wire would be.

greeter's server runs in-process with a raw tap (`TapFactory(raw=True)`) whose records go both
to a JSON Lines trace and to a live `PcapngWriter`; greeter's client makes the four kinds of RPC,
one of them with a 70 000-byte message (more than one packet can carry). tshark then reads the
capture with the options docs/tracing.md gives and must see: the HTTP/2 frames the tap decoded,
of the same types in the same order per direction; the messages decoded by the Protobuf
dissector with greet.proto ("Hello 세계"); a clean TCP conversation (handshake, good checksums,
no analysis warnings, FIN at close, no packet above the IP limit). `greeter trace pcapng` on the
JSONL trace must give the live capture byte for byte. TLS connections are captured as their
plaintext, marked by a comment; IPv6 connections get IPv6 headers.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from greeter.client import Channel
from greeter.server import Server
from greeter.server.tls import client_context, server_context
from greeter.services.greeter import Greeter, GreeterStub, HelloRequest
from greeter.tap.jsonl import read_jsonl
from greeter.tap.observer import TapFactory
from greeter.tap.packets import MAX_PAYLOAD
from greeter.tap.pcapng import PcapngWriter
from greeter.tap.resolve import MessageTypes
from greeter.tap.sinks import TraceWriter, fan_out
from tests.support.peers import REPO_ROOT
from tests.support.pki import Certs
from tests.support.tshark import HTTP2_TYPES, Tshark

pytestmark = [pytest.mark.timeout(90), pytest.mark.asyncio]

BIG = "x" * 70_000
KOREAN = "세계"


@dataclass(frozen=True)
class Session:
    """A recorded session: the live capture, the JSONL trace and the server's port."""

    capture: Path
    trace: Path
    port: int


async def record_session(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    server_tls: ssl.SSLContext | None = None,
    client_tls: ssl.SSLContext | None = None,
) -> Session:
    services = [Greeter()]
    capture, trace = directory / "live.pcapng", directory / "trace.jsonl"
    with capture.open("wb") as binary, trace.open("w", encoding="utf-8") as text:
        emit = fan_out(TraceWriter(text, format="jsonl"), PcapngWriter(binary))
        tap = TapFactory(emit, types=MessageTypes.from_services(services), raw=True)
        async with Server(services, host=host, port=0, tap=tap, ssl=server_tls) as server:
            target = f"[{host}]:{server.port}" if ":" in host else f"{host}:{server.port}"
            async with Channel(target, ssl=client_tls) as channel:
                stub = GreeterStub(channel)
                reply = await stub.say_hello(HelloRequest(name=KOREAN), timeout=10)
                assert reply.message == f"Hello {KOREAN}"
                request = HelloRequest(name=BIG, count=2)
                assert len([r async for r in stub.lots_of_replies(request, timeout=10)]) == 2
                names = [HelloRequest(name="a"), HelloRequest(name="b")]
                assert (await stub.lots_of_greetings(names, timeout=10)).message == "Hello a, b"
                bidi = stub.bidi_hello([HelloRequest(name="c")], timeout=10)
                assert [r.message async for r in bidi] == ["Hello c"]
            port = server.port
    return Session(capture, trace, port)


def tap_frame_types(trace: Path) -> dict[str, list[str]]:
    """The frame types the tap decoded, per direction, in order (the preface is no frame)."""
    types: dict[str, list[str]] = {"in": [], "out": []}
    for obj in read_jsonl(trace):
        if obj["layer"] == "frame" and obj["type"] not in ("PREFACE", "DECODE_ERROR"):
            types[str(obj["direction"])].append(str(obj["type"]))
    return types


def tshark_frame_types(tshark: Tshark, session: Session) -> dict[str, list[str]]:
    """The HTTP/2 frame types tshark dissects, per direction (seen from the server)."""
    types: dict[str, list[str]] = {"in": [], "out": []}
    rows = tshark.fields(session.capture, session.port, ["tcp.srcport", "http2.type"], "http2")
    for source_port, frame_types in rows:
        direction = "out" if int(source_port) == session.port else "in"
        types[direction] += [HTTP2_TYPES[int(t)] for t in frame_types.split(",") if t]
    return types


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_tshark_sees_the_frames_the_tap_decoded(tmp_path: Path, host: str) -> None:
    session = await record_session(tmp_path, host=host)
    tshark = Tshark(tmp_path)
    expected = tap_frame_types(session.trace)
    assert expected["in"].count("HEADERS") == 4  # one request per RPC
    assert tshark_frame_types(tshark, session) == expected
    version = "ipv6" if ":" in host else "ip"
    sources = tshark.fields(session.capture, session.port, [f"{version}.src"])
    assert {row[0] for row in sources} == {host}


async def test_the_protobuf_dissector_decodes_the_messages(tmp_path: Path) -> None:
    session = await record_session(tmp_path)
    rows = Tshark(tmp_path).fields(
        session.capture,
        session.port,
        ["pbf.greet.HelloRequest.name", "pbf.greet.HelloReply.message"],
        "grpc",
    )
    names = [name for name, _ in rows if name]
    messages = [message for _, message in rows if message]
    assert names[0] == KOREAN
    assert messages[0] == f"Hello {KOREAN}"
    # The 70 000-byte request and replies, reassembled across packets by Wireshark.
    assert BIG in names
    assert messages.count(f"Hello {BIG} #1") == 1
    assert "Hello a, b" in messages
    assert "Hello c" in messages


async def test_the_tcp_conversation_is_clean(tmp_path: Path) -> None:
    session = await record_session(tmp_path)
    rows = Tshark(tmp_path).fields(
        session.capture,
        session.port,
        [
            "tcp.stream",
            "tcp.flags.str",
            "tcp.len",
            "tcp.checksum.status",
            "ip.checksum.status",
            "tcp.analysis.flags",
        ],
        extra=["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"],
    )
    assert {row[0] for row in rows} == {"0"}  # one connection
    flags = [row[1].replace("·", "") for row in rows]
    assert flags[:3] == ["S", "AS", "A"]  # tshark writes them as ·······A··S·
    assert flags[-3:] == ["AF", "AF", "A"]
    lengths = [int(row[2]) for row in rows]
    assert max(lengths) == MAX_PAYLOAD  # the 70 000-byte message took more than one packet
    assert {row[3] for row in rows} == {"1"}  # 1: good
    assert {row[4] for row in rows} == {"1"}
    assert [row for row in rows if row[5]] == []  # no lost segment, retransmission, ...


async def test_trace_pcapng_converts_the_jsonl_into_the_same_capture(tmp_path: Path) -> None:
    session = await record_session(tmp_path)
    converted = tmp_path / "converted.pcapng"
    command = ("trace", "pcapng", str(session.trace), "-o", str(converted))
    done = subprocess.run(
        [sys.executable, "-m", "greeter", *command],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "(1 connection)" in done.stderr
    assert converted.read_bytes() == session.capture.read_bytes()


async def test_a_tls_connection_is_captured_as_marked_plaintext(
    tmp_path: Path, certs: Certs
) -> None:
    server_tls = server_context(str(certs.server_cert), str(certs.server_key))
    client_tls = client_context(str(certs.ca))
    session = await record_session(tmp_path, server_tls=server_tls, client_tls=client_tls)
    tshark = Tshark(tmp_path)
    comments = tshark.fields(session.capture, session.port, ["frame.comment"], "tcp.flags.syn==1")
    assert "TLS: the payloads are the decrypted HTTP/2 bytes" in comments[0][0]
    assert tshark_frame_types(tshark, session) == tap_frame_types(session.trace)
    rows = tshark.fields(session.capture, session.port, ["pbf.greet.HelloReply.message"], "grpc")
    assert next(row[0] for row in rows if row[0]) == f"Hello {KOREAN}"
