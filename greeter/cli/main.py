"""The `greeter` command: `serve` runs Greeter + Health, `hello` calls SayHello, `proxy` relays
and traces any gRPC client/server pair, `replay` re-sends the client messages of a JSONL trace,
`interop-server` runs grpc.testing.TestService + Health for gRPC's interop test cases,
`interop-client` runs those cases against such a server (greeter.cli.interop_client), `call`
calls any method of a server with JSON messages, found through its reflection (greeter.cli.call),
`trace pcapng` turns a JSONL trace into a capture for Wireshark (greeter.cli.trace_files).
`serve`, `hello` and `call` also speak TLS (--tls-*) and Unix domain sockets (--uds, unix:PATH);
`serve` runs on uvloop when it is installed and can share its port among processes
(greeter.server.workers).

Parses arguments, configures logging, wires the server or the client
together; no protocol logic.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from grpclib.exceptions import GRPCError, StreamTerminatedError

from greeter.cli.call import add_call_parser, call
from greeter.cli.client_options import DEFAULT_PORT, add_tls_arguments, client_target, tls_context
from greeter.cli.gen import add_gen_parser, gen
from greeter.cli.held_signals import HeldSignals
from greeter.cli.interop_client import add_interop_client_parser, interop_client
from greeter.cli.limits import add_limit_arguments, checked, server_config
from greeter.cli.metrics import (
    add_metrics_arguments,
    check_metrics_arguments,
    process_metrics,
    workers_metrics,
)
from greeter.cli.trace_commands import add_trace_parser, trace
from greeter.cli.trace_options import check_live_arguments
from greeter.cli.tracing import (
    add_trace_arguments,
    check_trace_arguments,
    open_trace,
    tracing_requested,
)
from greeter.client.call import call_options
from greeter.client.channel import Channel
from greeter.server import Server
from greeter.server.access_log import AccessLog
from greeter.server.config import SERVER_RANGES
from greeter.server.signals import SignalCatcher
from greeter.server.tls import client_context, server_context
from greeter.server.workers import (
    LOOP_CHOICES,
    WORKER_COUNT,
    Supervisor,
    WorkerLink,
    loop_factory,
    loop_name,
    uvloop_installed,
)
from greeter.services.greeter import Greeter, GreeterStub, HelloRequest
from greeter.services.health import with_health
from greeter.services.interop import TestService
from greeter.services.reflection import GENERATED_DESCRIPTORS, with_reflection
from greeter.tap.resolve import MessageTypes
from greeter.tools.proxy import Proxy
from greeter.tools.replay import PACES, replay_file
from greeter.wire.ranges import LISTEN_PORT, PEER_PORT, SECONDS, Range

log = logging.getLogger("greeter")

DEFAULT_HOST = "127.0.0.1"
INTEROP_PORT = 10000
"""interop-server's default port: the one gRPC's interop test runners use."""
UNIX_PREFIX = "unix:"


def metadata_value(text: str) -> tuple[str, str]:
    """`--metadata NAME=VALUE`: the name lower-cased, as HTTP/2 sends it."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip().lower(), value


def _address(target: str, allowed: Range) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {target!r}")
    if not allowed.contains(int(port)):
        raise argparse.ArgumentTypeError(
            f"port {port} is out of range: allowed is {allowed.allowed()}"
        )
    return host.strip("[]"), int(port)


def _listen_address(target: str) -> tuple[str, int]:
    return _address(target, LISTEN_PORT)


