"""Property-based fuzzing of the sans-IO core: hostile bytes never break it.

Two generators feed `ServerConnection.receive_data` in random chunks: random frame sequences (every
frame type, random flags, stream ids, lengths and payloads, header blocks from a real HPACK
encoder, some of them mutated or split into CONTINUATIONs), and byte-level mutations (bit flips,
insertions, deletions) of a recorded valid exchange. A small driver answers the requests that
start, as greeter.server would. After every example:

- nothing raised out of the core, and each example ran within the hypothesis deadline;
- the events are consistent per stream (nothing before RequestReceived, nothing after the stream
  ended), and nothing follows a local ConnectionTerminated;
- every stream the core still holds is open in h2 too; a closed core holds none;
- the output is bounded by a multiple of the input plus a constant (no amplification).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import hpack
from grpclib.const import Status
from h2.errors import ErrorCodes
from h2.stream import StreamState
from hypothesis import HealthCheck, given, settings
from hypothesis import event as tally
from hypothesis import strategies as st

from greeter.core.config import CoreConfig
from greeter.core.events import (
    ConnectionTerminated,
    Event,
    MessageReceived,
    RequestEnded,
    RequestReceived,
    RpcAborted,
    StreamReset,
)
from greeter.core.server_connection import ServerConnection
from greeter.wire.errors import StreamGoneError
from greeter.wire.framing import encode_message
from tests.support.core_pair import Pair
from tests.support.h2peer import PREFACE, request_headers

FUZZ = settings(
    max_examples=300,
    deadline=5000,  # ms per example: a hang or a quadratic blow-up fails the example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Small limits so that the fuzzer reaches them (a limit is where bugs live).
CONFIG = CoreConfig(
    max_receive_message_size=64,
    max_concurrent_streams=4,
    max_header_list_size=1024,
    reset_budget=8,
    control_frame_budget=16,
    min_ping_interval=1.0,
)
OUTPUT_PER_INPUT_BYTE = 64
OUTPUT_CONSTANT = 16 * 1024
STREAM_IDS = st.sampled_from([0, 1, 2, 3, 5, 7, 9, 11, 2**31 - 1])


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.01  # every read advances time a little
        return self.now


# -- frames ----------------------------------------------------------------------------------------


def raw_frame(frame_type: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    header = len(payload).to_bytes(3, "big") + bytes([frame_type, flags])
    return header + (stream_id & 0x7FFFFFFF).to_bytes(4, "big") + payload


@dataclass
class HeaderAction:
    """A header block to encode at run time (HPACK state is shared across the sequence)."""

    stream_id: int | None
    """None: the next client stream id (most requests should get somewhere)."""
    fields: list[tuple[bytes, bytes]]
    end_stream: bool
    split: int
    """Bytes in the HEADERS frame; the rest goes into up to 3 CONTINUATION frames."""
    mutation: tuple[int, int] | None
    """(position, xor) applied to the encoded block."""


@dataclass
class DataAction:
    """A well-formed gRPC message on one of the streams opened so far (-1: the newest)."""

    back: int
    payload: bytes
    flags: int


Action = bytes | HeaderAction | DataAction

PRINTABLE = st.binary(max_size=24).map(lambda b: bytes(32 + c % 95 for c in b))
METADATA = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([b"x-a", b"x-trace", b"user-agent"]), PRINTABLE),
        st.tuples(
            st.sampled_from([b"x-b-bin", b"grpc-timeout", b"te", b":path", b"Upper", b""]),
            st.binary(max_size=24),
        ),
    ),
    max_size=3,
)


@st.composite
def header_actions(draw: st.DrawFn) -> HeaderAction:
    base = request_headers(
        draw(st.sampled_from(["/greet.Greeter/SayHello"] * 3 + ["/x/y", ""])),
        encoding=draw(st.sampled_from([None, None, "gzip", "deflate", "br"])),
        timeout=draw(st.sampled_from([None, None, "1S", "10m", "bad"])),
    )
    keep = draw(st.one_of(st.just(len(base)), st.integers(0, len(base))))
    fields = base[:keep] + draw(METADATA)
    mutate = draw(st.integers(0, 3)) == 0
    return HeaderAction(
        stream_id=draw(st.one_of(st.none(), st.none(), st.none(), STREAM_IDS)),
        fields=fields,
        end_stream=draw(st.booleans()),
        split=draw(st.integers(0, 200)),
        mutation=(draw(st.integers(0, 300)), draw(st.integers(1, 255))) if mutate else None,
    )


def payloads(frame_type: int) -> st.SearchStrategy[bytes]:
    sizes = {0: 80, 2: 5, 3: 4, 4: 18, 6: 8, 7: 16, 8: 4}
    exact = st.binary(min_size=sizes.get(frame_type, 0), max_size=sizes.get(frame_type, 40))
    return st.one_of(exact, st.binary(max_size=40))


@st.composite
def typed_frames(draw: st.DrawFn) -> bytes:
    frame_type = draw(st.sampled_from([*range(10), 10, 12, 16, 0xFF]))
    if frame_type == 0 and draw(st.booleans()):
        message = encode_message(draw(st.binary(max_size=80)))
        return raw_frame(0, draw(st.sampled_from([0, 1])), draw(STREAM_IDS), message)
    flags = draw(st.integers(0, 255))
    return raw_frame(frame_type, flags, draw(STREAM_IDS), draw(payloads(frame_type)))


DATA_ACTIONS = st.builds(
    DataAction,
    st.integers(-3, -1),
    st.binary(max_size=80),
    st.sampled_from([0, 0, 1, 0x8 | 0]),
)
ACTIONS = st.lists(
    st.one_of(typed_frames(), header_actions(), header_actions(), DATA_ACTIONS), max_size=30
)


def materialise(actions: list[Action]) -> list[bytes]:
    """The client's bytes, one item per action, after the preface, SETTINGS and a valid request."""
    encoder = hpack.Encoder()
    first = raw_frame(1, 0x4, 1, encoder.encode(request_headers()))
    out = [PREFACE + raw_frame(4, 0, 0, b""), first]
    opened = [1]
    for action in actions:
        if isinstance(action, bytes):
            out.append(action)
        elif isinstance(action, DataAction):
            message = encode_message(action.payload)
            if action.flags & 0x8:  # padded
                message = b"\x02" + message + b"\x00\x00"
            if opened:
                stream_id = opened[action.back % len(opened)]
                out.append(raw_frame(0, action.flags, stream_id, message))
        else:
            stream_id = action.stream_id
            if stream_id is None:
                stream_id = opened[-1] + 2 if opened else 1
            opened.append(stream_id)
            block = bytearray(encoder.encode(action.fields))
            if action.mutation is not None and block:
                position, xor = action.mutation
                block[position % len(block)] ^= xor
            out.append(split_block(action, stream_id, bytes(block)))
    return out


