"""How the core configures h2: validation moved to greeter.headers, stream limit per stream.

Layer: sans-IO core (h2 only). One function builds the H2Connection every ServerConnection wraps.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.settings
from h2.settings import SettingCodes

from greeter.config import CoreConfig

MAX_STREAM_ID = 2**31 - 1


class _LimitCheckedPerStream(h2.settings.Settings):
    """Local settings whose stream limit h2 does not enforce itself.

    h2 turns a HEADERS frame over SETTINGS_MAX_CONCURRENT_STREAMS into a connection error, tearing
    down every RPC on the connection. RFC 9113 §5.1.2 lets a server refuse just that stream with
    REFUSED_STREAM, which tells the client it may retry; the core counts streams and does that.
    The advertised value (what h2 serialises into SETTINGS) is unchanged.
    """

    @property
    def max_concurrent_streams(self) -> int:
        return MAX_STREAM_ID

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[SettingCodes.MAX_CONCURRENT_STREAMS] = value


def new_h2_connection(config: CoreConfig) -> h2.connection.H2Connection:
    """A server-side H2Connection advertising `config`'s limits."""
    connection = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            # Validation moves to greeter.headers (stream errors, not connection errors);
            # outbound headers are built by us and need no second check.
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
    )
    connection.local_settings = _LimitCheckedPerStream(
        client=False,
        initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: config.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: config.max_header_list_size,
            SettingCodes.INITIAL_WINDOW_SIZE: config.initial_window_size,
        },
    )
    connection.decoder.max_header_list_size = config.max_header_list_size
    return connection
