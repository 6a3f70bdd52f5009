"""Stop on SIGINT/SIGTERM: signal handlers installed before anything says it is ready.

A supervisor (or a test) sends SIGTERM as soon as a process says it serves; if the handlers
came after that line, the signal would find Python's default action and kill the process with no
GOAWAY. `SignalCatcher` installs them when it is entered, so code announces readiness inside
the block and a signal at any moment after that is a graceful stop::

    with SignalCatcher() as caught:
        await server.start()
        log.info("serving")
        await caught.first()       # the first SIGINT or SIGTERM
        ...                        # graceful stop; `caught.second` is set by another signal

asyncio signal handlers: the running loop's, in the main thread only (as grpclib's
graceful_exit), one catcher per loop at a time. On exit the signals go back to the handlers they
had before. A previous handler that held stop signals for whoever came next (`HeldSignals`: the
`greeter` command holds them from its first line, while its imports run) hands them over: the
catcher acts on them as if they arrived on entry, so a SIGTERM at any moment of a start-up is a
graceful stop.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any, Protocol, runtime_checkable

__all__ = ["STOP_SIGNALS", "HeldSignals", "SignalCatcher", "take_held"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
"""What signal.getsignal returns (None: a handler not set from Python)."""


@runtime_checkable
class HeldSignals(Protocol):
    """A signal handler that only held stop signals (greeter.cli.held_signals)."""

    def take(self) -> list[signal.Signals]:
        """The signals held so far; they are no longer held."""
        ...


def take_held(handler: object) -> list[signal.Signals]:
    """What `handler`, a handler being replaced, held (nothing unless it is `HeldSignals`)."""
    return handler.take() if isinstance(handler, HeldSignals) else []


class SignalCatcher:
    """Catch `signals` on the running loop while the `with` block runs."""

    def __init__(self, signals: Iterable[signal.Signals] = STOP_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.received: list[signal.Signals] = []
        self.second = asyncio.Event()
        """Set by a signal after the first (e.g. to stop waiting for in-flight RPCs)."""
        self._first = asyncio.Event()
        self._previous: dict[signal.Signals, Handler] = {}

    def __enter__(self) -> SignalCatcher:
        loop = asyncio.get_running_loop()
        for signum in self.signals:
            self._previous[signum] = signal.getsignal(signum)
            loop.add_signal_handler(signum, self._caught, signum)
        for previous in self._previous.values():
            for signum in take_held(previous):
                if signum in self.signals:
                    self._caught(signum)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        for signum, previous in self._previous.items():
            loop.remove_signal_handler(signum)
            if previous is not None:  # None: not set from Python; asyncio left the default
                signal.signal(signum, previous)
        self._previous.clear()

    async def first(self) -> signal.Signals:
        """Wait for the first signal; return it."""
        await self._first.wait()
        return self.received[0]

    def _caught(self, signum: signal.Signals) -> None:
        self.received.append(signum)
        (self.second if self._first.is_set() else self._first).set()
