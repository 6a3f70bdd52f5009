"""HEADERS and DATA frames on open streams written by greeter, with h2 still the state machine.

h2's `send_headers` and `send_data` build hyperframe objects (a Frame, its Flags set, a
serialize call, a join) and log through a dummy logger for each frame: in the unary profile
(benchmarks/profile_server.py) that generic work was a larger share than all of greeter's own
layers; in the client's, h2's request path was about a sixth. The frames of an RPC go out on a
stream that h2 already knows (response headers, the messages, the trailers) or, on the client,
on the new stream of a call, so `FrameWritingH2Connection` writes those frames' bytes itself
(RFC 9113 §4.1 frame header, §6.1 DATA, §6.2 HEADERS, §6.10 CONTINUATION) and keeps h2 as the
authority on everything else: it feeds h2's connection and stream state machines the same
inputs in the same order as h2 would (so every state rule still raises where h2 raises),
creates new streams as h2's `_begin_new_stream` does (greeter.core.stream_count, which
also checks the stream limit), spends the same flow-control windows, and appends to the same
output buffer. Anything else (a stream h2 would refuse, padding, priority, informational
headers, non-bytes fields) goes to h2's own method.

This module is the one place the core writes h2's private state (besides hpack_cache.py and
frame_reader.py): `H2Connection.streams`, `_data_to_send`, `outbound_flow_control_window`,
and each stream's `state_machine`, `outbound_flow_control_window`,
`_authority` and `request_method`, as h2 4.x has them.
tests/core/test_frame_writer.py sends the same commands through h2's methods and through these
and fails if the bytes, the states or the windows ever differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import h2.exceptions
from h2.connection import ConnectionInputs
from h2.stream import StreamInputs
from h2.utilities import authority_from_headers, extract_method_header

from greeter.core.state_inputs import feed
from greeter.core.stream_count import StreamCountingH2Connection

__all__ = ["FrameWritingH2Connection"]

_DATA, _HEADERS, _CONTINUATION = 0x0, 0x1, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4
_SEQUENCES = (list, tuple)
"""Header blocks as lists, or tuples (a client's request fields, the same for every call)."""


def _frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """RFC 9113 §4.1: 24-bit length, type, flags, reserved bit + 31-bit stream id."""
    return (length << 48 | kind << 40 | flags << 32 | stream_id).to_bytes(9, "big")


def _is_plain_response(headers: Sequence[Any]) -> bool:
    """Byte-string fields, no 1xx :status (h2 handles informational responses itself)."""
    for name, value in headers:
        if name.__class__ is not bytes or value.__class__ is not bytes:
            return False
        if name == b":status":
            return not value.startswith(b"1")
        if not name.startswith(b":"):
            break
    return True


class FrameWritingH2Connection(StreamCountingH2Connection):
    """h2's connection whose HEADERS and DATA on streams it knows are written by greeter."""

    def send_headers(  # noqa: PLR0917 (h2's signature)
        self,
        stream_id: int,
        headers: Iterable[Any],
        end_stream: bool = False,
        priority_weight: int | None = None,
        priority_depends_on: int | None = None,
        priority_exclusive: bool | None = None,
    ) -> None:
        stream = self.streams.get(stream_id)
        if (
            (stream is None and not self.may_open_stream(stream_id, inbound=False))
            or headers.__class__ not in _SEQUENCES
            or priority_weight is not None
            or priority_depends_on is not None
            or priority_exclusive is not None
            or not _is_plain_response(headers)
        ):
            super().send_headers(
                stream_id,
                headers,
                end_stream,
                priority_weight,
                priority_depends_on,
                priority_exclusive,
            )
            return
        # h2's order (H2Connection.send_headers, H2Stream.send_headers): the state transitions
        # come before the encoding, which changes the HPACK context irreversibly.
        feed(self.state_machine, ConnectionInputs.SEND_HEADERS)
        new = stream is None
        if stream is None:
            stream = self.begin_stream(stream_id, outbound=True)
        machine = stream.state_machine
        feed(machine, StreamInputs.SEND_HEADERS)
        block = self.encoder.encode(headers)
        if end_stream:
            feed(machine, StreamInputs.SEND_END_STREAM)
        elif machine.trailers_sent:
            raise h2.exceptions.ProtocolError("Trailers must have END_STREAM set.")
        if new:  # what h2's H2Stream.send_headers records of a request
            stream._authority = authority_from_headers(headers)
            stream.request_method = extract_method_header(headers)
        output = self._data_to_send
        size = self.max_outbound_frame_size
        if len(block) <= size:  # the usual case: one HEADERS frame
            flags = _END_HEADERS | (_END_STREAM if end_stream else 0)
            output += _frame_header(len(block), _HEADERS, flags, stream_id)
            output += block
            return
        # RFC 9113 §6.10: the rest of a large block follows in CONTINUATION frames; END_STREAM
        # belongs to the HEADERS frame, END_HEADERS to the last frame of the block.
        chunks = [block[i : i + size] for i in range(0, len(block), size)]
        for index, chunk in enumerate(chunks):
            kind = _CONTINUATION if index else _HEADERS
            flags = _END_STREAM if end_stream and not index else 0
            if index == len(chunks) - 1:
                flags |= _END_HEADERS
            output += _frame_header(len(chunk), kind, flags, stream_id)
            output += chunk

    def send_data(
        self,
        stream_id: int,
        data: bytes | memoryview,
        end_stream: bool = False,
        pad_length: Any = None,
    ) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or pad_length is not None:
            super().send_data(stream_id, data, end_stream, pad_length)
            return
        size = len(data)
        window = min(self.outbound_flow_control_window, stream.outbound_flow_control_window)
        if size > window and size > 0:
            raise h2.exceptions.FlowControlError(
                f"Cannot send {size} bytes, flow control window is {window}"
            )
        if size > self.max_outbound_frame_size:
            raise h2.exceptions.FrameTooLargeError(
                f"Cannot send frame size {size}, max frame size is {self.max_outbound_frame_size}"
            )
        feed(self.state_machine, ConnectionInputs.SEND_DATA)
        machine = stream.state_machine
        feed(machine, StreamInputs.SEND_DATA)
        if end_stream:
            feed(machine, StreamInputs.SEND_END_STREAM)
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        self._data_to_send += _frame_header(
            size, _DATA, _END_STREAM if end_stream else 0, stream_id
        )
        self._data_to_send += data
