"""The `greeter` command: `serve` runs Greeter + Health, `hello` calls SayHello.

Layer: entry point. Parses arguments, configures logging, wires the server or the client
together; no protocol logic.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.health.service import Health

from gen.greet import GreeterStub, HelloRequest
from greeter.connection import CoreConfig
from greeter.server import Server, ServerConfig
from greeter.service import Greeter

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

    hello = commands.add_parser("hello", help="call greet.Greeter/SayHello and print the reply")
    hello.add_argument("name")
    hello.add_argument(
        "--target", type=_parse_target, default=("127.0.0.1", 50051), metavar="HOST:PORT"
    )
    hello.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    return parser


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    limits = CoreConfig(
        max_receive_message_size=args.max_receive_message_size,
        max_concurrent_streams=args.max_concurrent_streams,
    )
    server = Server(
        [Greeter(), Health()],
        host=args.host,
        port=args.port,
        config=ServerConfig(limits=limits, grace_period=args.grace),
    )
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("serving %s on %s:%d", ", ".join(server.service_names), args.host, server.port)
    await stop.wait()
    log.info("shutting down: GOAWAY sent, in-flight RPCs get %.1f s", args.grace)
    await server.stop()
    log.info("stopped")


async def hello(args: argparse.Namespace) -> None:
    host, port = args.target
    channel = Channel(host, port)
    try:
        reply = await GreeterStub(channel).say_hello(
            HelloRequest(name=args.name), timeout=args.timeout
        )
    finally:
        channel.close()
    print(reply.message)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )
    command = serve if args.command == "serve" else hello
    try:
        asyncio.run(command(args))
    except OSError as exc:
        log.error("%s", exc)
        return 1
    except GRPCError as exc:  # a failed RPC: say what happened, no traceback
        log.error("%s: %s", exc.status.name, exc.message)
        return 1
    except StreamTerminatedError as exc:
        log.error("the connection failed: %s", exc)
        return 1
    return 0
