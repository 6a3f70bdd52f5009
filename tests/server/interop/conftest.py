"""The `inproc` fixture: greeter's Server with Greeter, Health and `test.Probe` in the test's loop.

The `test.Probe` service and the server are tests.support.inprocess. Tests using `inproc` are
async and call blocking clients through `asyncio.to_thread`, so the loop keeps serving meanwhile.
The session's CLI server (`greeter_process`, `greeter_target`) comes from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.support.inprocess import InProcess, in_process_server


@pytest_asyncio.fixture
async def inproc() -> AsyncIterator[InProcess]:
    """greeter's Server with Greeter, Health and test.Probe in this test's event loop."""
    async with in_process_server() as running:
        yield running
