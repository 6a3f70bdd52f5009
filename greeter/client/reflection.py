"""A server reflection client: a server's services and their descriptors, asked over the wire.

`ServerReflectionClient(channel)` asks grpc.reflection.v1 first and, when the server answers
UNIMPLEMENTED, v1alpha (as grpcurl does: grpcio-reflection serves only v1alpha). The files it
receives go into its own `descriptor_pool.DescriptorPool` (`pool`) with their dependencies, which
are asked for by file name when the server did not send them along (grpclib's reflection sends
one file per answer, grpcio's the transitive closure). Message classes for a descriptor come
from `message_factory.GetMessageClass`; greeter's channel takes them as request and reply types.

`ReflectedTypes` tells the wire tap those classes, so a traced call decodes its messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf import (  # type: ignore[import-untyped]
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.reflection.v1 import reflection_pb2 as v1
from grpclib.reflection.v1alpha import reflection_pb2 as v1alpha

from greeter.client.channel import Channel, MetadataLike
from greeter.tap.resolve import MessageTypes

__all__ = ["ReflectedTypes", "ReflectionError", "ServerReflectionClient"]

VERSIONS: tuple[tuple[str, Any], ...] = (
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", v1),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", v1alpha),
)
"""(method path, reflection_pb2 module) of each protocol version, the preferred first."""


class ReflectionError(Exception):
    """The server cannot say: it serves no reflection, or does not know the name asked for."""


class ServerReflectionClient:
    """Asks one server's reflection service; keeps what it learnt in `pool`.

    Each question is one short ServerReflectionInfo stream on `channel` (several requests on one
    stream when dependencies are missing); `metadata` and `timeout` go with every stream.
    """

    def __init__(
        self,
        channel: Channel,
        *,
        metadata: MetadataLike | None = None,
        timeout: float | None = None,
        pool: Any | None = None,
    ) -> None:
        self._channel = channel
        self._metadata = metadata
        self._timeout = timeout
        self.pool: Any = pool if pool is not None else descriptor_pool.DescriptorPool()
        self._version: tuple[str, Any] | None = None
        """The version the server answered, once known."""
        self._loaded: set[str] = set()

    async def list_services(self) -> list[str]:
        """The names of the services the server offers, sorted."""
        (response,) = await self._exchange([{"list_services": ""}])
        _raise_error(response, "listing services")
        return sorted(service.name for service in response.list_services_response.service)

    async def service(self, name: str) -> Any:
        """The ServiceDescriptor of service `name`; ReflectionError when the server has none."""
        if not await self.load_symbol(name):
            raise ReflectionError(f"server does not know service {name}")
        try:
            return self.pool.FindServiceByName(name)
        except KeyError:
            raise ReflectionError(f"{name} is not a service") from None

    async def method(self, service: str, method: str) -> Any:
        """The MethodDescriptor of `service`'s `method`; ReflectionError when there is none."""
        found = await self.service(service)
        if method not in found.methods_by_name:
            known = ", ".join(m.name for m in found.methods)
            raise ReflectionError(f"service {service} has no method {method} (it has: {known})")
        return found.methods_by_name[method]

    async def symbol(self, name: str) -> Any:
        """The descriptor `name` denotes: service, method, message, enum or field.

        Servers built on protobuf's Python pool know only top-level symbols (services, messages,
        enums), so a method or field is found through the file of its parent.
        """
        parent = name.rpartition(".")[0]
        if not await self.load_symbol(name) and not (parent and await self.load_symbol(parent)):
            raise ReflectionError(f"server does not know symbol {name}")
        finders: tuple[Callable[[str], Any], ...] = (
            self.pool.FindServiceByName,
            self.pool.FindMessageTypeByName,
            self.pool.FindEnumTypeByName,
            self.pool.FindMethodByName,
            self.pool.FindFieldByName,
        )
        for find in finders:
            try:
                return find(name)
            except KeyError:
                continue
        raise ReflectionError(f"server does not know symbol {name}")

    # -- files into the pool ---------------------------------------------------------------------

    async def load_symbol(self, symbol: str) -> bool:
        """Load the file defining `symbol` (and its dependencies) into `pool` unless it is there;
        False if the server does not know it."""
        try:
            self.pool.FindFileContainingSymbol(symbol)
            return True
        except KeyError:
            pass
        (response,) = await self._exchange([{"file_containing_symbol": symbol}])
        if _not_found(response):
            return False
        _raise_error(response, f"looking up {symbol}")
        await self._add_files(response.file_descriptor_response.file_descriptor_proto)
        return True

    async def _add_files(self, serialized: Iterable[bytes]) -> None:
        """Add these files to the pool, dependencies first, asking for the ones not received."""
        received: dict[str, Any] = {}
        for data in serialized:
            proto = descriptor_pb2.FileDescriptorProto.FromString(data)
            received.setdefault(proto.name, proto)
        while missing := sorted(
            {
                dependency
                for proto in received.values()
                for dependency in proto.dependency
                if dependency not in received and dependency not in self._loaded
            }
        ):
            responses = await self._exchange([{"file_by_filename": name} for name in missing])
            for name, response in zip(missing, responses, strict=True):
                if _not_found(response):
                    raise ReflectionError(f"server does not know file {name}, a dependency")
                _raise_error(response, f"asking for file {name}")
                for data in response.file_descriptor_response.file_descriptor_proto:
                    proto = descriptor_pb2.FileDescriptorProto.FromString(data)
                    received.setdefault(proto.name, proto)
        for name in received:
            self._add(name, received)

    def _add(self, name: str, received: dict[str, Any]) -> None:
        if name in self._loaded:
            return
        self._loaded.add(name)  # before the dependencies: a cycle (invalid protobuf) ends here
        proto = received[name]
        for dependency in proto.dependency:
            self._add(dependency, received)
        self.pool.Add(proto)

    # -- the reflection stream -------------------------------------------------------------------

    async def _exchange(self, requests: list[dict[str, str]]) -> list[Any]:
        """One response per request, asked on one stream (at the first: v1, else v1alpha)."""
        unimplemented: GRPCError | None = None
        for version in (self._version,) if self._version else VERSIONS:
            try:
                responses = await self._stream(version, requests)
            except GRPCError as exc:
                if exc.status != Status.UNIMPLEMENTED:
                    raise
                unimplemented = exc
                continue
            self._version = version
            if len(responses) != len(requests):
                raise ReflectionError(
                    f"server reflection answered {len(responses)} of {len(requests)} requests"
                )
            return responses
        assert unimplemented is not None
        why = f": {unimplemented.message}" if unimplemented.message else ""
        raise ReflectionError(f"server does not support reflection: UNIMPLEMENTED{why}")

    async def _stream(self, version: tuple[str, Any], requests: list[dict[str, str]]) -> list[Any]:
        path, module = version
        async with self._channel.request(
            path,
            Cardinality.STREAM_STREAM,
            module.ServerReflectionRequest,
            module.ServerReflectionResponse,
            timeout=self._timeout,
            metadata=self._metadata,
        ) as call:
            for fields in requests:
                await call.send_message(module.ServerReflectionRequest(**fields))
            await call.end()
            return [response async for response in call]


