"""Connection backoff: how long to wait between connection attempts, and how long each may take.

Implements gRPC's connection backoff protocol
(https://github.com/grpc/grpc/blob/master/doc/connection-backoff.md) the way grpc-core's
``BackOff`` does: the first delay is INITIAL_BACKOFF, each next one MULTIPLIER times the last,
capped at MAX_BACKOFF, and every delay is jittered uniformly by ±JITTER of itself (the cap
applies before the jitter, as in the doc's pseudo-code, so a delay may reach
``MAX_BACKOFF * (1 + JITTER)``). A connection attempt may take
``max(time to the current backoff deadline, MIN_CONNECT_TIMEOUT)``.

One channel's reconnect loop, per the doc's ``ConnectWithBackoff``::

    backoff = Backoff(BackoffPolicy())
    while True:
        delay = backoff.next_delay()            # this attempt's deadline: start + delay
        if await try_connect(timeout=backoff.connect_timeout(delay)):
            backoff.reset()
            break
        await sleep_until(start + delay)

Pure: no asyncio and no clock; the caller measures time and the randomness is injectable.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass

from greeter.wire.ranges import SECONDS, Range, check_fields

__all__ = ["BACKOFF_RANGES", "Backoff", "BackoffPolicy"]


@dataclass(frozen=True)
class BackoffPolicy:
    """The doc's parameters, in seconds, with its defaults."""

    initial: float = 1.0
    """INITIAL_BACKOFF: the delay before the first retry."""
    multiplier: float = 1.6
    """MULTIPLIER: each next delay is this times the last (>= 1)."""
    jitter: float = 0.2
    """JITTER: delays vary uniformly by ± this fraction of themselves, in [0, 1)."""
    max_backoff: float = 120.0
    """MAX_BACKOFF: the cap on the un-jittered delay."""
    min_connect_timeout: float = 20.0
    """MIN_CONNECT_TIMEOUT: the least time a connection attempt is given."""

    def __post_init__(self) -> None:
        check_fields(self, BACKOFF_RANGES)


BACKOFF_RANGES = {
    "initial": SECONDS,
    "multiplier": Range(1),
    "jitter": Range(0, 1, below=True),
    "max_backoff": SECONDS,
    "min_connect_timeout": SECONDS,
}


class Backoff:
    """One channel's backoff state: the sequence of delays since the last successful connection.

    `random` returns a float in [0, 1) (default `random.random`); 0.5 means no jitter, 0 the
    shortest delay (1 - jitter), values near 1 the longest (1 + jitter).
    """

    def __init__(
        self,
        policy: BackoffPolicy | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.policy = policy if policy is not None else BackoffPolicy()
        self._random = random
        self._current = self.policy.initial
        self._first = True

    @property
    def current(self) -> float:
        """The un-jittered backoff of the latest delay (INITIAL_BACKOFF before the first)."""
        return min(self._current, self.policy.max_backoff)

    def next_delay(self) -> float:
        """The delay until the next attempt may start: the current backoff deadline from now."""
        policy = self.policy
        if self._first:
            self._first = False
        else:
            self._current *= policy.multiplier
        self._current = min(self._current, policy.max_backoff)
        spread = policy.jitter * (2.0 * self._random() - 1.0)
        return self._current * (1.0 + spread)

    def reset(self) -> None:
        """Start over from INITIAL_BACKOFF, after a successful connection."""
        self._current = self.policy.initial
        self._first = True

    def connect_timeout(self, now_delay: float) -> float:
        """How long an attempt may take: ``max(current_deadline - now, MIN_CONNECT_TIMEOUT)``.

        `now_delay` is the time from now to the current backoff deadline, i.e. the
        `next_delay()` just taken for this attempt (less any time already spent).
        """
        return max(now_delay, self.policy.min_connect_timeout)
