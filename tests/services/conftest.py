"""The TestService servers the interop tests run against (tests/services/test_grpc_testing*.py).

`interop_process` is module-scoped and parametrised: `python -m greeter interop-server` (GREETER)
and grpc.aio's TestService in tests/support/aio_testservice.py (AIO), both as subprocesses; the
grpc.aio run shows the test client itself is right. A test that only greeter's server can pass
parametrises it indirectly with [GREETER].
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.peers import ServerProcess, spawn_aio_server, spawn_interop_server

GREETER = "greeter"
AIO = "grpc.aio"


@pytest.fixture(scope="module", params=[GREETER, AIO])
def interop_process(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """The TestService server under test: greeter's interop-server or grpc.aio's."""
    spawn = spawn_interop_server if request.param == GREETER else spawn_aio_server
    with spawn() as process:
        yield process
    output = process.lines()
    assert process.proc.returncode == 0, "\n".join(output)
    assert not [line for line in output if "Traceback" in line], "\n".join(output)
