"""The `abuse` fixture: a server subprocess per attack, the shared checks, and a memory table.

The machinery (AbuseRun, the /proc readers, the polite client) is tests.support.abuse; the raw
connection is tests.support.attacker.Attacker.

Every attack's memory numbers (VmRSS and VmHWM of the server before and after it) are collected
and printed as a table at the end of the run ("abuse suite: server memory per attack"), each row
with the attack's memory bound (tests.support.abuse.MemoryBound) or why it has none.
docs/security.md ("Memory bounds of the abuse suite") tabulates each bound next to the growth
measured with the defence switched off: every bound is one the missing defence breaks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from tests.support.abuse import AbuseFactory, AbuseRun, AttackRecord, Memory, abuse_server
from tests.support.peers import spawn_greeter_server

RECORDS: list[AttackRecord] = []


@pytest.fixture
def abuse(request: pytest.FixtureRequest) -> Iterator[AbuseFactory]:
    """`with abuse(memory=..., limits={...}, timeouts={...}, max_connections=N) as run:` — see
    AbuseRun; `memory` (required) is the attack's MemoryBound, or NotAMemoryAttack.

    With `cli=[...]` the server is `python -m greeter serve` with those options instead.

    The body attacks inside `with run.attack():` and asserts the defence fired; leaving the block
    cleanly runs the shared checks (polite client served after, memory bounded, no traceback).
    """
    with ExitStack() as stack:

        @contextmanager
        def start(
            *, memory: Memory, cli: Sequence[str] | None = None, **config: Any
        ) -> Iterator[AbuseRun]:
            if cli is None:
                server = stack.enter_context(abuse_server(**config))
            else:  # the real command line: `python -m greeter serve --port 0 CLI...`
                server = stack.enter_context(spawn_greeter_server(*cli))
            record = AttackRecord(request.node.name.removeprefix("test_"), memory)
            run = AbuseRun(server, record)
            stack.callback(run.close)
            try:
                yield run
                run.finish()
                record.outcome = record.outcome or "ok"
            except BaseException as exc:
                record.outcome = f"{record.outcome} [FAILED: {type(exc).__name__}]".lstrip()
                raise
            finally:
                RECORDS.append(record)

        yield start


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECORDS:
        return
    terminalreporter.section(
        "abuse suite: server memory per attack (VmHWM growth, each attack's bound)"
    )
    for record in RECORDS:
        terminalreporter.write_line(record.row())
