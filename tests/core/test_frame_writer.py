"""greeter's frame writer against h2's own methods: same bytes, states, windows and errors.

greeter.core.frame_writer writes HEADERS and DATA on known streams itself and updates h2's
private state the way h2 4.x does. Each scenario below runs the same commands on a plain
H2Connection and on a FrameWritingH2Connection that received the same bytes; any difference in
what they send, in how a command fails, or in the stream and window state afterwards fails
the test, which is how a change in h2 under the writer shows up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h2.connection
import h2.settings
import pytest

from greeter.core.config import h2_configuration
from greeter.core.frame_writer import FrameWritingH2Connection
from tests.support.h2peer import request_headers

OK = [(b":status", b"200"), (b"content-type", b"application/grpc")]
TRAILERS = [(b"grpc-status", b"0")]
BIG = [*OK, (b"x-big", b"v" * 20_000), (b"grpc-status", b"0")]
REQUEST = [(name.encode(), value.encode()) for name, value in request_headers()]

Command = Callable[[h2.connection.H2Connection], object]


def server_with_request(
    kind: type[h2.connection.H2Connection], window: int | None = None, reset: bool = False
) -> h2.connection.H2Connection:
    """A server-side connection that received one request on stream 1 (and its settings)."""
    client = h2.connection.H2Connection(h2_configuration(client_side=True))
    client.initiate_connection()
    if window is not None:
        client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    client.send_headers(1, REQUEST)
    client.send_data(1, b"\x00\x00\x00\x00\x00")
    if reset:
        client.reset_stream(1)
    server = kind(h2_configuration(client_side=False))
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    server.data_to_send()
    return server


def outcome(connection: h2.connection.H2Connection, commands: list[Command]) -> list[Any]:
    """Per command: the bytes it queued or the type of what it raised; then the state."""
    results: list[Any] = []
    for command in commands:
        try:
            command(connection)
            results.append(connection.data_to_send())
        except Exception as exc:  # the comparison is the point: both must fail alike
            results.append(type(exc))
    stream = connection.streams.get(1)
    results.append(connection.state_machine.state)
    results.append(connection.outbound_flow_control_window)
    if stream is not None:
        results += [stream.state_machine.state, stream.outbound_flow_control_window]
    return results


SCENARIOS: dict[str, tuple[dict[str, Any], list[Command]]] = {
    "unary": (
        {},
        [
            lambda c: c.send_headers(1, OK),
            lambda c: c.send_data(1, b"\x00\x00\x00\x00\x02hi"),
            lambda c: c.send_headers(1, TRAILERS, end_stream=True),
        ],
    ),
    "trailers only": ({}, [lambda c: c.send_headers(1, [*OK, *TRAILERS], end_stream=True)]),
    "continuation": ({}, [lambda c: c.send_headers(1, BIG, end_stream=True)]),
    "data from a memoryview, then end with empty DATA": (
        {},
        [
            lambda c: c.send_headers(1, OK),
            lambda c: c.send_data(1, memoryview(b"abcdef")[1:4]),
            lambda c: c.send_data(1, b"", end_stream=True),
        ],
    ),
    "beyond the stream window": (
        {"window": 10},
        [lambda c: c.send_headers(1, OK), lambda c: c.send_data(1, b"x" * 11)],
    ),
    "larger than a frame": (
        {},
        [lambda c: c.send_headers(1, OK), lambda c: c.send_data(1, b"x" * 16_385)],
    ),
    "trailers without END_STREAM": (
        {},
        [lambda c: c.send_headers(1, OK), lambda c: c.send_headers(1, TRAILERS)],
    ),
    "after the end": (
        {},
        [
            lambda c: c.send_headers(1, [*OK, *TRAILERS], end_stream=True),
            lambda c: c.send_data(1, b"late"),
            lambda c: c.send_headers(1, TRAILERS, end_stream=True),
        ],
    ),
    "on a stream the peer reset": (
        {"reset": True},
        [lambda c: c.send_headers(1, OK), lambda c: c.send_data(1, b"x")],
    ),
    "informational headers (h2's path)": (
        {},
        [lambda c: c.send_headers(1, [(b":status", b"100")]), lambda c: c.send_headers(1, OK)],
    ),
    "str fields (h2's path)": ({}, [lambda c: c.send_headers(1, [(":status", "200")])]),
    "an unknown stream (h2's path)": ({}, [lambda c: c.send_data(3, b"x")]),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_writer_matches_h2(name: str) -> None:
    setup, commands = SCENARIOS[name]
    expected = outcome(server_with_request(h2.connection.H2Connection, **setup), commands)
    written = outcome(server_with_request(FrameWritingH2Connection, **setup), commands)
    assert written == expected


def client_outcome(connection: h2.connection.H2Connection, commands: list[Command]) -> list[Any]:
    """`outcome` for a client: every stream's state, plus what h2 records of each request."""
    results = outcome(connection, commands)
    for stream_id, stream in sorted(connection.streams.items()):
        results.append(
            (
                stream_id,
                stream.state_machine.state,
                stream.request_method,
                stream._authority,
                stream.max_outbound_frame_size,
                stream._inbound_window_manager.current_window_size,
            )
        )
    return [*results, connection.highest_outbound_stream_id]


