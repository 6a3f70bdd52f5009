"""A scripted HTTP/2 server for client tests: an asyncio socket server around a server-side h2
connection whose answer to each request the test writes.

Not a test module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import h2.config
import h2.connection
import h2.events

Answer = Callable[[h2.connection.H2Connection, int, asyncio.StreamWriter], Awaitable[None]]
GRPC = [(":status", "200"), ("content-type", "application/grpc")]


@asynccontextmanager
async def scripted_server(answer: Answer) -> AsyncIterator[str]:
    """A server that runs `answer(conn, stream_id, writer)` for every request it receives."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, validate_outbound_headers=False)
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    await answer(conn, event.stream_id, writer)
            writer.write(conn.data_to_send())
        writer.close()

    async with loopback_server(handle) as target:
        yield target


@asynccontextmanager
async def loopback_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """An asyncio server on a free loopback port running `handle` per connection; its target."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
