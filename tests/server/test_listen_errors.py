"""A host the server or the proxy cannot listen on is named in the error (issue 13: the
resolver alone says "Name or service not known", naming nothing). The resolver is replaced by one
that refuses, so nothing depends on the machine's DNS."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from greeter.server import Server
from greeter.tools.proxy import Proxy

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]


async def unknown_host(*args: Any, **kwargs: Any) -> Any:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize("server", ["Server", "Proxy"])
async def test_an_unresolvable_host_is_named(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", unknown_host)
    listener = (
        Server([], host="nowhere.invalid", port=0)
        if server == "Server"
        else Proxy("nowhere.invalid", 0, "127.0.0.1", 1)
    )
    with pytest.raises(OSError) as caught:
        await listener.start()
    assert str(caught.value) == "cannot listen on host 'nowhere.invalid': Name or service not known"
