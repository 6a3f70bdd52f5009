"""Connections the TLS gate refuses leave a log line and a trace record with the reason.

`greeter serve` with TLS and a JSONL trace (on asyncio and on uvloop) is sent, from plain
sockets: the HTTP/2 client preface in cleartext, an HTTP/1.1 request in cleartext, a TLS client
that does not trust the server's certificate (it aborts the handshake with an alert), and a TLS
client that offers only ALPN http/1.1; then greeter's own `hello`, which is served. Each refusal
is one WARNING line of `greeter.tls` naming the peer and the reason, and one connection `close`
record carrying the same reason; the served call gets its own connection id after them.
"""

from __future__ import annotations

import re
import socket
import ssl
from contextlib import suppress
from pathlib import Path

import pytest

from greeter.tap.jsonl import read_jsonl
from tests.support.peers import run_greeter, spawn_greeter_server
from tests.support.pki import Certs

pytestmark = pytest.mark.timeout(60)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REASONS = [
    "cleartext HTTP/2 (the client preface) sent to a TLS port",
    "cleartext HTTP/1.x sent to a TLS port",
    "TLS handshake failed: TLSV1_ALERT_UNKNOWN_CA",
    "ALPN not negotiated, gRPC needs 'h2'",
]


def cleartext(port: int, data: bytes) -> str:
    """Send `data` in clear, read until the server closes; this client's address."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        sock.sendall(data)
        with suppress(OSError):
            while sock.recv(65536):
                pass
    return address


def tls_client(port: int, context: ssl.SSLContext) -> str:
    """A TLS handshake with `context`; this client's address (the handshake may fail)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        with (
            suppress(ssl.SSLError, OSError),
            context.wrap_socket(sock, server_hostname="localhost") as tls,
        ):
            while tls.recv(65536):
                pass
    return address


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_refused_connections_are_logged_and_traced(tmp_path: Path, certs: Certs, loop: str) -> None:
    trace = tmp_path / "trace.jsonl"
    tls = ("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key))
    untrusting = ssl.create_default_context()  # the system CAs: not the test CA
    http1 = ssl.create_default_context(cafile=str(certs.ca))
    http1.set_alpn_protocols(["http/1.1"])
    with spawn_greeter_server(*tls, "--loop", loop, "--trace-file", str(trace)) as server:
        port = int(server.target.rpartition(":")[2])
        clients = [
            cleartext(port, PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"),
            cleartext(port, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            tls_client(port, untrusting),
            tls_client(port, http1),
        ]
        for client, reason in zip(clients, REASONS, strict=True):
            server.wait_for_line(re.escape(f"greeter.tls: refused {client}: {reason}"), 10)
        done = run_greeter("hello", "after", "--target", server.target, "--tls-ca", str(certs.ca))
        assert (done.returncode, done.stdout) == (0, "Hello after\n"), done.stderr
    closes = [
        (obj["conn"], obj.get("peer"), obj.get("reason"))
        for obj in read_jsonl(trace)
        if obj["layer"] == "connection" and obj["event"] == "close"
    ]
    expected = [(n, c, r) for n, (c, r) in enumerate(zip(clients, REASONS, strict=True), 1)]
    assert closes[:4] == expected
    assert [conn for conn, _, _ in closes[4:]] == [5]  # the served call's connection
    assert not [line for line in server.lines() if "Traceback" in line]
