"""gRPC's interop test cases (doc/interop-test-descriptions.md) with grpc-js as the client.

interop/node/interop_client.js runs each case with @grpc/grpc-js against the TestService
servers of tests/services/conftest.py: greeter's `interop-server` and, to show the Node client
itself is right, grpc.aio's. tests/services/test_grpc_testing.py runs the same cases with
grpcio as the client. The client prints `PASS <case>` per case passed and `FAIL <case>: ...`
otherwise, and exits 0 only when every case it ran passed.

Expected failures, asserted exactly rather than skipped: grpc.aio's TestService cannot reject an
uncompressed message sent with `expect_compressed` (C-core hides the flag from it), so against
it the client_compressed_* cases fail their feature probe, as the description says they must.
grpc-js does not expose a received message's compressed flag, so the server_compressed_* cases
check the calls and their payloads, not the flag (the descriptions make that check "if
supported"); the grpcio and raw-client tests check it.
"""

from __future__ import annotations

import pytest

from tests.services.conftest import AIO, GREETER
from tests.support.peers import INTEROP_CASES as CASES
from tests.support.peers import ServerProcess, run_node_interop_client

pytestmark = pytest.mark.timeout(90)

PROBE_ANSWERED_OK = (
    'the feature probe (uncompressed, expect_compressed=true): status OK (""), expected'
    " INVALID_ARGUMENT"
)
EXPECTED_FAILURES = {
    (AIO, "client_compressed_unary"): f"FAIL client_compressed_unary: {PROBE_ANSWERED_OK}",
    (AIO, "client_compressed_streaming"): f"FAIL client_compressed_streaming: {PROBE_ANSWERED_OK}",
}
"""The one stderr line of a case that fails against a server for a known reason (docstring)."""
RUNS = [
    pytest.param(server, case, id=f"{server}-{case}") for server in (GREETER, AIO) for case in CASES
]


@pytest.mark.parametrize(("interop_process", "case"), RUNS, indirect=["interop_process"])
def test_grpc_js_client_runs_the_interop_case(
    interop_process: ServerProcess, case: str, request: pytest.FixtureRequest
) -> None:
    server = request.node.callspec.params["interop_process"]
    done = run_node_interop_client(interop_process.target, case)
    failure = EXPECTED_FAILURES.get((server, case))
    if failure is None:
        assert (done.returncode, done.stdout, done.stderr) == (0, f"PASS {case}\n", "")
    else:
        assert (done.returncode, done.stdout, done.stderr) == (1, "", failure + "\n")


@pytest.mark.parametrize("interop_process", [GREETER], indirect=True)
def test_all_runs_every_case(interop_process: ServerProcess) -> None:
    done = run_node_interop_client(interop_process.target, "all")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [f"PASS {case}" for case in CASES]


def test_the_client_fails_a_server_without_test_service(greeter_target: str) -> None:
    """Against greeter's own server (Greeter and Health, no TestService) the cases fail, one line
    each: the Node client can fail. Those expecting UNIMPLEMENTED pass, and so may the two that
    end on the client's side before the server's answer counts (a cancel before anything was
    sent, a 1 ms deadline)."""
    done = run_node_interop_client(greeter_target, "all")
    assert done.returncode == 1
    passed = [line.removeprefix("PASS ") for line in done.stdout.splitlines()]
    failed = [line.split(":")[0].removeprefix("FAIL ") for line in done.stderr.splitlines()]
    assert sorted(passed + failed) == sorted(CASES)
    unimplemented = {"unimplemented_method", "unimplemented_service"}
    client_side = {"cancel_after_begin", "timeout_on_sleeping_server"}
    assert unimplemented <= set(passed) <= unimplemented | client_side, passed
    first = done.stderr.splitlines()[0]
    assert first.startswith("FAIL empty_unary: EmptyCall failed: UNIMPLEMENTED: "), first
