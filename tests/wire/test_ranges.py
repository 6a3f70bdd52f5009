"""greeter.wire.ranges and the config dataclasses that use it: every numeric setting refuses a
value outside its range at construction, with a SettingError (a ValueError) naming the field,
the value and what is allowed; the range's own bounds are accepted."""

from __future__ import annotations

import math
from typing import Any

import pytest

from greeter.client.config import CLIENT_RANGES, ClientConfig
from greeter.core.config import CORE_RANGES, CoreConfig
from greeter.server.config import SERVER_RANGES, TIMEOUT_RANGES, ServerConfig, Timeouts
from greeter.wire.errors import GreeterError, SettingError
from greeter.wire.ranges import Range

CONFIGS: list[tuple[type[Any], dict[str, Range]]] = [
    (CoreConfig, CORE_RANGES),
    (Timeouts, TIMEOUT_RANGES),
    (ServerConfig, SERVER_RANGES),
    (ClientConfig, CLIENT_RANGES),
]
FIELDS = [(cls, name, allowed) for cls, ranges in CONFIGS for name, allowed in ranges.items()]
IDS = [f"{cls.__name__}.{name}" for cls, name, _ in FIELDS]


def bad_values(allowed: Range) -> list[object]:
    values: list[object] = [math.nan, math.inf, "1", True]
    values.append(allowed.low if allowed.above else allowed.low - 1)
    if allowed.high != math.inf:
        values.append(allowed.high + 1)
    if allowed.integer:
        values.append(allowed.low + 1.5)
    if not allowed.optional:
        values.append(None)
    return values


def good_values(allowed: Range) -> list[object]:
    values: list[object] = [allowed.low + 1 if allowed.above else allowed.low]
    if allowed.high != math.inf:
        values.append(allowed.high)
    if allowed.optional:
        values.append(None)
    return values


@pytest.mark.parametrize(("cls", "name", "allowed"), FIELDS, ids=IDS)
def test_every_numeric_setting_refuses_values_outside_its_range(
    cls: type[Any], name: str, allowed: Range
) -> None:
    for value in bad_values(allowed):
        with pytest.raises(SettingError) as caught:
            cls(**{name: value})
        error = caught.value
        assert isinstance(error, ValueError)
        assert isinstance(error, GreeterError)
        assert error.setting == f"{cls.__name__}.{name}"
        assert str(error) == (
            f"{cls.__name__}.{name}: {value!r} is out of range: allowed is {allowed.allowed()}"
        )


@pytest.mark.parametrize(("cls", "name", "allowed"), FIELDS, ids=IDS)
def test_every_numeric_setting_accepts_its_bounds(
    cls: type[Any], name: str, allowed: Range
) -> None:
    for value in good_values(allowed):
        assert getattr(cls(**{name: value}), name) == value


def test_the_ranges_cover_every_numeric_field() -> None:
    """A new numeric field without a range would escape the checks."""
    for cls, ranges in CONFIGS:
        defaults = cls()
        numeric = {
            name
            for name in cls.__dataclass_fields__
            if isinstance(getattr(defaults, name), int | float)
            and not isinstance(getattr(defaults, name), bool)
        }
        assert numeric <= set(ranges), f"{cls.__name__}: {sorted(numeric - set(ranges))}"


def test_parse_reads_and_checks_command_line_text() -> None:
    streams = CORE_RANGES["max_concurrent_streams"]
    assert streams.parse("100") == 100
    with pytest.raises(ValueError, match=r"'1\.5' is not an integer"):
        streams.parse("1.5")
    with pytest.raises(
        ValueError, match="-1 is out of range: allowed is an integer >= 1 and <= 2147483647"
    ):
        streams.parse("-1")
    assert TIMEOUT_RANGES["keepalive_timeout"].parse("0.5") == 0.5
    with pytest.raises(ValueError, match="allowed is a finite number > 0"):
        TIMEOUT_RANGES["keepalive_timeout"].parse("0")
