"""The core's byte observer feeding the tap's frame decoders: both directions, one exchange."""

from __future__ import annotations

import h2.config
import h2.connection
from grpclib.const import Status

from greeter.core.events import RequestReceived
from greeter.core.server_connection import ServerConnection
from greeter.tap import FrameDecoder, FrameRecord
from greeter.wire.framing import encode_message


def test_frames_of_a_unary_call_seen_through_the_core_hook() -> None:
    decoders = {
        "in": FrameDecoder(1, "in", expect_preface=True),
        "out": FrameDecoder(1, "out", expect_preface=False),
    }
    records: list[object] = []
    core = ServerConnection(
        on_bytes=lambda direction, data: records.extend(decoders[direction].feed(data))
    )
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    client.send_headers(
        1,
        [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/greet.Greeter/SayHello"),
            (b":authority", b"localhost"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ],
    )
    client.send_data(1, encode_message(b"\n\x05world"), end_stream=True)
    core.initiate()
    client.receive_data(core.data_to_send())
    events = core.receive_data(client.data_to_send())
    assert any(isinstance(event, RequestReceived) for event in events)
    core.send_message(1, b"\n\x0bHello world")
    core.send_trailers(1, Status.OK)
    core.data_to_send()

    frames = [(r.direction, r.type) for r in records if isinstance(r, FrameRecord)]
    assert ("in", "HEADERS") in frames
    assert ("in", "DATA") in frames
    assert frames[-3:] == [("out", "HEADERS"), ("out", "DATA"), ("out", "HEADERS")]
    trailers = [r for r in records if isinstance(r, FrameRecord) and r.direction == "out"][-1]
    assert trailers.headers is not None
    assert ("grpc-status", "0") in trailers.headers
