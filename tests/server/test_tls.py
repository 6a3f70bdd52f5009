"""TLS: greeter's server behind greeter.server.tls contexts, against grpcio, a raw stdlib-ssl
client, a cleartext client and greeter's own `hello`.

Certificates: the session's throwaway PKI, the `certs` fixture (tests/support/pki.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Cardinality, Handler

from gen.greet import GreeterStub, HelloReply, HelloRequest
from greeter.client import Channel as GreeterChannel
from greeter.server import Server, ServerConfig, Service
from greeter.server.handler_stream import ServerStream
from greeter.server.tls import client_context, server_context
from greeter.services.greeter import Greeter
from greeter.wire.errors import SetupFileError
from tests.support.peers import GrpcioGreeter, assert_one_line_failure, run_greeter
from tests.support.pki import CLIENT_CN, Certs
from tests.support.transports import (
    RPC_TIMEOUT,
    greeter_serve,
    grpcio_calls_all_four,
    grpclib_calls_all_four,
)

pytestmark = pytest.mark.timeout(30)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
SETTINGS = 0x4
GREETER_TLS_SERVING = r"serving .* on (\S+):(\d+) \(TLS"


# --------------------------------------------------------------------------- servers, clients


class PeerRecorder:
    """/greet.Greeter/SayHello that records `stream.peer.cert()` of each call."""

    def __init__(self) -> None:
        self.certs: list[dict[str, Any] | None] = []

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/greet.Greeter/SayHello": Handler(
                self._say_hello, Cardinality.UNARY_UNARY, HelloRequest, HelloReply
            )
        }

    async def _say_hello(self, stream: ServerStream[HelloRequest, HelloReply]) -> None:
        request = await stream.recv_message()
        assert request is not None
        self.certs.append(stream.peer.cert())
        await stream.send_message(HelloReply(message=f"Hello {request.name}"))


@asynccontextmanager
async def tls_server(
    certs: Certs,
    *,
    mutual: bool = False,
    services: list[Service] | None = None,
    uds: str | None = None,
) -> AsyncIterator[Server]:
    """greeter's Server with TLS (mutual TLS with `mutual`) in the test's event loop."""
    context = server_context(
        str(certs.server_cert), str(certs.server_key), str(certs.ca) if mutual else None
    )
    config = ServerConfig(grace_period=0.5)
    chosen = services if services is not None else [Greeter()]
    async with Server(chosen, port=0, config=config, ssl=context, uds=uds) as server:
        yield server


@contextmanager
def grpcio_tls_channel(
    target: str, certs: Certs, *, client_cert: bool = False
) -> Iterator[GrpcioGreeter]:
    """A grpcio secure channel trusting the test CA (with the client certificate if asked)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certs.read("ca"),
        private_key=certs.read("client_key") if client_cert else None,
        certificate_chain=certs.read("client_cert") if client_cert else None,
    )
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.secure_channel(target, credentials, options=options) as channel:
        yield GrpcioGreeter.for_channel(channel)


def grpcio_tls_all_four(target: str, certs: Certs, *, client_cert: bool = False) -> None:
    with grpcio_tls_channel(target, certs, client_cert=client_cert) as greeter:
        grpcio_calls_all_four(greeter)


def grpcio_say_hello_code(target: str, certs: Certs | None) -> grpc.StatusCode:
    """One SayHello through grpcio, over TLS without a client certificate (or cleartext when
    `certs` is None); its status code."""
    channel = grpcio_tls_channel(target, certs) if certs is not None else _insecure_channel(target)
    with channel as greeter:
        try:
            greeter.say_hello(HelloRequest(name="Ada"), timeout=RPC_TIMEOUT)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
    return grpc.StatusCode.OK


@contextmanager
def _insecure_channel(target: str) -> Iterator[GrpcioGreeter]:
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        yield GrpcioGreeter.for_channel(channel)


def _record_loop_errors() -> list[dict[str, Any]]:
    """Collect what reaches the running loop's exception handler (nothing should)."""
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
    return errors


# ------------------------------------------------------------------------------------- tests


