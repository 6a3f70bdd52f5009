"""The `greeter` command: serve, hello, call, proxy, replay, gen and the interop commands.

- main: the argument parser, the commands and the work of `main()`;
- held_signals: SIGINT/SIGTERM held while the command starts;
- limits: `serve`'s limit options, mapped onto ServerConfig, CoreConfig and Timeouts;
- tracing: the ``--trace*`` options of serve, hello and proxy, and the tap they build.

Only `main` is loaded with the package: the command holds the stop signals before it imports
the rest (the stack, grpclib, protobuf: most of its start-up time).
"""

from __future__ import annotations

from collections.abc import Sequence

from greeter.cli.held_signals import HeldSignals

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `greeter` command (the console script's entry); its exit status.

    SIGINT and SIGTERM are held from here on, so a stop signal during the imports is a graceful
    stop of a server, not Python's default death (greeter.cli.held_signals).
    """
    held = HeldSignals.install()
    try:
        from greeter.cli.main import run  # noqa: PLC0415 -- after the handlers: imports take time

        return run(argv, held)
    finally:
        held.uninstall()
