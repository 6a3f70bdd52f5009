"""Property: any sequence of valid client actions leaves the core consistent.

Hypothesis drives a real h2 client through random opens, message chunks (split anywhere, some
padded), half-closes, resets and window updates, against an application that acknowledges what
it reads, echoes some of it, and sometimes ends or resets RPCs early. Nothing may raise out of
the core, every command on a stream the events call live must succeed, and at the end every
stream is finished on both sides with a gRPC status or a RST_STREAM.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import h2.exceptions
from grpclib.const import Status
from h2.settings import SettingCodes
from hypothesis import example, given, settings
from hypothesis import strategies as st

from greeter.core.config import CoreConfig
from greeter.core.events import (
    ConnectionTerminated,
    Event,
    MessageReceived,
    RequestEnded,
    RequestReceived,
    RequestRejected,
    RpcAborted,
    SendUnblocked,
    ShutdownAcknowledged,
    StreamReset,
)
from greeter.wire.errors import StreamGoneError
from greeter.wire.framing import encode_message
from tests.support.core_pair import Pair

TERMINAL = (RpcAborted, StreamReset, RequestRejected)

ACTIONS: dict[str, st.SearchStrategy[tuple[object, ...]]] = {
    "open": st.tuples(st.just("open"), st.booleans(), st.sampled_from([None, "gzip"])),
    "send": st.tuples(
        st.just("send"),
        st.integers(0, 3),  # which stream (modulo the streams opened so far)
        st.integers(0, 3000),  # message size
        st.integers(1, 4000),  # largest chunk
        st.booleans(),  # end the request with the last chunk
        st.sampled_from([None, 0, 17]),  # padding
    ),
    # Bytes the core must refuse: a cut-off message (then END_STREAM) or a compressed flag
    # on a body that is not valid gzip.
    "bad": st.tuples(
        st.just("bad"),
        st.integers(0, 3),
        st.sampled_from([b"\x00\x00\x00\x00\x09abc", b"\x01\x00\x00\x00\x02xy"]),
        st.booleans(),
    ),
    "end": st.tuples(st.just("end"), st.integers(0, 3)),
    "reset": st.tuples(st.just("reset"), st.integers(0, 3)),
    "window": st.tuples(st.just("window"), st.integers(-1, 3), st.integers(1, 70_000)),
    "app-end": st.tuples(
        st.just("app-end"), st.integers(0, 3), st.sampled_from([Status.OK, Status.NOT_FOUND])
    ),
    "app-reset": st.tuples(st.just("app-reset"), st.integers(0, 3)),
}
# Sends dominate, so streams carry messages before something ends them.
WEIGHTED = ["send"] * 6 + ["open"] * 2 + ["window"] * 2 + [k for k in ACTIONS if k != "send"]
actions = st.lists(
    st.sampled_from(WEIGHTED).flatmap(ACTIONS.__getitem__),
    min_size=4,
    max_size=30,
).map(lambda script: [("open", False, None), *script])


@dataclass
class App:
    """The application: reads, acknowledges, echoes, answers; tracks what it may still touch."""

    pair: Pair
    live: set[int] = field(default_factory=set)
    ended: set[int] = field(default_factory=set)
    history: dict[int, list[Event]] = field(default_factory=dict)

    def react(self, events: list[Event]) -> None:
        core = self.pair.core
        # A batch may report a message and then the core's own end of the same stream (e.g. a
        # corrupt second message in the same DATA frame); a command between the two may then
        # find the stream gone, and only then.
        doomed = {e.stream_id for e in events if isinstance(e, TERMINAL)}
        for event in events:
            sid = getattr(event, "stream_id", None)
            if sid is None:
                assert isinstance(event, ConnectionTerminated | ShutdownAcknowledged)
                continue
            self.history.setdefault(sid, []).append(event)
            if isinstance(event, RequestReceived):
                self.live.add(sid)
            elif isinstance(event, MessageReceived):
                assert sid in self.live
                core.acknowledge(sid, event.flow_bytes)
                if len(event.payload) % 3 == 0:
                    try:
                        core.send_message(sid, event.payload[:50])
                    except StreamGoneError:
                        assert sid in doomed
            elif isinstance(event, RequestEnded):
                assert sid in self.live
                self.finish(sid, Status.OK)
            elif isinstance(event, TERMINAL):
                self.live.discard(sid)
            else:
                assert isinstance(event, SendUnblocked)

    def finish(self, sid: int, status: Status) -> None:
        self.pair.core.send_trailers(sid, status)
        self.live.discard(sid)

    def step(self) -> None:
        """Pump until the application has nothing left to react to."""
        for _ in range(100):
            events = self.pair.pump()
            if not events:
                return
            self.react(events)


@dataclass
class Client:
    """Which streams the h2 client may still act on (h2 closes a stream on an invalid action)."""

    pair: Pair
    sids: list[int] = field(default_factory=list)
    ended: set[int] = field(default_factory=set)
    reset: set[int] = field(default_factory=set)

    def can_send(self, sid: int | None) -> bool:
        return (
            sid is not None
            and sid not in self.ended
            and sid not in self.reset
            and self.pair.response(sid).reset is None
        )

    def open(self, end: bool, encoding: str | None) -> None:
        try:
            sid = self.pair.open(end=end, encoding=encoding, pump=False)
        except h2.exceptions.TooManyStreamsError:
            return
        self.sids.append(sid)
        if end:
            self.ended.add(sid)


def apply(pair: Pair, app: App, action: tuple[object, ...], peer: Client) -> None:
    client = pair.client
    kind = action[0]
    sids = peer.sids

    def pick(index: object) -> int | None:
        assert isinstance(index, int)
        return sids[index % len(sids)] if sids else None

    if kind == "open":
        _, end, encoding = action
        peer.open(bool(end), encoding)  # type: ignore[arg-type]
    elif kind == "send":
        _, index, size, chunk, end, pad = action
        sid = pick(index)
        assert isinstance(size, int) and isinstance(chunk, int)
        if not peer.can_send(sid):
            return
        assert sid is not None
        data = encode_message(bytes([size % 251]) * size)
        while data:
            overhead = 0 if pad is None else int(pad) + 1  # type: ignore[call-overload]
            room = min(client.local_flow_control_window(sid), client.max_outbound_frame_size)
            room = min(room - overhead, chunk)
            if room <= 0:
                return
            piece, data = data[:room], data[room:]
            client.send_data(sid, piece, end_stream=bool(end) and not data, pad_length=pad)
            if end and not data:
                peer.ended.add(sid)
            app.step()
            if not peer.can_send(sid):
                return
    elif kind == "bad":
        _, index, bad, end = action
        sid = pick(index)
        assert isinstance(bad, bytes)
        if peer.can_send(sid):
            assert sid is not None
            if client.local_flow_control_window(sid) < len(bad):
                return
            client.send_data(sid, bad, end_stream=bool(end))
            if end:
                peer.ended.add(sid)
    elif kind == "end":
        sid = pick(action[1])
        if peer.can_send(sid):
            assert sid is not None
            client.end_stream(sid)
            peer.ended.add(sid)
    elif kind == "reset":
        sid = pick(action[1])
        if (
            sid is not None
            and sid not in peer.reset
            and pair.response(sid).reset is None
            and not (sid in peer.ended and pair.response(sid).ended)  # not closed both ways
        ):
            client.reset_stream(sid)
            peer.reset.add(sid)
    elif kind == "window":
        _, index, increment = action
        sid = None if index == -1 else pick(index)
        try:
            client.increment_flow_control_window(increment, sid)  # type: ignore[arg-type]
        except (h2.exceptions.ProtocolError, KeyError):  # KeyError: h2 forgot the stream
            return
    elif kind == "app-end":
        sid = pick(action[1])
        if sid in app.live:
            app.finish(sid, action[2])  # type: ignore[arg-type]
    elif kind == "app-reset":
        sid = pick(action[1])
        if sid in app.live:
            pair.core.reset_stream(sid)
            app.live.discard(sid)


@settings(max_examples=150, deadline=None)
# Found by this test: a peer RST_STREAM after the core aborted the RPC (its status still queued
# behind a zero window) must not report the RPC's end a second time.
@example(
    script=[
        ("open", False, None),
        ("send", 0, 0, 1, False, None),
        ("bad", 0, b"\x00\x00\x00\x00\tabc", False),
        ("send", 0, 6, 1, False, None),
        ("reset", 0),
    ],
    max_streams=2,
    client_window=0,
    auto_ack=False,
)
@given(
    script=actions,
    max_streams=st.sampled_from([2, 100]),
    client_window=st.sampled_from([0, 100, 65_535]),
    auto_ack=st.booleans(),
)
def test_random_client_actions_keep_the_core_consistent(
    script: list[tuple[object, ...]], max_streams: int, client_window: int, auto_ack: bool
) -> None:
    pair = Pair(
        CoreConfig(max_concurrent_streams=max_streams),
        client_settings={SettingCodes.INITIAL_WINDOW_SIZE: client_window},
        auto_ack=auto_ack,
    )
    app = App(pair)
    peer = Client(pair)
    for action in script:
        apply(pair, app, action, peer)
        app.step()

    # Wind down: the client finishes every request and opens its windows; the application
    # answers every RequestEnded; nothing may stay open.
    pair.auto_ack = True
    pair.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 2**20})
    pair.client.increment_flow_control_window(2**30)
    for sid in peer.sids:
        if peer.can_send(sid):
            pair.client.end_stream(sid)
    app.step()
    for sid in peer.sids:
        with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
            pair.client.increment_flow_control_window(2**20, sid)
    app.step()

    assert app.live == set()
    assert pair.core.open_streams == 0
    assert not pair.core.closed
    for sid in peer.sids:
        response = pair.response(sid)
        status = response.trailer("grpc-status")
        finished = response.ended and status is not None
        assert finished or response.reset is not None or sid in peer.reset, (sid, response)
        history = app.history.get(sid, [])
        if not history:
            assert sid in peer.reset  # reset before the core saw it, or refused with it
            continue
        assert isinstance(history[0], RequestReceived | RequestRejected)
        for index, event in enumerate(history):
            later = history[index + 1 :]
            if isinstance(event, TERMINAL):
                # Only the flush of a response queued before the end may still be reported:
                # an abort's status waits behind response bytes the window holds back.
                assert all(isinstance(e, SendUnblocked) for e in later), history
            if isinstance(event, RequestEnded):
                assert all(isinstance(e, SendUnblocked | StreamReset) for e in later), history
