"""The tests' throwaway PKI: a CA, a server certificate and a client certificate.

A CA, a server certificate (SAN IP:127.0.0.1 and DNS:localhost) and a client certificate, made
by the `openssl` CLI in a pytest temporary directory (EC P-256, valid one day); no key ever
lands in the repository. tests/conftest.py offers them as the session fixture `certs`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CLIENT_CN = "greeter-test-client"


@dataclass(frozen=True)
class Certs:
    """PEM files of the session's throwaway PKI."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def read(self, name: str) -> bytes:
        path: Path = getattr(self, name)
        return path.read_bytes()


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, f"openssl {' '.join(args)} failed:\n{done.stderr}"


def _issue(directory: Path, name: str, subject: str, extensions: str, serial: int) -> None:
    """A P-256 key NAME.key and its certificate NAME.pem, signed by ca.pem/ca.key."""
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        *("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
        *("-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject),
        cwd=directory,
    )
    _openssl(
        *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-set_serial", str(serial), "-days", "1", "-out", f"{name}.pem"),
        *("-extfile", f"{name}.ext"),
        cwd=directory,
    )


def make_certs(directory: Path) -> Certs:
    """Issue the PKI into `directory` (fails the test when the openssl CLI is missing)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed to make the test certificates", pytrace=False)
    _openssl(
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
        *("-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=greeter test CA"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        cwd=directory,
    )
    leaf = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    _issue(
        directory,
        "server",
        "/CN=localhost",
        leaf + "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        serial=2,
    )
    _issue(
        directory,
        "client",
        f"/O=greeter tests/CN={CLIENT_CN}",
        leaf + "extendedKeyUsage=clientAuth\n",
        serial=3,
    )
    return Certs(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
