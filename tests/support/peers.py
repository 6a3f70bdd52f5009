"""Processes and interop peers: server subprocesses, the greeter CLI, grpcio and grpc-js.

Not a test module. `ServerProcess` runs a server subprocess and reads its output line by line;
`spawn_greeter_server`, `spawn_interop_server` and `run_greeter` run greeter's own command line.
The interop peers (grpc-js on Node, grpcio on C-core) serve or call greet.Greeter with the same
behaviour as greeter's own service, on loopback only:

- SayHello -> "Hello " + name
- LotsOfReplies -> `count` replies, the i-th (from 1) f"Hello {name} #{i}"; count 0: none, OK
- LotsOfGreetings -> one reply "Hello " + ", ".join(names in arrival order)
- BidiHello -> one reply "Hello " + name per request, as each request arrives
- both peer servers copy the request metadata key `x-echo` into the trailing metadata and accept
  messages up to 8 MiB.

The Node peers live in interop/node (client.js, server.js); their dependencies come from
`npm ci --prefix interop/node`, which the test command always runs, so a missing node_modules is a
test failure with that instruction, never a skip.

Every wait here is bounded: subprocesses get timeouts, server start-up waits on the "listening"
line (no sleeps), shutdown waits on the exit with a timeout and kills on expiry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from gen.greet import HelloReply, HelloRequest

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = REPO_ROOT / "interop" / "node"
NODE_INSTALL_HINT = "run npm ci --prefix interop/node"

SERVICE = "greet.Greeter"
METHOD_PATHS = {
    "SayHello": f"/{SERVICE}/SayHello",
    "LotsOfReplies": f"/{SERVICE}/LotsOfReplies",
    "LotsOfGreetings": f"/{SERVICE}/LotsOfGreetings",
    "BidiHello": f"/{SERVICE}/BidiHello",
}
ECHO_KEY = "x-echo"
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

# Matches greeter's start-up log line, e.g.
# "greeter: serving greet.Greeter, grpc.health.v1.Health on 127.0.0.1:50051".
GREETER_SERVING_LINE = re.compile(r"serving .* on (\S+):(\d+)")
GRPC_JS_LISTENING_LINE = re.compile(r"listening on (\S+):(\d+)")

# Loopback peers: a proxy from the environment must never sit between them.
_GRPCIO_BASE_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.enable_http_proxy", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)


# --------------------------------------------------------------------------------------- Node


def require_node_peers() -> str:
    """Return the `node` executable, or fail the test if Node or interop/node's deps are missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the interop tests need Node.js 18+", pytrace=False)
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(
                f"{package} is missing from {NODE_DIR / 'node_modules'}: {NODE_INSTALL_HINT}",
                pytrace=False,
            )
    return node


INTEROP_CASES = (
    "empty_unary",
    "large_unary",
    "client_compressed_unary",
    "server_compressed_unary",
    "client_streaming",
    "client_compressed_streaming",
    "server_streaming",
    "server_compressed_streaming",
    "ping_pong",
    "empty_stream",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
)
"""Every case of doc/interop-test-descriptions.md a plaintext client can run, in its order: what
greeter's `interop-client` and interop/node/interop_client.js run (the lists are not imported
from greeter.cli: importing it in a test process would load grpclib's reflection protos into
protobuf's default pool before grpcio-reflection's, which other tests import)."""


