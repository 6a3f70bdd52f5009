"""The options of the commands that call a server (`hello`, `call`): the target and TLS.

Only wiring: argparse options in, a validated target string and an SSL context out.
"""

from __future__ import annotations

import argparse
import ssl

from greeter.client.targets import parse_target
from greeter.server.tls import client_context

DEFAULT_PORT = 50051
"""greeter's port: where `serve` listens by default, and the port of a target without one."""


def client_target(target: str) -> str:
    """A gRPC target (host:port, [v6]:port, dns:, ipv4:, ipv6:, unix:PATH); the port defaults
    to 50051, greeter's."""
    try:
        parse_target(target, DEFAULT_PORT)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return target


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """--tls-ca, --tls-cert and --tls-key: any of them makes the client speak TLS."""
    parser.add_argument(
        "--tls-ca", metavar="PATH", help="use TLS; verify the server against these PEM CAs"
    )
    parser.add_argument(
        "--tls-cert", metavar="PATH", help="use TLS with this PEM client certificate (mutual TLS)"
    )
    parser.add_argument("--tls-key", metavar="PATH", help="the PEM private key of --tls-cert")


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The client's TLS context for the --tls-* options; None (cleartext) without them."""
    if args.tls_ca is None and args.tls_cert is None:
        return None
    return client_context(args.tls_ca, args.tls_cert, args.tls_key)
