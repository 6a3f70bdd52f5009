"""The ``wire_log`` pytest fixture: a fresh WireLog per test, in every project with greeter.

greeter registers this module as a pytest plugin (entry point ``pytest11``), so the fixture needs
no conftest import::

    async def test_say_hello(wire_log: WireLog) -> None:
        async with Server([Greeter()], port=0, tap=wire_log.tap(types="gen.greet")) as server:
            ...  # call it
        assert wire_log.trailers(1)["grpc-status"] == "0"
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from greeter.tap.wirelog import WireLog

__all__ = ["wire_log"]


@pytest.fixture
def wire_log() -> Iterator[WireLog]:
    """A fresh :class:`WireLog`; attach it with ``Server(..., tap=wire_log.tap())``."""
    log = WireLog()
    yield log
    log.clear()
