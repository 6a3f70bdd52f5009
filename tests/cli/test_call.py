"""`greeter call` as a subprocess against greeter's servers and a grpc.aio peer with reflection.

The servers, each started once: `greeter serve` (the session's: Greeter and Health, reflection v1
and v1alpha from grpclib, one file per answer, so dependencies are asked for by name),
`greeter interop-server` (TestService: metadata echo, requested statuses, response intervals),
tests/support/aio_reflection.py (grpc.aio with grpcio-reflection, which serves only v1alpha, so
every lookup there goes through the fallback; rich error details; shapes.proto to describe) and
a grpcio server without reflection. The command runs as a subprocess: importing greeter.cli here
would load grpclib's reflection protos into protobuf's default pool, where grpcio-reflection's,
which other tests import, collide with them.

The invocations do not depend on each other, so one module fixture runs them all, a few at a
time, and each test checks its own result.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.peers import (
    AIO_REFLECTION,
    CLI_TIMEOUT,
    REPO_ROOT,
    ServerProcess,
    assert_one_line_failure,
    grpcio_server,
    run_greeter,
    served_cleanly,
    spawn_aio_server,
    spawn_interop_server,
)

pytestmark = pytest.mark.timeout(60)

GREETER, INTEROP, AIO, PLAIN = "greeter", "interop", "aio", "plain"
"""greeter serve, greeter interop-server, grpc.aio with grpcio-reflection, grpcio without."""
GREETERS = (GREETER, AIO)
TEST_SERVERS = (INTEROP, AIO)
PARALLEL = 4

REFLECTION_V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
REFLECTION_V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
ECHO = ("-H", "x-grpc-test-echo-initial: hi there", "-H", "x-grpc-test-echo-trailing-bin: AAEC")
SLOW_STREAM = '{"responseParameters": [{"size": 1}, {"size": 1, "intervalUs": 20000000}]}'
"""One response at once, the next after 20 s: far beyond the --timeout the test gives."""
FAILING_UNARY = '{"responseStatus": {"code": 3, "message": "bad thing"}}'

Case = tuple[str, tuple[str, ...], str | None]
"""(server, the arguments after TARGET, stdin)."""
CASES: dict[str, Case] = {}
for server in GREETERS:
    CASES |= {
        f"unary-{server}": (server, ("greet.Greeter/SayHello", '{"name": "세계"}'), None),
        f"server-stream-{server}": (
            server,
            ("greet.Greeter.LotsOfReplies", '{"name": "a", "count": 3}'),
            None,
        ),
        f"client-stream-{server}": (
            server,
            ("/greet.Greeter/LotsOfGreetings", "-"),
            '{"name": "a"}\n{"name": "세계"} {"name":\n "c"}\n',
        ),
        f"bidi-{server}": (server, ("greet.Greeter/BidiHello", "@-"), '{"name":"a"}{"name":"b"}'),
        f"list-{server}": (server, ("list",), None),
        f"list-service-{server}": (server, ("list", "greet.Greeter"), None),
        f"describe-service-{server}": (server, ("describe", "greet.Greeter"), None),
        f"describe-method-{server}": (server, ("describe", "greet.Greeter.SayHello"), None),
        f"describe-message-{server}": (server, ("describe", "greet.HelloRequest"), None),
    }
for server in TEST_SERVERS:
    CASES |= {
        f"metadata-{server}": (
            server,
            ("grpc.testing.TestService/EmptyCall", *ECHO, "--show-metadata"),
            None,
        ),
        f"timeout-{server}": (
            server,
            ("grpc.testing.TestService/StreamingOutputCall", SLOW_STREAM, "--timeout", "1"),
            None,
        ),
        f"status-{server}": (server, ("grpc.testing.TestService/UnaryCall", FAILING_UNARY), None),
    }
CASES |= {
    "describe-dependencies": (INTEROP, ("describe", "grpc.testing.TestService.UnaryCall"), None),
    "describe-all": (GREETER, ("describe",), None),
    "describe-shapes": (AIO, ("describe", "shapes.Shape"), None),
    "describe-map-field": (AIO, ("describe", "shapes.Shape.labels"), None),
    "describe-enum": (AIO, ("describe", "shapes.Shape.Kind"), None),
    "describe-unknown": (GREETER, ("describe", "greet.Nothing"), None),
    "pretty": (GREETER, ("greet.Greeter/SayHello", '{"name": "p"}', "--pretty"), None),
    "default-request": (GREETER, ("greet.Greeter/SayHello",), None),
    "no-request-stream": (GREETER, ("greet.Greeter/BidiHello", ""), None),
    "trace": (GREETER, ("greet.Greeter/SayHello", '{"name": "세계"}', "--trace"), None),
    "trace-fallback": (AIO, ("list", "--trace", "--trace-layer", "rpc"), None),
    "unknown-method": (GREETER, ("greet.Greeter/Nope", "{}"), None),
    "unknown-service": (GREETER, ("greet.Nope/SayHello",), None),
    "method-form": (GREETER, ("SayHello",), None),
    "not-json": (GREETER, ("greet.Greeter/SayHello", '{"name": "x"'), None),
    "unknown-field": (GREETER, ("greet.Greeter/SayHello", '{"nme": "x"}'), None),
    "wrong-type": (GREETER, ("greet.Greeter/SayHello", '{"count": "many"}'), None),
    "not-an-object": (GREETER, ("greet.Greeter/SayHello", "[1]"), None),
    "two-requests-for-one": (GREETER, ("greet.Greeter/SayHello", "{} {}"), None),
    "bad-json-in-stream": (
        GREETER,
        ("greet.Greeter/LotsOfGreetings", "-"),
        '{"name": "a"}\n{"name": }\n',
    ),
    "no-reflection": (PLAIN, ("list",), None),
    "bad-header": (GREETER, ("greet.Greeter/SayHello", "-H", "no colon"), None),
    "reserved-header": (GREETER, ("greet.Greeter/SayHello", "-H", "grpc-timeout: 1S"), None),
    "bad-binary-header": (GREETER, ("greet.Greeter/SayHello", "-H", "x-a-bin: !!"), None),
    "key-without-cert": (GREETER, ("list", "--tls-key", "key.pem"), None),
}

Results = dict[str, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def interop_target() -> Iterator[str]:
    with spawn_interop_server() as process:
        yield process.target
    served_cleanly(process)


@pytest.fixture(scope="module")
def aio_target() -> Iterator[str]:
    with spawn_aio_server(AIO_REFLECTION) as process:
        yield process.target
    served_cleanly(process)


@pytest.fixture(scope="module")
def targets(
    greeter_process: ServerProcess, interop_target: str, aio_target: str
) -> Iterator[dict[str, str]]:
    with grpcio_server() as plain:
        yield {
            GREETER: greeter_process.target,
            INTEROP: interop_target,
            AIO: aio_target,
            PLAIN: plain,
        }


@pytest.fixture(scope="module")
def results(targets: dict[str, str]) -> Results:
    """Every case of CASES, run once: {name: its finished subprocess}."""

    def run(case: Case) -> subprocess.CompletedProcess[str]:
        server, args, stdin = case
        return run_greeter("call", targets[server], *args, stdin=stdin)

    with ThreadPoolExecutor(PARALLEL) as pool:
        return dict(zip(CASES, pool.map(run, CASES.values()), strict=True))


def succeeded(done: subprocess.CompletedProcess[str]) -> str:
    """The command exited 0 with nothing on stderr; its stdout."""
    assert (done.returncode, done.stderr) == (0, ""), done
    return done.stdout


# -- the four kinds of call ------------------------------------------------------------------


@pytest.mark.parametrize("server", GREETERS)
def test_unary_call_round_trips_unicode(results: Results, server: str) -> None:
    assert succeeded(results[f"unary-{server}"]) == '{"message":"Hello 세계"}\n'


@pytest.mark.parametrize("server", GREETERS)
def test_server_stream_prints_one_line_per_reply(results: Results, server: str) -> None:
    assert succeeded(results[f"server-stream-{server}"]).splitlines() == [
        '{"message":"Hello a #1"}',
        '{"message":"Hello a #2"}',
        '{"message":"Hello a #3"}',
    ]


@pytest.mark.parametrize("server", GREETERS)
def test_client_stream_reads_json_values_from_stdin(results: Results, server: str) -> None:
    """One per line, two on a line, one across lines: three requests."""
    assert succeeded(results[f"client-stream-{server}"]) == '{"message":"Hello a, 세계, c"}\n'


@pytest.mark.parametrize("server", GREETERS)
def test_bidi_from_stdin(results: Results, server: str) -> None:
    assert succeeded(results[f"bidi-{server}"]) == '{"message":"Hello a"}\n{"message":"Hello b"}\n'


def test_bidi_sends_each_request_as_soon_as_it_is_read(targets: dict[str, str]) -> None:
    """The reply to a line arrives while stdin is still open: requests are not read to the end
    first. Each readline is bounded by the test's timeout."""
    argv = [
        sys.executable,
        "-m",
        "greeter",
        "call",
        targets[GREETER],
        "greet.Greeter/BidiHello",
        "-",
    ]
    with subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        for name in ("one", "two"):
            process.stdin.write(f'{{"name": "{name}"}}\n')
            process.stdin.flush()
            assert process.stdout.readline() == f'{{"message":"Hello {name}"}}\n'
        process.stdin.close()
        assert process.wait(CLI_TIMEOUT) == 0
        assert process.stdout.read() == ""