def _peer_address(target: str) -> tuple[str, int]:
    return _address(target, PEER_PORT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greeter", description="An inspectable gRPC stack.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {importlib.metadata.version('greeter')}"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve greet.Greeter and grpc.health.v1.Health")
    serve.add_argument("--host", help=f"default {DEFAULT_HOST}")
    serve.add_argument(
        "--port", type=checked(LISTEN_PORT), help=f"default {DEFAULT_PORT}; 0 picks a free port"
    )
    serve.add_argument(
        "--uds", metavar="PATH", help="listen on this Unix socket instead of --host/--port"
    )
    serve.add_argument("--tls-cert", metavar="PATH", help="serve TLS with this PEM certificate")
    serve.add_argument("--tls-key", metavar="PATH", help="the PEM private key of --tls-cert")
    serve.add_argument(
        "--tls-client-ca",
        metavar="PATH",
        help="mutual TLS: require client certificates signed by these PEM CAs",
    )
    serve.add_argument(
        "--workers",
        type=checked(WORKER_COUNT),
        default=1,
        metavar="N",
        help="serve from N processes; the parent accepts and deals connections in turn "
        "(default 1; TCP only, no --trace)",
    )
    serve.add_argument(
        "--loop",
        choices=LOOP_CHOICES,
        default="auto",
        help="event loop (default auto: uvloop when installed, else asyncio)",
    )
    # --worker-fd and --worker-index are set by greeter.server.workers for each worker process.
    serve.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per RPC on greeter.access: peer, method, status, duration, bytes",
    )
    add_limit_arguments(serve)
    add_trace_arguments(serve, switch=True, to="stdout")
    add_metrics_arguments(serve)
    _add_hello_parser(commands)
    _add_proxy_parser(commands)
    _add_replay_parser(commands)
    _add_interop_parser(commands)
    add_interop_client_parser(commands)
    add_call_parser(commands)
    add_gen_parser(commands)
    add_trace_parser(commands)
    return parser


def _add_interop_parser(commands: Any) -> None:
    interop = commands.add_parser(
        "interop-server",
        help="serve grpc.testing.TestService and grpc.health.v1.Health (gRPC's interop cases)",
    )
    interop.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    interop.add_argument(
        "--port",
        type=checked(LISTEN_PORT),
        default=INTEROP_PORT,
        help=f"default {INTEROP_PORT}; 0 picks a free port",
    )
    interop.add_argument(
        "--grace",
        type=checked(SERVER_RANGES["grace_period"]),
        default=5.0,
        metavar="SECONDS",
        help="shutdown grace (default 5)",
    )


def _add_hello_parser(commands: Any) -> None:
    hello = commands.add_parser("hello", help="call greet.Greeter/SayHello and print the reply")
    hello.add_argument("name")
    hello.add_argument(
        "--target",
        type=client_target,
        default=f"{DEFAULT_HOST}:{DEFAULT_PORT}",
        metavar="HOST:PORT|unix:PATH",
    )
    add_tls_arguments(hello)
    hello.add_argument("--timeout", type=checked(SECONDS), default=10.0, metavar="SECONDS")
    add_trace_arguments(hello, switch=True, to="stderr (stdout keeps the reply)")


