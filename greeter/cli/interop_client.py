"""`greeter interop-client`: gRPC's interop test cases, run by greeter's own client.

The command takes the flags of gRPC's official interop clients (doc/interop-test-descriptions.md,
"Client"): `--server_host`, `--server_port`, `--test_case`, `--use_tls`, `--server_host_override`
and `--use_test_ca`, as `--flag=value` or `--flag value`. It runs the named case (or, with
`--test_case=all`, every case in turn on one channel) with `greeter.client.Channel` and the
generated grpc.testing stubs, and asserts what the description says the client asserts.

Each passing case prints `PASS <case>` on stdout; a failing one prints one line
`FAIL <case>: <what differed>` on stderr, never a traceback. The exit status is 0 when every case
passed, 1 otherwise.

The cases are those a plaintext client can run without credentials: empty_unary, large_unary,
client_compressed_unary, server_compressed_unary, client_streaming, client_compressed_streaming,
server_streaming, server_compressed_streaming, ping_pong, empty_stream, custom_metadata,
status_code_and_message, special_status_message, unimplemented_method, unimplemented_service,
cancel_after_begin, cancel_after_first_response and timeout_on_sleeping_server. Notes:

- client_compressed_*: the feature probe (an uncompressed message with `expect_compressed` true)
  must fail INVALID_ARGUMENT, as the description asserts; the compressed calls then use
  `call_options(compression="gzip")`, and client_compressed_streaming sends its second message,
  with `expect_compressed` false, uncompressed (`ClientCall.send_message(compress=False)`);
- server_compressed_*: each response's compressed flag is read from
  `ClientCall.last_message_compressed`;
- cancel_*: the call is cancelled with `ClientCall.cancel()` (RST_STREAM(CANCEL)) and must end
  CANCELLED.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
)
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from greeter.cli.limits import checked
from greeter.client import Channel, ClientCall, call_options, capture_calls
from greeter.server.tls import client_context
from greeter.services.interop import (
    ECHO_INITIAL,
    ECHO_TRAILING,
    BoolValue,
    EchoStatus,
    Empty,
    Payload,
    PayloadType,
    ResponseParameters,
    SimpleRequest,
    StreamingInputCallRequest,
    StreamingInputCallResponse,
    StreamingOutputCallRequest,
    StreamingOutputCallResponse,
    TestServiceStub,
    UnimplementedServiceStub,
)
from greeter.wire.ranges import PEER_PORT

log = logging.getLogger("greeter.interop")

T = TypeVar("T")

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 10000
"""gRPC's interop port (and `greeter interop-server`'s default)."""
CALL_TIMEOUT = 10.0
"""Seconds each RPC of a case gets (timeout_on_sleeping_server sets its own 1 ms)."""
CASE_TIMEOUT = 60.0
"""Seconds a whole case gets before it fails."""

ECHO_INITIAL_VALUE = "test_initial_metadata_value"
ECHO_TRAILING_VALUE = b"\xab\xab\xab"
STATUS_MESSAGE = "test status message"
SPECIAL_STATUS_MESSAGE = (
    "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
)


class CaseFailed(Exception):
    """What a case asserts did not hold; the message says what differed (one line)."""


STREAMING_INPUT_CALL = "/grpc.testing.TestService/StreamingInputCall"


@dataclass(frozen=True)
class Stubs:
    """The stubs every case calls, on one channel."""

    test: TestServiceStub
    unimplemented: UnimplementedServiceStub


# -- assertions ----------------------------------------------------------------------------------


def expect(condition: bool, what: str) -> None:
    """Fail the case with `what` unless `condition` holds."""
    if not condition:
        raise CaseFailed(what)


async def succeeds(rpc: str, call: Awaitable[T]) -> T:
    """Await `call`, which must succeed; its failure fails the case naming `rpc`."""
    try:
        return await call
    except GRPCError as exc:
        raise CaseFailed(f"{rpc} failed: {exc.status.name}: {exc.message!r}") from None


async def fails_with(status: Status, rpc: str, call: Awaitable[object]) -> GRPCError:
    """Await `call`, which must fail with `status`; return the error."""
    try:
        await call
    except GRPCError as exc:
        expect(
            exc.status == status,
            f"{rpc}: expected {status.name}, got {exc.status.name}: {exc.message!r}",
        )
        return exc
    raise CaseFailed(f"{rpc}: expected {status.name}, got OK")


def expect_zeros(payload: Payload | None, size: int, what: str) -> None:
    """`payload` is `size` zero bytes."""
    body = payload.body if payload is not None else b""
    expect(len(body) == size, f"{what}: payload body of {len(body)} bytes, expected {size}")
    expect(body == bytes(size), f"{what}: payload body is not all zeros")


def expect_status(call: ClientCall[Any, Any], status: Status, rpc: str) -> None:
    """The call (from capture_calls) ended with `status`."""
    ended = call.status
    expect(
        ended == status,
        f"{rpc}: the call ended {getattr(ended, 'name', ended)}, expected {status.name}",
    )


def only_call(calls: list[ClientCall[Any, Any]], rpc: str) -> ClientCall[Any, Any]:
    expect(len(calls) == 1, f"{rpc}: {len(calls)} calls were made, expected 1")
    return calls[0]


async def collect(responses: AsyncIterable[T]) -> list[T]:
    return [response async for response in responses]


async def next_response(responses: AsyncIterator[T], rpc: str, index: int) -> T:
    """The next response of a stream, which must come (response `index`, from 1)."""
    try:
        return await succeeds(rpc, anext(responses))
    except StopAsyncIteration:
        raise CaseFailed(f"{rpc}: the call ended before response {index}") from None


async def close_stream(responses: AsyncIterator[Any]) -> None:
    """Close a streaming stub's response generator: a call still running is cancelled."""
    await cast(AsyncGenerator[Any, None], responses).aclose()


