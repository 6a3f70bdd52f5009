"""Retries as gRFC A6 defines them: the policy of a service config, and the channel's throttle.

A call that fails with a status in `retryable_status_codes` is tried again, at most
`max_attempts` times in all (A6 caps it at 5), after a random delay in
[0, min(initial_backoff * backoff_multiplier^(n-1), max_backoff)) — unless it committed first:
its response headers arrived, or its request outgrew the retry buffer. The server may steer it
with the `grpc-retry-pushback-ms` trailer: a delay to use instead, or (negative or malformed) no
retry at all. A channel's `RetryThrottle` stops retries while too many calls fail: each
retryable failure spends a token, each success earns `token_ratio`, and retries go only while
more than half the tokens are left. Transparent retries of calls the server never processed are
separate (greeter.client.call) and always on.
"""

from __future__ import annotations

import random as random_module
from collections.abc import Callable
from dataclasses import dataclass, field

from grpclib.const import Status

from greeter.wire.errors import SettingError
from greeter.wire.ranges import INT32_MAX, SECONDS, Range, check_fields

__all__ = [
    "RETRY_POLICY_RANGES",
    "RETRY_THROTTLING_RANGES",
    "RetryPolicy",
    "RetryThrottle",
    "RetryThrottling",
]

MAX_ATTEMPTS = 5
"""gRFC A6: larger max_attempts values are treated as 5."""


@dataclass(frozen=True)
class RetryPolicy:
    """A service config's retryPolicy (gRFC A6), for every call of a channel."""

    max_attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 1.0
    backoff_multiplier: float = 2.0
    retryable_status_codes: frozenset[Status] = field(
        default_factory=lambda: frozenset({Status.UNAVAILABLE})
    )

    def __post_init__(self) -> None:
        check_fields(self, RETRY_POLICY_RANGES)
        codes = self.retryable_status_codes
        if not codes or not all(isinstance(code, Status) for code in codes) or Status.OK in codes:
            raise SettingError(
                "RetryPolicy.retryable_status_codes",
                codes,
                "a non-empty set of grpclib Status failures (not OK)",
            )

    @property
    def attempts(self) -> int:
        return min(self.max_attempts, MAX_ATTEMPTS)

    def delay(self, retry: int, random: Callable[[], float] = random_module.random) -> float:
        """Seconds before retry number `retry` (1 for the first retry)."""
        ceiling = self.initial_backoff * self.backoff_multiplier ** (retry - 1)
        return random() * min(ceiling, self.max_backoff)


@dataclass(frozen=True)
class RetryThrottling:
    """A service config's retryThrottling (gRFC A6)."""

    max_tokens: float = 10.0
    token_ratio: float = 0.1

    def __post_init__(self) -> None:
        check_fields(self, RETRY_THROTTLING_RANGES)


# gRFC A6's validation of a service config: maxAttempts at least 2 (more than 5 is treated as
# 5), backoffs and multiplier above 0, maxTokens in (0, 1000], tokenRatio above 0.
RETRY_POLICY_RANGES = {
    "max_attempts": Range(2, INT32_MAX, integer=True),
    "initial_backoff": SECONDS,
    "max_backoff": SECONDS,
    "backoff_multiplier": SECONDS,
}
RETRY_THROTTLING_RANGES = {
    "max_tokens": Range(0, 1000, above=True),
    "token_ratio": Range(0, above=True),
}


class RetryThrottle:
    """One channel's token bucket for retries."""

    def __init__(self, throttling: RetryThrottling) -> None:
        self.throttling = throttling
        self.tokens = throttling.max_tokens

    def failed(self) -> None:
        """A call failed with a retryable status (or a pushback that forbids retrying)."""
        self.tokens = max(self.tokens - 1, 0.0)

    def succeeded(self) -> None:
        self.tokens = min(self.tokens + self.throttling.token_ratio, self.throttling.max_tokens)

    @property
    def allows_retry(self) -> bool:
        return self.tokens > self.throttling.max_tokens / 2


def pushback_delay(value: str | None) -> float | None:
    """grpc-retry-pushback-ms as seconds; None when absent. Raises ValueError to forbid retrying
    (a negative or malformed value, gRFC A6)."""
    if value is None:
        return None
    if not value.isdigit():
        raise ValueError(f"grpc-retry-pushback-ms {value!r}: no retry")
    return int(value) / 1000
