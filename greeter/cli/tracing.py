"""The ``--trace*`` command-line options and the tap they build, shared by serve, hello and proxy.

Only wiring: argparse options in, an observer factory
(one ``Tap`` per connection, all writing to one ``TraceWriter``; for ``--trace-format pcapng``
one ``ByteCapture`` per connection, all writing to one ``PcapngWriter``) out; no decoding here.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from typing import BinaryIO, Literal, TextIO

from greeter.cli.trace_options import DEFAULT_VIEWS, add_live_arguments, outcome_filter
from greeter.tap.attach import ConnectionObserver, ObserverFactory
from greeter.tap.capture import CaptureFactory
from greeter.tap.filters import RecordFilter
from greeter.tap.observer import DEFAULT_REDACT, TapFactory
from greeter.tap.outcome import RpcGate
from greeter.tap.pcapng import PcapngWriter
from greeter.tap.records import Record
from greeter.tap.resolve import MessageTypes
from greeter.tap.rpc import MAX_MESSAGE_SIZE
from greeter.tap.sinks import TraceFormat, TraceWriter, fan_out
from greeter.tools.summary import TraceSummary

LAYERS = ("frame", "message", "rpc", "connection", "bytes")
FORMATS = ("text", "jsonl", "pcapng")
FORMAT_HELP = (
    "trace output: text (readable), jsonl (one JSON object per record, for replay) or pcapng "
    "(a packet capture for Wireshark: every byte, undecoded; with --trace-file, or stdout piped)"
)
FILTERS = (
    "trace_method",
    "trace_layer",
    "trace_frame",
    "trace_view",
    "trace_status",
    "trace_peer",
    "trace_min_duration",
    "trace_max_body",
)
"""The options that choose records: a pcapng capture has no records, only every byte."""


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
    add_live_arguments(group)


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
    """The filter the --trace-view/-method/-layer/-frame options describe (the format's default
    view when none of --trace-view/-layer/-frame is given), None when it keeps everything."""
    view = args.trace_view
    if view is None and not (args.trace_layer or args.trace_frame):
        view = DEFAULT_VIEWS[trace_format(args)]
    if not (args.trace_method or args.trace_layer or args.trace_frame) and view == "all":
        return None
    return RecordFilter(
        methods=tuple(args.trace_method),
        layers=tuple(args.trace_layer),
        frame_types=tuple(name.upper() for name in args.trace_frame),
        view=view,
    )


class _Untraced:
    """The observer of a connection the peer filter leaves out: it decodes nothing."""

    def observe(self, direction: Literal["in", "out"], data: bytes) -> None:
        pass

    def close(self, reason: str) -> None:
        pass


def _peer_filtered(factory: TapFactory, peers: tuple[str, ...]) -> ObserverFactory:
    """``factory`` for the connections whose peer matches one of ``peers`` (fnmatch globs)."""

    def observer(connection_id: int, peer: str | None) -> ConnectionObserver:
        if peer is not None and any(fnmatchcase(peer, glob) for glob in peers):
            return factory(connection_id, peer)
        return _Untraced()

    return observer


@contextlib.contextmanager
def open_trace(
    args: argparse.Namespace,
    *,
    role: Literal["server", "client"],
    default_stream: TextIO,
    types: MessageTypes | None,
    summary: bool = False,
) -> Iterator[ObserverFactory | None]:
    """Yield the observer factory for ``args`` (None when tracing is off); close the file after.

    With ``summary``, the trace summary (greeter.tools.summary) of what was traced is written
    when the block ends: into a text trace, else on stderr.
    """
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
        totals = TraceSummary() if summary else None
        emit: Callable[[Record], None] = (
            writer if totals is None else fan_out(totals.add_record, writer)
        )
        keep = outcome_filter(args.trace_status, args.trace_min_duration)
        if keep.active:
            emit = RpcGate(emit, keep)
        redact = (*DEFAULT_REDACT, *(name.lower() for name in args.trace_redact))
        # A server's trace inflates no more than the server accepts (--max-receive-message-size).
        limit = getattr(args, "max_receive_message_size", MAX_MESSAGE_SIZE)
        factory = TapFactory(
            emit,
            role=role,
            types=types,
            redact=redact,
            max_message_size=limit,
            max_body=args.trace_max_body,
            raw=args.trace_bytes,
        )
        yield _peer_filtered(factory, tuple(args.trace_peer)) if args.trace_peer else factory
        if totals is not None:
            out = stream if text_format == "text" else sys.stderr
            out.write(f"trace summary:\n{totals.text()}\n")
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
