"""`greeter serve` limits: the command-line options behind ServerConfig, CoreConfig and Timeouts.

argparse only. Every option defaults to the library's own default, so the
CLI and the embedding API can never disagree; `0` turns a time limit off.
"""

from __future__ import annotations

import argparse

from greeter.core.config import CoreConfig
from greeter.server.config import ServerConfig, Timeouts

# (flag, CoreConfig field, type, metavar, help)
_CORE_OPTIONS = (
    ("--max-receive-message-size", "max_receive_message_size", int, "BYTES", None),
    ("--max-concurrent-streams", "max_concurrent_streams", int, "N", None),
)
# (flag, Timeouts field, help)
_TIME_LIMITS = (
    ("--handshake-timeout", "handshake", "close a connection whose HTTP/2 preface is late"),
    ("--idle-timeout", "idle", "GOAWAY to a connection without RPCs for this long"),
    ("--keepalive-time", "keepalive_time", "PING a peer silent for this long"),
    ("--write-stall-timeout", "write_stall", "close a peer that reads nothing for this long"),
)


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Protocol limits, time limits, the connection cap and the shutdown grace period."""
    limits, timeouts, server = CoreConfig(), Timeouts(), ServerConfig()
    group = parser.add_argument_group("limits", "Defaults are the library's (docs/security.md).")
    for flag, name, kind, metavar, help_text in _CORE_OPTIONS:
        group.add_argument(
            flag, type=kind, default=getattr(limits, name), metavar=metavar, help=help_text
        )
    for flag, name, help_text in _TIME_LIMITS:
        default = getattr(timeouts, name)
        group.add_argument(
            flag,
            dest=name,
            type=float,
            default=0.0 if default is None else default,
            metavar="SECONDS",
            help=f"{help_text} (default %(default)s; 0 = never)",
        )
    group.add_argument(
        "--keepalive-timeout",
        type=float,
        default=timeouts.keepalive_timeout,
        metavar="SECONDS",
        help="close if the keepalive PING is not answered in time (default %(default)s)",
    )
    group.add_argument(
        "--max-connections",
        type=int,
        default=server.max_connections or 0,
        metavar="N",
        help="refuse connections beyond N with GOAWAY (default %(default)s; 0 = no cap)",
    )
    group.add_argument(
        "--grace",
        type=float,
        default=server.grace_period,
        metavar="SECONDS",
        help="time in-flight RPCs get on shutdown (default %(default)s)",
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
        timeouts=timeouts,
        max_connections=args.max_connections or None,
    )
