"""Bad option values end a command at once: exit 2, argparse's usage and one error line naming
the option, the value and the allowed range; nothing starts, no traceback (greeter.cli.limits)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.peers import assert_one_line_failure, run_greeter

pytestmark = pytest.mark.timeout(60)

BAD = [
    ("--max-concurrent-streams", "-1", "allowed is an integer >= 1 and <= 2147483647"),
    ("--max-concurrent-streams", "0", "allowed is an integer >= 1"),
    ("--max-concurrent-streams", "1.5", "is not an integer"),
    ("--max-receive-message-size", "-5", "allowed is an integer >= 0 and <= 4294967295"),
    ("--max-connections", "-1", "allowed is an integer >= 0"),
    ("--idle-timeout", "-3", "allowed is a finite number >= 0"),
    ("--max-connection-idle", "-3", "allowed is a finite number >= 0"),
    ("--max-connection-age", "0.5x", "'0.5x' is not a finite number"),
    ("--max-connection-age-grace", "-1", "allowed is a finite number >= 0"),
    ("--drain-delay", "-1", "allowed is a finite number >= 0"),
    ("--handshake-timeout", "nan", "allowed is a finite number >= 0"),
    ("--keepalive-time", "inf", "allowed is a finite number >= 0"),
    ("--keepalive-timeout", "0", "allowed is a finite number > 0"),
    ("--write-stall-timeout", "x", "'x' is not a finite number"),
    ("--grace", "-1", "allowed is a finite number >= 0"),
    ("--workers", "0", "allowed is an integer >= 1 and <= 256"),
    ("--workers", "99999", "allowed is an integer >= 1 and <= 256"),
    ("--metrics-port", "70000", "allowed is an integer >= 0 and <= 65535"),
]
OTHER_COMMANDS = {
    "hello": ("hello", "x"),
    "call": ("call", "127.0.0.1:1", "greet.Greeter/SayHello"),
    "replay": ("replay", "t.jsonl", "--target", "127.0.0.1:1"),
    "interop-client": ("interop-client",),
}
BAD_ELSEWHERE = [
    ("hello", "--timeout", "-1", "allowed is a finite number > 0"),
    ("hello", "--timeout", "nan", "allowed is a finite number > 0"),
    ("call", "--timeout", "0", "allowed is a finite number > 0"),
    ("replay", "--timeout", "inf", "allowed is a finite number > 0"),
    ("interop-client", "--server_port", "0", "allowed is an integer >= 1 and <= 65535"),
]


def test_every_bad_option_value_is_refused_with_one_line_naming_it() -> None:
    cases = [("serve", flag, value, allowed) for flag, value, allowed in BAD]
    cases += BAD_ELSEWHERE
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda case: run_greeter(*command_line(*case[:3])), cases))
    for (command, flag, value, allowed), result in zip(cases, done, strict=True):
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        # argparse names an option with aliases by all its spellings (--a/--b).
        pattern = rf"^greeter {command}: error: argument (\S+/)?{re.escape(flag)}(/\S+)?: "
        assert re.match(pattern, last), last
        assert allowed in last, last
        assert value in last, last
        assert "serving" not in result.stderr


def command_line(command: str, flag: str, value: str) -> tuple[str, ...]:
    before = ("serve", "--port", "0") if command == "serve" else OTHER_COMMANDS[command]
    return (*before, flag, value)


PORTS = [
    (("serve", "--port", "70000"), "argument --port: 70000 is out of range"),
    (("serve", "--port", "-5"), "argument --port: -5 is out of range"),
    (("interop-server", "--port", "99999"), "argument --port: 99999 is out of range"),
    (("interop-server", "--grace", "-1"), "argument --grace: -1 is out of range"),
    (("proxy", "--listen", "127.0.0.1:70000", "--target", "127.0.0.1:1"), "--listen: port 70000"),
    (("proxy", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:0"), "--target: port 0"),
    (("replay", "t.jsonl", "--target", "localhost:65536"), "port must be 1-65535, got '65536'"),
    (("hello", "x", "--target", "localhost:70000"), "port must be 1-65535, got '70000'"),
]


def test_ports_out_of_range_are_usage_errors() -> None:
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda case: run_greeter(*case[0]), PORTS))
    for (_, expected), result in zip(PORTS, done, strict=True):
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr
        assert expected in result.stderr.strip().splitlines()[-1], result.stderr


def test_a_bad_proto_module_is_named_in_one_line() -> None:
    done = run_greeter(
        "proxy", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--proto-module", "no.such"
    )
    line = assert_one_line_failure(done)
    assert line == "greeter: --proto-module 'no.such': No module named 'no'"
