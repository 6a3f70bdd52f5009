"""Test harness for the sans-IO core: a real h2 client as the peer, and a frame reader.

Not a test module. `Pair` joins a `greeter.connection.ServerConnection` to a real client-side
`h2.connection.H2Connection` and moves bytes between them until both are quiet; every byte the
core sends is also parsed with hyperframe (and HPACK-decoded in order) into `WireFrame`s, so a
test can assert the exact frames of a response. `RawClient` builds frames by hand (hyperframe +
hpack) for inputs h2's client refuses to produce. No mocks: both ends are real protocol code.

One deliberate patch of the peer: h2 has no "draining" state, so after a GOAWAY(NO_ERROR) its
client refuses every further frame, which would make the two-step graceful shutdown of RFC 9113
§6.8 untestable. Like the core (and every real gRPC client), the harness keeps the client's
connection open after a NO_ERROR GOAWAY so in-flight streams can finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from greeter.core.config import CoreConfig
from greeter.core.events import Event
from greeter.core.server_connection import ServerConnection
from greeter.wire.framing import MessageDecoder, encode_message

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SAY_HELLO = "/greet.Greeter/SayHello"
LOTS_OF_REPLIES = "/greet.Greeter/LotsOfReplies"
LOTS_OF_GREETINGS = "/greet.Greeter/LotsOfGreetings"
BIDI_HELLO = "/greet.Greeter/BidiHello"
ACCEPT = "identity,deflate,gzip"
RESPONSE_HEADERS = [
    (":status", "200"),
    ("content-type", "application/grpc"),
    ("grpc-accept-encoding", ACCEPT),
]

Headers = list[tuple[str, str]]


def as_text(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Header fields as (str, str); values are latin-1 so every byte survives."""
    return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in headers]


@dataclass
class WireFrame:
    """One frame the core sent, as parsed by hyperframe; `headers` holds a decoded block."""

    frame: Frame
    raw: bytes
    headers: Headers | None = None

    @property
    def stream_id(self) -> int:
        return int(self.frame.stream_id)

    def summary(self) -> tuple[Any, ...]:
        """A comparable tuple: the frame type and the fields a test asserts on."""
        f = self.frame
        end = "END_STREAM" in f.flags
        if isinstance(f, HeadersFrame | ContinuationFrame):
            return ("HEADERS", self.headers, end)
        if isinstance(f, DataFrame):
            return ("DATA", bytes(f.data), end)
        if isinstance(f, RstStreamFrame):
            return ("RST_STREAM", f.error_code)
        if isinstance(f, WindowUpdateFrame):
            return ("WINDOW_UPDATE", f.window_increment)
        if isinstance(f, GoAwayFrame):
            return ("GOAWAY", f.last_stream_id, f.error_code)
        if isinstance(f, PingFrame):
            return ("PING", bytes(f.opaque_data), "ACK" in f.flags)
        if isinstance(f, SettingsFrame):
            return ("SETTINGS", dict(f.settings), "ACK" in f.flags)
        return (type(f).__name__,)


class FrameReader:
    """Parses one direction's bytes into frames, decoding header blocks with its own HPACK state."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._decoder = hpack.Decoder()
        self._block = bytearray()

    def feed(self, data: bytes) -> list[WireFrame]:
        self._buffer += data
        frames: list[WireFrame] = []
        while len(self._buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(self._buffer[:9])))
            if len(self._buffer) < 9 + length:
                break
            raw = bytes(self._buffer[: 9 + length])
            del self._buffer[: 9 + length]
            frame.parse_body(memoryview(raw[9:]))
            wire = WireFrame(frame, raw)
            if isinstance(frame, HeadersFrame | ContinuationFrame):
                self._block += frame.data
                if "END_HEADERS" in frame.flags:
                    wire.headers = as_text(self._decoder.decode(bytes(self._block), raw=True))
                    self._block.clear()
            frames.append(wire)
        return frames


def decode_messages(data: bytes) -> list[bytes]:
    """Response messages from a stream's DATA bytes (the core never compresses responses)."""
    decoder = MessageDecoder(2**32)
    messages = decoder.feed(data)
    assert decoder.buffered == 0, "response ends inside a message"
    assert not any(m.compressed for m in messages)
    return [m.payload for m in messages]


@dataclass
class Response:
    """What the client saw on one stream."""

    headers: Headers | None = None
    data: bytearray = field(default_factory=bytearray)
    trailers: Headers | None = None
    ended: bool = False
    reset: int | None = None

    @property
    def messages(self) -> list[bytes]:
        return decode_messages(bytes(self.data))

    def trailer(self, name: str) -> str | None:
        block = self.trailers if self.trailers is not None else self.headers or []
        return dict(block).get(name)


def request_headers(
    path: str = SAY_HELLO,
    *,
    method: str = "POST",
    content_type: str | None = "application/grpc",
    te: str | None = "trailers",
    timeout: str | None = None,
    encoding: str | None = None,
    metadata: Sequence[tuple[str, str]] = (),
) -> list[tuple[bytes, bytes]]:
    """A gRPC request header block, every field optional so tests can break it."""
    fields = [
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
    ]
    for name, value in (
        ("content-type", content_type),
        ("te", te),
        ("grpc-timeout", timeout),
        ("grpc-encoding", encoding),
    ):
        if value is not None:
            fields.append((name, value))
    fields.extend(metadata)
    return [(n.encode(), v.encode()) for n, v in fields]


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
        """Start an RPC (see `request_headers` for the fields); return its stream id.

        With pump=False the HEADERS wait in the client until the next pump, as if still on
        the wire.
        """
        return self.open_raw(request_headers(path, **kwargs), end=end, pump=pump)

    def open_raw(
        self, headers: list[tuple[bytes, bytes]], *, end: bool = False, pump: bool = True
    ) -> int:
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

    def reset(self, stream_id: int, error_code: int = 8) -> None:
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


class RawClient:
    """A client of hand-built frames: one HPACK encoder, hyperframe serialisation, no h2 rules."""

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
            self.send(PREFACE + SettingsFrame(0).serialize())

    def send(self, data: bytes) -> list[Event]:
        events = self.core.receive_data(data)
        self.frames += self.reader.feed(self.core.data_to_send())
        return events

    def headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], *, end: bool = False
    ) -> list[Event]:
        frame = HeadersFrame(stream_id, self.encoder.encode(headers))
        frame.flags.add("END_HEADERS")
        if end:
            frame.flags.add("END_STREAM")
        return self.send(frame.serialize())

    def data(self, stream_id: int, payload: bytes, *, end: bool = False) -> list[Event]:
        frame = DataFrame(stream_id, payload)
        if end:
            frame.flags.add("END_STREAM")
        return self.send(frame.serialize())

    def wire(self, stream_id: int) -> list[tuple[Any, ...]]:
        return [w.summary() for w in self.frames if w.stream_id == stream_id]