class RequestFeed:
    """Request messages handed to a streaming stub one at a time; `close()` half-closes."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[StreamingOutputCallRequest | None] = asyncio.Queue()

    def send(self, request: StreamingOutputCallRequest) -> None:
        self._queue.put_nowait(request)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[StreamingOutputCallRequest]:
        while (request := await self._queue.get()) is not None:
            yield request


async def started_or_done(started: asyncio.Event, call: asyncio.Task[object]) -> None:
    """Wait until `started` is set, or `call` finished first (its failure fails the case)."""
    waiter = asyncio.ensure_future(started.wait())
    try:
        await asyncio.wait({waiter, call}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if not started.is_set():
        await succeeds("the call", call)
        raise CaseFailed("the call ended before it sent its request")


# -- requests ------------------------------------------------------------------------------------


def zeros(size: int) -> Payload:
    return Payload(type=PayloadType.COMPRESSABLE, body=bytes(size))


def large_unary_request(**fields: Any) -> SimpleRequest:
    return SimpleRequest(
        response_type=PayloadType.COMPRESSABLE,
        response_size=314159,
        payload=zeros(271828),
        **fields,
    )


def output_request(*sizes: int, body: int = 0, **fields: Any) -> StreamingOutputCallRequest:
    return StreamingOutputCallRequest(
        response_type=PayloadType.COMPRESSABLE,
        response_parameters=[ResponseParameters(size=size) for size in sizes],
        payload=zeros(body) if body else None,
        **fields,
    )


# -- the cases -----------------------------------------------------------------------------------


async def empty_unary(stubs: Stubs) -> None:
    response = await succeeds("EmptyCall", stubs.test.empty_call(Empty(), timeout=CALL_TIMEOUT))
    expect(isinstance(response, Empty), f"EmptyCall: response {response!r} is not an Empty")


async def large_unary(stubs: Stubs) -> None:
    response = await succeeds(
        "UnaryCall", stubs.test.unary_call(large_unary_request(), timeout=CALL_TIMEOUT)
    )
    expect_zeros(response.payload, 314159, "UnaryCall")


async def client_compressed_unary(stubs: Stubs) -> None:
    await fails_with(
        Status.INVALID_ARGUMENT,
        "the feature probe (uncompressed, expect_compressed=true)",
        stubs.test.unary_call(
            large_unary_request(expect_compressed=BoolValue(value=True)), timeout=CALL_TIMEOUT
        ),
    )
    with call_options(compression="gzip"):
        response = await succeeds(
            "the compressed UnaryCall (expect_compressed=true)",
            stubs.test.unary_call(
                large_unary_request(expect_compressed=BoolValue(value=True)),
                timeout=CALL_TIMEOUT,
            ),
        )
    expect_zeros(response.payload, 314159, "the compressed UnaryCall")
    response = await succeeds(
        "the uncompressed UnaryCall (expect_compressed=false)",
        stubs.test.unary_call(
            large_unary_request(expect_compressed=BoolValue(value=False)), timeout=CALL_TIMEOUT
        ),
    )
    expect_zeros(response.payload, 314159, "the uncompressed UnaryCall")


async def server_compressed_unary(stubs: Stubs) -> None:
    for compressed in (True, False):
        rpc = f"UnaryCall (response_compressed={str(compressed).lower()})"
        request = large_unary_request(response_compressed=BoolValue(value=compressed))
        with capture_calls() as calls:
            response = await succeeds(rpc, stubs.test.unary_call(request, timeout=CALL_TIMEOUT))
        flag = only_call(calls, rpc).last_message_compressed
        expect(
            flag is compressed,
            f"{rpc}: the response's compressed flag was {flag}, expected {compressed}",
        )
        expect_zeros(response.payload, 314159, rpc)


async def client_streaming(stubs: Stubs) -> None:
    requests = [StreamingInputCallRequest(payload=zeros(n)) for n in (27182, 8, 1828, 45904)]
    response = await succeeds(
        "StreamingInputCall", stubs.test.streaming_input_call(requests, timeout=CALL_TIMEOUT)
    )
    total = response.aggregated_payload_size
    expect(total == 74922, f"StreamingInputCall: aggregated_payload_size {total}, expected 74922")


async def client_compressed_streaming(stubs: Stubs) -> None:
    probe = StreamingInputCallRequest(payload=zeros(27182), expect_compressed=BoolValue(value=True))
    await fails_with(
        Status.INVALID_ARGUMENT,
        "the feature probe (uncompressed, expect_compressed=true)",
        stubs.test.streaming_input_call([probe], timeout=CALL_TIMEOUT),
    )
    requests = [
        StreamingInputCallRequest(payload=zeros(27182), expect_compressed=BoolValue(value=True)),
        StreamingInputCallRequest(payload=zeros(45904), expect_compressed=BoolValue(value=False)),
    ]

    async def compressed_then_not() -> StreamingInputCallResponse:
        # The stub cannot choose per message: drive the call itself, as the description asks
        # (the first message compressed, the second not).
        channel = cast(Channel, stubs.test.channel)
        call = channel.request(
            STREAMING_INPUT_CALL,
            Cardinality.STREAM_UNARY,
            StreamingInputCallRequest,
            StreamingInputCallResponse,
            timeout=CALL_TIMEOUT,
        )
        async with call:
            await call.send_message(requests[0], compress=True)
            await call.send_message(requests[1], compress=False, end=True)
            response = await call.recv_message()
        assert response is not None
        return response

    with call_options(compression="gzip"):
        response = await succeeds("the compressed StreamingInputCall", compressed_then_not())
    total = response.aggregated_payload_size
    expect(
        total == 73086,
        f"the compressed StreamingInputCall: aggregated_payload_size {total}, expected 73086",
    )


async def server_streaming(stubs: Stubs) -> None:
    sizes = (31415, 9, 2653, 58979)
    responses = await succeeds(
        "StreamingOutputCall",
        collect(stubs.test.streaming_output_call(output_request(*sizes), timeout=CALL_TIMEOUT)),
    )
    expect(
        len(responses) == len(sizes),
        f"StreamingOutputCall: {len(responses)} responses, expected {len(sizes)}",
    )
    for index, (response, size) in enumerate(zip(responses, sizes, strict=True), 1):
        expect_zeros(response.payload, size, f"StreamingOutputCall response {index}")


async def server_compressed_streaming(stubs: Stubs) -> None:
    rpc = "StreamingOutputCall"
    request = StreamingOutputCallRequest(
        response_type=PayloadType.COMPRESSABLE,
        response_parameters=[
            ResponseParameters(size=31415, compressed=BoolValue(value=True)),
            ResponseParameters(size=92653, compressed=BoolValue(value=False)),
        ],
    )
    responses: list[StreamingOutputCallResponse] = []
    flags: list[bool | None] = []
    with capture_calls() as calls:

        async def read() -> None:
            async for response in stubs.test.streaming_output_call(request, timeout=CALL_TIMEOUT):
                responses.append(response)
                flags.append(calls[-1].last_message_compressed)

        await succeeds(rpc, read())
    expect(len(responses) == 2, f"{rpc}: {len(responses)} responses, expected 2")
    expect(
        flags == [True, False],
        f"{rpc}: the responses' compressed flags were {flags}, expected [True, False]",
    )
    expect_zeros(responses[0].payload, 31415, f"{rpc} response 1")
    expect_zeros(responses[1].payload, 92653, f"{rpc} response 2")


async def ping_pong(stubs: Stubs) -> None:
    rpc = "FullDuplexCall"
    feed = RequestFeed()
    with capture_calls() as calls:
        responses = stubs.test.full_duplex_call(feed, timeout=CALL_TIMEOUT)
        try:
            sizes = zip((31415, 9, 2653, 58979), (27182, 8, 1828, 45904), strict=True)
            for index, (response_size, body) in enumerate(sizes, 1):
                feed.send(output_request(response_size, body=body))
                response = await next_response(responses, rpc, index)
                expect_zeros(response.payload, response_size, f"{rpc} response {index}")
            feed.close()
            rest = await succeeds(rpc, collect(responses))
            expect(not rest, f"{rpc}: {4 + len(rest)} responses, expected 4")
        finally:
            feed.close()
            await close_stream(responses)
    expect_status(only_call(calls, rpc), Status.OK, rpc)


async def empty_stream(stubs: Stubs) -> None:
    rpc = "FullDuplexCall"
    with capture_calls() as calls:
        responses = await succeeds(
            rpc, collect(stubs.test.full_duplex_call([], timeout=CALL_TIMEOUT))
        )
    expect(not responses, f"{rpc}: {len(responses)} responses, expected none")
    expect_status(only_call(calls, rpc), Status.OK, rpc)


def expect_echoed_metadata(call: ClientCall[Any, Any], rpc: str) -> None:
    initial = call.initial_metadata.getall(ECHO_INITIAL, []) if call.initial_metadata else []
    expect(
        ECHO_INITIAL_VALUE in initial,
        f"{rpc}: initial metadata {ECHO_INITIAL} was {initial}, expected {ECHO_INITIAL_VALUE!r}",
    )
    trailing = call.trailing_metadata.getall(ECHO_TRAILING, []) if call.trailing_metadata else []
    expect(
        ECHO_TRAILING_VALUE in trailing,
        f"{rpc}: trailing metadata {ECHO_TRAILING} was {trailing},"
        f" expected {ECHO_TRAILING_VALUE!r}",
    )


async def custom_metadata(stubs: Stubs) -> None:
    metadata: list[tuple[str, str | bytes]] = [
        (ECHO_INITIAL, ECHO_INITIAL_VALUE),
        (ECHO_TRAILING, ECHO_TRAILING_VALUE),
    ]
    with capture_calls() as calls:
        response = await succeeds(
            "UnaryCall",
            stubs.test.unary_call(large_unary_request(), metadata=metadata, timeout=CALL_TIMEOUT),
        )
    expect_zeros(response.payload, 314159, "UnaryCall")
    expect_echoed_metadata(only_call(calls, "UnaryCall"), "UnaryCall")

    request = output_request(314159, body=271828)
    with capture_calls() as calls:
        responses = await succeeds(
            "FullDuplexCall",
            collect(
                stubs.test.full_duplex_call([request], metadata=metadata, timeout=CALL_TIMEOUT)
            ),
        )
    expect(len(responses) == 1, f"FullDuplexCall: {len(responses)} responses, expected 1")
    expect_zeros(responses[0].payload, 314159, "FullDuplexCall")
    expect_echoed_metadata(only_call(calls, "FullDuplexCall"), "FullDuplexCall")


async def expect_echoed_status(rpc: str, call: Awaitable[object], message: str) -> None:
    error = await fails_with(Status.UNKNOWN, rpc, call)  # code 2, as sent
    received = error.message or ""
    expect(received == message, f"{rpc}: status message {received!r}, expected {message!r}")


async def status_code_and_message(stubs: Stubs) -> None:
    echo = EchoStatus(code=Status.UNKNOWN.value, message=STATUS_MESSAGE)
    await expect_echoed_status(
        "UnaryCall",
        stubs.test.unary_call(SimpleRequest(response_status=echo), timeout=CALL_TIMEOUT),
        STATUS_MESSAGE,
    )
    requests = [StreamingOutputCallRequest(response_status=echo)]
    await expect_echoed_status(
        "FullDuplexCall",
        collect(stubs.test.full_duplex_call(requests, timeout=CALL_TIMEOUT)),
        STATUS_MESSAGE,
    )


async def special_status_message(stubs: Stubs) -> None:
    echo = EchoStatus(code=Status.UNKNOWN.value, message=SPECIAL_STATUS_MESSAGE)
    await expect_echoed_status(
        "UnaryCall",
        stubs.test.unary_call(SimpleRequest(response_status=echo), timeout=CALL_TIMEOUT),
        SPECIAL_STATUS_MESSAGE,
    )


async def unimplemented_method(stubs: Stubs) -> None:
    await fails_with(
        Status.UNIMPLEMENTED,
        "TestService/UnimplementedCall",
        stubs.test.unimplemented_call(Empty(), timeout=CALL_TIMEOUT),
    )


async def unimplemented_service(stubs: Stubs) -> None:
    await fails_with(
        Status.UNIMPLEMENTED,
        "UnimplementedService/UnimplementedCall",
        stubs.unimplemented.unimplemented_call(Empty(), timeout=CALL_TIMEOUT),
    )


async def cancel_after_begin(stubs: Stubs) -> None:
    rpc = "StreamingInputCall"
    started = asyncio.Event()
    release = asyncio.Event()

    async def no_requests() -> AsyncIterator[StreamingInputCallRequest]:
        started.set()  # the stub sent the request headers before it asks for a message
        await release.wait()
        return
        yield  # an async generator that sends nothing

    with capture_calls() as calls:
        task = asyncio.ensure_future(
            stubs.test.streaming_input_call(no_requests(), timeout=CALL_TIMEOUT)
        )
    try:
        await started_or_done(started, task)
        call = only_call(calls, rpc)
        await call.cancel()
        release.set()
        await fails_with(Status.CANCELLED, rpc, task)
        expect_status(call, Status.CANCELLED, rpc)
    finally:
        release.set()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def cancel_after_first_response(stubs: Stubs) -> None:
    rpc = "FullDuplexCall"
    feed = RequestFeed()
    with capture_calls() as calls:
        responses = stubs.test.full_duplex_call(feed, timeout=CALL_TIMEOUT)
        try:
            feed.send(output_request(31415, body=27182))
            response = await next_response(responses, rpc, 1)
            expect_zeros(response.payload, 31415, f"{rpc} response 1")
            call = only_call(calls, rpc)
            await call.cancel()
            await fails_with(Status.CANCELLED, f"{rpc} after cancel", anext(responses))
            expect_status(call, Status.CANCELLED, rpc)
        finally:
            feed.close()
            await close_stream(responses)


async def timeout_on_sleeping_server(stubs: Stubs) -> None:
    rpc = "FullDuplexCall with a 1 ms timeout"
    feed = RequestFeed()
    feed.send(output_request(body=27182))  # no response asked for; never half-closed
    with capture_calls() as calls:
        try:
            await fails_with(
                Status.DEADLINE_EXCEEDED,
                rpc,
                collect(stubs.test.full_duplex_call(feed, timeout=0.001)),
            )
        finally:
            feed.close()
    expect_status(only_call(calls, rpc), Status.DEADLINE_EXCEEDED, rpc)


Case = Callable[[Stubs], Coroutine[Any, Any, None]]

CASES: dict[str, Case] = {
    case.__name__: case
    for case in (
        empty_unary,
        large_unary,
        client_compressed_unary,
        server_compressed_unary,
        client_streaming,
        client_compressed_streaming,
        server_streaming,
        server_compressed_streaming,
        ping_pong,
        empty_stream,
        custom_metadata,
        status_code_and_message,
        special_status_message,
        unimplemented_method,
        unimplemented_service,
        cancel_after_begin,
        cancel_after_first_response,
        timeout_on_sleeping_server,
    )
}
"""Every case, by its name in doc/interop-test-descriptions.md, in the order `all` runs them."""
ALL = "all"


# -- the command ---------------------------------------------------------------------------------


def parse_bool(text: str) -> bool:
    """A BOOLEAN flag value as gRPC's clients take it: true or false (also 1/0, yes/no)."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_test_ca(text: str) -> bool:
    """--use_test_ca: only false; greeter does not bundle gRPC's test CA."""
    if parse_bool(text):
        raise argparse.ArgumentTypeError(
            "true is not supported: greeter does not bundle gRPC's test CA"
            " (src/core/tsi/test_creds/ca.pem); --use_tls verifies against the system's CAs"
        )
    return False