def split_block(action: HeaderAction, stream_id: int, block: bytes) -> bytes:
    head, rest = block[: action.split], block[action.split :]
    pieces = [rest[i : i + 64] for i in range(0, len(rest), 64)][:3] if rest else []
    flags = 0x1 if action.end_stream else 0
    out = raw_frame(1, flags | (0 if pieces else 0x4), stream_id, head)
    for index, piece in enumerate(pieces):
        end = 0x4 if index == len(pieces) - 1 else 0
        out += raw_frame(9, end, stream_id, piece)
    return out


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# -- the driver and the invariants -----------------------------------------------------------------


@dataclass
class Run:
    """One fuzz example: the core, what it said, how many bytes went in and out."""

    core: ServerConnection
    events: list[Event] = field(default_factory=list)
    fed: int = 0
    sent: int = 0

    def feed(self, chunk: bytes) -> None:
        new = self.core.receive_data(chunk)
        self.fed += len(chunk)
        self.events += new
        for event in new:
            if isinstance(event, RequestReceived | MessageReceived):
                self.answer(event)
        self.sent += len(self.core.data_to_send())

    def answer(self, event: RequestReceived | MessageReceived) -> None:
        """Answer like a handler would: a reply per message, or trailers on a reset-like hint."""
        try:
            if isinstance(event, MessageReceived):
                self.core.acknowledge(event.stream_id, event.flow_bytes)
                self.core.send_message(event.stream_id, event.payload[:16])
            elif event.stream_id % 4 == 3:
                self.core.send_trailers(event.stream_id, Status.OK)
        except StreamGoneError:
            pass


def run(data: bytes | list[bytes], cuts: list[int]) -> Run:
    """Feed `data` cut at `cuts`, or (a list) one item per read."""
    core = ServerConnection(CONFIG, clock=FakeClock())
    core.initiate()
    state = Run(core, sent=len(core.data_to_send()))
    for chunk in chunked(data, cuts) if isinstance(data, bytes) else data:
        state.feed(chunk)
    return state


