"""A client that stops reading: the handler blocks instead of queueing without bound."""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import pytest
from h2.settings import SettingCodes

from gen.greet import HelloRequest
from greeter.server import Server, ServerConfig
from greeter.wire.framing import encode_message
from tests.support.probe import Probe, path

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]
HUGE_WINDOW = 2**31 - 1


async def test_a_client_that_stops_reading_pauses_the_handler() -> None:
    probe = Probe(flood_count=1_000_000)
    async with Server([probe], port=0, config=ServerConfig(grace_period=0.2)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        # Flow control never stops the server: only the unread socket can.
        client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: HUGE_WINDOW})
        client.increment_flow_control_window(HUGE_WINDOW - 65_535)
        headers = [
            (":method", "POST"), (":scheme", "http"), (":path", path("Flood")),
            (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers"),
        ]  # fmt: skip
        client.send_headers(1, headers)
        client.send_data(1, encode_message(bytes(HelloRequest(name="x"))), end_stream=True)
        writer.write(client.data_to_send())
        (connection,) = server.connections

        async with asyncio.timeout(10):
            while not connection.write_paused:
                await asyncio.sleep(0.01)
        # The pause can land while the handler is between two messages: let it reach the
        # send_message that blocks before taking the count.
        for _ in range(200):
            await asyncio.sleep(0)
        blocked_at = probe.sent
        for _ in range(200):  # many loop turns: a handler that is not blocked would go on
            await asyncio.sleep(0)
        assert probe.sent == blocked_at
        assert probe.returned == blocked_at - 1  # it waits inside send_message
        assert connection.transport.get_write_buffer_size() < 1024 * 1024

        writer.close()  # connection lost: the blocked handler is cancelled
        await asyncio.wait_for(probe.cancelled.wait(), 5)
        del reader
