"""Which message classes the tap decodes a stream's payloads with: method path -> types.

The table is read from grpclib's service contract: every service's ``__mapping__()`` maps a
``:path`` to a ``grpclib.const.Handler`` whose ``request_type`` and ``reply_type`` are the
classes of each direction. Message classes are also indexed by their ``google.protobuf.Any``
type URL, so the tap can decode the details of ``grpc-status-details-bin``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from greeter.wire.status_details import type_url


def _url_of(message_type: type[Any]) -> str | None:
    """The Any type URL of a message class, or None if it is not a nameable protobuf message."""
    try:
        return type_url(message_type())
    except (TypeError, ValueError):
        return None


class MessageTypes:
    """Method path -> (request type, response type), and Any type URL -> message type."""

    __slots__ = ("_by_url", "_methods")

    def __init__(
        self,
        methods: Mapping[str, tuple[type[Any], type[Any]]] | None = None,
        messages: Iterable[type[Any]] = (),
    ) -> None:
        self._methods: dict[str, tuple[type[Any], type[Any]]] = dict(methods or {})
        self._by_url: dict[str, type[Any]] = {}
        for message_type in (*messages, *(t for pair in self._methods.values() for t in pair)):
            url = _url_of(message_type)
            if url is not None:
                self._by_url.setdefault(url, message_type)

    @classmethod
    def from_services(cls, services: Iterable[Any]) -> MessageTypes:
        """Read each service's ``__mapping__()`` (grpclib Handlers); the first service wins."""
        methods: dict[str, tuple[type[Any], type[Any]]] = {}
        for service in services:
            for path, handler in service.__mapping__().items():
                methods.setdefault(path, (handler.request_type, handler.reply_type))
        return cls(methods)

    @classmethod
    def from_module(cls, name: str) -> MessageTypes:
        """Import module ``name`` and read the classes it defines.

        Every class with ``__mapping__`` (a generated service base such as ``GreeterBase``) is
        instantiated to read its mapping; one that needs constructor arguments is skipped. Every
        message class (``FromString`` and ``SerializeToString``) is indexed by type URL.
        """
        module = importlib.import_module(name)
        services: list[Any] = []
        messages: list[type[Any]] = []
        for _, member in inspect.getmembers(module, inspect.isclass):
            if member.__module__ != module.__name__:
                continue
            if hasattr(member, "__mapping__"):
                try:
                    services.append(member())
                except TypeError:
                    continue
            elif hasattr(member, "FromString") and hasattr(member, "SerializeToString"):
                messages.append(member)
        return cls(cls.from_services(services)._methods, messages)

    def lookup(self, path: str) -> tuple[type[Any], type[Any]] | None:
        """(request type, response type) of the method at ``path``, or None if unknown."""
        return self._methods.get(path)

    def by_url(self, url: str) -> type[Any] | None:
        """The message class named by an Any type URL, or None if unknown."""
        return self._by_url.get(url)

    def __len__(self) -> int:
        return len(self._methods)