def _add_proxy_parser(commands: Any) -> None:
    proxy = commands.add_parser(
        "proxy",
        help="inspecting h2c reverse proxy: relay any gRPC client to any server and trace it",
        description="Relays every connection byte for byte to --target and traces it: the "
        "client's bytes are 'in', the server's 'out' (nothing is re-encoded, so one trace "
        "shows both legs).",
    )
    proxy.add_argument("--listen", type=_listen_address, required=True, metavar="HOST:PORT")
    proxy.add_argument("--target", type=_peer_address, required=True, metavar="HOST:PORT")
    proxy.add_argument(
        "--proto-module",
        default="gen.greet",
        metavar="MODULE",
        help="betterproto2 module whose services decode messages ('' for wire fields only)",
    )
    tls = proxy.add_argument_group(
        "TLS", "Either leg may be TLS; the HTTP/2 inside is relayed and traced unchanged."
    )
    tls.add_argument(
        "--listen-tls-cert", metavar="PATH", help="clients connect with TLS: this PEM certificate"
    )
    tls.add_argument("--listen-tls-key", metavar="PATH", help="the PEM private key of it")
    tls.add_argument(
        "--target-tls-ca",
        metavar="PATH",
        help="connect to --target with TLS, verified by these CAs",
    )
    tls.add_argument(
        "--target-tls-cert", metavar="PATH", help="TLS to --target with this client certificate"
    )
    tls.add_argument("--target-tls-key", metavar="PATH", help="the PEM private key of it")
    tls.add_argument(
        "--target-tls-name", metavar="NAME", help="the name --target's certificate must carry"
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
    replay.add_argument(
        "--target", type=client_target, required=True, metavar="HOST:PORT|unix:PATH"
    )
    add_tls_arguments(replay)
    replay.add_argument(
        "--proto-module", default="gen.greet", metavar="MODULE", help="decodes differing replies"
    )
    replay.add_argument(
        "--timeout",
        type=checked(SECONDS),
        default=10.0,
        metavar="SECONDS",
        help="deadline of an RPC the trace shows without grpc-timeout (default 10)",
    )
    replay.add_argument(
        "--pace",
        choices=PACES,
        default="none",
        help="recorded: start RPCs and send messages at their recorded times; none (default): "
        "one RPC after the other, each step as soon as its replies are in",
    )
    replay.add_argument(
        "--metadata",
        type=metadata_value,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="the value of a header the trace redacted (repeatable); without it, it is not sent",
    )


async def _serve_until_signalled(
    server: Server, grace: float, ready: Callable[[], object], level: int = logging.INFO
) -> None:
    """Start `server`, run `ready` (its "serving" line) once SIGINT/SIGTERM already stop it
    gracefully, then wait for one: GOAWAY, `grace` seconds, cancel the rest."""

    def stopping(signum: signal.Signals) -> None:
        log.log(level, "%s: shutting down, in-flight RPCs get %.1f s", signum.name, grace)

    await server.serve_until_signalled(grace=grace, ready=ready, stopping=stopping)
    log.log(level, "stopped")


def _message_types(module: str) -> MessageTypes | None:
    """The types of `module`'s services; a ValueError naming --proto-module if it cannot load."""
    if not module:
        return None
    try:
        return MessageTypes.from_module(module)
    except ImportError as exc:
        raise ValueError(f"--proto-module {module!r}: {exc}") from None


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Combinations argparse cannot express; exits with usage (status 2) on a bad one."""
    check_live_arguments(parser, args)
    check_trace_arguments(parser, args)
    if args.command == "proxy":
        if (args.listen_tls_cert is None) != (args.listen_tls_key is None):
            parser.error("proxy: --listen-tls-cert and --listen-tls-key go together")
        if args.target_tls_key is not None and args.target_tls_cert is None:
            parser.error("proxy: --target-tls-key needs --target-tls-cert")
        return
    if args.command not in ("serve", "hello", "call", "replay"):
        return
    if args.command == "serve":
        if args.uds is not None and (args.host is not None or args.port is not None):
            parser.error("serve: --uds replaces --host and --port")
        if (args.tls_cert is None) != (args.tls_key is None):
            parser.error("serve: --tls-cert and --tls-key go together")
        if args.tls_client_ca is not None and args.tls_cert is None:
            parser.error("serve: --tls-client-ca needs --tls-cert and --tls-key")
        if args.workers > 1 and args.uds is not None:
            parser.error("serve: --workers needs TCP: processes cannot share a --uds socket path")
        if args.workers > 1 and tracing_requested(args):
            parser.error(
                "serve: --trace needs --workers 1 (each worker numbers connections from 1)"
            )
        if args.loop == "uvloop" and not uvloop_installed():
            parser.error(
                "serve: --loop uvloop: uvloop is not installed (pip install 'greeter[fast]')"
            )
        check_metrics_arguments(parser, args)
    elif getattr(args, "tls_key", None) is not None and args.tls_cert is None:
        parser.error(f"{args.command}: --tls-key needs --tls-cert")


def _listening_on(args: argparse.Namespace, server: Server) -> str:
    """How the start-up line names the address: unix:PATH or HOST:PORT, plus (TLS, N workers)."""
    where = f"{UNIX_PREFIX}{server.address}" if args.uds else f"{server.host}:{server.port}"
    notes = []
    if args.tls_client_ca:
        notes.append("TLS, client certificates required")
    elif args.tls_cert:
        notes.append("TLS")
    if args.workers > 1:
        notes.append(f"{args.workers} workers")
    return f"{where} ({', '.join(notes)})" if notes else where


async def serve(args: argparse.Namespace, worker: WorkerLink | None = None) -> int:
    """Serve until SIGINT or SIGTERM, then shut down gracefully.

    As one of --workers N (`worker`): serve the connections the parent accepts and hands over,
    and hand it the serving line, which it logs (and the shutdown) once for all workers.
    """
    quiet = logging.INFO if worker is None else logging.DEBUG
    services = with_health([Greeter()])
    types = MessageTypes.from_services(services)
    services = with_reflection(services, GENERATED_DESCRIPTORS)
    tls = None
    if args.tls_cert is not None:
        tls = server_context(args.tls_cert, args.tls_key, args.tls_client_ca)
    with open_trace(
        args, role="server", default_stream=sys.stdout, types=types, summary=True
    ) as tap:
        host = DEFAULT_HOST if args.host is None else args.host
        metrics = process_metrics(args, host, worker=worker is not None)
        server = Server(
            services,
            host=host,
            port=DEFAULT_PORT if args.port is None else args.port,
            config=server_config(args),
            tap=tap,
            ssl=tls,
            uds=args.uds,
            listen=worker is None,  # a worker serves what its parent accepts
            interceptors=[
                *([metrics] if metrics is not None else []),
                *([AccessLog()] if args.access_log else []),
            ],
            monitor=metrics,
        )
        log.debug("event loop: %s", loop_name(asyncio.get_running_loop()))

        def ready() -> None:
            names = ", ".join(server.service_names)
            line = f"serving {names} on {_listening_on(args, server)}"
            if worker is None:
                log.info("%s", line)
            else:
                worker.ready(line, server.adopt)

        await _serve_until_signalled(server, args.grace, ready, quiet)
    return 0


async def interop_server(args: argparse.Namespace) -> int:
    """Serve TestService + Health until SIGINT or SIGTERM, then shut down gracefully."""
    services = with_reflection(with_health([TestService()]), GENERATED_DESCRIPTORS)
    server = Server(services, host=args.host, port=args.port)

    def ready() -> None:
        log.info("serving %s on %s", ", ".join(server.service_names), server.address)

    await _serve_until_signalled(server, args.grace, ready)
    return 0


async def hello(args: argparse.Namespace) -> int:
    types = _message_types("gen.greet")
    tls = tls_context(args)
    with open_trace(args, role="client", default_stream=sys.stderr, types=types) as tap:
        async with Channel(args.target, ssl=tls, tap=tap, default_port=DEFAULT_PORT) as channel:
            stub = GreeterStub(channel)
            reply = await stub.say_hello(HelloRequest(name=args.name), timeout=args.timeout)
    print(reply.message)
    return 0


async def proxy(args: argparse.Namespace) -> int:
    """Relay and trace until SIGINT or SIGTERM."""
    (listen_host, listen_port), (target_host, target_port) = args.listen, args.target
    types = _message_types(args.proto_module)
    listen_tls = target_tls = None
    if args.listen_tls_cert is not None:
        listen_tls = server_context(args.listen_tls_cert, args.listen_tls_key)
    if args.target_tls_ca is not None or args.target_tls_cert is not None or args.target_tls_name:
        target_tls = client_context(args.target_tls_ca, args.target_tls_cert, args.target_tls_key)
    with (
        open_trace(
            args, role="server", default_stream=sys.stdout, types=types, summary=True
        ) as tap,
        SignalCatcher() as caught,  # before the line that says the proxy is up
    ):
        async with Proxy(
            listen_host,
            listen_port,
            target_host,
            target_port,
            tap=tap,
            listen_ssl=listen_tls,
            target_ssl=target_tls,
            target_name=args.target_tls_name,
        ) as relay:
            log.info("proxying %s:%d -> %s:%d", listen_host, relay.port, target_host, target_port)
            await caught.first()
    log.info("stopped")
    return 0


async def replay(args: argparse.Namespace) -> int:
    """Re-send the trace's client messages; 0 when every RPC matches, 1 otherwise."""
    tls = tls_context(args)
    async with Channel(args.target, ssl=tls, default_port=DEFAULT_PORT) as channel:
        report = await replay_file(
            args.file,
            channel,
            compressing=lambda encoding: call_options(compression=encoding),
            types=_message_types(args.proto_module),
            timeout=args.timeout,
            pace=args.pace,
            metadata=dict(args.metadata),
        )
    print(report.text())
    return 0 if report.ok else 1


COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "serve": serve,
    "hello": hello,
    "proxy": proxy,
    "replay": replay,
    "gen": gen,
    "interop-server": interop_server,
    "interop-client": interop_client,
    "call": call,
    "trace": trace,
}


