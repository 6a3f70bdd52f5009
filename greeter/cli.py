"""The `greeter` command: `serve` runs Greeter + Health, `hello` calls SayHello, `proxy` relays
and traces any gRPC client/server pair, `replay` re-sends the client messages of a JSONL trace.

Layer: entry point. Parses arguments, configures logging, wires the server or the client
together; no protocol logic.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.health.service import Health

from gen.greet import GreeterStub, HelloRequest
from greeter.client_tap import TappedChannel
from greeter.connection import CoreConfig
from greeter.proxy import Proxy
from greeter.server import Server, ServerConfig, Service
from greeter.service import Greeter
from greeter.tap.resolve import MessageTypes
from greeter.trace_options import add_trace_arguments, open_trace

log = logging.getLogger("greeter")


def _parse_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {target!r}")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    limits, server = CoreConfig(), ServerConfig()
    parser = argparse.ArgumentParser(prog="greeter", description="An inspectable gRPC stack.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve greet.Greeter and grpc.health.v1.Health")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=50051, help="0 picks a free port")
    serve.add_argument(
        "--max-receive-message-size",
        type=int,
        default=limits.max_receive_message_size,
        metavar="BYTES",
    )
    serve.add_argument(
        "--max-concurrent-streams", type=int, default=limits.max_concurrent_streams, metavar="N"
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=server.grace_period,
        metavar="SECONDS",
        help="time in-flight RPCs get on shutdown",
    )
    add_trace_arguments(serve, switch=True, to="stdout")
    _add_hello_parser(commands)
    _add_proxy_parser(commands)
    _add_replay_parser(commands)
    return parser


def _add_hello_parser(commands: Any) -> None:
    hello = commands.add_parser("hello", help="call greet.Greeter/SayHello and print the reply")
    hello.add_argument("name")
    hello.add_argument(
        "--target", type=_parse_target, default=("127.0.0.1", 50051), metavar="HOST:PORT"
    )
    hello.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    add_trace_arguments(hello, switch=True, to="stderr (stdout keeps the reply)")


def _add_proxy_parser(commands: Any) -> None:
    proxy = commands.add_parser(
        "proxy",
        help="inspecting h2c reverse proxy: relay any gRPC client to any server and trace it",
        description="Relays every connection byte for byte to --target and traces it: the "
        "client's bytes are 'in', the server's 'out' (nothing is re-encoded, so one trace "
        "shows both legs).",
    )
    proxy.add_argument("--listen", type=_parse_target, required=True, metavar="HOST:PORT")
    proxy.add_argument("--target", type=_parse_target, required=True, metavar="HOST:PORT")
    proxy.add_argument(
        "--proto-module",
        default="gen.greet",
        metavar="MODULE",
        help="betterproto2 module whose services decode messages ('' for wire fields only)",
    )
    add_trace_arguments(proxy, switch=False, to="stdout")


def _add_replay_parser(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="re-send the client messages of a JSONL trace and compare the replies",
        description="Exit status 0 when every RPC's replies and status match the trace, "
        "1 (with a per-RPC report) otherwise.",
    )
    replay.add_argument("file", metavar="FILE", help="a --trace-file written as jsonl")
    replay.add_argument("--target", type=_parse_target, required=True, metavar="HOST:PORT")
    replay.add_argument(
        "--proto-module", default="gen.greet", metavar="MODULE", help="decodes differing replies"
    )
    replay.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="per RPC")


async def _until_signalled() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def _message_types(module: str) -> MessageTypes | None:
    return MessageTypes.from_module(module) if module else None


async def serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    limits = CoreConfig(
        max_receive_message_size=args.max_receive_message_size,
        max_concurrent_streams=args.max_concurrent_streams,
    )
    services: list[Service] = [Greeter(), Health()]
    types = MessageTypes.from_services(services)
    with open_trace(args, role="server", default_stream=sys.stdout, types=types) as tap:
        server = Server(
            services,
            host=args.host,
            port=args.port,
            config=ServerConfig(limits=limits, grace_period=args.grace),
            tap=tap,
        )
        await server.start()
        log.info("serving %s on %s:%d", ", ".join(server.service_names), args.host, server.port)
        await _until_signalled()
        log.info("shutting down: GOAWAY sent, in-flight RPCs get %.1f s", args.grace)
        await server.stop()
    log.info("stopped")
    return 0


async def hello(args: argparse.Namespace) -> int:
    host, port = args.target
    types = _message_types("gen.greet")
    with open_trace(args, role="client", default_stream=sys.stderr, types=types) as tap:
        channel = Channel(host, port) if tap is None else TappedChannel(host, port, tap=tap)
        try:
            reply = await GreeterStub(channel).say_hello(
                HelloRequest(name=args.name), timeout=args.timeout
            )
        finally:
            channel.close()
    print(reply.message)
    return 0


async def proxy(args: argparse.Namespace) -> int:
    """Relay and trace until SIGINT or SIGTERM."""
    (listen_host, listen_port), (target_host, target_port) = args.listen, args.target
    types = _message_types(args.proto_module)
    with open_trace(args, role="server", default_stream=sys.stdout, types=types) as tap:
        async with Proxy(listen_host, listen_port, target_host, target_port, tap=tap) as relay:
            log.info("proxying %s:%d -> %s:%d", listen_host, relay.port, target_host, target_port)
            await _until_signalled()
    log.info("stopped")
    return 0


async def replay(args: argparse.Namespace) -> int:
    """Re-send the trace's client messages; 0 when every RPC matches, 1 otherwise."""
    from greeter.replay import replay_file  # noqa: PLC0415 -- only this command needs it

    host, port = args.target
    report = await replay_file(
        args.file, host, port, types=_message_types(args.proto_module), timeout=args.timeout
    )
    print(report.text())
    return 0 if report.ok else 1


COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "serve": serve,
    "hello": hello,
    "proxy": proxy,
    "replay": replay,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(COMMANDS[args.command](args))
    except (OSError, ValueError) as exc:  # unreachable address, unreadable trace file, ...
        log.error("%s", exc)
        return 1
    except GRPCError as exc:  # a failed RPC: say what happened, no traceback
        log.error("%s: %s", exc.status.name, exc.message)
        return 1
    except StreamTerminatedError as exc:
        log.error("the connection failed: %s", exc)
        return 1
