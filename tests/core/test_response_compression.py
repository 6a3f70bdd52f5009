"""Per-message response compression in the sans-IO core, bytes in and bytes out.

The core and a real h2 client in memory (tests.support.core_pair.Pair). gRPC doc/compression.md:
the server picks one grpc-encoding per RPC from the request's grpc-accept-encoding (gzip, then
deflate; identity when the client accepts neither), names it in the response headers only when
the RPC compresses, and sets flag 1 on each compressed message.
"""

from __future__ import annotations

import zlib

import pytest
from grpclib.const import Status

from greeter.core.events import MessageReceived, RequestReceived
from greeter.core.headers import response_encoding
from greeter.wire.framing import FramedMessage, MessageDecoder, encode_message
from tests.support.core_pair import Pair

PAYLOAD = b"hello compression " * 50


def framed(pair: Pair, stream_id: int) -> list[FramedMessage]:
    decoder = MessageDecoder(2**32)
    messages = decoder.feed(bytes(pair.response(stream_id).data))
    assert decoder.buffered == 0
    return messages


def header(pair: Pair, stream_id: int, name: str) -> str | None:
    return dict(pair.response(stream_id).headers or []).get(name)


def open_rpc(pair: Pair, accept: str | None = "identity,deflate,gzip") -> int:
    metadata = [] if accept is None else [("grpc-accept-encoding", accept)]
    sid = pair.open(metadata=metadata)
    pair.send_message(sid, b"request", end=True)
    events = pair.take()
    assert isinstance(events[0], RequestReceived)
    return sid


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("identity,deflate,gzip", "gzip"),
        ("gzip", "gzip"),
        ("identity, deflate", "deflate"),
        ("identity", "identity"),
        ("br, zstd", "identity"),
        ("", "identity"),
    ],
)
def test_response_encoding_prefers_gzip_then_deflate(accept: str, chosen: str) -> None:
    assert response_encoding(accept) == chosen


def test_compressed_message_has_flag_one_and_gzip_header() -> None:
    pair = Pair()
    sid = open_rpc(pair)
    pair.core.send_message(sid, PAYLOAD, compress=True)
    pair.core.send_message(sid, b"plain", compress=False)
    pair.core.send_trailers(sid, Status.OK)
    pair.pump()
    assert header(pair, sid, "grpc-encoding") == "gzip"
    first, second = framed(pair, sid)
    assert first.compressed
    assert zlib.decompress(first.payload, wbits=31) == PAYLOAD
    assert len(first.payload) < len(PAYLOAD)
    assert not second.compressed
    assert second.payload == b"plain"
    assert pair.response(sid).trailer("grpc-status") == "0"


def test_deflate_when_the_client_accepts_only_deflate() -> None:
    pair = Pair()
    sid = open_rpc(pair, "identity,deflate")
    pair.core.send_message(sid, PAYLOAD, compress=True)
    pair.pump()
    assert header(pair, sid, "grpc-encoding") == "deflate"
    (message,) = framed(pair, sid)
    assert message.compressed
    assert zlib.decompress(message.payload) == PAYLOAD


@pytest.mark.parametrize("accept", [None, "identity", "snappy"])
def test_no_compression_when_the_client_accepts_none(accept: str | None) -> None:
    pair = Pair()
    sid = open_rpc(pair, accept)
    pair.core.send_message(sid, PAYLOAD, compress=True)
    pair.pump()
    assert header(pair, sid, "grpc-encoding") is None
    (message,) = framed(pair, sid)
    assert not message.compressed
    assert message.payload == PAYLOAD


def test_uncompressed_rpc_sends_no_grpc_encoding() -> None:
    pair = Pair()
    sid = open_rpc(pair)
    pair.core.send_message(sid, PAYLOAD)
    pair.pump()
    assert header(pair, sid, "grpc-encoding") is None
    assert header(pair, sid, "grpc-accept-encoding") == "identity,deflate,gzip"
    (message,) = framed(pair, sid)
    assert not message.compressed


def test_headers_sent_with_compress_announce_the_encoding() -> None:
    pair = Pair()
    sid = open_rpc(pair)
    pair.core.send_headers(sid, [("x-meta", "1")], compress=True)
    pair.core.send_message(sid, b"plain")
    pair.core.send_message(sid, PAYLOAD, compress=True)
    pair.pump()
    assert header(pair, sid, "grpc-encoding") == "gzip"
    assert header(pair, sid, "x-meta") == "1"
    plain, compressed = framed(pair, sid)
    assert (plain.compressed, compressed.compressed) == (False, True)


def test_headers_sent_without_compress_keep_later_messages_uncompressed() -> None:
    # A flag-1 message on a response without grpc-encoding is a protocol error for the client.
    pair = Pair()
    sid = open_rpc(pair)
    pair.core.send_headers(sid)
    pair.core.send_message(sid, PAYLOAD, compress=True)
    pair.pump()
    assert header(pair, sid, "grpc-encoding") is None
    (message,) = framed(pair, sid)
    assert not message.compressed
    assert message.payload == PAYLOAD


def test_large_compressed_message_crosses_frames() -> None:
    pair = Pair()
    sid = open_rpc(pair)
    big = bytes(range(256)) * 4096  # 1 MiB, compresses poorly enough to span many frames
    pair.core.send_message(sid, big, compress=True)
    pair.pump()
    (message,) = framed(pair, sid)
    assert message.compressed
    assert zlib.decompress(message.payload, wbits=31) == big


def test_message_received_reports_the_compressed_flag() -> None:
    pair = Pair()
    sid = pair.open(encoding="gzip")
    pair.take()
    body = zlib.compress(PAYLOAD, wbits=31)
    pair.send(sid, encode_message(body, compressed=True))
    pair.send_message(sid, b"plain", end=True)
    events = [e for e in pair.take() if isinstance(e, MessageReceived)]
    assert [(e.payload, e.compressed) for e in events] == [(PAYLOAD, True), (b"plain", False)]