@pytest.mark.asyncio
async def test_grpcio_calls_all_four_rpcs_over_tls(certs: Certs) -> None:
    async with tls_server(certs) as server:
        await asyncio.to_thread(grpcio_tls_all_four, f"127.0.0.1:{server.port}", certs)
        await asyncio.to_thread(grpcio_tls_all_four, f"localhost:{server.port}", certs)


@pytest.mark.asyncio
async def test_grpclib_channel_over_tls(certs: Certs) -> None:
    async with tls_server(certs) as server:
        channel = Channel("127.0.0.1", server.port, ssl=client_context(str(certs.ca)))
        try:
            await grpclib_calls_all_four(GreeterStub(channel))
        finally:
            channel.close()


@pytest.mark.asyncio
async def test_mutual_tls_handler_sees_the_client_certificate(certs: Certs) -> None:
    recorder = PeerRecorder()
    async with tls_server(certs, mutual=True, services=[Greeter(), recorder]) as server:
        target = f"127.0.0.1:{server.port}"
        await asyncio.to_thread(grpcio_tls_all_four, target, certs, client_cert=True)
    assert len(recorder.certs) == 1
    cert = recorder.certs[0]
    assert cert is not None
    subject = dict(pair for rdn in cert["subject"] for pair in rdn)
    assert subject == {"organizationName": "greeter tests", "commonName": CLIENT_CN}
    issuer = dict(pair for rdn in cert["issuer"] for pair in rdn)
    assert issuer == {"commonName": "greeter test CA"}


@pytest.mark.asyncio
async def test_mutual_tls_without_a_client_certificate_fails_the_handshake(certs: Certs) -> None:
    errors = _record_loop_errors()
    recorder = PeerRecorder()
    async with tls_server(certs, mutual=True, services=[Greeter(), recorder]) as server:
        target = f"127.0.0.1:{server.port}"
        code = await asyncio.to_thread(grpcio_say_hello_code, target, certs)
        assert code == grpc.StatusCode.UNAVAILABLE
        assert recorder.certs == []
        assert not server.connections
        # ... and a client with its certificate is still served.
        await asyncio.to_thread(grpcio_tls_all_four, target, certs, client_cert=True)
    assert errors == []


@pytest.mark.asyncio
async def test_tls_without_client_auth_exposes_no_certificate(certs: Certs) -> None:
    recorder = PeerRecorder()
    async with tls_server(certs, services=[Greeter(), recorder]) as server:
        await asyncio.to_thread(grpcio_tls_all_four, f"127.0.0.1:{server.port}", certs)
    assert recorder.certs == [None]  # TLS without client authentication: no peer certificate


