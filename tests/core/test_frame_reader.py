"""greeter's frame reader against h2's own receive path: same events, errors, states and output.

greeter.core.frame_reader parses HEADERS and DATA frames on open streams (and new request
streams) itself and calls h2's state machines the way h2 4.x does. Each scenario below feeds the
same bytes to a plain H2Connection and to a FrameReadingH2Connection, whole, one byte at a time
and cut at random places, and compares every event (type and fields), how a read fails, the
bytes each queues in answer, and the connection, stream and flow-control state afterwards; a
change in h2 under the reader shows up as a difference.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

import h2.connection
import h2.settings
import pytest
from hpack import Encoder
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, PriorityFrame

from greeter.core.config import h2_configuration
from greeter.core.frame_reader import FrameReadingH2Connection
from tests.support.h2peer import (
    PREFACE,
    data_frame,
    header_frames,
    ping_frame,
    request_headers,
    rst_frame,
    settings_ack,
    settings_frame,
    window_update_frame,
)

REQUEST = [(name.encode(), value.encode()) for name, value in request_headers()]
RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]
TRAILERS = [(b"grpc-status", b"0")]
MESSAGE = b"\x00\x00\x00\x00\x03abc"

Kind = type[h2.connection.H2Connection]


def block(fields: list[tuple[bytes, bytes]]) -> bytes:
    """An HPACK block from a fresh encoder (literals the peer's decoder can always read)."""
    return bytes(Encoder().encode(fields))


def headers(stream_id: int, fields: list[tuple[bytes, bytes]], *, end: bool = False) -> bytes:
    return header_frames(stream_id, block(fields), end_stream=end)


def padded_data(stream_id: int, data: bytes) -> bytes:
    frame = DataFrame(stream_id, data, pad_length=3)
    frame.flags.add("PADDED")
    return frame.serialize()


def prioritised_headers(stream_id: int, fields: list[tuple[bytes, bytes]]) -> bytes:
    frame = HeadersFrame(stream_id, block(fields), depends_on=0, stream_weight=15)
    frame.flags.add("END_HEADERS")
    frame.flags.add("PRIORITY")
    return frame.serialize()


def raw_frame(length: int, kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return length.to_bytes(3, "big") + bytes([kind, flags]) + stream_id.to_bytes(4, "big") + payload


# -- the two sides -------------------------------------------------------------------------------


def server(kind: Kind, max_streams: int | None = None) -> h2.connection.H2Connection:
    connection = kind(h2_configuration(client_side=False))
    connection.initiate_connection()
    if max_streams is not None:
        connection.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams})
    connection.data_to_send()
    return connection


def client(kind: Kind, streams: int = 1, end: bool = True) -> h2.connection.H2Connection:
    """A client that sent requests on streams 1, 3, ... (half-closed when `end`)."""
    connection = kind(h2_configuration(client_side=True))
    connection.initiate_connection()
    for index in range(streams):
        connection.send_headers(2 * index + 1, REQUEST, end_stream=end)
    connection.data_to_send()
    return connection


# -- what is compared ---------------------------------------------------------------------------


def describe(event: Any) -> tuple[str, list[tuple[str, str]]]:
    return type(event).__name__, sorted((name, repr(value)) for name, value in vars(event).items())


def state(connection: h2.connection.H2Connection) -> list[Any]:
    """What h2 would act on next: states, windows, stream ids, content lengths (open streams:
    the reader forgets closed streams later than h2 does, by design)."""
    streams = {
        stream_id: (
            stream.state_machine.state,
            stream._inbound_window_manager.current_window_size,
            stream.outbound_flow_control_window,
            stream.max_outbound_frame_size,
            stream._expected_content_length,
            stream._actual_content_length,
            stream.state_machine.headers_received,
            stream.state_machine.trailers_received,
        )
        for stream_id, stream in connection.streams.items()
        if not stream.closed
    }
    return [
        connection.state_machine.state,
        connection._inbound_flow_control_window_manager.current_window_size,
        connection.outbound_flow_control_window,
        connection.highest_inbound_stream_id,
        connection.incoming_buffer._headers_buffer != [],
        streams,
        connection.data_to_send(),
    ]


