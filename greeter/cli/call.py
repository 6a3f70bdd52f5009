"""`greeter call`: call any method of a server with JSON messages, its types found by reflection.

In the spirit of grpcurl::

    greeter call TARGET greet.Greeter/SayHello '{"name": "world"}'   # one JSON line per reply
    greeter call TARGET greet.Greeter/BidiHello -  < requests.jsonl  # requests from stdin
    greeter call TARGET list [SERVICE]                               # services, or its methods
    greeter call TARGET describe [SYMBOL]                            # proto-like definitions

Exit status: 0 when the call ends OK; 64 + the status code when it ends with another status (as
grpcurl: 68 is DEADLINE_EXCEEDED, 76 UNIMPLEMENTED); 1 when it cannot be made (no connection, no
reflection, an unknown name, a request that is not JSON for its type); 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Iterable
from typing import Any

from google.protobuf import (  # type: ignore[import-untyped]
    any_pb2,
    descriptor_pool,
    message_factory,
)
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError

from greeter.cli.client_options import DEFAULT_PORT, add_tls_arguments, client_target, tls_context
from greeter.cli.describe import describe
from greeter.cli.json_messages import (
    STDIN,
    JsonInputError,
    parse_values,
    stdin_values,
    to_json,
    to_message,
)
from greeter.cli.limits import checked
from greeter.cli.tracing import add_trace_arguments, open_trace
from greeter.client.call import ClientCall
from greeter.client.channel import Channel
from greeter.client.reflection import ReflectedTypes, ReflectionError, ServerReflectionClient
from greeter.wire.metadata import (
    decode_metadata_value,
    encode_metadata_value,
    is_reserved_header,
    validate_metadata_key,
)
from greeter.wire.ranges import SECONDS

log = logging.getLogger("greeter")

STATUS_EXIT_BASE = 64
"""A call that ends with status code N exits with 64 + N (grpcurl's convention)."""
Header = tuple[str, str | bytes]
CARDINALITIES = {tuple(kind.value): kind for kind in Cardinality}
"""(client streaming, server streaming) -> grpclib's name for that kind of call."""


def add_call_parser(commands: Any) -> None:
    call = commands.add_parser(
        "call",
        help="call any method with JSON messages, its types found by server reflection",
        description="Call METHOD (greet.Greeter/SayHello, greet.Greeter.SayHello or "
        "/greet.Greeter/SayHello) with JSON request messages and print each reply as one line "
        "of JSON; or `list` the services (or one SERVICE's methods), or `describe` a SYMBOL (a "
        "service, method, message, enum or field; all services without one). The server must "
        "serve reflection (grpc.reflection.v1, or v1alpha). Exit status: 0 for OK, 64 + the "
        "status code when the call fails, 1 when it cannot be made, 2 for bad usage.",
    )
    call.add_argument("target", type=client_target, metavar="TARGET", help="HOST:PORT|unix:PATH")
    call.add_argument("method", metavar="METHOD|list|describe")
    call.add_argument(
        "argument",
        nargs="?",
        metavar="JSON|SERVICE|SYMBOL",
        help="the request (default {}): JSON values, one per request message of a client "
        "stream (whitespace between them optional); - or @- reads them from stdin and sends "
        "each as soon as it is complete",
    )
    call.add_argument(
        "-H",
        "--header",
        type=header,
        action="append",
        default=[],
        metavar="KEY:VALUE",
        help="request metadata, also sent with reflection requests (repeatable); a -bin key "
        "takes its value in base64",
    )
    call.add_argument(
        "--timeout",
        type=checked(SECONDS),
        metavar="SECONDS",
        help="deadline of the call (default none)",
    )
    call.add_argument("--authority", help="the :authority (and TLS server name) to use")
    call.add_argument(
        "--show-metadata",
        action="store_true",
        help="print the response headers and trailers to stderr",
    )
    call.add_argument("--pretty", action="store_true", help="indent each JSON reply")
    add_tls_arguments(call)
    add_trace_arguments(call, switch=True, to="stderr (stdout keeps the JSON)")


def header(text: str) -> Header:
    """`-H KEY:VALUE` as a metadata pair: the key lower-cased, a -bin value base64-decoded."""
    key, colon, value = text.partition(":")
    key, value = key.strip().lower(), value.strip()
    try:
        if not colon:
            raise ValueError(f"expected KEY:VALUE, got {text!r}")
        validate_metadata_key(key)
        if is_reserved_header(key):
            raise ValueError(f"{key} is set by gRPC itself, not by metadata")
        pair = (key, decode_metadata_value(key, value))
        encode_metadata_value(*pair)  # a value the wire cannot carry fails now, not mid-call
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return pair


def split_method(name: str) -> tuple[str, str]:
    """(service, method) of ``pkg.Service/Method``, ``pkg.Service.Method`` or
    ``/pkg.Service/Method``."""
    path = name.removeprefix("/")
    service, _, method = path.rpartition("/") if "/" in path else path.rpartition(".")
    if not service or not method:
        raise ValueError(f"expected SERVICE/METHOD (e.g. greet.Greeter/SayHello), got {name!r}")
    return service, method


async def call(args: argparse.Namespace) -> int:
    """Run `greeter call`; its exit status (module docstring)."""
    pool = descriptor_pool.DescriptorPool()  # what reflection learns, shared with the trace
    with open_trace(
        args, role="client", default_stream=sys.stderr, types=ReflectedTypes(pool)
    ) as tap:
        async with Channel(
            args.target,
            ssl=tls_context(args),
            authority=args.authority,
            tap=tap,
            default_port=DEFAULT_PORT,
        ) as channel:
            reflection = ServerReflectionClient(
                channel, metadata=args.header, timeout=args.timeout, pool=pool
            )
            try:
                if args.method == "list":
                    return await _list(reflection, args.argument)
                if args.method == "describe":
                    return await _describe(reflection, args.argument)
                return await _invoke(channel, reflection, args)
            except (ReflectionError, ValueError) as exc:  # JsonInputError is a ValueError
                log.error("%s", exc)
                return 1


async def _list(reflection: ServerReflectionClient, service: str | None) -> int:
    if service is None:
        _print_lines(await reflection.list_services())
    else:
        found = await reflection.service(service)
        _print_lines(sorted(method.full_name for method in found.methods))
    return 0


async def _describe(reflection: ServerReflectionClient, symbol: str | None) -> int:
    if symbol is not None:
        print(describe(await reflection.symbol(symbol)))
        return 0
    texts = [describe(await reflection.service(name)) for name in await reflection.list_services()]
    print("\n\n".join(texts))
    return 0


def _print_lines(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)


async def _invoke(
    channel: Channel, reflection: ServerReflectionClient, args: argparse.Namespace
) -> int:
    method = await reflection.method(*split_method(args.method))
    request_class = message_factory.GetMessageClass(method.input_type)
    messages = _messages(_request_values(args.argument), request_class)
    if not method.client_streaming:  # exactly one request: check it before calling
        requests = [message async for message in messages]
        if len(requests) != 1:
            raise JsonInputError(
                f"{method.full_name} takes one request message, the JSON has {len(requests)}"
            )
        messages = _iterate(requests)
    rpc = channel.request(
        f"/{method.containing_service.full_name}/{method.name}",
        CARDINALITIES[method.client_streaming, method.server_streaming],
        request_class,
        message_factory.GetMessageClass(method.output_type),
        timeout=args.timeout,
        metadata=args.header,
    )
    failure: GRPCError | None = None
    try:
        async with rpc:
            await _exchange(rpc, messages, args.pretty)
    except GRPCError as exc:
        failure = exc
    if args.show_metadata:
        _show_metadata(rpc)
    if failure is None:
        return 0
    await _report_failure(failure, reflection)
    return STATUS_EXIT_BASE + failure.status.value


async def _request_values(argument: str | None) -> AsyncIterator[Any]:
    if argument in STDIN:
        async for value in stdin_values():
            yield value
    else:
        for value in parse_values("{}" if argument is None else argument):
            yield value


async def _iterate(values: list[Any]) -> AsyncIterator[Any]:
    for value in values:
        yield value


async def _messages(values: AsyncIterator[Any], message_class: type[Any]) -> AsyncIterator[Any]:
    index = 0
    async for value in values:
        index += 1
        yield to_message(value, message_class, index)


async def _exchange(rpc: ClientCall[Any, Any], requests: AsyncIterator[Any], pretty: bool) -> None:
    """Send the requests while printing the replies as they come (a bidi call interleaves them).

    A request that is not JSON for its type cancels the call and is what gets reported; requests
    still unsent when the call ends (the server answered early) are dropped.
    """
    sending = asyncio.ensure_future(_send(rpc, requests))
    try:
        async for reply in rpc:
            print(to_json(reply, pretty=pretty), flush=True)
    except GRPCError:
        failure = sending.exception() if sending.done() and not sending.cancelled() else None
        if isinstance(failure, JsonInputError):
            raise failure from None
        raise
    finally:
        if sending.done() and not sending.cancelled():
            sending.exception()  # retrieved: a failed send also failed the call, reported above
        sending.cancel()


async def _send(rpc: ClientCall[Any, Any], requests: AsyncIterator[Any]) -> None:
    try:
        async for message in requests:
            await rpc.send_message(message)
    except JsonInputError:
        await rpc.cancel()
        raise
    await rpc.end()


async def _report_failure(error: GRPCError, reflection: ServerReflectionClient) -> None:
    """The status on one line, then each rich error detail as JSON (types found by reflection)."""
    status = f"{error.status.name}: {error.message}" if error.message else error.status.name
    log.error("%s", status)
    for detail in error.details or ():
        log.error("detail: %s", await _detail_json(detail, reflection))


async def _detail_json(detail: Any, reflection: ServerReflectionClient) -> str:
    if isinstance(detail, any_pb2.Any):
        with contextlib.suppress(ReflectionError, GRPCError):
            if await reflection.load_symbol(detail.TypeName()):
                return to_json(detail, pool=reflection.pool)
        return f"{detail.type_url} ({len(detail.value)} bytes; server reflection does not know it)"
    return str(detail)


def _show_metadata(rpc: ClientCall[Any, Any]) -> None:
    for title, metadata in (
        ("Response headers received:", rpc.initial_metadata),
        ("Response trailers received:", rpc.trailing_metadata),
    ):
        print(title, file=sys.stderr)
        pairs = list((metadata or {}).items())
        for key, value in pairs:
            shown = encode_metadata_value(key, value) if isinstance(value, bytes) else value
            print(f"{key}: {shown}", file=sys.stderr)
        if not pairs:
            print("(empty)", file=sys.stderr)
