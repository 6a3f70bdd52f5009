"""Responses checked while a benchmark is timed: status, headers and the exact body of a sample.

h2load counts 2xx responses and DATA bytes, but it cannot see trailers: a server that answered
every request with the right number of bytes and `grpc-status: 13` would pass it. So while each
timed h2load run goes on, `ResponseSampler` sends the same request on a connection of its own,
one at a time, every `INTERVAL` seconds (the same for every server, a small fraction of the
load), and checks each response: `:status 200`, `content-type: application/grpc...`, the body
byte for byte, and trailers with `grpc-status: 0`. Any difference fails the figure, and a run
with no sample checked fails too.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset, TrailersReceived

INTERVAL = 0.05
"""Seconds between samples: ~20 checked responses per second of a timed run."""
TIMEOUT = 30.0
"""Seconds a sampled response may take under full load before the figure fails."""


class SampleMismatch(RuntimeError):
    """A sampled response was not the expected successful reply."""


class ResponseSampler:
    """`with ResponseSampler(port, path, body, reply): run h2load` — then `.checked` responses."""

    def __init__(self, port: int, path: str, body: bytes, reply: bytes) -> None:
        self.port, self.path, self.body, self.reply = port, path, body, reply
        self.checked = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="response-sampler", daemon=True)

    def __enter__(self) -> ResponseSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT + 5)
        if kind is not None:
            return
        if self.error is not None:
            raise SampleMismatch(f"sampled response: {self.error}") from self.error
        if self.checked == 0:
            raise SampleMismatch("no response could be sampled during the run")

    def _run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as sock:
                connection = H2Connection(H2Configuration(client_side=True))
                connection.initiate_connection()
                sock.sendall(connection.data_to_send())
                while True:
                    self._check_one(sock, connection)
                    self.checked += 1
                    if self._stop.wait(INTERVAL):
                        return
        except BaseException as exc:  # reported by __exit__ in the benchmark's thread
            self.error = exc

    def _check_one(self, sock: socket.socket, connection: H2Connection) -> None:
        stream_id = connection.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{self.port}"),
            (":path", self.path),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        connection.send_headers(stream_id, headers)
        connection.send_data(stream_id, self.body, end_stream=True)
        sock.sendall(connection.data_to_send())
        response: dict[bytes, bytes] = {}
        trailers: dict[bytes, bytes] = {}
        body = bytearray()
        while True:
            data = sock.recv(65536)
            if not data:
                raise SampleMismatch("the server closed the connection")
            for event in connection.receive_data(data):
                if isinstance(event, ResponseReceived) and event.stream_id == stream_id:
                    response = dict(event.headers)
                elif isinstance(event, DataReceived) and event.stream_id == stream_id:
                    body += event.data
                    connection.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, TrailersReceived) and event.stream_id == stream_id:
                    trailers = dict(event.headers)
                elif isinstance(event, StreamReset) and event.stream_id == stream_id:
                    raise SampleMismatch(f"stream reset, error code {event.error_code}")
                elif isinstance(event, StreamEnded) and event.stream_id == stream_id:
                    sock.sendall(connection.data_to_send())
                    self._compare(response, bytes(body), trailers)
                    return
            sock.sendall(connection.data_to_send())

    def _compare(
        self, response: dict[bytes, bytes], body: bytes, trailers: dict[bytes, bytes]
    ) -> None:
        status = response.get(b":status")
        content_type = response.get(b"content-type", b"")
        if status != b"200" or not content_type.startswith(b"application/grpc"):
            raise SampleMismatch(f":status {status!r}, content-type {content_type!r}")
        grpc_status = trailers.get(b"grpc-status", response.get(b"grpc-status"))
        if grpc_status != b"0":
            message = trailers.get(b"grpc-message", b"")
            raise SampleMismatch(f"grpc-status {grpc_status!r} {message!r}")
        if body != self.reply:
            raise SampleMismatch(
                f"body of {len(body)} bytes differs from the expected {len(self.reply)}: "
                f"{body[:60]!r}..."
            )
