"""A channel's connectivity state machine: the current state, waiting for changes, subscribers.

Implements the states of gRPC's connectivity semantics
(https://github.com/grpc/grpc/blob/master/doc/connectivity-semantics-and-api.md): IDLE,
CONNECTING, READY, TRANSIENT_FAILURE and SHUTDOWN, where SHUTDOWN is final. The API follows
grpc's: ``wait_for_state_change(source, timeout)`` returns True once the state differs from
`source` and False on timeout, like grpc-core's ``grpc_channel_watch_connectivity_state``.

The channel drives the machine with `Connectivity.set`; any task may wait on it, and
subscribers are called synchronously on every change. A subscriber that raises is logged on the
``greeter.client`` logger and never breaks the channel. asyncio is used only for waiting: each
waiter's future is created in the running loop when it starts waiting. Use one event loop
thread (as the rest of the channel does); `set` is not thread-safe.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
from collections import deque
from collections.abc import Callable

__all__ = ["ChannelState", "Connectivity"]

log = logging.getLogger("greeter.client")


class ChannelState(enum.Enum):
    """gRPC's channel connectivity states."""

    IDLE = "IDLE"
    CONNECTING = "CONNECTING"
    READY = "READY"
    TRANSIENT_FAILURE = "TRANSIENT_FAILURE"
    SHUTDOWN = "SHUTDOWN"


_Waiter = tuple[Callable[[ChannelState], bool], "asyncio.Future[ChannelState]"]


class Connectivity:
    """The current state of one channel, with waiting and change subscribers."""

    def __init__(self, initial: ChannelState = ChannelState.IDLE) -> None:
        self._state = initial
        self._waiters: list[_Waiter] = []
        self._subscribers: dict[int, Callable[[ChannelState], None]] = {}
        self._tokens = itertools.count()
        self._pending: deque[ChannelState] = deque()
        self._notifying = False

    @property
    def state(self) -> ChannelState:
        """The current state."""
        return self._state

    def set(self, state: ChannelState) -> None:
        """Move to `state`; the same state is no change, and nothing follows SHUTDOWN."""
        if self._state is ChannelState.SHUTDOWN or state is self._state:
            return
        self._state = state
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(state):
                future.set_result(state)
        # A subscriber may call set() itself: queue the change, so that every subscriber sees
        # every change, in order.
        self._pending.append(state)
        if self._notifying:
            return
        self._notifying = True
        try:
            while self._pending:
                changed = self._pending.popleft()
                for callback in list(self._subscribers.values()):
                    try:
                        callback(changed)
                    except Exception:
                        log.exception("connectivity subscriber %r failed on %s", callback, changed)
        finally:
            self._notifying = False

    async def wait_for_state_change(
        self, source: ChannelState, timeout: float | None = None
    ) -> bool:
        """Wait until the state differs from `source`: True then, False after `timeout` seconds.

        Returns True at once if the state already differs, and False at once if it is
        SHUTDOWN (it can never change).
        """
        if self._state is not source:
            return True
        if source is ChannelState.SHUTDOWN:
            return False
        return await self._wait(lambda state: state is not source, timeout) is not None

    async def wait_for(self, state: ChannelState, timeout: float | None = None) -> bool:
        """Wait until the channel is in `state`: True then, False after `timeout` seconds.

        False at once if the channel has shut down (unless `state` is SHUTDOWN). A state
        entered and left before this task runs again still counts.
        """
        if self._state is state:
            return True
        if self._state is ChannelState.SHUTDOWN:
            return False
        reached = await self._wait(
            lambda new: new is state or new is ChannelState.SHUTDOWN, timeout
        )
        return reached is state

    def subscribe(self, callback: Callable[[ChannelState], None]) -> Callable[[], None]:
        """Call `callback(new_state)` on every change; returns the function that unsubscribes."""
        token = next(self._tokens)
        self._subscribers[token] = callback

        def unsubscribe() -> None:
            self._subscribers.pop(token, None)

        return unsubscribe

    async def _wait(
        self, predicate: Callable[[ChannelState], bool], timeout: float | None
    ) -> ChannelState | None:
        """The first new state `predicate` accepts, or None after `timeout`."""
        if timeout is not None and timeout <= 0:
            return None
        future: asyncio.Future[ChannelState] = asyncio.get_running_loop().create_future()
        waiter: _Waiter = (predicate, future)
        self._waiters.append(waiter)
        try:
            await asyncio.wait((future,), timeout=timeout)
        finally:
            self._waiters.remove(waiter)
            if not future.done():
                future.cancel()
        return future.result() if not future.cancelled() else None
