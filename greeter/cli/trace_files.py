"""`greeter trace pcapng`: a JSON Lines trace, recorded with --trace-bytes, as a pcapng capture.

Wiring only: the trace is read by greeter.tap.jsonl, its bytes, ``transport`` and ``close``
records rebuilt by greeter.tap.pcapng.capture_records and written by its PcapngWriter.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from greeter.tap.jsonl import read_jsonl
from greeter.tap.pcapng import PcapngWriter, capture_records
from greeter.tap.records import ConnectionRecord

log = logging.getLogger("greeter")

NO_BYTES = (
    "{path} holds no raw bytes: record the trace with --trace-bytes (or capture directly with "
    "--trace-format pcapng)"
)


def add_pcapng_parser(forms: Any) -> None:
    """The `pcapng` subcommand of `greeter trace` (greeter.cli.trace_commands)."""
    pcapng = forms.add_parser(
        "pcapng",
        help="write the connections of a --trace-bytes JSONL trace as a pcapng capture",
        description="Every connection's bytes, both directions, as TCP packets with the "
        "connection's addresses and ports, for Wireshark and tshark (docs/tracing.md).",
    )
    pcapng.add_argument("file", metavar="TRACE.jsonl", help="a JSONL trace with --trace-bytes")
    pcapng.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT.pcapng",
        help="the capture to write ('-': stdout, when it is not a terminal)",
    )


async def trace_files(args: argparse.Namespace) -> int:
    """Run `greeter trace pcapng`; 0 once the capture is written."""
    with contextlib.ExitStack() as stack:
        writer: PcapngWriter | None = None
        connections: set[int] = set()
        for record in capture_records(read_jsonl(args.file)):
            if writer is None:  # opened at the first record: a trace without bytes writes nothing
                if isinstance(record, ConnectionRecord) and record.event == "close":
                    continue
                writer = PcapngWriter(stack.enter_context(_output(args.output)), flush=False)
            connections.add(record.connection_id)
            writer(record)
        if writer is None:
            raise ValueError(NO_BYTES.format(path=args.file))
    count = len(connections)
    plural = "" if count == 1 else "s"
    log.info("wrote %d packets (%d connection%s) to %s", writer.packets, count, plural, args.output)
    return 0


@contextlib.contextmanager
def _output(path: str) -> Iterator[BinaryIO]:
    if path != "-":
        with open(path, "wb") as stream:
            yield stream
        return
    if sys.stdout.isatty():
        raise ValueError("-o -: stdout is a terminal; a pcapng capture is binary")
    yield sys.stdout.buffer
    sys.stdout.buffer.flush()