def label(state: Run) -> None:
    """Tallies for --hypothesis-show-statistics: how far into the protocol the examples get."""
    requests = sum(isinstance(e, RequestReceived) for e in state.events)
    tally(f"requests started: {min(requests, 3)}{'+' if requests > 3 else ''}")
    last = state.events[-1] if state.events else None
    tally(f"ended by: {last.reason[:40] if isinstance(last, ConnectionTerminated) else 'open'}")


def check(state: Run) -> None:
    for event_ in state.events:  # the safety net of receive_data is for bugs; none may be hit
        assert not (isinstance(event_, ConnectionTerminated) and "internal" in event_.reason), (
            event_
        )
    check_stream_events(state.events)
    core = state.core
    if core.closed:
        assert core.open_streams == 0
        assert core.receive_data(b"\x00" * 9) == []
    for stream_id in core._streams:
        h2_stream = core._h2.streams.get(stream_id)
        assert h2_stream is not None, f"stream {stream_id} unknown to h2"
        assert h2_stream.state_machine.state != StreamState.CLOSED, f"stream {stream_id} closed"
    assert state.sent <= OUTPUT_PER_INPUT_BYTE * state.fed + OUTPUT_CONSTANT


def check_stream_events(events: list[Event]) -> None:
    started: set[int] = set()
    ended: set[int] = set()
    for index, event in enumerate(events):
        if isinstance(event, ConnectionTerminated) and event.local:
            assert index == len(events) - 1, f"events after a local close: {events[index:]}"
        stream_id = getattr(event, "stream_id", None)
        if isinstance(event, RequestReceived):
            assert stream_id not in started, f"stream {stream_id} started twice"
            started.add(event.stream_id)
        elif isinstance(event, MessageReceived | RequestEnded | StreamReset | RpcAborted):
            assert event.stream_id in started, f"{event} before its RequestReceived"
            assert event.stream_id not in ended, f"{event} after its stream ended"
            if isinstance(event, StreamReset | RpcAborted):
                ended.add(event.stream_id)


# -- the properties --------------------------------------------------------------------------------


@FUZZ
@given(ACTIONS, st.lists(st.integers(0, 10_000), max_size=8), st.booleans())
def test_random_frame_sequences_never_break_the_core(
    actions: list[Action], cuts: list[int], per_frame: bool
) -> None:
    # h2 drops every event of a read that ends in a connection error, so reading frame by frame
    # gets further into the protocol; one read cut at random places tests reassembly.
    frames = materialise(actions)
    state = run(frames if per_frame else b"".join(frames), cuts)
    label(state)
    check(state)


def recorded_exchange() -> bytes:
    """What a real h2 client sends for a unary call, a client stream, a cancel and a ping."""
    pair = Pair()
    unary = pair.open(end=False)
    pair.send_message(unary, b"hello", end=True)
    stream = pair.open("/greet.Greeter/LotsOfGreetings")
    for n in range(3):
        pair.send_message(stream, b"n%d" % n)
    pair.end(stream)
    cancelled = pair.open()
    pair.reset(cancelled, ErrorCodes.CANCEL)
    pair.client.ping(b"12345678")
    pair.client.increment_flow_control_window(1000)
    pair.pump()
    return bytes(pair.sent)


EXCHANGE = recorded_exchange()


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(EXCHANGE)
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.one_of(st.integers(33, len(data)), st.integers(0, len(data))))
        kind = draw(st.sampled_from(["flip", "insert", "delete"]))
        if kind == "flip" and position < len(data):
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[position : position + draw(st.integers(1, 16))]
    return bytes(data)


@FUZZ
@given(mutations(), st.lists(st.integers(0, 10_000), max_size=8))
def test_mutated_valid_exchanges_never_break_the_core(data: bytes, cuts: list[int]) -> None:
    state = run(data, cuts)
    label(state)
    check(state)


def test_the_unmutated_exchange_is_served_cleanly() -> None:
    state = run(EXCHANGE, [7, 100, 333])
    check(state)
    assert not state.core.closed
    assert sum(isinstance(e, RequestReceived) for e in state.events) == 3


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 10_000), max_size=8))
def test_random_bytes_after_the_preface_never_break_the_core(data: bytes, cuts: list[int]) -> None:
    state = run(PREFACE + data, cuts)
    label(state)
    check(state)
