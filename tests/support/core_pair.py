"""The sans-IO core joined in memory to a real h2 client (`Pair`) or to raw frames (`RawPair`).

Not a test module. `Pair` joins a `greeter.core.server_connection.ServerConnection` to a real
client-side `h2.connection.H2Connection` and moves bytes between them until both are quiet; every
byte the core sends is also parsed by the shared `tests.support.h2peer.FrameReader` (HPACK-decoded
in order) into `WireFrame`s, so a test can assert the exact frames of a response. `RawPair` sends
frames built by tests.support.h2peer for inputs h2's client refuses to produce. No mocks: both
ends are real protocol code.

One deliberate patch of the peer: h2 has no "draining" state, so after a GOAWAY(NO_ERROR) its
client refuses every further frame, which would make the two-step graceful shutdown of RFC 9113
§6.8 untestable. Like the core (and every real gRPC client), the harness keeps the client's
connection open after a NO_ERROR GOAWAY so in-flight streams can finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
from h2.settings import SettingCodes
from hyperframe.frame import Frame, WindowUpdateFrame

from greeter.core.config import CoreConfig
from greeter.core.events import Event
from greeter.core.server_connection import ServerConnection
from greeter.wire.framing import encode_message
from tests.support.h2peer import (
    CANCEL,
    SAY_HELLO,
    FrameReader,
    Headers,
    WireFrame,
    as_text,
    client_preface,
    data_frame,
    grpc_messages,
    header_frames,
    request_headers,
)

ACCEPT = "identity,deflate,gzip"
RESPONSE_HEADERS = [
    (":status", "200"),
    ("content-type", "application/grpc"),
    ("grpc-accept-encoding", ACCEPT),
]
"""The response headers the core sends by default."""

RequestHeaders = list[tuple[str, str]] | list[tuple[bytes, bytes]]


@dataclass
class Response:
    """What the h2 client reported on one stream (h2's events, not raw frames).

    h2 reports a Trailers-Only response as response headers that end the stream, so `trailers`
    stays None then and `trailer()` reads the headers.
    """

    headers: Headers | None = None
    data: bytearray = field(default_factory=bytearray)
    trailers: Headers | None = None
    ended: bool = False
    reset: int | None = None

    @property
    def messages(self) -> list[bytes]:
        """The response messages; AssertionError if one is compressed or cut short."""
        return grpc_messages(bytes(self.data))

    def trailer(self, name: str) -> str | None:
        block = self.trailers if self.trailers is not None else self.headers or []
        return dict(block).get(name)


class FlowControlStall(AssertionError):
    """The client has bytes to send, no window, and pumping gave it none: a deadlock."""

    def __init__(self, stream_id: int, remaining: bytes) -> None:
        super().__init__(f"stream {stream_id}: {len(remaining)} bytes unsent")
        self.remaining = remaining


class Pair:
    """The core and a real h2 client, joined in memory."""

    def __init__(
        self,
        config: CoreConfig | None = None,
        *,
        client_settings: dict[SettingCodes, int] | None = None,
        auto_ack: bool = True,
        validate: bool = True,
        connect: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.core = ServerConnection(config, clock=clock or time.monotonic)
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                # Off only where a test must send what h2 would refuse (te: gzip, GET, ...).
                validate_outbound_headers=validate,
                normalize_outbound_headers=validate,
            )
        )
        if client_settings:
            self.client.local_settings = h2.settings.Settings(
                client=True, initial_values=client_settings
            )
        self.auto_ack = auto_ack
        self.reader = FrameReader()
        self.frames: list[WireFrame] = []
        """Every frame the core sent, in order."""
        self.sent = bytearray()
        """Every byte the client sent, in order (the input a drip-feed test replays)."""
        self.events: list[Event] = []
        """Every core event, in order."""
        self.client_events: list[h2.events.Event] = []
        self.responses: dict[int, Response] = {}
        self._untaken = 0
        self._pending = bytearray()
        self.core.initiate()
        self.client.initiate_connection()
        if connect:
            self.pump()

    # -- moving bytes ----------------------------------------------------------------------------

    def pump(self) -> list[Event]:
        """Move bytes both ways until neither side has anything to send; return new core events."""
        new: list[Event] = []
        for _ in range(10_000):
            out = bytes(self._pending) + self.client.data_to_send()
            self._pending.clear()
            if out:
                self.sent += out
                new += self.core.receive_data(out)
            back = self.core.data_to_send()
            if back:
                self._deliver(back)
            if not out and not back and not self._pending:
                break
        else:  # pragma: no cover - a livelock is a test failure
            raise AssertionError("pump did not settle")
        self.events += new
        return new

    def take(self) -> list[Event]:
        """Core events since the previous take()."""
        new = self.events[self._untaken :]
        self._untaken = len(self.events)
        return new

    def feed(self, raw: bytes) -> list[Event]:
        """Hand-built bytes straight to the core (frames that carry no HPACK state), then pump."""
        self.sent += raw
        events = self.core.receive_data(raw)
        self.events += events
        return events + self.pump()

    def _deliver(self, data: bytes) -> None:
        # Frame by frame, so the GOAWAY patch (module docstring) applies before the next frame.
        for wire in self.reader.feed(data):
            self.frames.append(wire)
            events = self.client.receive_data(wire.raw)
            self._pending += self.client.data_to_send()
            for event in events:
                self._on_client_event(event)

    def _on_client_event(self, event: h2.events.Event) -> None:
        self.client_events.append(event)
        stream_id = getattr(event, "stream_id", None)
        response = self.responses.setdefault(stream_id, Response()) if stream_id else None
        if isinstance(event, h2.events.ResponseReceived):
            assert response is not None
            response.headers = as_text(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            assert response is not None
            response.data += event.data
            if self.auto_ack and event.flow_controlled_length:
                self.client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self._pending += self.client.data_to_send()
        elif isinstance(event, h2.events.TrailersReceived):
            assert response is not None
            response.trailers = as_text(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            assert response is not None
            response.ended = True
        elif isinstance(event, h2.events.StreamReset):
            assert response is not None
            response.reset = int(event.error_code)
        elif isinstance(event, h2.events.ConnectionTerminated) and event.error_code == 0:
            self.client.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN

    # -- the client's side of an RPC --------------------------------------------------------------

    def open(
        self, path: str = SAY_HELLO, *, end: bool = False, pump: bool = True, **kwargs: Any
    ) -> int:
        """Start an RPC (fields: tests.support.h2peer.request_headers); return its stream id.

        With pump=False the HEADERS wait in the client until the next pump, as if still on
        the wire.
        """
        return self.open_raw(request_headers(path, **kwargs), end=end, pump=pump)

    def open_raw(self, headers: RequestHeaders, *, end: bool = False, pump: bool = True) -> int:
        stream_id = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, headers, end_stream=end)
        self.responses[stream_id] = Response()
        if pump:
            self.pump()
        return stream_id

    def send(
        self,
        stream_id: int,
        data: bytes,
        *,
        end: bool = False,
        frame_size: int | None = None,
        pad_length: int | None = None,
    ) -> None:
        """DATA frames of at most `frame_size` bytes, always within the core's windows."""
        view = memoryview(data)
        overhead = 0 if pad_length is None else pad_length + 1
        while True:
            room = min(
                self.client.local_flow_control_window(stream_id) - overhead,
                self.client.max_outbound_frame_size - overhead,
                frame_size or len(view),
            )
            if room <= 0 and view:
                self.pump()
                if self.client.local_flow_control_window(stream_id) - overhead <= 0:
                    raise FlowControlStall(stream_id, view.tobytes())
                continue
            chunk, view = view[:room], view[room:]
            last = not view
            self.client.send_data(
                stream_id, chunk.tobytes(), end_stream=end and last, pad_length=pad_length
            )
            if last:
                break
        self.pump()

    def send_message(self, stream_id: int, payload: bytes, *, end: bool = False, **kw: Any) -> None:
        self.send(stream_id, encode_message(payload), end=end, **kw)

    def end(self, stream_id: int) -> None:
        self.client.end_stream(stream_id)
        self.pump()

    def reset(self, stream_id: int, error_code: int = CANCEL) -> None:
        self.client.reset_stream(stream_id, error_code)
        self.pump()

    # -- what came back ---------------------------------------------------------------------------

    def response(self, stream_id: int) -> Response:
        return self.responses[stream_id]

    def wire(self, stream_id: int) -> list[tuple[Any, ...]]:
        """Summaries of the frames the core sent on one stream, in order."""
        return [w.summary() for w in self.frames if w.stream_id == stream_id]

    def connection_frames(self, kind: type[Frame]) -> list[tuple[Any, ...]]:
        return [w.summary() for w in self.frames if w.stream_id == 0 and isinstance(w.frame, kind)]

    def window_updates(self) -> list[tuple[int, int]]:
        """(stream id, increment) of every WINDOW_UPDATE the core sent."""
        return [
            (w.stream_id, w.frame.window_increment)
            for w in self.frames
            if isinstance(w.frame, WindowUpdateFrame)
        ]


class RawPair:
    """The core and a client of hand-built frames (tests.support.h2peer): no h2 rules at all.

    One HPACK encoder (`encoder`) for the client's header blocks; every frame the core sends is
    in `frames`, parsed by a FrameReader.
    """

    def __init__(
        self,
        config: CoreConfig | None = None,
        *,
        handshake: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.core = ServerConnection(config, clock=clock or time.monotonic)
        self.core.initiate()
        self.encoder = hpack.Encoder()
        self.reader = FrameReader()
        self.frames: list[WireFrame] = []
        self.frames += self.reader.feed(self.core.data_to_send())
        if handshake:
            self.send(client_preface())

    def send(self, data: bytes) -> list[Event]:
        """Bytes straight to the core; the core's events (its answer is parsed into frames)."""
        events = self.core.receive_data(data)
        self.frames += self.reader.feed(self.core.data_to_send())
        return events

    def headers(self, stream_id: int, headers: RequestHeaders, *, end: bool = False) -> list[Event]:
        """A header block (see h2peer.request_headers) as HEADERS (+ CONTINUATION if needed)."""
        block = self.encoder.encode(headers)
        return self.send(header_frames(stream_id, block, end_stream=end))

    def data(self, stream_id: int, payload: bytes, *, end: bool = False) -> list[Event]:
        return self.send(data_frame(stream_id, payload, end))

    def wire(self, stream_id: int) -> list[tuple[Any, ...]]:
        """Summaries of the frames the core sent on one stream, in order."""
        return [w.summary() for w in self.frames if w.stream_id == stream_id]
