"""A rate budget: at most `limit` units per `window` seconds, checked in O(1) time and memory.

No clock of its own: the caller passes the time, so tests drive it with a fake clock. A leaky
bucket: each `spend` pours `amount` in; the bucket drains at `limit / window` units per second
and holds `limit`. A burst of exactly `limit` units passes, one more fails, and after a whole
idle `window` the bucket is empty again. Unlike a fixed window, it cannot be gamed with
`2 * limit` units straddling a window boundary.
"""

from __future__ import annotations


class RateBudget:
    """Spend units against a budget of `limit` per `window` seconds (a leaky bucket)."""

    __slots__ = ("_last", "_level", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        if limit < 0 or window <= 0:
            raise ValueError(f"need limit >= 0 and window > 0, got {limit} per {window}")
        self.limit = limit
        self.window = window
        self._level = 0.0
        self._last: float | None = None

    def spend(self, now: float, amount: int = 1) -> bool:
        """Record `amount` units at time `now`; False when that goes over the budget.

        A clock that steps backwards drains nothing (the bucket never refills from the past).
        """
        last = self._last
        if last is not None and now > last:
            self._level = max(0.0, self._level - (now - last) * self.limit / self.window)
        if last is None or now > last:
            self._last = now
        self._level += amount
        # The tolerance keeps float drain arithmetic from refusing a unit the budget allows.
        return self._level <= self.limit + 1e-9

    @property
    def level(self) -> float:
        """Units currently in the bucket (as of the last `spend`)."""
        return self._level


__all__ = ["RateBudget"]