SERVING_COMMANDS = frozenset({"serve", "interop-server", "proxy"})
"""Commands that serve until a signal: a stop signal held during the start-up stops them
gracefully once they run; the others get it as if it had just arrived."""


def run(argv: Sequence[str] | None = None, held: HeldSignals | None = None) -> int:
    """Parse `argv` and run its command; `held`: the stop signals held since the start."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    if held is not None and args.command not in SERVING_COMMANDS:
        try:
            held.release()
        except KeyboardInterrupt:  # Ctrl-C during the start-up, delivered now
            return 128 + signal.SIGINT
    serving = args.command == "serve"
    worker_fd = args.worker_fd if serving else None
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(name)s: %(message)s"
        if worker_fd is None
        else f"%(name)s[worker {args.worker_index}]: %(message)s",
        stream=sys.stderr,
    )
    if worker_fd is not None:  # one of --workers N: failures go to the parent, which logs them
        link = WorkerLink(worker_fd)
        return _run(serve(args, link), loop_factory(args.loop), link.failed)
    if serving and args.workers > 1:
        host = DEFAULT_HOST if args.host is None else args.host
        try:
            with workers_metrics(args, host):
                return Supervisor(
                    sys.argv[1:] if argv is None else argv,
                    count=args.workers,
                    host=host,
                    port=DEFAULT_PORT if args.port is None else args.port,
                    grace=args.grace,
                    drain_delay=args.drain_delay,
                ).run()
        except OSError as exc:  # the metrics endpoint could not bind
            _log_error(str(exc))
            return 1
    factory = loop_factory(args.loop) if serving else None
    return _run(COMMANDS[args.command](args), factory, _log_error)


def _log_error(message: str) -> None:
    log.error("%s", message)


def _run(
    command: Coroutine[Any, Any, int],
    factory: Callable[[], asyncio.AbstractEventLoop] | None,
    report: Callable[[str], None],
) -> int:
    """Run `command` on a loop from `factory` (None: asyncio's); report a failure in one line."""
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(command)
    except (OSError, ValueError) as exc:  # unreachable address, unreadable trace file, ...
        report(str(exc))
    except GRPCError as exc:  # a failed RPC: say what happened, no traceback
        report(f"{exc.status.name}: {exc.message}")
    except StreamTerminatedError as exc:
        report(f"the connection failed: {exc}")
    except KeyboardInterrupt:  # Ctrl-C in a client command: the shell's convention, no traceback
        return 128 + signal.SIGINT
    return 1
