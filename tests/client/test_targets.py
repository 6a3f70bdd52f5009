"""Target strings as gRPC's naming doc names them (greeter.client.targets): parse and resolve."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from greeter.client.targets import Address, Target, parse_target, resolve

pytestmark = pytest.mark.timeout(10)


def tcp(host: str, port: int) -> Address:
    return Address(host, port, None)


def unix(path: str) -> Address:
    return Address(None, None, path)


VALID: list[tuple[str, Target]] = [
    # No scheme: read as dns:///target.
    ("localhost:50051", Target("dns", (tcp("localhost", 50051),), "localhost:50051")),
    ("localhost", Target("dns", (tcp("localhost", 443),), "localhost")),
    ("example.com:1", Target("dns", (tcp("example.com", 1),), "example.com:1")),
    ("example.com.:65535", Target("dns", (tcp("example.com.", 65535),), "example.com.:65535")),
    ("my_host-1:80", Target("dns", (tcp("my_host-1", 80),), "my_host-1:80")),
    ("127.0.0.1:8080", Target("dns", (tcp("127.0.0.1", 8080),), "127.0.0.1:8080")),
    ("host:0080", Target("dns", (tcp("host", 80),), "host:0080")),
    ("[::1]:50051", Target("dns", (tcp("::1", 50051),), "[::1]:50051")),
    ("[::1]", Target("dns", (tcp("::1", 443),), "[::1]")),
    ("[2001:db8::7]:9", Target("dns", (tcp("2001:db8::7", 9),), "[2001:db8::7]:9")),
    ("::1", Target("dns", (tcp("::1", 443),), "[::1]")),
    (
        "[fe80::1%25eth0]:80",
        Target("dns", (tcp("fe80::1%eth0", 80),), "[fe80::1%25eth0]:80"),
    ),
    # dns: in its three forms; the DNS-server authority is ignored.
    ("dns:///localhost:50051", Target("dns", (tcp("localhost", 50051),), "localhost:50051")),
    ("dns:///localhost", Target("dns", (tcp("localhost", 443),), "localhost")),
    ("dns:///[::1]:7", Target("dns", (tcp("::1", 7),), "[::1]:7")),
    ("dns:localhost:50051", Target("dns", (tcp("localhost", 50051),), "localhost:50051")),
    ("dns:/localhost:5", Target("dns", (tcp("localhost", 5),), "localhost:5")),
    ("dns://8.8.8.8/example.com:443", Target("dns", (tcp("example.com", 443),), "example.com:443")),
    ("dns://8.8.8.8:53/h:1", Target("dns", (tcp("h", 1),), "h:1")),
    ("DNS:///h:2", Target("dns", (tcp("h", 2),), "h:2")),
    # ipv4: and ipv6: lists, literally.
    ("ipv4:127.0.0.1:50051", Target("ipv4", (tcp("127.0.0.1", 50051),), "127.0.0.1:50051")),
    ("ipv4:10.0.0.1", Target("ipv4", (tcp("10.0.0.1", 443),), "10.0.0.1:443")),
    (
        "ipv4:1.2.3.4:5,6.7.8.9:10",
        Target("ipv4", (tcp("1.2.3.4", 5), tcp("6.7.8.9", 10)), "1.2.3.4:5"),
    ),
    (
        "ipv4:1.2.3.4,6.7.8.9:10",
        Target("ipv4", (tcp("1.2.3.4", 443), tcp("6.7.8.9", 10)), "1.2.3.4:443"),
    ),
    ("ipv4:///127.0.0.1:1", Target("ipv4", (tcp("127.0.0.1", 1),), "127.0.0.1:1")),
    ("ipv6:[::1]:50051", Target("ipv6", (tcp("::1", 50051),), "[::1]:50051")),
    ("ipv6:::1", Target("ipv6", (tcp("::1", 443),), "[::1]:443")),
    ("ipv6:[::1]", Target("ipv6", (tcp("::1", 443),), "[::1]:443")),
    (
        "ipv6:[::1]:1,[::2]:2",
        Target("ipv6", (tcp("::1", 1), tcp("::2", 2)), "[::1]:1"),
    ),
    (
        "ipv6:[2607:f8b0:400e:c00::ef]:443,::2",
        Target(
            "ipv6",
            (tcp("2607:f8b0:400e:c00::ef", 443), tcp("::2", 443)),
            "[2607:f8b0:400e:c00::ef]:443",
        ),
    ),
    ("ipv6:///[::1]:3", Target("ipv6", (tcp("::1", 3),), "[::1]:3")),
    # unix: relative, absolute, and the three-slash form.
    ("unix:/tmp/greeter.sock", Target("unix", (unix("/tmp/greeter.sock"),), "localhost")),
    ("unix:relative/greeter.sock", Target("unix", (unix("relative/greeter.sock"),), "localhost")),
    ("unix:greeter.sock", Target("unix", (unix("greeter.sock"),), "localhost")),
    ("unix:///tmp/greeter.sock", Target("unix", (unix("/tmp/greeter.sock"),), "localhost")),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[text for text, _ in VALID])
def test_valid_targets(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


def test_default_port_applies_where_no_port_is_written() -> None:
    assert parse_target("localhost", default_port=50051).addresses == (tcp("localhost", 50051),)
    assert parse_target("[::1]", default_port=80).addresses == (tcp("::1", 80),)
    assert parse_target("ipv4:1.2.3.4,5.6.7.8:9", default_port=7).addresses == (
        tcp("1.2.3.4", 7),
        tcp("5.6.7.8", 9),
    )
    assert parse_target("localhost:1", default_port=50051).addresses == (tcp("localhost", 1),)


@pytest.mark.parametrize("default_port", [0, 65536, -1, True])
def test_invalid_default_port(default_port: int) -> None:
    with pytest.raises(ValueError, match="default_port must be"):
        parse_target("localhost", default_port=default_port)


INVALID: list[tuple[str, str]] = [
    ("", "the target is empty"),
    ("x:y", "port must be 1-65535, got 'y'"),
    ("localhost:", "port must be 1-65535, got ''"),
    ("localhost:0", "port must be 1-65535, got '0'"),
    ("localhost:65536", "port must be 1-65535, got '65536'"),
    ("localhost:99999999999999999999", "port must be 1-65535"),
    ("localhost:-1", "port must be 1-65535"),
    ("localhost:+80", "port must be 1-65535"),
    ("localhost: 80", "port must be 1-65535"),
    ("localhost:\u0668\u0660", "port must be 1-65535"),  # Arabic-Indic digits
    (":80", "no host before ':port'"),
    ("a b:80", "'a b' is not a host name or IP address"),
    ("user@host:80", "is not a host name or IP address"),
    ("host..name:80", "is not a host name or IP address"),
    (" localhost:80", "is not a host name or IP address"),
    ("::1:50051", "an IPv6 address with a port goes in brackets"),
    ("x:y:z", "is not an IPv6 address"),
    ("[::1", "no ']' after the IPv6 address"),
    ("[::1]x", "unexpected 'x' after ']'"),
    ("[::1]:", "port must be 1-65535, got ''"),
    ("[::1]:0", "port must be 1-65535"),
    ("[localhost]:80", "'localhost' is not an IPv6 address"),
    ("[1.2.3.4]:80", "'1.2.3.4' is not an IPv6 address"),
    ("dns:", "no host"),
    ("dns:///", "no host"),
    ("dns:///:80", "no host before ':port'"),
    ("dns://localhost:50051", "no name after the authority (expected dns:///host:port"),
    ("dns:///h:0", "port must be 1-65535"),
    ("ipv4:", "no addresses"),
    ("ipv4:///", "no addresses"),
    ("ipv4://host/1.2.3.4:80", "ipv4: takes no authority"),
    ("ipv4:localhost:80", "'localhost' is not an IPv4 address"),
    ("ipv4:1.2.3:80", "'1.2.3' is not an IPv4 address"),
    ("ipv4:256.0.0.1", "is not an IPv4 address"),
    ("ipv4:[::1]:80", "'[::1]:80' is not address[:port]"),
    ("ipv4:1.2.3.4:0", "port must be 1-65535"),
    ("ipv4:1.2.3.4:80:90", "is not address[:port]"),
    ("ipv4:1.2.3.4,", "empty address in the list"),
    ("ipv4:,1.2.3.4", "empty address in the list"),
    ("ipv6:", "no addresses"),
    ("ipv6://h/[::1]:1", "ipv6: takes no authority"),
    ("ipv6:1.2.3.4", "'1.2.3.4' is not an IPv6 address"),
    ("ipv6:[::1]:70000", "port must be 1-65535"),
    ("ipv6:[::1", "no ']' after the IPv6 address"),
    ("ipv6:[::1],,[::2]", "empty address in the list"),
    ("unix:", "no socket path"),
    ("unix://", "unix:// must be followed by an absolute path"),
    ("unix://tmp/greeter.sock", "unix:// must be followed by an absolute path"),
    ("unix:/tmp/a\0b", "NUL byte"),
    ("unix-abstract:greeter", "unsupported scheme 'unix-abstract:'"),
    ("xds:///service", "unsupported scheme 'xds:'"),
    ("http://localhost:80", "unsupported scheme 'http:'"),
    ("foo:/bar", "unsupported scheme 'foo:'"),
]


@pytest.mark.parametrize(("text", "reason"), INVALID, ids=[repr(text) for text, _ in INVALID])
def test_invalid_targets_name_the_target_and_what_is_expected(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_target(text)
    message = str(caught.value)
    assert message.startswith(f"invalid target {text!r}: "), message
    assert reason in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (tcp("localhost", 50051), "localhost:50051"),
        (tcp("127.0.0.1", 1), "127.0.0.1:1"),
        (tcp("::1", 443), "[::1]:443"),
        (tcp("fe80::1%eth0", 80), "[fe80::1%eth0]:80"),
        (unix("/tmp/greeter.sock"), "unix:/tmp/greeter.sock"),
        (unix("relative.sock"), "unix:relative.sock"),
    ],
)
def test_address_str(address: Address, text: str) -> None:
    assert str(address) == text


@pytest.mark.parametrize(
    ("host", "port", "path"),
    [
        (None, None, None),
        ("h", None, None),
        (None, 80, None),
        ("", 80, None),
        ("h", 0, None),
        ("h", 65536, None),
        ("h", 80, "/p"),
        (None, None, ""),
    ],
)
def test_inconsistent_addresses_are_rejected(
    host: str | None, port: int | None, path: str | None
) -> None:
    with pytest.raises(ValueError):
        Address(host, port, path)


@pytest.mark.asyncio
async def test_resolve_localhost_gives_loopback_addresses() -> None:
    found = await resolve(parse_target("localhost:50051"))
    assert found
    assert len(set(found)) == len(found)
    for address in found:
        assert address.port == 50051 and address.path is None
        assert address.host is not None
        assert ipaddress.ip_address(address.host.partition("%")[0]).is_loopback


@pytest.mark.asyncio
async def test_resolve_ip_literal_through_dns_needs_no_network() -> None:
    assert await resolve(parse_target("dns:///127.0.0.1:7")) == [tcp("127.0.0.1", 7)]
    assert await resolve(parse_target("[::1]:7")) == [tcp("::1", 7)]


@pytest.mark.asyncio
async def test_resolve_literal_lists_come_back_literally() -> None:
    target = parse_target("ipv4:10.0.0.1:1,10.0.0.2:2,10.0.0.1:1")
    assert await resolve(target) == [tcp("10.0.0.1", 1), tcp("10.0.0.2", 2), tcp("10.0.0.1", 1)]
    assert await resolve(parse_target("ipv6:[::1]:1,::2")) == [tcp("::1", 1), tcp("::2", 443)]
    assert await resolve(parse_target("unix:/tmp/x.sock")) == [unix("/tmp/x.sock")]


@pytest.mark.asyncio
async def test_resolve_deduplicates_in_getaddrinfo_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every distinct IPv6 and IPv4 address, in getaddrinfo's order; other families skipped."""
    v6 = (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 9, 0, 0))
    v4 = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 9))
    other = (socket.AF_UNIX, socket.SOCK_STREAM, 0, "", "/x")
    calls: list[tuple[object, object, int]] = []

    async def fake_getaddrinfo(
        host: object, port: object, *, type: int = 0
    ) -> list[tuple[object, ...]]:
        calls.append((host, port, type))
        return [v6, v4, v6, other, v4]

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    found = await resolve(parse_target("service.example:9"))
    assert found == [tcp("::1", 9), tcp("127.0.0.1", 9)]
    assert calls == [("service.example", 9, socket.SOCK_STREAM)]


@pytest.mark.asyncio
async def test_resolve_failure_is_a_clear_oserror(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(host: object, port: object, *, type: int = 0) -> list[tuple[object, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def nothing(host: object, port: object, *, type: int = 0) -> list[tuple[object, ...]]:
        return []

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", refuse)
    with pytest.raises(
        socket.gaierror, match=r"cannot resolve host 'nowhere\.invalid' of target"
    ) as caught:
        await resolve(parse_target("nowhere.invalid:1"))
    assert caught.value.errno == socket.EAI_NONAME
    assert "Name or service not known" in str(caught.value)
    monkeypatch.setattr(loop, "getaddrinfo", nothing)
    with pytest.raises(OSError, match="resolved to no IPv4 or IPv6 address"):
        await resolve(parse_target("nowhere.invalid:1"))
