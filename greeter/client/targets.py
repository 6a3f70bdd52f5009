"""Channel targets as gRPC names them: parse a target string, resolve it to socket addresses.

Implements the name syntax of gRPC's naming doc
(https://github.com/grpc/grpc/blob/master/doc/naming.md), with grpc-core's behaviour where the
doc leaves room:

- ``dns:[//authority/]host[:port]``, and any target without a known scheme (``host:port``,
  ``host``, ``[v6]:port``, ``[v6]``, or a bare IPv6 literal such as ``::1``) is read as
  ``dns:///target``. The DNS-server ``authority`` is accepted and ignored, as grpc-python does
  without a custom resolver; the port defaults to `default_port` (443 in gRPC).
- ``ipv4:address[:port][,address[:port],...]`` and
  ``ipv6:address|[address]:port[,...]``: literal address lists (``ipv4:///...`` too).
- ``unix:path`` (relative or absolute) and ``unix:///absolute/path``.

A `Target` keeps the addresses as written (a dns target's one unresolved host and port) and the
``:authority`` a call carries: the ``host[:port]`` as written for dns, the first address for
ipv4/ipv6 lists, ``localhost`` for Unix sockets (gRPC's default). `resolve` turns a target into
the addresses to connect to, asking DNS (``getaddrinfo``) only for dns targets.

Targets are taken literally: percent-escapes are not decoded, except ``%25`` before an IPv6
zone (``[fe80::1%25eth0]``, RFC 6874). Every malformed target raises `ValueError` with one line
that names the target and what was expected.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Literal

__all__ = ["Address", "Scheme", "Target", "parse_target", "resolve"]

Scheme = Literal["dns", "ipv4", "ipv6", "unix"]

UNIX_AUTHORITY = "localhost"
"""The :authority of a Unix-socket target: gRPC's default for it."""

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", re.DOTALL)
_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
_DIGITS = re.compile(r"[0-9]+")
_OTHER_GRPC_SCHEMES = frozenset({"unix-abstract", "vsock", "xds", "passthrough", "google-c2p"})
"""Schemes gRPC knows and greeter does not: named as unsupported instead of read as host:port."""
_EXPECTED = "dns:, ipv4:, ipv6:, unix: or host:port"


@dataclass(frozen=True)
class Address:
    """One address to connect to: an IP (or not yet resolved host) and port, or a socket path."""

    host: str | None
    """Host name or IP address without brackets (an IPv6 zone as ``%eth0``); None for Unix."""
    port: int | None
    """TCP port, 1-65535; None for Unix."""
    path: str | None = None
    """Unix socket path; None for TCP."""

    def __post_init__(self) -> None:
        if self.path is not None:
            if not self.path or self.host is not None or self.port is not None:
                raise ValueError(f"{self!r}: a Unix address has a non-empty path and no host/port")
        elif not self.host or self.port is None or not 1 <= self.port <= 65535:
            raise ValueError(f"{self!r}: a TCP address needs a host and a port 1-65535")

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        if self.host is not None and ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Target:
    """A parsed channel target: its scheme, its addresses as written and its :authority."""

    scheme: Scheme
    addresses: tuple[Address, ...]
    """The literal addresses (ipv4, ipv6, unix) or the one unresolved host and port (dns)."""
    authority: str
    """The :authority header value calls on this target carry."""


def parse_target(text: str, default_port: int = 443) -> Target:
    """Parse a gRPC target string; `default_port` applies where the target names no port.

    Raises `ValueError` ("invalid target 'x:y': port must be 1-65535, got 'y'") for anything
    malformed.
    """
    if isinstance(default_port, bool) or not isinstance(default_port, int):
        raise ValueError(f"default_port must be an int 1-65535, got {default_port!r}")
    if not 1 <= default_port <= 65535:
        raise ValueError(f"default_port must be 1-65535, got {default_port}")
    if not text:
        raise _invalid(text, f"the target is empty (expected {_EXPECTED})")
    match = _SCHEME.fullmatch(text)
    if match is not None:
        scheme, rest = match[1].lower(), match[2]
        if scheme == "dns":
            return _parse_dns(text, rest, default_port)
        if scheme == "ipv4":
            return _parse_ip_list(text, "ipv4", rest, default_port)
        if scheme == "ipv6":
            return _parse_ip_list(text, "ipv6", rest, default_port)
        if scheme == "unix":
            return _parse_unix(text, rest)
        if scheme in _OTHER_GRPC_SCHEMES or rest.startswith("/"):
            raise _invalid(text, f"unsupported scheme '{match[1]}:' (expected {_EXPECTED})")
    # No scheme, or not one gRPC knows: the whole text is a dns name, as in grpc-core.
    return _dns_target(text, text, default_port)