def limited_client(kind: type[h2.connection.H2Connection]) -> h2.connection.H2Connection:
    """A client whose server allows two concurrent streams."""
    server = h2.connection.H2Connection(h2_configuration(client_side=False))
    server.initiate_connection()
    server.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2})
    client = kind(h2_configuration(client_side=True))
    client.initiate_connection()
    client.receive_data(server.data_to_send())
    client.data_to_send()
    return client


CLIENT_SCENARIOS: dict[str, list[Command]] = {
    "three calls": [
        lambda c: c.send_headers(1, REQUEST),
        lambda c: c.send_headers(3, REQUEST, end_stream=True),
        lambda c: c.send_data(1, b"\x00\x00\x00\x00\x01x", end_stream=True),
        lambda c: c.send_headers(5, REQUEST),
    ],
    "a stream id going down": [
        lambda c: c.send_headers(5, REQUEST),
        lambda c: c.send_headers(3, REQUEST),
    ],
    "an even stream id": [lambda c: c.send_headers(2, REQUEST)],
    "over the server's stream limit, then one ends": [
        lambda c: c.send_headers(1, REQUEST),
        lambda c: c.send_headers(3, REQUEST),
        lambda c: c.send_headers(5, REQUEST),
        lambda c: c.reset_stream(1),
        lambda c: c.send_headers(7, REQUEST, end_stream=True),
    ],
    "a large request header block": [
        lambda c: c.send_headers(1, [*REQUEST, (b"x-big", b"v" * 40_000)], end_stream=True)
    ],
}


@pytest.mark.parametrize("name", list(CLIENT_SCENARIOS))
def test_new_client_streams_match_h2(name: str) -> None:
    commands = CLIENT_SCENARIOS[name]
    expected = client_outcome(limited_client(h2.connection.H2Connection), commands)
    written = client_outcome(limited_client(FrameWritingH2Connection), commands)
    assert written == expected


def test_many_sequential_calls_keep_few_streams() -> None:
    """New streams skip h2's per-stream count, yet closed streams are still forgotten."""
    client = FrameWritingH2Connection(h2_configuration(client_side=True))
    client.initiate_connection()
    for stream_id in range(1, 2001, 2):
        client.send_headers(stream_id, REQUEST, end_stream=True)
        client.reset_stream(stream_id)
    assert len(client.streams) <= 40


def test_a_client_request_body_matches_h2() -> None:
    results = []
    for kind in (h2.connection.H2Connection, FrameWritingH2Connection):
        client = kind(h2_configuration(client_side=True))
        client.initiate_connection()
        commands: list[Command] = [
            lambda c: c.send_headers(1, REQUEST),
            lambda c: c.send_data(1, b"\x00\x00\x00\x00\x01x"),
            lambda c: c.send_data(1, b"", end_stream=True),
        ]
        results.append(outcome(client, commands))
    assert results[1] == results[0]
