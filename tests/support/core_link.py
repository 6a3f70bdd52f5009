"""The client role and the server role of the sans-IO core joined in memory (`Link`).

Not a test module. Both ends are greeter's cores: `pump()` moves bytes both ways until neither
has anything to send and collects each side's events. For a server that misbehaves, `RawServer`
is a server-side h2 connection driven by hand (any headers, any DATA, resets, GOAWAY).
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events

from greeter.core.client_connection import ClientConnection
from greeter.core.config import CoreConfig
from greeter.core.events import Event
from greeter.core.server_connection import ServerConnection


class Link:
    """A ClientConnection and a ServerConnection exchanging bytes in memory."""

    def __init__(self, client: CoreConfig | None = None, server: CoreConfig | None = None) -> None:
        self.client = ClientConnection(client)
        self.server = ServerConnection(server)
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.client.initiate()
        self.server.initiate()
        self.pump()

    def pump(self) -> None:
        for _ in range(10_000):
            up = self.client.data_to_send()
            if up:
                self.server_events += self.server.receive_data(up)
            down = self.server.data_to_send()
            if down:
                self.client_events += self.client.receive_data(down)
            if not up and not down:
                return
        raise AssertionError("pump did not settle")

    def take_client(self) -> list[Event]:
        events, self.client_events = self.client_events, []
        return events

    def take_server(self) -> list[Event]:
        events, self.server_events = self.server_events, []
        return events


class RawServer:
    """A server-side h2 connection the test drives by hand, joined to a ClientConnection."""

    def __init__(self, client: CoreConfig | None = None) -> None:
        self.client = ClientConnection(client)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False, header_encoding=None, validate_outbound_headers=False
            )
        )
        self.client_events: list[Event] = []
        self.h2_events: list[h2.events.Event] = []
        self.client.initiate()
        self.h2.initiate_connection()
        self.pump()

    def pump(self) -> list[Event]:
        """Move bytes both ways until quiet; return the client's new events."""
        new: list[Event] = []
        for _ in range(10_000):
            up = self.client.data_to_send()
            if up:
                self.h2_events += self.h2.receive_data(up)
            down = self.h2.data_to_send()
            if down:
                new += self.client.receive_data(down)
            if not up and not down:
                self.client_events += new
                return new
        raise AssertionError("pump did not settle")

    def respond(self, stream_id: int, headers: list[tuple[str, str]], *, end: bool = False) -> None:
        self.h2.send_headers(stream_id, headers, end_stream=end)
