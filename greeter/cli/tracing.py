"""The ``--trace*`` command-line options and the tap they build, shared by serve, hello and proxy.

Only wiring: argparse options in, an observer factory
(one ``Tap`` per connection, all writing to one ``TraceWriter``; for ``--trace-format pcapng``
one ``ByteCapture`` per connection, all writing to one ``PcapngWriter``) out; no decoding here.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import BinaryIO, Literal, TextIO

from greeter.tap.attach import ObserverFactory
from greeter.tap.capture import CaptureFactory
from greeter.tap.filters import RecordFilter
from greeter.tap.observer import DEFAULT_REDACT, TapFactory
from greeter.tap.pcapng import PcapngWriter
from greeter.tap.resolve import MessageTypes
from greeter.tap.rpc import MAX_MESSAGE_SIZE
from greeter.tap.sinks import TraceFormat, TraceWriter

LAYERS = ("frame", "message", "rpc", "connection", "bytes")
FORMATS = ("text", "jsonl", "pcapng")
FORMAT_HELP = (
    "trace output: text (readable), jsonl (one JSON object per record, for replay) or pcapng "
    "(a packet capture for Wireshark: every byte, undecoded; with --trace-file, or stdout piped)"
)
FILTERS = ("trace_method", "trace_layer", "trace_frame")


def add_trace_arguments(parser: argparse.ArgumentParser, *, switch: bool, to: str) -> None:
    """Add the trace options; ``switch`` adds ``--trace`` (the proxy always traces)."""
    group = parser.add_argument_group(
        "tracing",
        f"The wire tap: every frame, message, RPC and window of each connection. The trace "
        f"goes to {to} unless --trace-file is given. Format default: text, but jsonl when "
        f"writing a file (what `greeter replay` reads).",
    )
    if switch:
        group.add_argument("--trace", action="store_true", help="trace every connection")
    group.add_argument("--trace-format", choices=FORMATS, help=FORMAT_HELP)
    group.add_argument(
        "--trace-bytes",
        action="store_true",
        help="also record each chunk's raw bytes and the socket's addresses (what "
        "`greeter trace pcapng` turns into a capture)",
    )
    group.add_argument(
        "--trace-file", metavar="PATH", help="write the trace to PATH (implies --trace)"
    )
    repeatable = (
        ("--trace-method", "GLOB", "only RPCs whose path matches, e.g. '/greet.Greeter/*'", None),
        ("--trace-layer", "LAYER", f"only this layer: {', '.join(LAYERS)}", LAYERS),
        (
            "--trace-frame",
            "TYPE",
            "only this frame type (RFC 9113 name or glob), e.g. HEADERS",
            None,
        ),
        (
            "--trace-redact",
            "HEADER",
            f"also redact HEADER; always: {', '.join(sorted(DEFAULT_REDACT))}",
            None,
        ),
    )
    for flag, metavar, help_text, choices in repeatable:
        group.add_argument(
            flag,
            action="append",
            default=[],
            choices=choices,
            metavar=metavar,
            help=f"{help_text} (repeatable)",
        )


def tracing_requested(args: argparse.Namespace) -> bool:
    """``--trace`` or ``--trace-file`` (or a command without the switch, which always traces)."""
    return bool(getattr(args, "trace", True) or args.trace_file)


def trace_format(args: argparse.Namespace) -> Literal["text", "jsonl", "pcapng"]:
    """The chosen format; without --trace-format, jsonl for a file and text for a terminal."""
    if args.trace_format is not None:
        chosen: Literal["text", "jsonl", "pcapng"] = args.trace_format
        return chosen
    return "jsonl" if args.trace_file else "text"


def check_trace_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with usage (status 2) for trace options that contradict each other."""
    if getattr(args, "trace_format", None) != "pcapng":
        return
    for name in FILTERS:
        if getattr(args, name):
            option = "--" + name.replace("_", "-")
            parser.error(
                f"{option} does not apply to --trace-format pcapng: a capture holds every byte"
                " of each connection (filter in Wireshark, or trace as text or jsonl)"
            )


def record_filter(args: argparse.Namespace) -> RecordFilter | None:
    """The filter the --trace-method/-layer/-frame options describe, None when there is none."""
    if not (args.trace_method or args.trace_layer or args.trace_frame):
        return None
    return RecordFilter(
        methods=tuple(args.trace_method),
        layers=tuple(args.trace_layer),
        frame_types=tuple(name.upper() for name in args.trace_frame),
    )


@contextlib.contextmanager
def open_trace(
    args: argparse.Namespace,
    *,
    role: Literal["server", "client"],
    default_stream: TextIO,
    types: MessageTypes | None,
) -> Iterator[ObserverFactory | None]:
    """Yield the observer factory for ``args`` (None when tracing is off); close the file after."""
    if not tracing_requested(args):
        yield None
        return
    if trace_format(args) == "pcapng":
        with _capture_stream(args, default_stream) as binary:
            yield CaptureFactory(PcapngWriter(binary), role=role)
        return
    with contextlib.ExitStack() as stack:
        stream = default_stream
        if args.trace_file:
            stream = stack.enter_context(open(args.trace_file, "w", encoding="utf-8"))
        text_format: TraceFormat = "jsonl" if trace_format(args) == "jsonl" else "text"
        writer = TraceWriter(stream, format=text_format, filter=record_filter(args))
        redact = (*DEFAULT_REDACT, *(name.lower() for name in args.trace_redact))
        # A server's trace inflates no more than the server accepts (--max-receive-message-size).
        limit = getattr(args, "max_receive_message_size", MAX_MESSAGE_SIZE)
        yield TapFactory(
            writer,
            role=role,
            types=types,
            redact=redact,
            max_message_size=limit,
            raw=args.trace_bytes,
        )
        stream.flush()


@contextlib.contextmanager
def _capture_stream(args: argparse.Namespace, default_stream: TextIO) -> Iterator[BinaryIO]:
    """--trace-file opened for binary writing, else stdout's bytes when it is not a terminal."""
    if args.trace_file:
        with open(args.trace_file, "wb") as capture:
            yield capture
        return
    if default_stream is not sys.stdout or default_stream.isatty():
        raise ValueError(
            "--trace-format pcapng writes a binary capture: give --trace-file PATH"
            + (
                " (or pipe stdout, e.g. into wireshark -k -i -)"
                if default_stream is sys.stdout
                else ""
            )
        )
    yield default_stream.buffer
    default_stream.buffer.flush()
