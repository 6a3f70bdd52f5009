"""The bare h2 loop: greet.Greeter answered synchronously inside `data_received`, no gRPC semantics.

Usage: .venv/bin/python benchmarks/bare_h2.py --port PORT

The pure-Python ceiling (docs/performance.md): an asyncio.Protocol around one
h2.connection.H2Connection per connection, the same betterproto2 codec as every other server in
benchmarks/run.py, and nothing else: no tasks, no deadlines, no metadata, no compression, no
limits beyond h2's own, minimal header checks (the :path picks the method, anything else is
ignored). SayHello, LotsOfReplies and LotsOfGreetings answer when the request ends; BidiHello
answers each message as soon as it is complete. Every reply is sent before `data_received`
returns, in one `transport.write`; data the flow-control window does not admit waits for a
WINDOW_UPDATE. A benchmark fixture, not a server to use.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gen.greet import HelloReply, HelloRequest

RESPONSE_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]
OK_TRAILERS = [(b"grpc-status", b"0")]
UNIMPLEMENTED = [*RESPONSE_HEADERS, (b"grpc-status", b"12")]
METHODS = {
    b"/greet.Greeter/SayHello": "unary",
    b"/greet.Greeter/LotsOfReplies": "server_stream",
    b"/greet.Greeter/LotsOfGreetings": "client_stream",
    b"/greet.Greeter/BidiHello": "bidi",
}


def frame(reply: HelloReply) -> bytes:
    """One gRPC length-prefixed message (uncompressed)."""
    payload = bytes(reply)
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class Call:
    """One request stream: its method kind and the request bytes not yet parsed into messages."""

    __slots__ = ("buffer", "kind", "requests", "started")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.buffer = b""
        self.requests: list[HelloRequest] = []
        self.started = False

    def feed(self, data: bytes) -> list[HelloRequest]:
        """Append request bytes; return the messages they complete."""
        buffer = self.buffer + data
        done: list[HelloRequest] = []
        while len(buffer) >= 5:
            end = 5 + int.from_bytes(buffer[1:5], "big")
            if len(buffer) < end:
                break
            done.append(HelloRequest.parse(buffer[5:end]))
            buffer = buffer[end:]
        self.buffer = buffer
        return done


class BareH2(asyncio.Protocol):
    """One connection: h2 events in, replies out, all inside `data_received`."""

    def __init__(self) -> None:
        self.h2 = H2Connection(
            H2Configuration(client_side=False, header_encoding=None, validate_inbound_headers=False)
        )
        self.calls: dict[int, Call] = {}
        self.pending: dict[int, bytearray] = {}
        """Per stream: reply bytes waiting for flow-control window (trailers follow them)."""
        self.trailers_after: set[int] = set()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.h2.initiate_connection()
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            events = self.h2.receive_data(data)
        except ProtocolError:
            self.transport.write(self.h2.data_to_send())
            self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.request(event.stream_id, dict(event.headers or ()))
            elif isinstance(event, DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self.data(event.stream_id, event.data or b"")
            elif isinstance(event, StreamEnded):
                self.end(event.stream_id)
            elif isinstance(event, WindowUpdated):
                self.flush_all()
            elif isinstance(event, StreamReset):
                self.forget(event.stream_id)
            elif isinstance(event, ConnectionTerminated):
                self.transport.write(self.h2.data_to_send())
                self.transport.close()
                return
        self.transport.write(self.h2.data_to_send())

    def request(self, stream_id: int, headers: dict[bytes, bytes]) -> None:
        kind = METHODS.get(headers.get(b":path", b""))
        if kind is None:
            self.h2.send_headers(stream_id, UNIMPLEMENTED, end_stream=True)
            return
        self.calls[stream_id] = Call(kind)

    def data(self, stream_id: int, data: bytes) -> None:
        call = self.calls.get(stream_id)
        if call is None:
            return
        requests = call.feed(data)
        if call.kind != "bidi":
            call.requests.extend(requests)
            return
        if requests:
            self.send(stream_id, call, [HelloReply(message=f"Hello {r.name}") for r in requests])

    def end(self, stream_id: int) -> None:
        call = self.calls.pop(stream_id, None)
        if call is None:
            return
        requests = call.requests
        first = requests[0] if requests else HelloRequest()
        if call.kind == "unary":
            replies = [HelloReply(message=f"Hello {first.name}")]
        elif call.kind == "server_stream":
            replies = [
                HelloReply(message=f"Hello {first.name} #{i}") for i in range(1, first.count + 1)
            ]
        elif call.kind == "client_stream":
            replies = [HelloReply(message="Hello " + ", ".join(r.name for r in requests))]
        else:
            replies = []
        self.send(stream_id, call, replies)
        self.trailers_after.add(stream_id)
        self.flush(stream_id)

    def send(self, stream_id: int, call: Call, replies: list[HelloReply]) -> None:
        if not call.started:
            call.started = True
            self.h2.send_headers(stream_id, RESPONSE_HEADERS)
        buffer = self.pending.setdefault(stream_id, bytearray())
        buffer += b"".join(frame(reply) for reply in replies)
        self.flush(stream_id)

    def flush(self, stream_id: int) -> None:
        """Send what the window admits of the stream's replies; trailers once all is out."""
        buffer = self.pending.get(stream_id)
        if buffer is None:
            return
        while buffer:
            size = min(
                len(buffer),
                self.h2.local_flow_control_window(stream_id),
                self.h2.max_outbound_frame_size,
            )
            if size <= 0:
                return
            self.h2.send_data(stream_id, bytes(buffer[:size]))
            del buffer[:size]
        if stream_id in self.trailers_after:
            self.h2.send_headers(stream_id, OK_TRAILERS, end_stream=True)
            self.forget(stream_id)

    def flush_all(self) -> None:
        for stream_id in list(self.pending):
            self.flush(stream_id)

    def forget(self, stream_id: int) -> None:
        self.calls.pop(stream_id, None)
        self.pending.pop(stream_id, None)
        self.trailers_after.discard(stream_id)


async def serve(host: str, port: int) -> None:
    """Serve until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BareH2, host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
