"""SIGTERM at any moment after the start is a graceful stop, exit status 0, for every
long-running command.

Right after the ready line: the signal handlers are installed before the line is printed
(greeter.server.signals). Each command is started several times and signalled the moment its
line appears; before the fix most of these runs died by the signal (exit -15) with no GOAWAY.

During the start-up: the command holds SIGINT and SIGTERM from its first line, before the
imports that take most of its start-up (greeter.cli.held_signals). A test import hook pauses the
process exactly there -- while it imports greeter.cli.main -- so the signal lands in that window
every time, whatever the machine's speed; before the fix every such run died by the signal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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

FOREGROUND = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
"""A terminal's foreground command starts with SIGINT at Python's handler; a background job of a
non-interactive shell (pytest run as `... &`) would pass SIG_IGN on, and Ctrl-C would be a no-op."""
RUN_GREETER = "import runpy; runpy.run_module('greeter', run_name='__main__')"


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
        command = ["call", server.target, "greet.Greeter/BidiHello"]
        argv = [sys.executable, "-c", FOREGROUND + RUN_GREETER, *command]
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


PAUSE_HOOK = """
import sys


class PauseBeforeTheStack:
    # Say so, then wait for a line on stdin, when greeter.cli.main is about to be imported.
    def find_spec(self, name, path=None, target=None):
        if name == "greeter.cli.main":
            sys.meta_path.remove(self)
            print("PAUSED before importing greeter.cli.main", file=sys.stderr, flush=True)
            sys.stdin.readline()
        return None


sys.meta_path.insert(0, PauseBeforeTheStack())
"""
LAUNCH = f"{FOREGROUND}import pause_hook; {RUN_GREETER}"


def signalled_while_importing(
    hook_dir: Path, args: list[str], signum: signal.Signals
) -> tuple[int, str]:
    """Run `greeter ARGS`, send `signum` while it is paused in its imports, let it go on; its
    exit status and output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": f"{hook_dir}:{REPO_ROOT}"}
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdin is not None and process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("PAUSED"), first
        process.send_signal(signum)
        process.stdin.write("go on\n")
        process.stdin.flush()
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return process.returncode, output


@pytest.fixture(scope="module")
def hook_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hook")
    (directory / "pause_hook.py").write_text(PAUSE_HOOK)
    return directory


SERVING = {
    **{command: args for command, (args, _) in COMMANDS.items()},
    "serve --workers 2": ["serve", "--host", "127.0.0.1", "--port", "0", "--workers", "2"],
}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_during_the_start_up_is_a_graceful_stop(
    hook_dir: Path, signum: signal.Signals
) -> None:
    """Held while the command imports, acted on once its handlers are in place: the server
    comes up, stops gracefully and exits 0 (--workers: the parent stops before its workers
    are ready and exits 0)."""
    cases = sorted(SERVING.items())
    with ThreadPoolExecutor(len(cases)) as pool:
        results = list(
            pool.map(lambda case: signalled_while_importing(hook_dir, case[1], signum), cases)
        )
    for (command, _), (code, output) in zip(cases, results, strict=True):
        assert code == 0, f"{command}: {output}"
        assert "Traceback" not in output, f"{command}: {output}"
        if command in ("serve", "interop-server"):
            assert f"{signum.name}: shutting down" in output, output
        if "--workers" not in command:
            assert output.rstrip().endswith("stopped"), f"{command}: {output}"


def test_a_client_command_gets_a_held_signal_as_if_it_had_just_arrived(hook_dir: Path) -> None:
    """`hello` does not serve: SIGTERM held during its start-up still ends it by the signal
    (the default action), and Ctrl-C is the shell's 130 without a traceback."""
    args = ["hello", "x", "--target", "127.0.0.1:9"]
    code, output = signalled_while_importing(hook_dir, args, signal.SIGTERM)
    assert code == -signal.SIGTERM, output
    code, output = signalled_while_importing(hook_dir, args, signal.SIGINT)
    assert code == 130, output
    assert "Traceback" not in output, output
