"""`greeter serve` limits: the command-line options behind ServerConfig, CoreConfig and Timeouts.

argparse only. Every option defaults to the library's own default and is checked against the
same range as its config field (greeter.wire.ranges), so the CLI and the embedding API can never
disagree; a bad value ends the command at once with one line naming the option (exit 2). `0`
turns a time limit or the connection cap off.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from greeter.core.config import CORE_RANGES, CoreConfig
from greeter.server.config import SERVER_RANGES, TIMEOUT_RANGES, ServerConfig, Timeouts
from greeter.wire.ranges import Range

# (flag, CoreConfig field, metavar, help)
_CORE_OPTIONS = (
    ("--max-receive-message-size", "max_receive_message_size", "BYTES", None),
    ("--max-concurrent-streams", "max_concurrent_streams", "N", None),
)
# (flag, Timeouts field, help)
# (flags, Timeouts field, help)
_TIME_LIMITS = (
    (("--handshake-timeout",), "handshake", "close a connection whose HTTP/2 preface is late"),
    (
        ("--max-connection-idle", "--idle-timeout"),
        "idle",
        "GOAWAY to a connection without RPCs for this long",
    ),
    (("--keepalive-time",), "keepalive_time", "PING a peer silent for this long"),
    (("--write-stall-timeout",), "write_stall", "close a peer that reads nothing for this long"),
    (
        ("--max-connection-age",),
        "max_connection_age",
        "GOAWAY to a connection this old (±10 %%), so clients reconnect and balancers rebalance",
    ),
    (
        ("--max-connection-age-grace",),
        "max_connection_age_grace",
        "then cancel its RPCs still running after this long",
    ),
)


def checked(allowed: Range) -> Callable[[str], int | float]:
    """An argparse type: the text parsed and checked against `allowed`."""

    def parse(text: str) -> int | float:
        try:
            return allowed.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "int" if allowed.integer else "float"
    return parse


def _or_zero(allowed: Range) -> Range:
    """The command line's form of an optional limit: 0 stands for None (off)."""
    return Range(0, allowed.high, integer=allowed.integer)


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Protocol limits, time limits, the connection cap and the shutdown grace period."""
    limits, timeouts, server = CoreConfig(), Timeouts(), ServerConfig()
    group = parser.add_argument_group("limits", "Defaults are the library's (docs/security.md).")
    for flag, name, metavar, help_text in _CORE_OPTIONS:
        group.add_argument(
            flag,
            type=checked(CORE_RANGES[name]),
            default=getattr(limits, name),
            metavar=metavar,
            help=help_text,
        )
    for flags, name, help_text in _TIME_LIMITS:
        default = getattr(timeouts, name)
        group.add_argument(
            *flags,
            dest=name,
            type=checked(_or_zero(TIMEOUT_RANGES[name])),
            default=0.0 if default is None else default,
            metavar="SECONDS",
            help=f"{help_text} (default %(default)s; 0 = never)",
        )
    group.add_argument(
        "--keepalive-timeout",
        type=checked(TIMEOUT_RANGES["keepalive_timeout"]),
        default=timeouts.keepalive_timeout,
        metavar="SECONDS",
        help="close if the keepalive PING is not answered in time (default %(default)s)",
    )
    group.add_argument(
        "--max-connections",
        type=checked(_or_zero(SERVER_RANGES["max_connections"])),
        default=server.max_connections or 0,
        metavar="N",
        help="at N open connections, close the one idle longest for a newcomer; refuse only "
        "when all N have RPCs (default %(default)s: the file-descriptor limit less 64; 0 = no "
        "cap)",
    )
    group.add_argument(
        "--grace",
        type=checked(SERVER_RANGES["grace_period"]),
        default=server.grace_period,
        metavar="SECONDS",
        help="time in-flight RPCs get on shutdown (default %(default)s)",
    )
    group.add_argument(
        "--drain-delay",
        type=checked(SERVER_RANGES["drain_delay"]),
        default=server.drain_delay,
        metavar="SECONDS",
        help="on shutdown, report NOT_SERVING and keep serving this long before GOAWAY, so "
        "load balancers and readiness probes notice (default %(default)s)",
    )


def server_config(args: argparse.Namespace) -> ServerConfig:
    """The ServerConfig the parsed options describe."""
    limits = CoreConfig(**{name: getattr(args, name) for _, name, *_ in _CORE_OPTIONS})
    off_when_zero: dict[str, float | None] = {
        name: getattr(args, name) or None for _, name, _ in _TIME_LIMITS
    }
    timeouts = Timeouts(keepalive_timeout=args.keepalive_timeout, **off_when_zero)
    return ServerConfig(
        limits=limits,
        grace_period=args.grace,
        drain_delay=args.drain_delay,
        timeouts=timeouts,
        max_connections=args.max_connections or None,
    )
