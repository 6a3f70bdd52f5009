"""The core's byte observer (the wire tap's entry): every byte in and out, in order, unchanged."""

from __future__ import annotations

import h2.config
import h2.connection
from grpclib.const import Status

from greeter.core.events import RequestReceived
from greeter.core.server_connection import ServerConnection
from greeter.wire.framing import encode_message


def test_observer_sees_exactly_the_bytes_in_and_out() -> None:
    seen: list[tuple[str, bytes]] = []
    core = ServerConnection(on_bytes=lambda direction, data: seen.append((direction, data)))
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    sid = client.get_next_available_stream_id()
    client.send_headers(
        sid,
        [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/greet.Greeter/SayHello"),
            (b":authority", b"localhost"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ],
    )
    client.send_data(sid, encode_message(b"\n\x05world"), end_stream=True)
    request = client.data_to_send()

    core.initiate()
    first_out = core.data_to_send()
    events = core.receive_data(request[:7])  # split: the observer sees chunks as fed
    events += core.receive_data(request[7:])
    assert any(isinstance(event, RequestReceived) for event in events)
    core.send_message(sid, b"\n\x0bHello world")
    core.send_trailers(sid, Status.OK)
    second_out = core.data_to_send()
    assert core.data_to_send() == b""  # nothing to send: the observer is not called

    assert seen == [
        ("out", first_out),
        ("in", request[:7]),
        ("in", request[7:]),
        ("out", second_out),
    ]
    client.receive_data(first_out + second_out)  # and those bytes are valid HTTP/2 for the peer
