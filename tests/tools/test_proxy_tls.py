"""The proxy with TLS on either leg, or both: calls go through and the trace shows them.

In-process: greeter's server (cleartext or TLS) behind `Proxy` (TLS towards the clients, towards
the target, or both), greeter's client calling through it; the proxy's tap must decode the
plaintext HTTP/2 (the reply's message record), and mark a TLS client leg in its transport
record. A target whose certificate the proxy does not trust fails the call, with the proxy's
warning. From the command line, `greeter proxy --listen-tls-* --target-tls-ca` relays `hello`.
"""

from __future__ import annotations

import logging
import ssl

import pytest
from grpclib.exceptions import GRPCError

from greeter.client import Channel
from greeter.server import Server
from greeter.server.tls import client_context, server_context
from greeter.services.greeter import Greeter, GreeterStub, HelloRequest
from greeter.tap.observer import TapFactory
from greeter.tap.records import ConnectionRecord, MessageRecord, Record
from greeter.tap.resolve import MessageTypes
from greeter.tools.proxy import Proxy
from tests.support.peers import run_greeter, spawn_greeter_server, spawn_proxy
from tests.support.pki import Certs

pytestmark = pytest.mark.timeout(30)


def contexts(certs: Certs) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(a server's context, a client's context trusting it)."""
    return (
        server_context(str(certs.server_cert), str(certs.server_key)),
        client_context(str(certs.ca)),
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("listen", "target"), [(True, False), (False, True), (True, True)], ids=["in", "out", "both"]
)
async def test_a_call_through_a_tls_leg(certs: Certs, listen: bool, target: bool) -> None:
    records: list[Record] = []
    tap = TapFactory(records.append, types=MessageTypes.from_module("gen.greet"), raw=True)
    server_tls, client_tls = contexts(certs)
    async with (
        Server([Greeter()], port=0, ssl=server_tls if target else None) as server,
        Proxy(
            "127.0.0.1",
            0,
            "127.0.0.1",
            server.port,
            tap=tap,
            listen_ssl=server_tls if listen else None,
            target_ssl=client_tls if target else None,
        ) as proxy,
        Channel(f"127.0.0.1:{proxy.port}", ssl=client_tls if listen else None) as channel,
    ):
        reply = await GreeterStub(channel).say_hello(HelloRequest(name="tls"), timeout=5)
    assert reply.message == "Hello tls"
    replies = [r for r in records if isinstance(r, MessageRecord) and r.direction == "out"]
    assert [r.decoded for r in replies] == [reply]
    [transport] = [r for r in records if isinstance(r, ConnectionRecord) and r.event == "transport"]
    assert transport.tls is listen


@pytest.mark.asyncio
async def test_an_untrusted_target_fails_the_call(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="greeter.proxy")
    server_tls, _ = contexts(certs)
    untrusting = client_context()  # the system CAs: not the test CA
    async with (
        Server([Greeter()], port=0, ssl=server_tls) as server,
        Proxy("127.0.0.1", 0, "127.0.0.1", server.port, target_ssl=untrusting) as proxy,
        Channel(f"127.0.0.1:{proxy.port}") as channel,
    ):
        with pytest.raises(GRPCError):
            await GreeterStub(channel).say_hello(HelloRequest(name="x"), timeout=5)
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_the_proxy_command_with_tls_on_both_legs(certs: Certs) -> None:
    serve_tls = ("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key))
    proxy_tls = (
        *("--listen-tls-cert", str(certs.server_cert), "--listen-tls-key", str(certs.server_key)),
        *("--target-tls-ca", str(certs.ca)),
    )
    with (
        spawn_greeter_server(*serve_tls) as server,
        spawn_proxy(server.target, *proxy_tls) as proxy,
    ):
        done = run_greeter("hello", "both", "--target", proxy.target, "--tls-ca", str(certs.ca))
        assert (done.returncode, done.stdout) == (0, "Hello both\n"), done.stderr
        proxy.wait_for_line(r"greet\.HelloReply", 10)


def test_listen_tls_needs_cert_and_key(certs: Certs) -> None:
    done = run_greeter(
        "proxy", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:1",
        "--listen-tls-cert", str(certs.server_cert),
    )  # fmt: skip
    assert done.returncode == 2
    assert "--listen-tls-cert and --listen-tls-key go together" in done.stderr