def _cleartext_h2_attempt(port: int) -> bytes:
    """Send the HTTP/2 preface and a SETTINGS frame in clear; everything read until EOF."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with suppress(OSError):
            sock.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        for _ in range(100):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return received


@pytest.mark.asyncio
async def test_cleartext_clients_to_the_tls_port_fail_cleanly(certs: Certs) -> None:
    errors = _record_loop_errors()
    async with tls_server(certs) as server:
        target = f"127.0.0.1:{server.port}"
        code = await asyncio.to_thread(grpcio_say_hello_code, target, None)
        assert code == grpc.StatusCode.UNAVAILABLE
        received = await asyncio.to_thread(_cleartext_h2_attempt, server.port)
        # At most a TLS alert record (content type 21), never an HTTP/2 frame.
        assert received == b"" or received[0] == 0x15, received[:32]
        assert not server.connections
        await asyncio.to_thread(grpcio_tls_all_four, target, certs)
    assert errors == []


def _tls_attempt(port: int, ca: Path, alpn: list[str] | None) -> tuple[str | None, bytes]:
    """Handshake (offering `alpn`), send the HTTP/2 preface, then read until EOF or until one
    frame header arrived; the ALPN protocol selected and the bytes read."""
    context = ssl.create_default_context(cafile=str(ca))
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    received = b""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        selected = tls.selected_alpn_protocol()
        with suppress(OSError):
            tls.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        for _ in range(100):
            try:
                chunk = tls.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            received += chunk
            if len(received) >= FRAME_HEADER:
                break
    return selected, received


@pytest.mark.asyncio
@pytest.mark.parametrize("alpn", [None, ["http/1.1"]], ids=["no-alpn", "http1.1"])
async def test_a_tls_client_without_alpn_h2_is_closed(
    certs: Certs, alpn: list[str] | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="greeter.tls")
    errors = _record_loop_errors()
    async with tls_server(certs) as server:
        selected, received = await asyncio.to_thread(_tls_attempt, server.port, certs.ca, alpn)
        assert selected is None
        assert received == b""  # closed before the server's SETTINGS: no HTTP/2 at all
        assert "gRPC needs 'h2'" in caplog.text
        assert not server.connections
        await asyncio.to_thread(grpcio_tls_all_four, f"127.0.0.1:{server.port}", certs)
    assert errors == []


@pytest.mark.asyncio
async def test_a_tls_client_offering_h2_gets_the_server_settings(certs: Certs) -> None:
    """The control for the test above: the same raw client, offering h2, is answered."""
    async with tls_server(certs) as server:
        alpn = ["http/1.1", "h2"]
        selected, received = await asyncio.to_thread(_tls_attempt, server.port, certs.ca, alpn)
    assert selected == "h2"
    assert len(received) >= FRAME_HEADER
    assert received[3] == SETTINGS


@pytest.mark.asyncio
async def test_tls_over_a_unix_socket(certs: Certs, tmp_path: Path) -> None:
    path = str(tmp_path / "tls.sock")
    async with tls_server(certs, uds=path) as server:
        assert server.address == path
        channel = Channel(
            path=path,
            ssl=client_context(str(certs.ca)),
            config=Configuration(ssl_target_name_override="localhost"),
        )
        try:
            await grpclib_calls_all_four(GreeterStub(channel))
        finally:
            channel.close()
        done = await asyncio.to_thread(
            run_greeter, "hello", "Uds", "--target", f"unix:{path}", "--tls-ca", str(certs.ca)
        )
    assert (done.returncode, done.stdout) == (0, "Hello Uds\n"), done


def test_contexts_follow_rfc_9113_section_9_2(certs: Certs) -> None:
    server = server_context(str(certs.server_cert), str(certs.server_key))
    for context in (server, client_context(str(certs.ca))):
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert context.options & ssl.OP_NO_COMPRESSION
        assert context.options & ssl.OP_NO_RENEGOTIATION
        tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12
        assert all(c["kea"] == "kx-ecdhe" and c["aead"] for c in tls12), tls12
    assert server.verify_mode == ssl.CERT_NONE
    mutual = server_context(str(certs.server_cert), str(certs.server_key), str(certs.ca))
    assert mutual.verify_mode == ssl.CERT_REQUIRED


def _tls12_handshake(port: int, ca: Path, cipher: str) -> str:
    """A TLS 1.2 handshake offering only `cipher` (and ALPN h2); the suite agreed."""
    context = ssl.create_default_context(cafile=str(ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(cipher)
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        agreed = tls.cipher()
        assert agreed is not None
        return agreed[0]


@pytest.mark.asyncio
async def test_tls12_needs_ecdhe_with_aead(certs: Certs) -> None:
    async with tls_server(certs) as server:
        good = "ECDHE-ECDSA-AES128-GCM-SHA256"
        assert await asyncio.to_thread(_tls12_handshake, server.port, certs.ca, good) == good
        with pytest.raises(ssl.SSLError):  # CBC + HMAC: not an AEAD suite (RFC 9113 §9.2.2)
            await asyncio.to_thread(
                _tls12_handshake, server.port, certs.ca, "ECDHE-ECDSA-AES128-SHA256"
            )


# ---------------------------------------------------------------------------------- the CLI


def test_cli_hello_over_tls(certs: Certs) -> None:
    tls = ("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key))
    with greeter_serve("--port", "0", *tls, serving=GREETER_TLS_SERVING) as process:
        match = process.wait_for_line(GREETER_TLS_SERVING, 1)
        target = f"{match.group(1)}:{match.group(2)}"
        done = run_greeter("hello", "Ada", "--target", target, "--tls-ca", str(certs.ca))
        assert (done.returncode, done.stdout) == (0, "Hello Ada\n"), done
        # Without --tls-ca the client speaks cleartext: one error line, no traceback.
        assert_one_line_failure(run_greeter("hello", "Ada", "--target", target))
        # TLS but trusting only the system CAs: verification fails, one line.
        client = ("--tls-cert", str(certs.client_cert), "--tls-key", str(certs.client_key))
        done = run_greeter("hello", "Ada", "--target", target, *client)
        assert "CERTIFICATE_VERIFY_FAILED" in assert_one_line_failure(done)


def test_cli_hello_over_mutual_tls(certs: Certs) -> None:
    tls = ("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key))
    serving = r"serving .* on (\S+):(\d+) \(TLS, client certificates required\)"
    with greeter_serve("--port", "0", *tls, "--tls-client-ca", str(certs.ca), serving=serving) as p:
        match = p.wait_for_line(serving, 1)
        target = ("--target", f"{match.group(1)}:{match.group(2)}", "--tls-ca", str(certs.ca))
        client = ("--tls-cert", str(certs.client_cert), "--tls-key", str(certs.client_key))
        done = run_greeter("hello", "Mutual", *target, *client)
        assert (done.returncode, done.stdout) == (0, "Hello Mutual\n"), done
        assert_one_line_failure(run_greeter("hello", "Anonymous", *target))


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "--tls-cert", "cert.pem"),
        ("serve", "--tls-key", "key.pem"),
        ("serve", "--tls-client-ca", "ca.pem"),
        ("hello", "x", "--tls-key", "key.pem"),
    ],
)
def test_cli_rejects_incomplete_tls_options(args: tuple[str, ...]) -> None:
    done = run_greeter(*args)
    assert done.returncode == 2, done
    assert "--tls-" in done.stderr, done.stderr


# -- files that cannot be used are named, and the key log is written ---------------------------


def test_missing_and_swapped_files_are_named(certs: Certs, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    cert, key = str(certs.server_cert), str(certs.server_key)
    cases = [
        (lambda: server_context(missing, key), f"TLS certificate {missing}: no such file"),
        (lambda: server_context(cert, missing), f"TLS private key {missing}: no such file"),
        (lambda: server_context(cert, key, missing), f"TLS CA file {missing}: no such file"),
        (lambda: client_context(missing), f"TLS CA file {missing}: no such file"),
        (lambda: server_context(key, cert), f"TLS certificate {key} with key {cert}: "),
        (lambda: client_context(cert_file=key), f"TLS certificate {key} with key {key}: "),
    ]
    for build, message in cases:
        with pytest.raises(SetupFileError) as caught:
            build()
        assert str(caught.value).startswith(message), caught.value
        assert isinstance(caught.value, ValueError)


def test_cli_names_a_missing_file_in_one_line(certs: Certs, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    serve = run_greeter("serve", "--port", "0", "--tls-cert", missing, "--tls-key", missing)
    assert assert_one_line_failure(serve) == f"greeter: TLS certificate {missing}: no such file"
    hello = run_greeter("hello", "x", "--tls-ca", missing)
    assert assert_one_line_failure(hello) == f"greeter: TLS CA file {missing}: no such file"
    socket_path = str(tmp_path / "no-such-dir" / "s.sock")
    uds = run_greeter("serve", "--uds", socket_path)
    line = assert_one_line_failure(uds)
    assert line == f"greeter: Unix socket {socket_path}: no directory {tmp_path / 'no-such-dir'}"


@pytest.mark.asyncio
async def test_sslkeylogfile_is_honoured_by_both_contexts(
    certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wireshark decrypts a capture with the NSS key log that SSLKEYLOGFILE names."""
    server_log, client_log = tmp_path / "server.keys", tmp_path / "client.keys"
    monkeypatch.setenv("SSLKEYLOGFILE", str(server_log))
    tls = server_context(str(certs.server_cert), str(certs.server_key))
    monkeypatch.setenv("SSLKEYLOGFILE", str(client_log))
    client = client_context(str(certs.ca))
    async with (
        Server([Greeter()], port=0, ssl=tls) as server,
        GreeterChannel(f"localhost:{server.port}", ssl=client) as channel,
    ):
        reply = await GreeterStub(channel).say_hello(HelloRequest(name="k"))
    assert reply.message == "Hello k"
    for log_file in (server_log, client_log):
        assert "CLIENT_TRAFFIC_SECRET_0" in log_file.read_text(), log_file
