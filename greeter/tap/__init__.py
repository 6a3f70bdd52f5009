"""The wire tap: raw bytes of both directions of a connection, decoded into records.

Layer: wire observer. Rule: pure -- no I/O; never imports greeter.connection or greeter.server
(DESIGN.md section 1). The core hands raw bytes to the tap; the tap only reads them.

Today only the frame layer exists: :class:`FrameDecoder` turns one direction's bytes into
:class:`FrameRecord`, :class:`PrefaceRecord` and :class:`DecodeErrorRecord` (see records.py).
"""

from __future__ import annotations

from greeter.tap.frames import MAX_FRAME_LENGTH, MAX_HEADER_BLOCK, FrameDecoder
from greeter.tap.records import (
    DecodeErrorRecord,
    Direction,
    FrameRecord,
    PrefaceRecord,
    Priority,
    Record,
)

__all__ = [
    "MAX_FRAME_LENGTH",
    "MAX_HEADER_BLOCK",
    "DecodeErrorRecord",
    "Direction",
    "FrameDecoder",
    "FrameRecord",
    "PrefaceRecord",
    "Priority",
    "Record",
]