def test_the_default_request_is_an_empty_message(results: Results) -> None:
    assert succeeded(results["default-request"]) == '{"message":"Hello "}\n'


def test_an_empty_json_argument_sends_no_request_on_a_stream(results: Results) -> None:
    assert succeeded(results["no-request-stream"]) == ""


def test_pretty_indents_the_reply(results: Results) -> None:
    assert succeeded(results["pretty"]) == '{\n  "message": "Hello p"\n}\n'


# -- list and describe -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "services"),
    [(GREETER, "grpc.health.v1.Health"), (AIO, "grpc.testing.TestService")],
)
def test_list_services_sorted(results: Results, server: str, services: str) -> None:
    assert succeeded(results[f"list-{server}"]) == f"greet.Greeter\n{services}\n"


@pytest.mark.parametrize("server", GREETERS)
def test_list_a_services_methods(results: Results, server: str) -> None:
    assert succeeded(results[f"list-service-{server}"]).splitlines() == [
        "greet.Greeter.BidiHello",
        "greet.Greeter.LotsOfGreetings",
        "greet.Greeter.LotsOfReplies",
        "greet.Greeter.SayHello",
    ]


GREETER_SERVICE = """\
greet.Greeter is a service:
service Greeter {
  rpc SayHello ( .greet.HelloRequest ) returns ( .greet.HelloReply );
  rpc LotsOfReplies ( .greet.HelloRequest ) returns ( stream .greet.HelloReply );
  rpc LotsOfGreetings ( stream .greet.HelloRequest ) returns ( .greet.HelloReply );
  rpc BidiHello ( stream .greet.HelloRequest ) returns ( stream .greet.HelloReply );
}
"""


