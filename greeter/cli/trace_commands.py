"""`greeter trace summary|html|pcapng TRACE.jsonl`: what a recorded JSON Lines trace holds.

Only wiring: argparse in, greeter.tools.selection (which RPCs), greeter.tools.summary (the
table) and greeter.tools.timeline (the HTML page) do the work; `pcapng` is
greeter.cli.trace_files. An unreadable or malformed trace
ends the command with one line naming the file (exit 1).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from greeter.cli.trace_files import add_pcapng_parser, trace_files
from greeter.cli.trace_options import add_file_arguments, file_selection
from greeter.tap.jsonl import read_jsonl
from greeter.tools.summary import summarize
from greeter.tools.timeline import render


def add_trace_parser(commands: Any) -> None:
    trace = commands.add_parser(
        "trace",
        help="summarize a JSON Lines trace, draw it as an HTML timeline, or write it as a "
        "pcapng capture",
        description="Reads a trace written with --trace-file (JSON Lines).",
    )
    actions = trace.add_subparsers(dest="trace_command", required=True)
    summary = actions.add_parser(
        "summary",
        help="per method and status: count, durations, messages and bytes, resets, stalls",
    )
    summary.add_argument("file", type=Path, metavar="TRACE.jsonl")
    add_file_arguments(summary)
    html = actions.add_parser(
        "html",
        help="one self-contained HTML page: a lane per stream on a time axis, messages, "
        "flow-control windows, stalls, PINGs, GOAWAYs (opens from file://)",
    )
    html.add_argument("file", type=Path, metavar="TRACE.jsonl")
    html.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.html")
    html.add_argument("--title", help="the page's title (default: the trace's file name)")
    add_file_arguments(html)
    add_pcapng_parser(actions)


async def trace(args: argparse.Namespace) -> int:
    """Run the ``greeter trace`` subcommand; 0 on success."""
    if args.trace_command == "pcapng":
        return await trace_files(args)
    try:
        objects = file_selection(args).apply(read_jsonl(args.file))
        if args.trace_command == "summary":
            print(summarize(objects).text())
        else:
            page = render(objects, title=args.title or args.file.name)
            args.output.write_text(page, encoding="utf-8")
            rpcs = sum(1 for obj in objects if obj["layer"] == "rpc" and obj["event"] == "start")
            print(f"wrote {args.output}: {rpcs} RPCs, {len(objects)} records")
    except (KeyError, TypeError) as exc:  # a JSON object without the keys of a trace record
        raise ValueError(f"{args.file}: not a greeter trace: {exc!r} missing or wrong") from None
    except ValueError as exc:
        raise ValueError(f"{args.file}: {exc}") from None
    return 0
