"""Frame layer of the wire tap: one direction's raw bytes in, frame records out.

Only hyperframe's public parser (``Frame.parse_frame_header`` + ``parse_body``) and hpack.

:class:`FrameDecoder` reassembles frames itself from the 9-byte header and its length, across
any chunk boundaries, and trusts no HTTP/2 state machine: it reports what was sent, valid or not,
as long as the bytes can be framed. It keeps its OWN ``hpack.Decoder`` so decoding never touches
the connection's compression state; one decoder per direction, since each direction has its own
HPACK context.

Header table size: the HPACK encoder of the peer may resize its dynamic table up to the
SETTINGS_HEADER_TABLE_SIZE the *receiver* advertised, which travels in the other direction. The
tap does not correlate directions, so it allows any size up to :data:`HPACK_TABLE_LIMIT` (64 KiB,
well above the 4 KiB default every gRPC stack uses); a resize above it is reported as a
decode error.

Bounds: a frame whose length exceeds ``max_frame_length`` (default the 24-bit maximum) and a
header block (HEADERS/PUSH_PROMISE + CONTINUATIONs) above ``max_header_block`` (256 KiB) or
decoding to more than :data:`MAX_HEADER_LIST` bytes end decoding with a
:class:`DecodeErrorRecord`, as does any byte sequence that is not HTTP/2 (bad preface, a frame
hyperframe refuses, an HPACK error, a header block interrupted by another frame). After a decode
error the direction is dead: :meth:`FrameDecoder.feed` returns ``[]`` and buffers nothing.
:meth:`FrameDecoder.feed` never raises.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable

import hpack
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from greeter.tap.records import (
    FRAME_TYPES,
    DecodeErrorRecord,
    Direction,
    FrameRecord,
    PrefaceRecord,
    Priority,
    Record,
    error_code_name,
    frame_type_name,
    setting_name,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_SIZE = 9
MAX_FRAME_LENGTH = 2**24 - 1
"""Largest length a 24-bit frame header can carry (and SETTINGS_MAX_FRAME_SIZE's maximum)."""
MAX_HEADER_BLOCK = 256 * 1024
"""Largest encoded header block (all fragments of one HEADERS/PUSH_PROMISE) the tap buffers."""
MAX_HEADER_LIST = 1024 * 1024
"""Largest decoded header list (RFC 9113 size: name + value + 32 per field) the tap builds."""
HPACK_TABLE_LIMIT = 64 * 1024
"""Largest HPACK dynamic table the tap lets a peer's encoder resize to."""

_SETTING = struct.Struct(">HL")
_CONTINUATION = 0x9


class _DecodeError(Exception):
    """Internal: the frame cannot be decoded; becomes a DecodeErrorRecord."""

    def __init__(self, reason: str, stream_id: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stream_id = stream_id


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


class FrameDecoder:
    """Decodes one direction of one HTTP/2 connection into :data:`Record` objects.

    ``expect_preface`` is true for the client-to-server direction: the 24-byte client preface is
    expected before the first frame and reported as a :class:`PrefaceRecord`. ``clock`` (the
    records' ``timestamp``) and ``wall_clock`` (their ``wall``) are read together once per
    :meth:`feed` call that completes at least one record.
    """

    __slots__ = (
        "_block",
        "_block_size",
        "_block_stream",
        "_buffer",
        "_clock",
        "_connection_id",
        "_direction",
        "_failed",
        "_hpack",
        "_max_frame_length",
        "_max_header_block",
        "_need_preface",
        "_offset",
        "_wall_clock",
    )

    def __init__(
        self,
        connection_id: int,
        direction: Direction,
        *,
        expect_preface: bool,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_frame_length: int = MAX_FRAME_LENGTH,
        max_header_block: int = MAX_HEADER_BLOCK,
    ) -> None:
        self._connection_id = connection_id
        self._direction: Direction = direction
        self._clock = clock
        self._wall_clock = wall_clock
        self._max_frame_length = max_frame_length
        self._max_header_block = max_header_block
        self._need_preface = expect_preface
        self._buffer = bytearray()
        self._offset = 0  # stream offset of _buffer[0]
        self._failed = False
        self._hpack = hpack.Decoder(max_header_list_size=MAX_HEADER_LIST)
        self._hpack.max_allowed_table_size = HPACK_TABLE_LIMIT
        self._block: list[bytes] | None = None  # fragments of the open header block
        self._block_stream = 0
        self._block_size = 0

    @property
    def failed(self) -> bool:
        """True once a :class:`DecodeErrorRecord` was emitted; later bytes are ignored."""
        return self._failed

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete preface or frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Record]:
        """Consume a chunk of this direction's bytes; return the records it completes, in order."""
        if self._failed or not data:
            return []
        self._buffer += data
        records: list[Record] = []
        now: tuple[float, float] | None = None
        buffer = self._buffer
        pos = 0
        try:
            if self._need_preface:
                have = min(len(buffer), len(PREFACE))
                if buffer[:have] != PREFACE[:have]:
                    raise _DecodeError("invalid client connection preface")
                if have < len(PREFACE):
                    return records
                self._need_preface = False
                pos = len(PREFACE)
                now = self._stamp()
                records.append(PrefaceRecord(self._connection_id, self._direction, *now))
            while len(buffer) - pos >= FRAME_HEADER_SIZE:
                length = int.from_bytes(buffer[pos : pos + 3], "big")
                if length > self._max_frame_length:
                    raise _DecodeError(
                        f"frame length {length} exceeds the limit {self._max_frame_length}"
                    )
                end = pos + FRAME_HEADER_SIZE + length
                if len(buffer) < end:
                    break
                header = bytes(buffer[pos : pos + FRAME_HEADER_SIZE])
                body = bytes(buffer[pos + FRAME_HEADER_SIZE : end])
                if now is None:
                    now = self._stamp()
                records.append(self._decode_frame(header, body, *now))
                pos = end
        except _DecodeError as exc:
            records.append(self._fail(exc.reason, pos, exc.stream_id))
            return records
        except Exception as exc:  # never raise: a tap must not break the connection it watches
            records.append(self._fail(f"internal tap error: {exc!r}", pos, 0))
            return records
        del buffer[:pos]
        self._offset += pos
        return records

    def _fail(self, reason: str, pos: int, stream_id: int) -> DecodeErrorRecord:
        self._failed = True
        offset = self._offset + pos
        self._buffer = bytearray()
        self._block = None
        now, wall = self._stamp()
        return DecodeErrorRecord(
            self._connection_id, self._direction, now, reason, offset, stream_id, wall
        )

    def _stamp(self) -> tuple[float, float]:
        """(monotonic timestamp, wall clock), read together."""
        return self._clock(), self._wall_clock()

    def _decode_frame(self, header: bytes, body: bytes, now: float, wall: float) -> FrameRecord:
        type_id = header[3]
        raw_flags = header[4]
        stream_id = int.from_bytes(header[5:9], "big") & 0x7FFF_FFFF
        name = frame_type_name(type_id)
        if self._block is not None and type_id != _CONTINUATION:
            raise _DecodeError(
                f"{name} frame inside the header block of stream {self._block_stream}",
                stream_id,
            )
        common = (self._connection_id, self._direction, now, stream_id, name)
        if type_id not in FRAME_TYPES:
            return FrameRecord(*common, (), raw_flags, len(body), payload=body, wall=wall)
        try:
            frame, _ = Frame.parse_frame_header(memoryview(header))
            frame.parse_body(memoryview(body))
        except HyperframeError as exc:
            raise _DecodeError(f"malformed {name} frame: {exc}", stream_id) from exc
        flags = tuple(
            flag.name
            for flag in sorted(frame.defined_flags, key=lambda flag: flag.bit)
            if flag.name in frame.flags
        )
        head = (*common, flags, raw_flags, len(body))
        if isinstance(frame, DataFrame):
            return FrameRecord(*head, wall=wall, data=frame.data, padding=frame.pad_length)
        if isinstance(frame, HeadersFrame):
            priority = None
            if "PRIORITY" in frame.flags:
                priority = Priority(frame.depends_on, frame.stream_weight + 1, frame.exclusive)
            headers = self._fragment(stream_id, frame.data, "END_HEADERS" in frame.flags)
            return FrameRecord(
                *head, wall=wall, headers=headers, padding=frame.pad_length, priority=priority
            )
        if isinstance(frame, PushPromiseFrame):
            headers = self._fragment(stream_id, frame.data, "END_HEADERS" in frame.flags)
            return FrameRecord(
                *head,
                wall=wall,
                headers=headers,
                padding=frame.pad_length,
                promised_stream_id=frame.promised_stream_id,
            )
        if isinstance(frame, ContinuationFrame):
            if self._block is None:
                raise _DecodeError("CONTINUATION frame without an open header block", stream_id)
            if stream_id != self._block_stream:
                raise _DecodeError(
                    f"CONTINUATION on stream {stream_id} inside the header block of stream "
                    f"{self._block_stream}",
                    stream_id,
                )
            headers = self._fragment(stream_id, frame.data, "END_HEADERS" in frame.flags)
            return FrameRecord(*head, wall=wall, headers=headers)
        if isinstance(frame, SettingsFrame):
            # hyperframe validated the body but keeps a dict; the wire list keeps order and
            # duplicates (the last value of a repeated setting wins, RFC 9113 section 6.5).
            settings = tuple(
                (setting_name(setting_id), value)
                for setting_id, value in _SETTING.iter_unpack(body)
            )
            return FrameRecord(*head, wall=wall, settings=settings)
        if isinstance(frame, WindowUpdateFrame):
            return FrameRecord(*head, wall=wall, window_increment=frame.window_increment)
        if isinstance(frame, PingFrame):
            return FrameRecord(*head, wall=wall, ping_data=frame.opaque_data)
        if isinstance(frame, RstStreamFrame):
            return FrameRecord(*head, wall=wall, error_code=error_code_name(frame.error_code))
        if isinstance(frame, GoAwayFrame):
            return FrameRecord(
                *head,
                wall=wall,
                last_stream_id=frame.last_stream_id,
                error_code=error_code_name(frame.error_code),
                debug_data=frame.additional_data,
            )
        if isinstance(frame, PriorityFrame):
            priority = Priority(frame.depends_on, frame.stream_weight + 1, frame.exclusive)
            return FrameRecord(*head, wall=wall, priority=priority)
        # Unreachable: FRAME_TYPES lists exactly the classes above.
        return FrameRecord(*head, wall=wall)

    def _fragment(
        self, stream_id: int, fragment: bytes, end: bool
    ) -> tuple[tuple[str, str], ...] | None:
        """Add a header block fragment; at END_HEADERS, HPACK-decode and return the block."""
        if self._block is None:
            self._block = []
            self._block_stream = stream_id
            self._block_size = 0
        self._block_size += len(fragment)
        if self._block_size > self._max_header_block:
            raise _DecodeError(
                f"header block of stream {stream_id} exceeds {self._max_header_block} bytes",
                stream_id,
            )
        self._block.append(fragment)
        if not end:
            return None
        block = b"".join(self._block)
        self._block = None
        try:
            fields = self._hpack.decode(block, raw=True)
        except hpack.HPACKError as exc:
            # hpack's messages can embed a memoryview's repr (an address): keep the reason stable.
            reason = re.sub(r" from <memory at 0x[0-9a-f]+>", "", str(exc))
            raise _DecodeError(f"HPACK: {reason}", stream_id) from exc
        return tuple((_text(bytes(name)), _text(bytes(value))) for name, value in fields)
