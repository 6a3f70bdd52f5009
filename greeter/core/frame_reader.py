"""HEADERS and DATA frames on open streams parsed by greeter, with h2 still the state machine.

h2's `receive_data` turns every frame into hyperframe objects (a Frame, a Flags set, a
memoryview per field), formats each one with `repr` for a trace log nobody reads, and
dispatches it through a generic table. In the client's unary profile that frame handling was
about a fifth of all the time spent, and in the server's it was the largest single share. The
frames that carry RPCs (a request's or response's HEADERS, its DATA, the trailers) are simple:
`FrameReadingH2Connection` splits a read into frames itself (RFC 9113 §4.1) and, for
unpadded DATA (§6.1) and unpadded, unprioritised HEADERS with END_HEADERS (§6.2) on a stream
whose receiving side is open (plus, on the server, a new request stream), it calls the same
h2 methods h2's own frame handlers call, in the same order: HPACK decoding, the connection
state machine, stream creation, the stream's `receive_headers` / `receive_data` (its state
machine, flow-control windows and content-length checks). Every other frame (SETTINGS, PING,
WINDOW_UPDATE, RST_STREAM, GOAWAY, CONTINUATION, padding, priority, closed or unknown streams,
oversized frames, the server's preface) goes to h2's own `receive_data`, one frame at a time.

This module reads h2's private state (besides hpack_cache.py and frame_writer.py): the frame
buffer's `_data`, `_headers_buffer` and `_preamble_len`, `_inbound_flow_control_window_manager`,
`_decode_headers` and `_terminate_connection`, as h2 4.x
has them. tests/core/test_frame_reader.py feeds the same bytes to a plain H2Connection and to
this one and fails if the events, errors, states or windows ever differ.
"""

from __future__ import annotations

import struct
from typing import Any

import h2.config
import h2.connection
import h2.exceptions
from h2.connection import ConnectionInputs
from h2.events import TrailersReceived
from h2.stream import StreamInputs, StreamState

from greeter.core.state_inputs import feed
from greeter.core.stream_count import StreamCountingH2Connection

__all__ = ["FrameReadingH2Connection"]

_HEAD = struct.Struct(">HBBBL")
"""RFC 9113 §4.1: the 24-bit length as 16 + 8 bits, type, flags, R + 31-bit stream id."""
_DATA, _HEADERS = 0x0, 0x1
_END_STREAM, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x4, 0x8, 0x20
_UNUSUAL = _PADDED | _PRIORITY
_RECEIVING = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)
"""Stream states in which the peer may still send: DATA and HEADERS there never hit h2's
closed-stream handling (which stays h2's)."""


