"""The allowed values of every numeric setting, checked where the setting is made.

Each config dataclass (CoreConfig, Timeouts, ServerConfig, ClientConfig, ...) names a `Range`
per numeric field and checks them in ``__post_init__`` with `check_fields`; the command line
parses its options with `Range.parse`, so a bad value is refused at the start, with one line
naming the setting, the value and what is allowed, never later as a crash or a silent refusal
of every request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from greeter.wire.errors import SettingError

__all__ = [
    "CALL_TIMEOUT",
    "COUNT",
    "INT32_MAX",
    "LISTEN_PORT",
    "OPTIONAL_SECONDS",
    "PEER_PORT",
    "SECONDS",
    "Range",
    "check_fields",
    "check_value",
]

INT32_MAX = 2**31 - 1
"""HTTP/2's largest window, stream count and stream id (RFC 9113 §6.5.2, §6.9.1)."""


@dataclass(frozen=True)
class Range:
    """Allowed values: a number from `low` to `high` (`low` itself excluded when `above`,
    `high` when `below`)."""

    low: float
    high: float = math.inf
    integer: bool = False
    above: bool = False
    """`low` itself is not allowed (a positive duration)."""
    below: bool = False
    """`high` itself is not allowed (a fraction less than 1)."""
    optional: bool = False
    """None is allowed too (the limit is off)."""

    @property
    def kind(self) -> str:
        return "an integer" if self.integer else "a finite number"

    def allowed(self) -> str:
        bounds: list[str] = []
        if self.low != -math.inf:
            bounds.append(f"> {_show(self.low)}" if self.above else f">= {_show(self.low)}")
        if self.high != math.inf:
            bounds.append(f"< {_show(self.high)}" if self.below else f"<= {_show(self.high)}")
        text = f"{self.kind} {' and '.join(bounds)}" if bounds else self.kind
        return f"{text}, or None (off)" if self.optional else text

    def contains(self, value: object) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value) or value > self.high or (self.below and value == self.high):
            return False
        return value > self.low if self.above else value >= self.low

    def parse(self, text: str) -> int | float:
        """A command-line value: parsed as the field's type and checked (ValueError if not)."""
        try:
            value: int | float = int(text) if self.integer else float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {self.kind}") from None
        if not self.contains(value):
            raise ValueError(f"{text} is out of range: allowed is {self.allowed()}")
        return value


def _show(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else f"{bound:g}"


COUNT = Range(1, INT32_MAX, integer=True)
"""A positive count (streams, bytes of a window, frames of a budget)."""
SECONDS = Range(0, above=True)
"""A positive duration."""
OPTIONAL_SECONDS = Range(0, above=True, optional=True)
"""A time limit: a positive duration, or None (off)."""
LISTEN_PORT = Range(0, 65_535, integer=True)
"""A TCP port to listen on: 0 picks a free one."""
PEER_PORT = Range(1, 65_535, integer=True)
"""A TCP port to connect to."""
CALL_TIMEOUT = Range(-math.inf, optional=True)
"""A call's timeout: seconds from now, 0 or less for a deadline already past (it fails
DEADLINE_EXCEEDED, as in gRPC), or None (no deadline)."""


def check_fields(instance: object, ranges: Mapping[str, Range]) -> None:
    """Raise SettingError for the first field of `instance` outside its range."""
    owner = type(instance).__name__
    for name, allowed in ranges.items():
        check_value(f"{owner}.{name}", getattr(instance, name), allowed)


def check_value(setting: str, value: object, allowed: Range) -> None:
    """Raise SettingError naming `setting` when `value` is outside `allowed`."""
    if not allowed.contains(value):
        raise SettingError(setting, value, allowed.allowed())
