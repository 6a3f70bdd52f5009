"""TLS for gRPC over HTTP/2: the server's and the client's SSLContext, and the ALPN they agreed.

Stdlib ssl and asyncio only; no protocol logic. HTTP/2 over TLS is negotiated with ALPN "h2" (RFC
9113 §3.2) and gRPC speaks nothing else, so both contexts offer only "h2" and the server closes
every TLS connection that did not select it (greeter.server.tls_gate). The contexts follow RFC
9113 §9.2: TLS 1.2 or later, no TLS compression, no renegotiation, and on TLS 1.2 only ephemeral
key exchange with AEAD ciphers (§9.2.2). TLS 1.3's suites are all AEAD with ephemeral keys, and
OpenSSL's defaults for them are kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl

from greeter.wire.errors import SetupFileError

log = logging.getLogger("greeter.tls")

ALPN_H2 = "h2"
HTTP2_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""TLS 1.2 suites RFC 9113 §9.2.2 allows (ECDHE + AEAD); grpcio, grpc-go and grpc-js all offer
ECDHE-{ECDSA,RSA}-AES{128,256}-GCM, so nothing a gRPC peer uses is excluded."""


def _for_http2(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_ciphers(HTTP2_TLS12_CIPHERS)
    context.set_alpn_protocols([ALPN_H2])
    # NSS key log (what Wireshark reads to decrypt a capture), as curl and browsers honour it;
    # ssl.create_default_context does this for clients, a server context needs it set.
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog:
        context.keylog_filename = keylog
    return context


def _readable(kind: str, path: str) -> None:
    if not os.path.isfile(path):
        raise SetupFileError(f"{kind} {path}: no such file")
    if not os.access(path, os.R_OK):
        raise SetupFileError(f"{kind} {path}: not readable (permission denied)")


def _load_chain(context: ssl.SSLContext, cert_file: str, key_file: str | None) -> None:
    _readable("TLS certificate", cert_file)
    if key_file is not None:
        _readable("TLS private key", key_file)
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        why = exc.reason or "unreadable"  # OpenSSL says only "PEM lib" for a file mix-up
        raise SetupFileError(
            f"TLS certificate {cert_file} with key {key_file or cert_file}: {why} (expected a"
            " PEM certificate chain and the PEM private key that belongs to it)"
        ) from None


def _load_cas(context: ssl.SSLContext, ca_file: str) -> None:
    _readable("TLS CA file", ca_file)
    try:
        context.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        why = exc.reason or "unreadable"
        raise SetupFileError(f"TLS CA file {ca_file}: {why} (expected PEM certificates)") from None


def server_context(
    cert_file: str, key_file: str, client_ca_file: str | None = None
) -> ssl.SSLContext:
    """The server's context: its certificate chain and key, ALPN "h2", TLS >= 1.2.

    With `client_ca_file`, mutual TLS: a client must present a certificate signed by one of
    those CAs or the handshake fails; handlers see it as ``stream.peer.cert()``.
    """
    context = _for_http2(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    _load_chain(context, cert_file, key_file)
    if client_ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        _load_cas(context, client_ca_file)
    return context


def client_context(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """A client's context: verifies the server (against `ca_file`, else the system's CAs) and
    its host name; ALPN "h2"; with `cert_file` (and `key_file` unless the key is in it), the
    client certificate for mutual TLS."""
    if ca_file is None:
        context = _for_http2(ssl.create_default_context(ssl.Purpose.SERVER_AUTH))
    else:  # only these CAs, not the system's too (as create_default_context(cafile=...))
        context = _for_http2(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        _load_cas(context, ca_file)
    if cert_file is not None:
        _load_chain(context, cert_file, key_file)
    elif key_file is not None:
        raise ValueError("a client key needs its certificate (cert_file)")
    return context


def negotiated_alpn(transport: asyncio.BaseTransport) -> str | None:
    """The ALPN protocol the TLS handshake selected; None without TLS or without ALPN."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    selected: str | None = ssl_object.selected_alpn_protocol()
    return selected
