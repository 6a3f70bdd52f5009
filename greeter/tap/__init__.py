"""The wire tap: raw bytes of both directions of a connection, decoded into records.

The core hands raw bytes to the tap (its `on_bytes` hook); the tap only reads them and never imports
the core: the two meet only in greeter.wire.

:class:`Tap` (one per connection, the server's ``ConnectionObserver``) emits records of four
layers (see records.py): frame (:class:`FrameDecoder`, one per direction), message and rpc
(tap/rpc.py, decoded with :class:`MessageTypes`), connection (tap/flow.py and observer.py);
with raw capture (:class:`CaptureFactory`, or ``TapFactory(raw=True)``) also the bytes themselves,
which :class:`PcapngWriter` writes as a capture for Wireshark.
"""

from __future__ import annotations

from greeter.tap.capture import ByteCapture, CaptureFactory
from greeter.tap.decode import decode_raw
from greeter.tap.filters import RecordFilter
from greeter.tap.frames import MAX_FRAME_LENGTH, MAX_HEADER_BLOCK, FrameDecoder
from greeter.tap.jsonl import dumps, read_jsonl
from greeter.tap.observer import DEFAULT_REDACT, REDACTED, Tap, TapFactory
from greeter.tap.pcapng import PcapngWriter
from greeter.tap.records import (
    BytesRecord,
    ConnectionRecord,
    DecodeErrorRecord,
    Direction,
    FrameRecord,
    MessageRecord,
    PrefaceRecord,
    Priority,
    RawField,
    Record,
    RpcRecord,
)
from greeter.tap.resolve import MessageTypes
from greeter.tap.sinks import RecordQueue, TraceWriter, fan_out
from greeter.tap.text import TextFormatter

__all__ = [
    "DEFAULT_REDACT",
    "MAX_FRAME_LENGTH",
    "MAX_HEADER_BLOCK",
    "REDACTED",
    "ByteCapture",
    "BytesRecord",
    "CaptureFactory",
    "ConnectionRecord",
    "DecodeErrorRecord",
    "Direction",
    "FrameDecoder",
    "FrameRecord",
    "MessageRecord",
    "MessageTypes",
    "PcapngWriter",
    "PrefaceRecord",
    "Priority",
    "RawField",
    "Record",
    "RecordFilter",
    "RecordQueue",
    "RpcRecord",
    "Tap",
    "TapFactory",
    "TextFormatter",
    "TraceWriter",
    "decode_raw",
    "dumps",
    "fan_out",
    "read_jsonl",
]
