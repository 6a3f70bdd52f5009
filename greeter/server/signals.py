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
graceful_exit). On exit the signals go back to their default action.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable
from types import TracebackType

__all__ = ["STOP_SIGNALS", "SignalCatcher"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalCatcher:
    """Catch `signals` on the running loop while the `with` block runs."""

    def __init__(self, signals: Iterable[signal.Signals] = STOP_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.received: list[signal.Signals] = []
        self.second = asyncio.Event()
        """Set by a signal after the first (e.g. to stop waiting for in-flight RPCs)."""
        self._first = asyncio.Event()

    def __enter__(self) -> SignalCatcher:
        loop = asyncio.get_running_loop()
        for signum in self.signals:
            loop.add_signal_handler(signum, self._caught, signum)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        for signum in self.signals:
            loop.remove_signal_handler(signum)

    async def first(self) -> signal.Signals:
        """Wait for the first signal; return it."""
        await self._first.wait()
        return self.received[0]

    def _caught(self, signum: signal.Signals) -> None:
        self.received.append(signum)
        (self.second if self._first.is_set() else self._first).set()