def run(connection: h2.connection.H2Connection, chunks: list[bytes]) -> list[Any]:
    results: list[Any] = []
    for chunk in chunks:
        try:
            results += [describe(event) for event in connection.receive_data(chunk)]
        except Exception as exc:  # the comparison is the point: both must fail alike
            results.append(("raised", type(exc).__name__, getattr(exc, "error_code", None)))
            break
    return [*results, *state(connection)]


def cuts(data: bytes, seed: int) -> list[list[bytes]]:
    """The same bytes whole, byte by byte, and cut at random places."""
    rng = random.Random(seed)
    ways = [[data], [data[i : i + 1] for i in range(len(data))]]
    for _ in range(6):
        points = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 6))))
        edges = [0, *points, len(data)]
        ways.append([data[a:b] for a, b in itertools.pairwise(edges)])
    return ways


# -- scenarios ------------------------------------------------------------------------------------

SERVER_PREFACE = PREFACE + settings_frame() + settings_ack()
BIG_FIELDS = [*REQUEST, (b"x-big", b"v" * 40_000)]

SERVER_SCENARIOS: dict[str, tuple[dict[str, Any], bytes]] = {
    "unary request": (
        {},
        headers(1, REQUEST) + data_frame(1, MESSAGE) + data_frame(1, b"", end_stream=True),
    ),
    "request ended by its DATA": ({}, headers(1, REQUEST) + data_frame(1, MESSAGE, True)),
    "request with END_STREAM on HEADERS": ({}, headers(1, REQUEST, end=True)),
    "several streams interleaved, control frames between": (
        {},
        headers(1, REQUEST)
        + headers(3, REQUEST)
        + ping_frame()
        + data_frame(3, MESSAGE)
        + window_update_frame(0, 1000)
        + data_frame(1, MESSAGE * 3, True)
        + rst_frame(3)
        + headers(5, REQUEST, end=True),
    ),
    "a header block with CONTINUATION": (
        {},
        header_frames(1, block(BIG_FIELDS)) + data_frame(1, MESSAGE, True),
    ),
    "padded DATA and prioritised HEADERS": (
        {},
        prioritised_headers(1, REQUEST) + padded_data(1, MESSAGE) + data_frame(1, b"", True),
    ),
    "client trailers": (
        {},
        headers(1, REQUEST) + data_frame(1, MESSAGE) + headers(1, [(b"x-t", b"1")], end=True),
    ),
    "trailers without END_STREAM": ({}, headers(1, REQUEST) + headers(1, [(b"x-t", b"1")])),
    "DATA after END_STREAM": ({}, headers(1, REQUEST, end=True) + data_frame(1, MESSAGE)),
    "DATA on a stream never opened": ({}, headers(1, REQUEST) + data_frame(3, MESSAGE)),
    "DATA on stream 0": ({}, raw_frame(len(MESSAGE), 0, 0, 0, MESSAGE)),
    "DATA beyond the connection window": (
        {},
        headers(1, REQUEST) + b"".join(data_frame(1, b"x" * 16_384) for _ in range(5)),
    ),
    "an even request stream": ({}, headers(2, REQUEST)),
    "a stream id going down": ({}, headers(5, REQUEST, end=True) + headers(3, REQUEST)),
    "a frame over the maximum size": (
        {},
        headers(1, REQUEST) + raw_frame(20_000, 0, 0, 1, b"x" * 20_000),
    ),
    "content-length that the body breaks": (
        {},
        headers(1, [*REQUEST, (b"content-length", b"2")]) + data_frame(1, MESSAGE, True),
    ),
    "content-length, then client trailers": (
        {},
        headers(1, [*REQUEST, (b"content-length", b"8")])
        + data_frame(1, MESSAGE[:8])
        + headers(1, [(b"x-t", b"1")], end=True),
    ),
    "HEADERS with a bad HPACK block": ({}, raw_frame(2, 1, 0x4, 1, b"\xff\xff")),
    "HEADERS then a stray frame inside the block": (
        {},
        raw_frame(len(block(REQUEST)), 1, 0, 1, block(REQUEST)) + data_frame(1, MESSAGE),
    ),
    "a stream over the server's limit": (
        {"max_streams": 2},
        headers(1, REQUEST) + headers(3, REQUEST) + headers(5, REQUEST),
    ),
    "many streams one after another": (
        {"max_streams": 3},
        b"".join(
            headers(index, REQUEST) + data_frame(index, MESSAGE, True) for index in range(1, 80, 2)
        ),
    ),
    "unknown frame type and PRIORITY": (
        {},
        raw_frame(3, 0xFA, 0, 0, b"abc")
        + PriorityFrame(1, depends_on=0, stream_weight=3).serialize()
        + headers(1, REQUEST, end=True),
    ),
}

