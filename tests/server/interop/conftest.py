"""Fixtures of the loopback interop tests: greeter as a subprocess and greeter in-process.

- `greeter_process`: `python -m greeter serve --port 0` (the CLI path), one for the session; on
  teardown it must exit 0 on SIGTERM and must never have logged a traceback.
- `inproc`: greeter's `Server` with Greeter, Health and the test-only `test.Probe` service
  (tests/interop/probe.py) running in the test's own event loop. Tests using it are async and
  call blocking clients through `asyncio.to_thread`, so the loop keeps serving meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.interop.probe import InProcess, in_process_server
from tests.peers import ServerProcess, spawn_greeter_server


@pytest.fixture(scope="session")
def greeter_process() -> Iterator[ServerProcess]:
    """greeter's CLI server, shared by every test that only needs Greeter and Health."""
    with spawn_greeter_server() as process:
        yield process
    output = process.lines()
    assert process.proc.returncode == 0, "\n".join(output)
    assert not [line for line in output if "Traceback" in line], "\n".join(output)


@pytest.fixture
def greeter_target(greeter_process: ServerProcess) -> str:
    """The CLI server's target, "127.0.0.1:PORT"."""
    return greeter_process.target


@pytest_asyncio.fixture
async def inproc() -> AsyncIterator[InProcess]:
    """greeter's Server with Greeter, Health and test.Probe in this test's event loop."""
    async with in_process_server() as running:
        yield running