def add_interop_client_parser(commands: Any) -> None:
    """The `interop-client` subcommand, with gRPC's interop client flag names."""
    client = commands.add_parser(
        "interop-client",
        help="run gRPC's interop test cases against a grpc.testing.TestService server",
        description="Runs a case of gRPC's doc/interop-test-descriptions.md with greeter's own "
        "client. Prints PASS <case> on stdout per passing case, FAIL <case>: <what differed> "
        "on stderr per failing one; exit status 0 only when every case passed.",
    )
    client.add_argument(
        "--server_host", default=DEFAULT_HOST, metavar="HOST", help=f"default {DEFAULT_HOST}"
    )
    client.add_argument(
        "--server_port",
        type=checked(PEER_PORT),
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"default {DEFAULT_PORT}",
    )
    client.add_argument(
        "--test_case",
        choices=[*CASES, ALL],
        default="large_unary",
        metavar="TESTCASE",
        help=f"one of {', '.join([*CASES, ALL])} (default large_unary)",
    )
    client.add_argument(
        "--use_tls",
        type=parse_bool,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOLEAN",
        help="TLS (ALPN h2), verifying the server against the system's CAs (default false)",
    )
    client.add_argument(
        "--server_host_override",
        metavar="HOSTNAME",
        help="the :authority to send (and the TLS name to check) instead of --server_host",
    )
    client.add_argument(
        "--use_test_ca",
        type=parse_test_ca,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOLEAN",
        help="only false: gRPC's test CA is not bundled",
    )