@pytest.mark.parametrize("server", GREETERS)
def test_describe_service_method_and_message(results: Results, server: str) -> None:
    assert succeeded(results[f"describe-service-{server}"]) == GREETER_SERVICE
    assert succeeded(results[f"describe-method-{server}"]) == (
        "greet.Greeter.SayHello is a method:\n"
        "rpc SayHello ( .greet.HelloRequest ) returns ( .greet.HelloReply );\n"
    )
    assert succeeded(results[f"describe-message-{server}"]) == (
        "greet.HelloRequest is a message:\n"
        "message HelloRequest {\n"
        "  string name = 1;\n"
        "  uint32 count = 2;\n"
        "}\n"
    )


def test_describe_a_method_whose_file_has_dependencies(results: Results) -> None:
    """grpclib's reflection sends test.proto alone: its imports are asked for by name."""
    assert succeeded(results["describe-dependencies"]) == (
        "grpc.testing.TestService.UnaryCall is a method:\n"
        "rpc UnaryCall ( .grpc.testing.SimpleRequest ) returns ( .grpc.testing.SimpleResponse );\n"
    )


def test_describe_without_a_symbol_describes_every_service(results: Results) -> None:
    text = succeeded(results["describe-all"])
    assert text.startswith(GREETER_SERVICE + "\ngrpc.health.v1.Health is a service:\n"), text


