"""SIGTERM right after the ready line is a graceful stop, exit status 0, for every long-running
command: the signal handlers are installed before the line is printed (greeter.server.signals).
Each command is started several times and signalled the moment its line appears; before the
fix most of these runs died by the signal (exit -15) with no GOAWAY."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.peers import REPO_ROOT, ServerProcess, spawn_greeter_server

pytestmark = pytest.mark.timeout(60)

TRIES = 6
COMMANDS = {
    "serve": (["serve", "--host", "127.0.0.1", "--port", "0"], r"serving .* on "),
    "interop-server": (["interop-server", "--host", "127.0.0.1", "--port", "0"], r"serving "),
    "proxy": (
        ["proxy", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9"],
        r"proxying 127\.0\.0\.1:\d+ ",
    ),
}


def signalled_at_once(args: list[str], ready: str) -> tuple[int, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = ServerProcess([sys.executable, "-m", "greeter", *args], cwd=REPO_ROOT, env=env)
    process.wait_for_line(re.compile(ready), 20)
    code = process.stop(10)  # SIGTERM the moment the line is there
    return code, "\n".join(process.lines())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_sigterm_right_after_the_ready_line_stops_gracefully(command: str) -> None:
    args, ready = COMMANDS[command]
    with ThreadPoolExecutor(TRIES) as pool:
        results = list(pool.map(lambda _: signalled_at_once(args, ready), range(TRIES)))
    for code, output in results:
        assert code == 0, output
        assert "Traceback" not in output, output
        assert output.rstrip().endswith("stopped"), output


def test_ctrl_c_in_an_interactive_call_exits_130_without_a_traceback() -> None:
    """A bidi `greeter call` reading stdin, interrupted after its first reply (a terminal's
    Ctrl-C): the shell's 128 + SIGINT, no traceback."""
    with spawn_greeter_server() as server:
        argv = [sys.executable, "-m", "greeter", "call", server.target, "greet.Greeter/BidiHello"]
        call = subprocess.Popen(
            [*argv, "-"],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert call.stdin is not None and call.stdout is not None
            call.stdin.write('{"name": "x"}\n')
            call.stdin.flush()
            assert "Hello x" in call.stdout.readline()  # the call is live and waiting for more
            call.send_signal(signal.SIGINT)
            _, stderr = call.communicate(timeout=20)
        finally:
            if call.poll() is None:
                call.kill()
                call.wait(10)
        assert call.returncode == 130, stderr
        assert "Traceback" not in stderr, stderr