def _target(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{host}:{port}"


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


async def run_case(name: str, stubs: Stubs) -> str | None:
    """Run one case; None when it passed, else what differed."""
    try:
        async with asyncio.timeout(CASE_TIMEOUT):
            await CASES[name](stubs)
    except CaseFailed as exc:
        return str(exc)
    except GRPCError as exc:
        return f"{exc.status.name}: {exc.message!r}"
    except TimeoutError:
        return f"did not finish within {CASE_TIMEOUT:g} s"
    except Exception as exc:  # a bug in the client or the case: still one line, details at -v
        log.debug("%s raised", name, exc_info=True)
        return f"unexpected {type(exc).__name__}: {exc}"
    return None


async def interop_client(args: argparse.Namespace) -> int:
    """Run the case named by --test_case (every case for `all`); 0 when all passed, else 1."""
    names = list(CASES) if args.test_case == ALL else [args.test_case]
    tls = client_context() if args.use_tls else None
    failed = 0
    async with Channel(
        _target(args.server_host, args.server_port),
        ssl=tls,
        authority=args.server_host_override,
    ) as channel:
        # betterproto2's stubs annotate grpclib's Channel; greeter's honours the same contract.
        stubs = Stubs(TestServiceStub(channel), UnimplementedServiceStub(channel))
        for name in names:
            problem = await run_case(name, stubs)
            if problem is None:
                print(f"PASS {name}", flush=True)
            else:
                failed += 1
                print(f"FAIL {name}: {_one_line(problem)}", file=sys.stderr, flush=True)
    return 1 if failed else 0