def run_node_client(target: str, *args: str, timeout: float = 30) -> dict[str, Any]:
    """Run `node interop/node/client.js TARGET SCENARIO ARGS...` and return its one JSON line.

    The dict always has `scenario`, `code` (gRPC status number), `code_name` and `details`, plus
    the scenario's results (see client.js). An RPC that ended with an error status is a normal
    result; a client crash, bad usage, missing JSON or a timeout raises AssertionError.
    """
    try:
        done = _run_node("client.js", target, *args, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"grpc-js client {args} against {target} did not finish within {timeout} s;"
            f" stderr:\n{_text(exc.stderr)}"
        ) from None
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or len(lines) != 1:
        raise AssertionError(
            f"grpc-js client {args} against {target} exited {done.returncode} with"
            f" {len(lines)} stdout lines\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    result: dict[str, Any] = json.loads(lines[0])
    return result


def run_node_interop_client(
    target: str, case: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run gRPC's interop case `case` (or "all") with grpc-js as the client
    (interop/node/interop_client.js) against the TestService at `target`, "HOST:PORT"."""
    host, _, port = target.rpartition(":")
    flags = (f"--server_host={host}", f"--server_port={port}", f"--test_case={case}")
    return _run_node("interop_client.js", *flags, timeout=timeout)


def _run_node(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`node interop/node/SCRIPT ARGS...`, its output captured."""
    argv = [require_node_peers(), str(NODE_DIR / script), *args]
    return subprocess.run(
        argv,
        cwd=NODE_DIR,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


# ------------------------------------------------------------------------- server subprocesses


class ServerProcess:
    """A server subprocess whose merged stdout/stderr a thread drains line by line.

    Draining keeps a chatty server from blocking on a full pipe; the kept lines let a test wait
    for a log line (`wait_for_line`) or inspect everything the server printed (`lines`).
    """

    def __init__(self, argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None):
        self.argv = list(argv)
        self.target = ""
        self._lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._drain, name=f"drain-{self.proc.pid}")
        self._reader.daemon = True
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self._lines.append(line.rstrip("\r\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def lines(self) -> list[str]:
        """Every output line so far (stdout and stderr interleaved as the process wrote them)."""
        with self._changed:
            return list(self._lines)

    def wait_for_line(
        self, pattern: str | re.Pattern[str], timeout: float, *, start: int = 0
    ) -> re.Match[str]:
        """Wait until an output line (from index `start`) matches `pattern`; return the match.

        Raises AssertionError with the output so far if the process ends first or `timeout`
        seconds pass.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        with self._changed:
            while True:
                for line in self._lines[index:]:
                    index += 1
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "exited" if self._eof else f"printed nothing matching in {timeout} s"
                    raise AssertionError(
                        f"{self.argv} {why} (waiting for /{regex.pattern}/);"
                        f" output:\n{self._format_output()}"
                    )
                self._changed.wait(remaining)

    def stop(self, timeout: float) -> int:
        """SIGTERM the process, return its exit code; kill it and raise if it outlives `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            raise AssertionError(
                f"{self.argv} did not exit within {timeout} s of SIGTERM (killed);"
                f" output:\n{self._format_output()}"
            ) from None
        finally:
            self._reader.join(timeout)
        return returncode

    def _format_output(self) -> str:
        return "\n".join(f"  | {line}" for line in self._lines[-50:])


def served_cleanly(process: ServerProcess) -> None:
    """A stopped server exited 0 and never printed a traceback."""
    output = "\n".join(process.lines())
    assert process.proc.returncode == 0, output
    assert "Traceback" not in output, output


@contextmanager
def stopped_after(process: ServerProcess, stop_timeout: float) -> Iterator[ServerProcess]:
    """Stop `process` on exit; a failed stop is reported unless the body already failed."""
    try:
        yield process
    except BaseException:
        with suppress(AssertionError):  # the body's own exception is the one worth seeing
            process.stop(stop_timeout)
        raise
    process.stop(stop_timeout)


@contextmanager
def spawn_grpc_js_server(
    *, ready_timeout: float = 15, stop_timeout: float = 10
) -> Iterator[ServerProcess]:
    """Start interop/node/server.js on 127.0.0.1:0; yield it once it printed its port."""
    node = require_node_peers()
    process = ServerProcess([node, str(NODE_DIR / "server.js"), "0"], cwd=NODE_DIR)
    with stopped_after(process, stop_timeout):
        match = process.wait_for_line(GRPC_JS_LISTENING_LINE, ready_timeout)
        process.target = f"{match.group(1)}:{match.group(2)}"
        yield process


AIO_TESTSERVICE = REPO_ROOT / "tests" / "support" / "aio_testservice.py"
AIO_REFLECTION = REPO_ROOT / "tests" / "support" / "aio_reflection.py"
AIO_LISTENING_LINE = re.compile(r"listening on (\S+):(\d+)")


@contextmanager
def spawn_aio_server(
    script: Path = AIO_TESTSERVICE, *, ready_timeout: float = 20, stop_timeout: float = 10
) -> Iterator[ServerProcess]:
    """Start a grpc.aio server script on 127.0.0.1:0 (by default tests/support/aio_testservice.py,
    grpc.aio's TestService; AIO_REFLECTION adds Greeter and reflection); yield it once it printed
    its port."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, str(script), "--host", "127.0.0.1", "--port", "0"]
    process = ServerProcess(argv, cwd=REPO_ROOT, env=env)
    with stopped_after(process, stop_timeout):
        match = process.wait_for_line(AIO_LISTENING_LINE, ready_timeout)
        process.target = f"{match.group(1)}:{match.group(2)}"
        yield process


@contextmanager
def grpc_js_server(*, ready_timeout: float = 15, stop_timeout: float = 10) -> Iterator[str]:
    """Run the grpc-js Greeter server for the block; yield its target "127.0.0.1:PORT"."""
    with spawn_grpc_js_server(ready_timeout=ready_timeout, stop_timeout=stop_timeout) as process:
        yield process.target


@contextmanager
def spawn_greeter_server(
    *extra_args: str,
    ready_timeout: float = 20,
    stop_timeout: float = 10,
    env: dict[str, str] | None = None,
) -> Iterator[ServerProcess]:
    """Start `python -m greeter serve --host 127.0.0.1 --port 0 EXTRA_ARGS` from the repo root.

    Yields the ServerProcess (target, output lines, wait_for_line) once the server logged
    "serving ... on HOST:PORT"; on exit sends SIGTERM and fails if it does not exit in time.
    `env` entries are added to the inherited environment.
    """
    process = greeter_serve(*extra_args, env=env)
    with stopped_after(process, stop_timeout):
        wait_serving(process, ready_timeout)
        yield process


def greeter_serve(*extra_args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """`python -m greeter serve --host 127.0.0.1 --port 0 EXTRA_ARGS`, started (not yet ready):
    the caller waits for it (`wait_serving`) and stops it."""
    argv = [sys.executable, "-m", "greeter", "serve", "--host", "127.0.0.1", "--port", "0"]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return ServerProcess([*argv, *extra_args], cwd=REPO_ROOT, env=full_env)


def wait_serving(process: ServerProcess, timeout: float) -> None:
    """Wait for greeter's "serving ... on HOST:PORT" line; set `process.target`."""
    match = process.wait_for_line(GREETER_SERVING_LINE, timeout)
    process.target = f"{match.group(1)}:{match.group(2)}"


PROXYING_LINE = r"proxying (\S+):(\d+) -> "


@contextmanager
def spawn_proxy(target: str, *extra_args: str) -> Iterator[ServerProcess]:
    """Start `python -m greeter proxy --listen 127.0.0.1:0 --target TARGET EXTRA_ARGS`; yield it
    once it logged "proxying HOST:PORT -> ..." (its `target` is where clients connect)."""
    argv = [sys.executable, "-m", "greeter", "proxy", "--listen", "127.0.0.1:0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = ServerProcess([*argv, "--target", target, *extra_args], cwd=REPO_ROOT, env=env)
    with stopped_after(process, stop_timeout=10):
        match = process.wait_for_line(PROXYING_LINE, timeout=20)
        process.target = f"{match.group(1)}:{match.group(2)}"
        yield process


@contextmanager
def spawn_interop_server(
    *extra_args: str, ready_timeout: float = 20, stop_timeout: float = 10
) -> Iterator[ServerProcess]:
    """Start `python -m greeter interop-server --host 127.0.0.1 --port 0 EXTRA_ARGS`.

    Like spawn_greeter_server: yields once the "serving ... on HOST:PORT" line appeared, stops
    with SIGTERM on exit.
    """
    argv = [sys.executable, "-m", "greeter", "interop-server", "--host", "127.0.0.1", "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = ServerProcess([*argv, *extra_args], cwd=REPO_ROOT, env=env)
    with stopped_after(process, stop_timeout):
        wait_serving(process, ready_timeout)
        yield process


@contextmanager
def greeter_server_process(
    *extra_args: str, ready_timeout: float = 20, stop_timeout: float = 10
) -> Iterator[str]:
    """Run greeter's own server as a subprocess for the block; yield "127.0.0.1:PORT"."""
    with spawn_greeter_server(
        *extra_args, ready_timeout=ready_timeout, stop_timeout=stop_timeout
    ) as process:
        yield process.target


# ------------------------------------------------------------------------------ grpcio server


def _echo_trailers(context: grpc.ServicerContext) -> None:
    echoed = tuple((k, v) for k, v in context.invocation_metadata() if k == ECHO_KEY)
    if echoed:
        context.set_trailing_metadata(echoed)


def _say_hello(request: HelloRequest, context: grpc.ServicerContext) -> HelloReply:
    _echo_trailers(context)
    return HelloReply(message=f"Hello {request.name}")


def _lots_of_replies(request: HelloRequest, context: grpc.ServicerContext) -> Iterator[HelloReply]:
    _echo_trailers(context)
    for i in range(1, request.count + 1):
        yield HelloReply(message=f"Hello {request.name} #{i}")


def _lots_of_greetings(
    requests: Iterator[HelloRequest], context: grpc.ServicerContext
) -> HelloReply:
    _echo_trailers(context)
    names = [request.name for request in requests]
    return HelloReply(message="Hello " + ", ".join(names))


def _bidi_hello(
    requests: Iterator[HelloRequest], context: grpc.ServicerContext
) -> Iterator[HelloReply]:
    _echo_trailers(context)
    for request in requests:
        yield HelloReply(message=f"Hello {request.name}")


def grpcio_greeter_handler() -> grpc.GenericRpcHandler:
    """The Greeter behaviour as a grpcio generic handler (betterproto2 codec, no protoc stubs)."""
    codec: dict[str, Callable[..., Any]] = {
        "request_deserializer": HelloRequest.FromString,
        "response_serializer": bytes,
    }
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "SayHello": grpc.unary_unary_rpc_method_handler(_say_hello, **codec),
            "LotsOfReplies": grpc.unary_stream_rpc_method_handler(_lots_of_replies, **codec),
            "LotsOfGreetings": grpc.stream_unary_rpc_method_handler(_lots_of_greetings, **codec),
            "BidiHello": grpc.stream_stream_rpc_method_handler(_bidi_hello, **codec),
        },
    )


@contextmanager
def grpcio_server(*, max_workers: int = 16, stop_grace: float = 1) -> Iterator[str]:
    """Run a grpcio (C-core) Greeter server on 127.0.0.1:0 for the block; yield its target.

    Each streaming RPC holds a pool thread for its whole life, so `max_workers` bounds how many
    can run at once.
    """
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpcio-peer") as pool:
        server = grpc.server(pool, options=_GRPCIO_BASE_OPTIONS)
        server.add_generic_rpc_handlers((grpcio_greeter_handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        assert port != 0, "grpcio could not bind 127.0.0.1:0"
        server.start()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.stop(stop_grace).wait(stop_grace + 5)


# ------------------------------------------------------------------------------ grpcio client


@dataclass(frozen=True)
class GrpcioGreeter:
    """grpcio multi-callables for the four Greeter methods (betterproto2 messages in and out).

    Call them as grpcio documents, e.g. `say_hello(HelloRequest(name="a"), timeout=5)`,
    `say_hello.with_call(...)` for the trailers, `lots_of_replies(req, timeout=5)` to iterate.
    """

    channel: grpc.Channel
    say_hello: grpc.UnaryUnaryMultiCallable
    lots_of_replies: grpc.UnaryStreamMultiCallable
    lots_of_greetings: grpc.StreamUnaryMultiCallable
    bidi_hello: grpc.StreamStreamMultiCallable

    @classmethod
    def for_channel(cls, channel: grpc.Channel) -> GrpcioGreeter:
        """Bind the four methods to an existing channel."""
        codec: dict[str, Callable[..., Any]] = {
            "request_serializer": bytes,
            "response_deserializer": HelloReply.FromString,
        }
        return cls(
            channel=channel,
            say_hello=channel.unary_unary(METHOD_PATHS["SayHello"], **codec),
            lots_of_replies=channel.unary_stream(METHOD_PATHS["LotsOfReplies"], **codec),
            lots_of_greetings=channel.stream_unary(METHOD_PATHS["LotsOfGreetings"], **codec),
            bidi_hello=channel.stream_stream(METHOD_PATHS["BidiHello"], **codec),
        )


@contextmanager
def grpcio_channel(
    target: str,
    *,
    options: Sequence[tuple[str, Any]] = (),
    ready_timeout: float | None = None,
) -> Iterator[GrpcioGreeter]:
    """Open an insecure grpcio channel to `target`; yield the Greeter methods bound to it.

    8 MiB message limits and no proxy by default; `options` override those by name. With
    `ready_timeout`, wait for the connection first (grpc.FutureTimeoutError if it never is).
    """
    merged = {**dict(_GRPCIO_BASE_OPTIONS), **dict(options)}
    with grpc.insecure_channel(target, options=list(merged.items())) as channel:
        if ready_timeout is not None:
            grpc.channel_ready_future(channel).result(timeout=ready_timeout)
        yield GrpcioGreeter.for_channel(channel)


CLI_TIMEOUT = 20.0
"""Seconds a `python -m greeter ...` subprocess gets before the test fails."""


def run_greeter(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m greeter ARGS...` from the repo root, bounded by CLI_TIMEOUT; `stdin` is what
    it reads from its standard input (nothing by default)."""
    argv = [sys.executable, "-m", "greeter", *args]
    try:
        return subprocess.run(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
            stdin=subprocess.DEVNULL if stdin is None else None,
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=CLI_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{argv} did not finish within {CLI_TIMEOUT} s: {exc}") from None


def assert_one_line_failure(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed cleanly: non-zero exit, no stdout, one stderr line; return it."""
    assert done.returncode != 0, done
    assert done.stdout == "", done
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]
