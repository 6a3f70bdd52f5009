"""Wire tap for our grpclib-based client: a Channel whose connections show their bytes.

The observer only reads bytes; what grpclib sends and receives is unchanged (the tap sees the same
``bytes`` objects, before grpclib does).

grpclib 0.4.9 seams used: ``Channel._protocol_factory`` (one ``H2Protocol`` per connection),
``H2Protocol.connection_made`` (hands the transport to grpclib's ``Connection``, which writes
everything through ``transport.write``) and ``H2Protocol.data_received``.
``TappedChannel`` is a drop-in ``Channel``: betterproto2 stubs take it unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from typing import Any, cast

from grpclib.client import Channel, Handler
from grpclib.config import Configuration
from grpclib.protocol import H2Protocol
from h2.config import H2Configuration

from greeter.tap.attach import (
    ConnectionObserver,
    ObserverFactory,
    SafeObserver,
    format_peer,
    open_observer,
)


class _ObservedTransport(asyncio.Transport):
    """A transport that shows every write to the observer ("out") before passing it on."""

    def __init__(self, transport: asyncio.Transport, observer: ConnectionObserver) -> None:
        super().__init__()
        self._transport = transport
        self._observer = observer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._observer.observe("out", bytes(data))
        self._transport.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


class _TappedProtocol(H2Protocol):
    """grpclib's client protocol with an observer on both directions of its one connection."""

    def __init__(
        self,
        handler: Handler,
        config: Configuration,
        h2_config: H2Configuration,
        *,
        tap: ObserverFactory,
        connection_id: int,
    ) -> None:
        super().__init__(handler, config, h2_config)
        self._tap = tap
        self._connection_id = connection_id
        self._observer: SafeObserver | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = format_peer(transport.get_extra_info("peername"))
        self._observer = open_observer(self._tap, self._connection_id, peer)
        if self._observer is not None:
            # cast: uvloop's transports implement asyncio.Transport without subclassing it.
            transport = _ObservedTransport(cast(asyncio.Transport, transport), self._observer)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._observer is not None:
            self._observer.observe("in", data)
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if self._observer is not None:
            observer, self._observer = self._observer, None
            observer.close(str(exc) if exc else "closed")


class TappedChannel(Channel):
    """A grpclib ``Channel`` whose every connection is observed by ``tap(connection_id, peer)``.

    ``tap`` is an observer factory as for ``Server(tap=...)`` -- typically one building a
    ``Tap(role="client")``: bytes this client sends are ``"out"``, bytes it receives ``"in"``.
    Connection ids count from 1 per channel (a channel reconnects after a failure).
    """

    def __init__(
        self, host: str | None = None, port: int | None = None, *, tap: ObserverFactory, **kw: Any
    ) -> None:
        super().__init__(host, port, **kw)
        self._tap = tap
        self._connection_ids = itertools.count(1)

    def _protocol_factory(self) -> H2Protocol:
        return _TappedProtocol(
            Handler(),
            self._config,
            self._h2_config,
            tap=self._tap,
            connection_id=next(self._connection_ids),
        )
