"""What an idle connection of the core costs, and the slim settings that keep it small."""

from __future__ import annotations

import gc
import tracemalloc

import h2.settings
from h2.settings import SettingCodes

from greeter.core.config import CoreConfig, SlimSettings
from greeter.core.server_connection import ServerConnection
from tests.support.h2peer import client_preface, settings_ack

CONNECTIONS = 200
IDLE_BYTES_LIMIT = 10 * 1024
"""Per idle server connection after the handshake: ~7.5 KiB measured with SlimSettings, ~15.5
KiB with h2's deque-based Settings (the ceiling this guards)."""


def test_an_idle_connection_costs_under_ten_kib() -> None:
    config = CoreConfig()
    # The client's preface with a setting that has no default (a new key), and its ACK of ours.
    handshake = client_preface({SettingCodes.MAX_CONCURRENT_STREAMS: 100}) + settings_ack()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        connections = []
        for _ in range(CONNECTIONS):
            connection = ServerConnection(config)
            connection.initiate()
            connection.receive_data(handshake)
            connection.data_to_send()
            connections.append(connection)
        gc.collect()
        per_connection = (tracemalloc.get_traced_memory()[0] - before) / CONNECTIONS
    finally:
        tracemalloc.stop()
    assert not any(connection.closed for connection in connections)
    assert per_connection < IDLE_BYTES_LIMIT


def test_slim_settings_apply_changes_in_order_as_h2_does() -> None:
    for kind in (h2.settings.Settings, SlimSettings):
        settings = kind(client=False)
        settings[SettingCodes.INITIAL_WINDOW_SIZE] = 100
        settings[SettingCodes.INITIAL_WINDOW_SIZE] = 200
        settings[SettingCodes.MAX_CONCURRENT_STREAMS] = 7  # a key with no default
        assert settings.initial_window_size == 65_535
        first = settings.acknowledge()
        assert settings.initial_window_size == 100
        assert first[SettingCodes.INITIAL_WINDOW_SIZE].new_value == 100
        assert settings.max_concurrent_streams == 7
        second = settings.acknowledge()
        assert settings.initial_window_size == 200
        assert list(second) == [SettingCodes.INITIAL_WINDOW_SIZE]


def test_slim_settings_read_the_per_stream_values_as_h2_does() -> None:
    """The three settings read for every new stream: same values, same default, same setters."""
    for client in (True, False):
        plain, slim = h2.settings.Settings(client=client), SlimSettings(client=client)
        for settings in (plain, slim):
            assert settings.max_concurrent_streams == 2**32 + 1  # none set yet
            settings.initial_window_size = 1000
            settings.max_frame_size = 32_768
            settings.max_concurrent_streams = 3
            assert settings.max_concurrent_streams == 2**32 + 1  # not acknowledged yet
            settings.acknowledge()
        for name in ("initial_window_size", "max_frame_size", "max_concurrent_streams"):
            assert getattr(slim, name) == getattr(plain, name)
        assert (slim.initial_window_size, slim.max_frame_size) == (1000, 32_768)
        assert slim.max_concurrent_streams == 3