def _not_found(response: Any) -> bool:
    return bool(
        response.HasField("error_response")
        and response.error_response.error_code == Status.NOT_FOUND.value
    )


def _raise_error(response: Any, doing: str) -> None:
    if response.HasField("error_response"):
        error = response.error_response
        try:
            code = Status(error.error_code).name
        except ValueError:  # not a gRPC status: say the number
            code = str(error.error_code)
        raise ReflectionError(f"server reflection failed {doing}: {code}: {error.error_message}")


class ReflectedTypes(MessageTypes):
    """The tap's message types: reflection's own, and those of whatever `pool` has learnt by the
    time a call starts (a traced call decodes its messages and its error details)."""

    __slots__ = ("_pool",)

    def __init__(self, pool: Any) -> None:
        reflection = {
            path: (module.ServerReflectionRequest, module.ServerReflectionResponse)
            for path, module in VERSIONS
        }
        super().__init__(reflection)
        self._pool = pool

    def lookup(self, path: str) -> tuple[type[Any], type[Any]] | None:
        known = super().lookup(path)
        if known is not None:
            return known
        try:
            method = self._pool.FindMethodByName(path.lstrip("/").replace("/", "."))
        except KeyError:
            return None
        return (
            message_factory.GetMessageClass(method.input_type),
            message_factory.GetMessageClass(method.output_type),
        )

    def by_url(self, url: str) -> type[Any] | None:
        try:
            found = self._pool.FindMessageTypeByName(url.rpartition("/")[2])
        except KeyError:
            return super().by_url(url)
        cls: type[Any] = message_factory.GetMessageClass(found)
        return cls
