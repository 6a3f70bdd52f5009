"""Unix domain sockets: `greeter serve --uds PATH`, `hello --target unix:PATH`,
grpcio's unix: targets, and Server(uds=...) with grpclib's Channel(path=...).

Socket files live in pytest temporary directories (short paths: sun_path holds ~107 bytes).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel

from gen.greet import GreeterStub
from greeter.server import Server, ServerConfig
from greeter.services.greeter import Greeter
from tests.support.peers import ServerProcess, assert_one_line_failure, grpcio_channel, run_greeter
from tests.support.transports import (
    greeter_serve,
    grpcio_calls_all_four,
    grpclib_calls_all_four,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def uds_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`greeter serve --uds PATH --trace` (the trace exercises peer formatting without an
    address); its `target` is "unix:PATH"."""
    path = tmp_path_factory.mktemp("uds") / "greeter.sock"
    serving = r"serving .* on (unix:\S+)$"
    with greeter_serve("--uds", str(path), "--trace", serving=serving) as process:
        process.target = process.wait_for_line(serving, 1).group(1)
        assert process.target == f"unix:{path}"
        yield process


def test_cli_hello_over_a_unix_socket(uds_process: ServerProcess) -> None:
    done = run_greeter("hello", "Unix", "--target", uds_process.target)
    assert (done.returncode, done.stdout) == (0, "Hello Unix\n"), done
    path = uds_process.target.removeprefix("unix:")
    done = run_greeter("hello", "Absolute", "--target", f"unix://{path}")
    assert (done.returncode, done.stdout) == (0, "Hello Absolute\n"), done


def test_grpcio_calls_all_four_rpcs_over_a_unix_socket(uds_process: ServerProcess) -> None:
    with grpcio_channel(uds_process.target, ready_timeout=10) as greeter:
        grpcio_calls_all_four(greeter)
    # The server traced these connections: its unnamed client peers did not break the tap.
    uds_process.wait_for_line(r"conn +close", 10)


def test_cli_hello_to_a_missing_socket_fails_with_one_line(tmp_path: Path) -> None:
    done = run_greeter("hello", "x", "--target", f"unix:{tmp_path / 'nobody.sock'}")
    line = assert_one_line_failure(done)
    assert "No such file" in line, line


def test_cli_serve_rejects_uds_with_host_or_port(tmp_path: Path) -> None:
    done = run_greeter("serve", "--uds", str(tmp_path / "s.sock"), "--port", "0")
    assert done.returncode == 2, done
    assert "--uds replaces --host and --port" in done.stderr


def _config() -> ServerConfig:
    return ServerConfig(grace_period=0.5)


@pytest.mark.asyncio
async def test_in_process_server_with_grpclib_channel(tmp_path: Path) -> None:
    path = str(tmp_path / "inproc.sock")
    async with Server([Greeter()], uds=path, config=_config()) as server:
        assert server.address == path
        with pytest.raises(RuntimeError, match="Unix socket"):
            _ = server.port
        channel = Channel(path=path)
        try:
            await grpclib_calls_all_four(GreeterStub(channel))
        finally:
            channel.close()


@pytest.mark.asyncio
async def test_in_process_server_peer_on_a_unix_socket(tmp_path: Path) -> None:
    """The tap hears of each connection with whatever peer name the socket has ("")."""
    seen: list[tuple[int, Any]] = []

    class Observer:
        def observe(self, direction: str, data: bytes) -> None:
            pass

        def close(self, reason: str) -> None:
            pass

    def tap(connection_id: int, peer: Any) -> Observer:
        seen.append((connection_id, peer))
        return Observer()

    path = str(tmp_path / "tap.sock")
    async with Server([Greeter()], uds=path, config=_config(), tap=tap):
        channel = Channel(path=path)
        try:
            await grpclib_calls_all_four(GreeterStub(channel))
        finally:
            channel.close()
    assert seen == [(1, None)]  # a Unix socket client has no address


@pytest.mark.asyncio
async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)  # closed without unlinking: what a killed server leaves behind
    async with Server([Greeter()], uds=path, config=_config()):
        channel = Channel(path=path)
        try:
            await grpclib_calls_all_four(GreeterStub(channel))
        finally:
            channel.close()


@pytest.mark.asyncio
async def test_a_live_socket_is_not_taken_over(tmp_path: Path) -> None:
    path = str(tmp_path / "live.sock")
    async with Server([Greeter()], uds=path, config=_config()):
        with pytest.raises(OSError, match="in use"):
            await Server([Greeter()], uds=path).start()
        channel = Channel(path=path)  # the first server still owns the path
        try:
            await grpclib_calls_all_four(GreeterStub(channel))
        finally:
            channel.close()


@pytest.mark.asyncio
async def test_a_regular_file_at_the_path_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "precious.txt"
    path.write_text("keep me")
    with pytest.raises(OSError, match="in use"):
        await Server([Greeter()], uds=str(path)).start()
    assert path.read_text() == "keep me"


@pytest.mark.asyncio
async def test_grpcio_against_the_in_process_unix_server(tmp_path: Path) -> None:
    path = str(tmp_path / "grpcio.sock")
    async with Server([Greeter()], uds=path, config=_config()):

        def call() -> None:
            with grpcio_channel(f"unix:{path}", ready_timeout=10) as greeter:
                grpcio_calls_all_four(greeter)

        await asyncio.to_thread(call)
