"""SIGINT and SIGTERM held from the first line of the `greeter` command until its own handlers
take over.

The command's imports take a few hundred milliseconds, and a supervisor (or a test) may send
SIGTERM in that time: with Python's default action the process would die by the signal, with no
graceful stop and a non-zero status. `HeldSignals.install()` runs before those imports (in
greeter.cli's `main`, which imports the rest afterwards) and only records what arrives. The
serving commands' handlers take over what it held and stop gracefully at once
(greeter.server.signals: `SignalCatcher` and the --workers parent); the other commands
`release()` it: the previous handlers come back and each held signal is delivered to them, as if
it had just arrived.

Imports nothing but `signal`: it must be cheap to load before everything else.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers

__all__ = ["HeldSignals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class HeldSignals:
    """The handler of SIGINT and SIGTERM while installed: it records them, nothing else."""

    def __init__(self) -> None:
        self._held: list[signal.Signals] = []
        self._previous: dict[signal.Signals, Handler] = {}

    @classmethod
    def install(cls) -> HeldSignals:
        """Hold the stop signals from now on (main thread only, as every signal handler)."""
        held = cls()
        for signum in STOP_SIGNALS:
            previous = signal.getsignal(signum)
            # None: a handler not set from Python; its default is what Python would restore.
            # SIG_IGN (a shell's background job ignores SIGINT) is held too, as the servers'
            # handlers catch both signals whatever came before; `release` gives it back.
            held._previous[signum] = signal.SIG_DFL if previous is None else previous
            signal.signal(signum, held)
        return held

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self._held.append(signal.Signals(signum))

    def take(self) -> list[signal.Signals]:
        """The signals held so far, in order of arrival; they are no longer held."""
        held, self._held = self._held, []
        return held

    def uninstall(self) -> None:
        """Put the previous handlers back; what is still held is dropped."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def release(self) -> None:
        """Put the previous handlers back and deliver each held signal to them (SIGTERM's
        default action ends the process; Python's SIGINT handler raises KeyboardInterrupt)."""
        self.uninstall()
        for signum in self.take():
            signal.raise_signal(signum)