async def resolve(target: Target) -> list[Address]:
    """The addresses to connect to: DNS answers for a dns target, the literal ones otherwise.

    A dns target's host is looked up with ``getaddrinfo`` (TCP); every distinct address comes
    back, IPv6 and IPv4, in getaddrinfo's order. A lookup that fails or finds nothing raises
    `OSError` (`socket.gaierror` when the resolver refused) naming the host and the target.
    """
    if target.scheme != "dns":
        return list(target.addresses)
    loop = asyncio.get_running_loop()
    found: list[Address] = []
    seen: set[tuple[str, int]] = set()
    for address in target.addresses:
        try:
            infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise socket.gaierror(
                exc.errno,
                f"cannot resolve host {address.host!r} of target {target.authority!r}: "
                f"{exc.strerror}",
            ) from exc
        for family, _type, _proto, _name, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            key = (str(sockaddr[0]), int(sockaddr[1]))
            if key not in seen:
                seen.add(key)
                found.append(Address(host=key[0], port=key[1], path=None))
    if not found:
        raise OSError(f"target {target.authority!r} resolved to no IPv4 or IPv6 address")
    return found


def _invalid(text: str, reason: str) -> ValueError:
    return ValueError(f"invalid target {text!r}: {reason}")


def _strip_authority(text: str, rest: str, example: str) -> str:
    """``//authority/name`` → name (authority checked by the caller); ``/name`` → name."""
    if rest.startswith("//"):
        _authority, slash, name = rest[2:].partition("/")
        if not slash:
            raise _invalid(text, f"no name after the authority (expected {example})")
        return name
    return rest.removeprefix("/")


def _parse_dns(text: str, rest: str, default_port: int) -> Target:
    # dns://dns-server/host:port names a DNS server; grpc-python ignores it, and so do we.
    name = _strip_authority(text, rest, "dns:///host:port, with three slashes")
    return _dns_target(text, name, default_port)


def _dns_target(text: str, name: str, default_port: int) -> Target:
    if not name:
        raise _invalid(text, "no host (expected host:port)")
    if name.startswith("["):
        host, port = _bracketed(text, name, default_port)
        authority = name
    elif name.count(":") > 1:
        # grpc-core reads 2+ colons without brackets as a bare IPv6 literal (no port).
        _ipv6(text, name, hint="an IPv6 address with a port goes in brackets: [v6]:port")
        host, port = name, default_port
        authority = f"[{name}]"
    else:
        host, colon, port_text = name.partition(":")
        port = _port(text, port_text) if colon else default_port
        if not host:
            raise _invalid(text, "no host before ':port' (expected host:port)")
        if _HOST_NAME.fullmatch(host) is None:
            raise _invalid(text, f"{host!r} is not a host name or IP address")
        authority = name
    return Target("dns", (Address(host, port, None),), authority)


def _parse_ip_list(
    text: str, scheme: Literal["ipv4", "ipv6"], rest: str, default_port: int
) -> Target:
    example = "ipv4:1.2.3.4:50051,5.6.7.8" if scheme == "ipv4" else "ipv6:[::1]:50051,::2"
    if rest.startswith("//") and not rest.startswith("///"):
        raise _invalid(text, f"{scheme}: takes no authority (expected {example})")
    items = _strip_authority(text, rest, example)
    if not items:
        raise _invalid(text, f"no addresses (expected {example})")
    addresses: list[Address] = []
    for item in items.split(","):
        if not item:
            raise _invalid(text, f"empty address in the list (expected {example})")
        if scheme == "ipv4":
            host, colon, port_text = item.partition(":")
            if ":" in port_text:
                raise _invalid(text, f"{item!r} is not address[:port] (expected {example})")
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise _invalid(text, f"{host!r} is not an IPv4 address") from None
            port = _port(text, port_text) if colon else default_port
        elif item.startswith("["):
            host, port = _bracketed(text, item, default_port)
        else:
            host = _ipv6(text, item, hint=f"expected {example}")
            port = default_port
        addresses.append(Address(host, port, None))
    return Target(scheme, tuple(addresses), str(addresses[0]))


def _parse_unix(text: str, rest: str) -> Target:
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        if authority or not slash:
            raise _invalid(
                text, "unix:// must be followed by an absolute path (expected unix:///abs/path)"
            )
        path = "/" + path
    else:
        path = rest
    if not path:
        raise _invalid(text, "no socket path (expected unix:/abs/path or unix:relative/path)")
    if "\0" in path:
        raise _invalid(text, "the socket path contains a NUL byte")
    return Target("unix", (Address(None, None, path),), UNIX_AUTHORITY)


def _bracketed(text: str, name: str, default_port: int) -> tuple[str, int]:
    """``[v6]`` or ``[v6]:port`` → (v6 without brackets, port)."""
    end = name.find("]")
    if end < 0:
        raise _invalid(text, "no ']' after the IPv6 address (expected [v6]:port)")
    host = _ipv6(text, name[1:end].replace("%25", "%", 1), hint="expected [v6]:port")
    after = name[end + 1 :]
    if not after:
        return host, default_port
    if not after.startswith(":"):
        raise _invalid(text, f"unexpected {after!r} after ']' (expected [v6]:port)")
    return host, _port(text, after[1:])


def _ipv6(text: str, host: str, hint: str) -> str:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise _invalid(text, f"{host!r} is not an IPv6 address; {hint}") from None
    return host


def _port(text: str, port_text: str) -> int:
    digits = port_text.lstrip("0") or "0"
    if _DIGITS.fullmatch(port_text) is None or len(digits) > 5 or not 1 <= int(digits) <= 65535:
        raise _invalid(text, f"port must be 1-65535, got {port_text!r}")
    return int(digits)