def test_describe_prints_every_shape_of_a_message(results: Results) -> None:
    assert succeeded(results["describe-shapes"]) == (
        "shapes.Shape is a message:\n"
        "message Shape {\n"
        "  .shapes.Shape.Kind kind = 1;\n"
        "  repeated .shapes.Shape.Point points = 2;\n"
        "  map<string, int64> labels = 3;\n"
        "  oneof size {\n"
        "    double radius = 4;\n"
        "    .shapes.Shape.Point corner = 5;\n"
        "  }\n"
        "  optional string name = 6;\n"
        "  .google.protobuf.Timestamp drawn = 7;\n"
        "  enum Kind {\n"
        "    KIND_UNSPECIFIED = 0;\n"
        "    CIRCLE = 1;\n"
        "  }\n"
        "  message Point {\n"
        "    double x = 1;\n"
        "    double y = 2;\n"
        "  }\n"
        "}\n"
    )
    assert succeeded(results["describe-map-field"]) == (
        "shapes.Shape.labels is a field:\nmap<string, int64> labels = 3;\n"
    )
    assert succeeded(results["describe-enum"]) == (
        "shapes.Shape.Kind is an enum:\nenum Kind {\n  KIND_UNSPECIFIED = 0;\n  CIRCLE = 1;\n}\n"
    )


# -- metadata, deadlines, statuses -----------------------------------------------------------


@pytest.mark.parametrize("server", TEST_SERVERS)
def test_headers_reach_the_server_and_show_metadata_prints_its_answer(
    results: Results, server: str
) -> None:
    """TestService echoes one header as initial metadata and one -bin header (base64 on the
    command line, bytes on the wire) as trailing metadata."""
    done = results[f"metadata-{server}"]
    assert (done.returncode, done.stdout) == (0, "{}\n"), done
    assert done.stderr.splitlines() == [
        "Response headers received:",
        "x-grpc-test-echo-initial: hi there",
        "Response trailers received:",
        "x-grpc-test-echo-trailing-bin: AAEC",
    ]


@pytest.mark.parametrize("server", TEST_SERVERS)
def test_timeout_ends_the_call_deadline_exceeded(results: Results, server: str) -> None:
    """The first response is printed; the second would come long after the deadline."""
    done = results[f"timeout-{server}"]
    assert done.returncode == 64 + 4, done
    assert done.stdout == '{"payload":{"body":"AA=="}}\n'
    assert done.stderr == "greeter: DEADLINE_EXCEEDED: Deadline Exceeded\n"


def test_a_failed_call_exits_64_plus_its_code_with_its_message(results: Results) -> None:
    done = results["status-interop"]
    assert done.returncode == 64 + 3
    assert assert_one_line_failure(done) == "greeter: INVALID_ARGUMENT: bad thing"


def test_rich_error_details_are_decoded_through_reflection(results: Results) -> None:
    done = results["status-aio"]
    assert (done.returncode, done.stdout) == (64 + 3, ""), done
    assert done.stderr.splitlines() == [
        "greeter: INVALID_ARGUMENT: bad thing",
        'greeter: detail: {"@type":"type.googleapis.com/grpc.testing.EchoStatus",'
        '"code":3,"message":"bad thing"}',
    ]


# -- tracing ---------------------------------------------------------------------------------