class FrameReadingH2Connection(StreamCountingH2Connection):
    """h2's connection whose HEADERS and DATA on open streams are parsed by greeter."""

    def __init__(self, config: h2.config.H2Configuration | None = None) -> None:
        super().__init__(config)
        settings = self.config
        self._lean_headers = not (
            settings.validate_inbound_headers
            or settings.normalize_inbound_headers
            or settings.header_encoding
        )
        """h2 hands a decoded block on unchanged (greeter's configuration: bytes, no checks)."""

    def receive_data(self, data: Any) -> list[Any]:
        buffer = self.incoming_buffer
        if buffer._preamble_len or buffer._headers_buffer:
            return super().receive_data(data)
        if buffer._data:  # a frame cut by the previous read: its head joins this one
            data = bytes(buffer._data) + bytes(data)
            del buffer._data[:]
        elif data.__class__ is not bytes:
            data = bytes(data)
        events: list[Any] = []
        size = len(data)
        position = 0
        unpack = _HEAD.unpack_from
        while size - position >= 9:
            high, low, kind, flags, stream_id = unpack(data, position)
            length = high << 8 | low
            end = position + 9 + length
            if end > size:
                break
            stream_id &= 0x7FFF_FFFF
            handled = False
            if length <= self.max_inbound_frame_size:
                try:
                    if kind == _DATA and not flags & _PADDED:
                        payload = data[position + 9 : end]
                        handled = self._fast_data(stream_id, payload, flags, events)
                    elif kind == _HEADERS and flags & _END_HEADERS and not flags & _UNUSUAL:
                        block = data[position + 9 : end]
                        handled = self._fast_headers(stream_id, block, flags, events)
                except h2.exceptions.ProtocolError as exc:
                    # As h2's receive_data: GOAWAY with the error's code, then raise.
                    self._terminate_connection(exc.error_code)
                    raise
            if not handled:
                events += super().receive_data(data[position:end])
                if buffer._headers_buffer:  # a header block continues: h2 reassembles it
                    events += super().receive_data(data[end:])
                    return events
            position = end
        if position < size:
            events += super().receive_data(data[position:])  # h2 keeps the partial frame
        return events

    def _fast_data(self, stream_id: int, payload: bytes, flags: int, events: list[Any]) -> bool:
        """h2's `_receive_data_frame` for an open stream; False to leave the frame to h2."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.state_machine.state not in _RECEIVING:
            return False
        events += feed(self.state_machine, ConnectionInputs.RECV_DATA)
        length = len(payload)
        self._inbound_flow_control_window_manager.window_consumed(length)
        end_stream = bool(flags & _END_STREAM)
        if stream._expected_content_length is not None:  # h2 checks the body's length
            events += stream.receive_data(payload, end_stream, length)[1]
            return True
        # H2Stream.receive_data without a content-length to check (and without its debug log).
        machine = stream.state_machine
        received = machine.process_input(StreamInputs.RECV_DATA)
        first: Any = received[0]  # h2's DataReceived
        stream._inbound_window_manager.window_consumed(length)
        stream._actual_content_length += length
        if end_stream:
            ended = machine.process_input(StreamInputs.RECV_END_STREAM)
            first.stream_ended = ended[0]
            received += ended
        first.data = payload
        first.flow_controlled_length = length
        events += received
        return True

    def _fast_headers(self, stream_id: int, block: bytes, flags: int, events: list[Any]) -> bool:
        """h2's `_receive_headers_frame` for an open stream or a new request; False to leave
        the frame to h2."""
        stream = self.streams.get(stream_id)
        if stream is None:
            if not self.may_open_stream(stream_id, inbound=True):
                return False
        elif stream.state_machine.state not in _RECEIVING:
            return False
        headers: Any = h2.connection._decode_headers(self.decoder, block)  # a list, from hpack
        events += feed(self.state_machine, ConnectionInputs.RECV_HEADERS)
        if stream is None:
            stream = self.begin_stream(stream_id, outbound=False)
        end_stream = bool(flags & _END_STREAM)
        if not self._lean_headers or stream.request_method == b"HEAD":
            events += stream.receive_headers(headers, end_stream, self.config.header_encoding)[1]
            return True
        for name, value in headers:
            # Informational responses and content-length: h2's own receive_headers.
            if (name == b":status" and value.startswith(b"1")) or name == b"content-length":
                events += stream.receive_headers(headers, end_stream, None)[1]
                return True
        # H2Stream.receive_headers for a block handed on as decoded (no checks, bytes).
        machine = stream.state_machine
        received = machine.process_input(StreamInputs.RECV_HEADERS)
        first: Any = received[0]  # h2's ResponseReceived, TrailersReceived or RequestReceived
        if end_stream:
            ended = machine.process_input(StreamInputs.RECV_END_STREAM)
            first.stream_ended = ended[0]
            received += ended
        stream._expected_content_length = None  # no content-length field (h2 reads it per block)
        if first.__class__ is TrailersReceived and not end_stream:
            raise h2.exceptions.ProtocolError("Trailers must have END_STREAM set")
        first.headers = headers
        events += received
        return True
