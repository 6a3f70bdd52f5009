"""Self-check of the interop peers in tests/support/peers.py and interop/node.

Before the peers judge greeter, they must agree with each other: the grpc-js client and the grpcio
client each call both reference servers (grpcio C-core and grpc-js) for every Greeter method, and
the subprocess helpers are checked against small stand-in processes.
"""

from __future__ import annotations

import queue
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gen.greet import HelloRequest
from tests.support import peers
from tests.support.peers import (
    GREETER_SERVING_LINE,
    NODE_INSTALL_HINT,
    GrpcioGreeter,
    ServerProcess,
    grpc_js_server,
    grpcio_channel,
    grpcio_server,
    run_node_client,
    spawn_greeter_server,
)

pytestmark = pytest.mark.timeout(30)

CALL_TIMEOUT = 5.0  # seconds, for every grpcio call and future here
OK = {"code": 0, "code_name": "OK"}


@pytest.fixture(scope="module", params=["grpcio-server", "grpc-js-server"])
def peer_target(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each reference server in turn, running for the whole module."""
    server = grpcio_server if request.param == "grpcio-server" else grpc_js_server
    with server() as target:
        yield target


@pytest.fixture(scope="module")
def greeter(peer_target: str) -> Iterator[GrpcioGreeter]:
    """grpcio client methods connected to the current reference server."""
    with grpcio_channel(peer_target, ready_timeout=CALL_TIMEOUT) as methods:
        yield methods


def assert_ok(result: dict[str, object]) -> None:
    assert {k: result[k] for k in OK} == OK, result


# --------------------------------------------------------------- grpc-js client -> both servers


def test_node_unary(peer_target: str) -> None:
    result = run_node_client(peer_target, "unary", "Ada")
    assert_ok(result)
    assert result["message"] == "Hello Ada"


@pytest.mark.parametrize("count", [3, 0])
def test_node_server_stream(peer_target: str, count: int) -> None:
    result = run_node_client(peer_target, "server-stream", "Ada", str(count))
    assert_ok(result)
    assert result["messages"] == [f"Hello Ada #{i}" for i in range(1, count + 1)]


def test_node_client_stream(peer_target: str) -> None:
    result = run_node_client(peer_target, "client-stream", "a", "b", "c")
    assert_ok(result)
    assert result["message"] == "Hello a, b, c"


def test_node_bidi_ping_pong(peer_target: str) -> None:
    # client.js writes each name only after the previous reply arrived: per-message replies.
    result = run_node_client(peer_target, "bidi", "a", "b", "c")
    assert_ok(result)
    assert result["messages"] == ["Hello a", "Hello b", "Hello c"]


def test_node_metadata_echo(peer_target: str) -> None:
    result = run_node_client(peer_target, "metadata")
    assert_ok(result)
    assert result["message"] == "Hello metadata"
    assert result["trailers"]["x-echo"] == ["echo-me"]
    assert result["sent"]["x-trace-bin"] == ["AAH+/w=="]  # base64 of 00 01 fe ff
    assert isinstance(result["initial_metadata"], dict)


def test_node_deadline(peer_target: str) -> None:
    assert_ok(run_node_client(peer_target, "deadline", "5000"))
    expired = run_node_client(peer_target, "deadline", "0")
    assert expired["code_name"] == "DEADLINE_EXCEEDED", expired


def test_node_large_and_compressed(peer_target: str) -> None:
    large = run_node_client(peer_target, "large", str(5_000_000))
    assert_ok(large)
    assert large["reply_length"] == 5_000_000 + len("Hello ")
    compressed = run_node_client(peer_target, "compressed", "zip")
    assert_ok(compressed)
    assert compressed["message"] == "Hello zip"


def test_node_client_bad_usage_is_an_assertion(peer_target: str) -> None:
    with pytest.raises(AssertionError, match="exited 2"):
        run_node_client(peer_target, "no-such-scenario")


# ---------------------------------------------------------------- grpcio client -> both servers


def test_grpcio_unary_with_echo_trailers(greeter: GrpcioGreeter) -> None:
    reply, call = greeter.say_hello.with_call(
        HelloRequest(name="Ada"), metadata=(("x-echo", "v1"),), timeout=CALL_TIMEOUT
    )
    assert reply.message == "Hello Ada"
    assert call.code() == grpc.StatusCode.OK
    assert ("x-echo", "v1") in tuple(call.trailing_metadata() or ())


@pytest.mark.parametrize("count", [3, 0])
def test_grpcio_server_stream(greeter: GrpcioGreeter, count: int) -> None:
    call = greeter.lots_of_replies(HelloRequest(name="Ada", count=count), timeout=CALL_TIMEOUT)
    assert [reply.message for reply in call] == [f"Hello Ada #{i}" for i in range(1, count + 1)]
    assert call.code() == grpc.StatusCode.OK


def test_grpcio_client_stream(greeter: GrpcioGreeter) -> None:
    requests = iter([HelloRequest(name=n) for n in ("a", "b", "c")])
    reply = greeter.lots_of_greetings(requests, timeout=CALL_TIMEOUT)
    assert reply.message == "Hello a, b, c"


def test_grpcio_bidi_ping_pong(greeter: GrpcioGreeter) -> None:
    outbox: queue.Queue[HelloRequest | None] = queue.Queue()

    def requests() -> Iterator[HelloRequest]:
        while (request := outbox.get(timeout=CALL_TIMEOUT)) is not None:
            yield request

    call = greeter.bidi_hello(requests(), timeout=CALL_TIMEOUT)
    replies = []
    for name in ("a", "b", "c"):
        outbox.put(HelloRequest(name=name))
        replies.append(next(call).message)  # the reply arrives before the next request is sent
    outbox.put(None)
    assert list(call) == []
    assert replies == ["Hello a", "Hello b", "Hello c"]
    assert call.code() == grpc.StatusCode.OK


def test_grpcio_large_gzip(greeter: GrpcioGreeter) -> None:
    reply = greeter.say_hello(
        HelloRequest(name="x" * 5_000_000), compression=grpc.Compression.Gzip, timeout=CALL_TIMEOUT
    )
    assert len(reply.message) == 5_000_000 + len("Hello ")


# ------------------------------------------------------------------------- subprocess helpers


def python_process(script: str, cwd: Path) -> ServerProcess:
    """A ServerProcess running a small Python script (a stand-in server)."""
    return ServerProcess([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd)


def test_serving_line_pattern() -> None:
    line = "greeter: serving greet.Greeter, grpc.health.v1.Health on 127.0.0.1:50051"
    match = GREETER_SERVING_LINE.search(line)
    assert match is not None
    assert match.groups() == ("127.0.0.1", "50051")


def test_spawn_greeter_server_with_stand_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake `greeter` package in a fake repo root: checks argv, cwd, the log-line wait, SIGTERM.
    package = tmp_path / "greeter"
    package.mkdir()
    (package / "__main__.py").write_text(
        textwrap.dedent(
            """
            import signal, socket, sys
            listener = socket.create_server(("127.0.0.1", 0))
            port = listener.getsockname()[1]
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            print("argv", sys.argv[1:])
            print(f"greeter: serving greet.Greeter on 127.0.0.1:{port}", file=sys.stderr)
            signal.pause()
            """
        )
    )
    monkeypatch.setattr(peers, "REPO_ROOT", tmp_path)
    with spawn_greeter_server("--extra", "1") as server:
        host, port = server.target.split(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
        assert server.lines()[0] == (
            "argv ['serve', '--host', '127.0.0.1', '--port', '0', '--extra', '1']"
        )
    assert server.proc.returncode == 0


def test_wait_for_line_reports_early_exit(tmp_path: Path) -> None:
    process = python_process("print('boom'); raise SystemExit(3)", tmp_path)
    with pytest.raises(AssertionError, match=r"exited[\s\S]*boom"):
        process.wait_for_line("never", timeout=10)
    assert process.stop(timeout=5) == 3


def test_wait_for_line_times_out(tmp_path: Path) -> None:
    process = python_process("import signal; print('up', flush=True); signal.pause()", tmp_path)
    try:
        with pytest.raises(AssertionError, match="printed nothing matching"):
            process.wait_for_line("never", timeout=0.3)
    finally:
        assert process.stop(timeout=5) == -signal.SIGTERM


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    process = python_process(
        """
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        signal.pause()
        """,
        tmp_path,
    )
    process.wait_for_line("ready", timeout=10)
    with pytest.raises(AssertionError, match="did not exit"):
        process.stop(timeout=0.5)
    assert process.proc.returncode == -signal.SIGKILL


def test_missing_node_modules_fails_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "NODE_DIR", tmp_path)
    with pytest.raises(pytest.fail.Exception, match=NODE_INSTALL_HINT):
        peers.require_node_peers()
