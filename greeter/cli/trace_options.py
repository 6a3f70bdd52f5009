"""The options that choose what a trace shows: view, RPC status, peer, minimum duration, body.

Only argparse wiring. The live trace of ``serve``, ``hello`` and ``proxy`` takes them as
``--trace-view``, ``--trace-status``, ``--trace-peer``, ``--trace-min-duration`` and
``--trace-max-body`` (next to the ``--trace-*`` options of greeter.cli.tracing); the
``greeter trace`` commands, which read a JSON Lines file, as ``--method``, ``--status``,
``--peer``, ``--min-duration``. A bad value ends the command with one line naming the option,
the value and what is allowed (exit 2).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable

from greeter.cli.limits import checked
from greeter.tap.filters import VIEWS
from greeter.tap.outcome import ERROR, OutcomeFilter, parse_status
from greeter.tools.selection import Selection
from greeter.wire.ranges import Range

DEFAULT_VIEWS = {"text": "messages", "jsonl": "all"}
"""The view of each format when neither --trace-view nor --trace-layer/--trace-frame is given:
text shows each fact once, JSON Lines keeps every record (replay, summary and html need them)."""
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s)?")
STATUS_HELP = (
    f"a status name or code (OK, NOT_FOUND, 5, ...) or {ERROR} (anything but OK, resets and "
    f"RPCs cut without a status included)"
)
DURATION_HELP = "seconds, or with a unit: 1.5, 1.5s, 250ms"
MAX_BODY = Range(0, 2**31 - 1, integer=True)


def duration_arg(text: str) -> float:
    """An argparse type: a duration in seconds (``1.5``, ``1.5s``) or milliseconds (``250ms``)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {DURATION_HELP}")
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "ms" else value


def status_arg(text: str) -> str:
    """An argparse type: a --trace-status / --status value (greeter.tap.outcome)."""
    try:
        return parse_status(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_live_arguments(group: argparse._ArgumentGroup) -> None:
    """``--trace-view``, ``--trace-status``, ``--trace-peer``, ``--trace-min-duration``."""
    group.add_argument(
        "--trace-view",
        choices=tuple(VIEWS),
        help="what the trace shows, each fact once: frames (HTTP/2 frames and flow control), "
        "messages (RPCs and decoded messages), rpcs (starts and ends), all (every record); "
        f"default {DEFAULT_VIEWS['text']} for text, {DEFAULT_VIEWS['jsonl']} for jsonl",
    )
    _add_rpc_arguments(group, prefix="--trace-")
    group.add_argument(
        "--trace-max-body",
        type=checked(MAX_BODY),
        metavar="BYTES",
        help="bytes of a DATA payload or message each record keeps, the rest only counted "
        "(default: the receive limit, what replay needs; messages above it are not decoded)",
    )


def add_file_arguments(parser: argparse.ArgumentParser) -> None:
    """``--method``, ``--status``, ``--peer``, ``--min-duration`` of a ``greeter trace`` command."""
    parser.add_argument(
        "--method",
        action="append",
        default=[],
        metavar="GLOB",
        help="only RPCs whose path matches, e.g. '/greet.Greeter/*' (repeatable)",
    )
    _add_rpc_arguments(parser, prefix="--")


def _add_rpc_arguments(
    group: argparse.ArgumentParser | argparse._ArgumentGroup, *, prefix: str
) -> None:
    group.add_argument(
        f"{prefix}status",
        action="append",
        default=[],
        type=status_arg,
        metavar="STATUS",
        help=f"only RPCs that ended so: {STATUS_HELP} (repeatable)",
    )
    group.add_argument(
        f"{prefix}peer",
        action="append",
        default=[],
        metavar="GLOB",
        help="only connections whose peer (host:port) matches, e.g. '127.0.0.1:*' (repeatable)",
    )
    group.add_argument(
        f"{prefix}min-duration",
        type=duration_arg,
        default=0.0,
        metavar="DURATION",
        help=f"only RPCs that lasted at least this long: {DURATION_HELP}",
    )


def outcome_filter(statuses: Iterable[str], min_duration: float) -> OutcomeFilter:
    """The criteria, already parsed by :func:`status_arg` and :func:`duration_arg`."""
    return OutcomeFilter(frozenset(statuses), min_duration)


def file_selection(args: argparse.Namespace) -> Selection:
    """The RPCs a ``greeter trace`` command reads, from its options."""
    return Selection(
        methods=tuple(args.method),
        peers=tuple(args.peer),
        outcome=outcome_filter(args.status, args.min_duration),
    )


def check_live_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Combinations of the live options argparse cannot express (exit 2)."""
    view = getattr(args, "trace_view", None)
    if view is None:
        return
    if args.trace_layer:
        parser.error(f"{args.command}: --trace-view and --trace-layer: choose one")
    if args.trace_frame and VIEWS[view].get("frame", frozenset()) is not None:
        parser.error(
            f"{args.command}: --trace-frame {args.trace_frame[0]}: the {view} view shows no "
            f"frames (use --trace-view frames or all)"
        )
