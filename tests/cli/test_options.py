"""Bad option values end a command at once: exit 2, argparse's usage and one error line naming
the option, the value and the allowed range; nothing starts, no traceback (greeter.cli.limits)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.peers import run_greeter

pytestmark = pytest.mark.timeout(60)

BAD = [
    ("--max-concurrent-streams", "-1", "allowed is an integer >= 1 and <= 2147483647"),
    ("--max-concurrent-streams", "0", "allowed is an integer >= 1"),
    ("--max-concurrent-streams", "1.5", "is not an integer"),
    ("--max-receive-message-size", "-5", "allowed is an integer >= 0 and <= 4294967295"),
    ("--max-connections", "-1", "allowed is an integer >= 0"),
    ("--idle-timeout", "-3", "allowed is a finite number >= 0"),
    ("--handshake-timeout", "nan", "allowed is a finite number >= 0"),
    ("--keepalive-time", "inf", "allowed is a finite number >= 0"),
    ("--keepalive-timeout", "0", "allowed is a finite number > 0"),
    ("--write-stall-timeout", "x", "'x' is not a finite number"),
    ("--grace", "-1", "allowed is a finite number >= 0"),
]


def test_every_bad_limit_is_refused_with_one_line_naming_it() -> None:
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda bad: run_greeter("serve", "--port", "0", *bad[:2]), BAD))
    for (flag, value, allowed), result in zip(BAD, done, strict=True):
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"greeter serve: error: argument {flag}: "), last
        assert allowed in last, last
        assert value in last, last
        assert "serving" not in result.stderr
