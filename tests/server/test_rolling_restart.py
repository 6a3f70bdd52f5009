"""A rolling restart behind nginx loses no call (issue 12 item 6a).

Three `greeter serve --grace 5` processes behind nginx's `grpc_pass` with upstream keepalive, in
the configuration docs/deploy.md shows (read from it); one client channel to nginx keeps calls
of the four kinds going while each instance in turn is stopped with SIGTERM and started again
on its port. No call may fail, and every instance must serve calls both before and after its
restart. nginx never replays a gRPC request it has sent upstream (only a connect that failed is
tried on the next server), so this holds only if a stopping server serves every request that
reached it: GOAWAY first, the calls in flight finish, and the connections the listener had
already accepted are served too (greeter.server.backlog).

The test adds to the guide's block only what observes it: nginx names the instance that served
each call in an `x-upstream` response header, which the client reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gen.greet import GreeterStub, HelloRequest
from greeter.client import Channel, capture_calls
from tests.support.nginx import documented_config, running_nginx
from tests.support.peers import ServerProcess, greeter_serve, served_cleanly, wait_serving

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]

RUNNER = "tests/server/test_rolling_restart.py"
CALLERS_PER_KIND = 2
SERVED = 20
"""Calls each process (the first three and each restarted one) serves before the test goes on."""
CALL_TIMEOUT = 10.0
START = 30.0
"""Seconds for a process to start, or for it to serve SERVED calls (bounds, not expectations)."""


def http_config(tmp_path: Path, instances: list[int]) -> Callable[[int], str]:
    """nginx's http context: the guide's block plus what the test needs around it."""

    def config(port: int) -> str:
        temp = "\n".join(
            f"  {kind}_temp_path {tmp_path}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return (
            f"http {{\n{temp}\n  access_log off;\n"
            "  add_header x-upstream $upstream_addr always;\n"
            f"{documented_config(RUNNER, instances, port)}}}"
        )

    return config


@dataclass
class Instance:
    """One port of the three and the greeter process serving on it now."""

    port: int
    process: ServerProcess
    generation: int = 0
    """How often it was restarted: calls are counted per (port, generation)."""
    stopped: list[ServerProcess] = field(default_factory=list)


async def start(port: int) -> ServerProcess:
    process = greeter_serve("--port", str(port), "--grace", "5")
    await asyncio.to_thread(wait_serving, process, START)
    return process


class Load:
    """Callers of the four kinds on one channel, counting which process served each call."""

    def __init__(self, stub: GreeterStub, instances: dict[int, Instance]) -> None:
        self.stub = stub
        self.instances = instances
        self.served: Counter[tuple[int, int]] = Counter()
        self.failures: list[str] = []
        self.calls = 0
        self.running = True
        self._progress = asyncio.Event()

    async def caller(self, kind: str) -> None:
        call = KINDS[kind]
        while self.running:
            with capture_calls() as calls:
                try:
                    await call(self.stub)
                except Exception as exc:  # every failure is kept: the assertion lists them
                    self.failures.append(f"{kind}: {exc!r}")
                    continue
            self.calls += 1
            # $upstream_addr lists every server nginx tried: the last one answered.
            upstream = calls[-1].initial_metadata.get("x-upstream", "?:0")  # type: ignore[union-attr]
            port = int(upstream.split(",")[-1].rsplit(":", 1)[1])
            self.served[(port, self.instances[port].generation)] += 1
            self._progress.set()

    async def until_served(self, instance: Instance) -> None:
        """Until the instance's current process has served SERVED calls."""
        key = (instance.port, instance.generation)
        async with asyncio.timeout(START):
            while self.served[key] < SERVED:
                self._progress.clear()
                await self._progress.wait()


async def unary(stub: GreeterStub) -> None:
    reply = await stub.say_hello(HelloRequest(name="u"), timeout=CALL_TIMEOUT)
    assert reply.message == "Hello u", reply


async def server_stream(stub: GreeterStub) -> None:
    replies = stub.lots_of_replies(HelloRequest(name="s", count=3), timeout=CALL_TIMEOUT)
    assert [r.message async for r in replies] == [f"Hello s #{i}" for i in (1, 2, 3)]


async def names(*items: str) -> AsyncIterator[HelloRequest]:
    for name in items:
        yield HelloRequest(name=name)


async def client_stream(stub: GreeterStub) -> None:
    reply = await stub.lots_of_greetings(names("a", "b", "c"), timeout=CALL_TIMEOUT)
    assert reply.message == "Hello a, b, c", reply


async def bidi(stub: GreeterStub) -> None:
    replies = stub.bidi_hello(names("p", "q"), timeout=CALL_TIMEOUT)
    assert [r.message async for r in replies] == ["Hello p", "Hello q"]


KINDS: dict[str, Callable[[GreeterStub], Awaitable[None]]] = {
    "unary": unary,
    "server_stream": server_stream,
    "client_stream": client_stream,
    "bidi_stream": bidi,
}


@contextlib.contextmanager
def stopped_at_exit(instances: dict[int, Instance]) -> Iterator[None]:
    try:
        yield
    finally:
        for instance in instances.values():
            with contextlib.suppress(AssertionError):
                instance.process.stop(10)


async def test_rolling_restart_behind_nginx_loses_no_call(tmp_path: Path) -> None:
    instances: dict[int, Instance] = {}
    with stopped_at_exit(instances):
        for _ in range(3):
            process = await start(0)
            port = int(process.target.rsplit(":", 1)[1])
            instances[port] = Instance(port, process)
        config = http_config(tmp_path, list(instances))
        with running_nginx(tmp_path, config) as nginx_port:
            async with Channel(f"127.0.0.1:{nginx_port}") as channel:
                load = Load(GreeterStub(channel), instances)
                began = time.monotonic()
                callers = [
                    asyncio.create_task(load.caller(kind))
                    for kind in KINDS
                    for _ in range(CALLERS_PER_KIND)
                ]
                try:
                    for instance in instances.values():
                        await load.until_served(instance)
                    for instance in instances.values():
                        old = instance.process
                        assert await asyncio.to_thread(old.stop, 15) == 0
                        served_cleanly(old)
                        instance.stopped.append(old)
                        instance.generation += 1  # whatever answers on the port now is new
                        instance.process = await start(instance.port)
                        await load.until_served(instance)
                finally:
                    load.running = False
                    await asyncio.gather(*callers)
                elapsed = time.monotonic() - began
    per_process = {f"{port}#{gen}": n for (port, gen), n in sorted(load.served.items())}
    print(
        f"\nrolling restart: {load.calls} calls ({len(load.failures)} failed) in {elapsed:.1f} s;"
        f" per process (port#restarts): {per_process}"
    )
    nginx_errors = [
        line for line in (tmp_path / "error.log").read_text().splitlines() if "[error]" in line
    ]
    assert not load.failures, (load.failures[:20], nginx_errors[:20])
    for instance in instances.values():
        for generation in (0, 1):
            assert load.served[(instance.port, generation)] >= SERVED, per_process