def test_trace_goes_to_stderr_and_decodes_the_messages(results: Results) -> None:
    done = results["trace"]
    assert (done.returncode, done.stdout) == (0, '{"message":"Hello 세계"}\n'), done
    assert f"rpc   start {REFLECTION_V1} " in done.stderr
    assert "rpc   start /greet.Greeter/SayHello " in done.stderr
    assert "greet.HelloRequest #1" in done.stderr
    assert 'name: "세계"' in done.stderr
    assert 'message: "Hello 세계"' in done.stderr


def test_reflection_falls_back_to_v1alpha(results: Results) -> None:
    """grpcio-reflection 1.85 answers v1 UNIMPLEMENTED; the trace shows the second try."""
    done = results["trace-fallback"]
    assert (done.returncode, done.stdout) == (0, "greet.Greeter\ngrpc.testing.TestService\n")
    rpcs = [line.split()[6:9] for line in done.stderr.splitlines() if " rpc " in line]
    assert rpcs == [
        ["start", REFLECTION_V1, "from"],
        ["end", REFLECTION_V1, "UNIMPLEMENTED"],
        ["start", REFLECTION_V1ALPHA, "from"],
        ["end", REFLECTION_V1ALPHA, "OK"],
    ], done.stderr


# -- what cannot be called: one line each, exit 1 (2 for usage) ------------------------------


ONE_LINE_FAILURES = {
    "no-reflection": "greeter: server does not support reflection: UNIMPLEMENTED: "
    "Method not found!",
    "unknown-method": "greeter: service greet.Greeter has no method Nope (it has: SayHello, "
    "LotsOfReplies, LotsOfGreetings, BidiHello)",
    "unknown-service": "greeter: server does not know service greet.Nope",
    "describe-unknown": "greeter: server does not know symbol greet.Nothing",
    "method-form": "greeter: expected SERVICE/METHOD (e.g. greet.Greeter/SayHello), got 'SayHello'",
    "not-json": "greeter: request 1 is not JSON: Expecting ',' delimiter (line 1, column 13 of "
    "the request)",
    "unknown-field": "greeter: request 1 is not a valid greet.HelloRequest: Message type "
    '"greet.HelloRequest" has no field named "nme" at "HelloRequest". Available '
    "Fields(except extensions): \"['name', 'count']\"",
    "wrong-type": "greeter: request 1 is not a valid greet.HelloRequest: Failed to parse count "
    "field: invalid literal for int() with base 10: 'many'.",
    "not-an-object": "greeter: request 1: a greet.HelloRequest is a JSON object, not [1]",
    "two-requests-for-one": "greeter: greet.Greeter.SayHello takes one request message, the "
    "JSON has 2",
    "bad-json-in-stream": "greeter: request 2 is not JSON: Expecting value (line 1, column 10 "
    "of the request)",
}


@pytest.mark.parametrize("case", list(ONE_LINE_FAILURES))
def test_what_cannot_be_called_fails_in_one_line(results: Results, case: str) -> None:
    done = results[case]
    assert done.returncode == 1, done
    assert assert_one_line_failure(done) == ONE_LINE_FAILURES[case]


def test_an_unreachable_server_fails_in_one_line(refused_port: int) -> None:
    done = run_greeter("call", f"127.0.0.1:{refused_port}", "list")
    assert done.returncode == 1
    assert assert_one_line_failure(done).startswith("greeter: UNAVAILABLE: cannot connect to ")


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("bad-header", "argument -H/--header: expected KEY:VALUE, got 'no colon'"),
        ("reserved-header", "argument -H/--header: grpc-timeout is set by gRPC itself"),
        ("bad-binary-header", "argument -H/--header: metadata 'x-a-bin': malformed base64"),
        ("key-without-cert", "call: --tls-key needs --tls-cert"),
    ],
)
def test_bad_usage_exits_2(results: Results, case: str, error: str) -> None:
    done = results[case]
    assert (done.returncode, done.stdout) == (2, ""), done
    assert done.stderr.startswith("usage: greeter"), done.stderr
    assert f"error: {error}" in done.stderr