CLIENT_SCENARIOS: dict[str, tuple[dict[str, Any], bytes]] = {
    "unary response": (
        {},
        headers(1, RESPONSE) + data_frame(1, MESSAGE) + headers(1, TRAILERS, end=True),
    ),
    "trailers-only": ({}, headers(1, [*RESPONSE, *TRAILERS], end=True)),
    "informational response first": (
        {},
        headers(1, [(b":status", b"100")]) + headers(1, RESPONSE) + data_frame(1, MESSAGE, True),
    ),
    "responses on streams still sending": (
        {"streams": 2, "end": False},
        headers(3, RESPONSE)
        + headers(1, RESPONSE)
        + data_frame(1, MESSAGE)
        + data_frame(3, MESSAGE)
        + headers(1, TRAILERS, end=True)
        + rst_frame(3),
    ),
    "DATA before the response headers": ({}, data_frame(1, MESSAGE)),
    "a third header block": (
        {},
        headers(1, RESPONSE) + headers(1, TRAILERS) + headers(1, TRAILERS, end=True),
    ),
    "frames after the stream ended": (
        {},
        headers(1, [*RESPONSE, *TRAILERS], end=True) + data_frame(1, MESSAGE),
    ),
    "HEADERS on a stream the server opened": ({}, headers(2, RESPONSE)),
    "GOAWAY between response frames": (
        {"streams": 2},
        headers(1, RESPONSE)
        + GoAwayFrame(0, last_stream_id=1).serialize()
        + data_frame(1, MESSAGE)
        + headers(1, TRAILERS, end=True),
    ),
    "content-length on the response": (
        {},
        headers(1, [*RESPONSE, (b"content-length", b"9")]) + data_frame(1, MESSAGE, True),
    ),
}


def compare(make: Callable[[Kind], h2.connection.H2Connection], data: bytes, seed: int) -> None:
    for chunks in cuts(data, seed):
        expected = run(make(h2.connection.H2Connection), chunks)
        read = run(make(FrameReadingH2Connection), chunks)
        assert read == expected


@pytest.mark.parametrize("name", list(SERVER_SCENARIOS))
def test_the_reader_matches_h2_as_a_server(name: str) -> None:
    setup, frames = SERVER_SCENARIOS[name]
    compare(lambda kind: server(kind, **setup), SERVER_PREFACE + frames, seed=len(name))


@pytest.mark.parametrize("name", list(CLIENT_SCENARIOS))
def test_the_reader_matches_h2_as_a_client(name: str) -> None:
    setup, frames = CLIENT_SCENARIOS[name]
    server_settings = settings_frame() + settings_ack()
    compare(lambda kind: client(kind, **setup), server_settings + frames, seed=len(name))


def test_closed_streams_are_forgotten() -> None:
    """The reader counts streams lazily, but closed ones still go: after 1,000 sequential
    requests a server holds a bounded number of h2 streams."""
    connection = server(FrameReadingH2Connection)
    connection.receive_data(SERVER_PREFACE)
    for stream_id in range(1, 2001, 2):
        connection.receive_data(headers(stream_id, REQUEST, end=True))
        connection.send_headers(stream_id, RESPONSE + TRAILERS, end_stream=True)
    assert len(connection.streams) <= 40
