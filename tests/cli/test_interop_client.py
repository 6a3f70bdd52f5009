"""`greeter interop-client` as a subprocess against greeter's interop server and grpc.aio's.

Every case of greeter.cli.interop_client runs as its own `python -m greeter interop-client
--test_case=CASE` against two TestService servers, each started once for the module: `greeter
interop-server` and grpc.aio's TestService (tests/support/aio_testservice.py, the reference that
shows the client, not only greeter, is right). The case subprocesses of one server run a few at
a time; each case is then checked by its own test.

Expected failures, asserted exactly rather than skipped: against grpc.aio the two
client_compressed_* cases fail their feature probe, because grpc.aio cannot see whether a request
message arrived compressed and so never answers the probe INVALID_ARGUMENT (see
tests/support/aio_testservice.py); the description makes that probe a failure of the case.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.peers import (
    INTEROP_CASES as CASES,
)
from tests.support.peers import (
    ServerProcess,
    assert_one_line_failure,
    run_greeter,
    served_cleanly,
    spawn_aio_server,
    spawn_interop_server,
)

pytestmark = pytest.mark.timeout(60)

GREETER = "greeter"
AIO = "grpc.aio"
PARALLEL_CASES = 4
"""Case subprocesses run at once against one server."""

PROBE_ANSWERED_OK = "the feature probe (uncompressed, expect_compressed=true): expected " + (
    "INVALID_ARGUMENT, got OK"
)
EXPECTED_FAILURES = {
    (AIO, "client_compressed_unary"): f"FAIL client_compressed_unary: {PROBE_ANSWERED_OK}",
    (AIO, "client_compressed_streaming"): f"FAIL client_compressed_streaming: {PROBE_ANSWERED_OK}",
}
"""The one stderr line of a case that fails against a server for a known reason (docstring)."""

Results = dict[str, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def greeter_interop() -> Iterator[ServerProcess]:
    with spawn_interop_server() as process:
        yield process
    served_cleanly(process)


@pytest.fixture(scope="module")
def aio_interop() -> Iterator[ServerProcess]:
    with spawn_aio_server() as process:
        yield process
    served_cleanly(process)


def interop_client(process: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    host, port = process.target.rsplit(":", 1)
    return run_greeter("interop-client", f"--server_host={host}", f"--server_port={port}", *args)


@pytest.fixture(scope="module", params=[GREETER, AIO])
def case_results(request: pytest.FixtureRequest) -> tuple[str, Results]:
    """(server, {case: its finished subprocess}): every case once against the server."""
    process: ServerProcess = request.getfixturevalue(
        "greeter_interop" if request.param == GREETER else "aio_interop"
    )
    with ThreadPoolExecutor(PARALLEL_CASES) as pool:
        done = pool.map(
            lambda case: interop_client(process, f"--test_case={case}", "--use_tls=false"), CASES
        )
        return request.param, dict(zip(CASES, done, strict=True))


@pytest.mark.parametrize("case", list(CASES))
def test_case(case_results: tuple[str, Results], case: str) -> None:
    server, results = case_results
    done = results[case]
    expected = EXPECTED_FAILURES.get((server, case))
    if expected is None:
        assert (done.returncode, done.stdout, done.stderr) == (0, f"PASS {case}\n", ""), done
    else:
        assert done.returncode == 1, done
        assert assert_one_line_failure(done) == expected


def test_all_cases_in_one_run(greeter_interop: ServerProcess) -> None:
    """`--test_case all` on one channel; `--flag value` spelling and an :authority override."""
    host, port = greeter_interop.target.rsplit(":", 1)
    done = run_greeter(
        "interop-client",
        "--server_host",
        host,
        "--server_port",
        port,
        "--test_case",
        "all",
        "--server_host_override",
        "interop.test.example",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"PASS {case}" for case in CASES]
    assert done.stderr == ""


def test_a_failing_case_exits_1_with_one_fail_line(greeter_target: str) -> None:
    """greet.Greeter's server has no TestService: EmptyCall is UNIMPLEMENTED."""
    host, port = greeter_target.rsplit(":", 1)
    done = run_greeter(
        "interop-client",
        f"--server_host={host}",
        f"--server_port={port}",
        "--test_case=empty_unary",
    )
    assert done.returncode == 1
    line = assert_one_line_failure(done)
    assert line.startswith("FAIL empty_unary: EmptyCall failed: UNIMPLEMENTED"), line


def test_an_unreachable_server_fails_one_line(refused_port: int) -> None:
    done = run_greeter(
        "interop-client",
        "--server_host=127.0.0.1",
        f"--server_port={refused_port}",
        "--test_case=large_unary",
    )
    assert done.returncode == 1
    line = assert_one_line_failure(done)
    assert line.startswith("FAIL large_unary: UnaryCall failed: UNAVAILABLE"), line


def test_an_unknown_test_case_is_a_usage_error_naming_the_cases() -> None:
    done = run_greeter("interop-client", "--server_port=1", "--test_case=no_such_case")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "usage: greeter interop-client" in done.stderr
    assert "invalid choice: 'no_such_case'" in done.stderr
    for name in [*CASES, "all"]:
        assert f"'{name}'" in done.stderr
