"""Server reflection (grpc.reflection.v1 and v1alpha) fed by protobuf descriptor pools.

grpclib's ServerReflection service over google.protobuf descriptors. betterproto2 embeds each
generated file's descriptor in its own pool when the compiler option
`google_protobuf_descriptors` is on (tools/gen.py turns it on: gen.google_proto_descriptor_pool);
google protobuf modules such as grpclib's Health live in protobuf's default pool. Reflection
answers from the given pools in order, then the default pool::

    services = with_reflection([Greeter(), Health()], GENERATED_DESCRIPTORS)
    server = Server(services)

`GENERATED_DESCRIPTORS` is gen/'s pool; an application with its own generated code passes its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from google.protobuf import descriptor_pool  # type: ignore[import-untyped]
from grpclib.reflection.service import ServerReflection

from gen.google_proto_descriptor_pool import default_google_proto_descriptor_pool
from greeter.server.listeners import Service

__all__ = ["GENERATED_DESCRIPTORS", "ChainedPool", "with_reflection"]

GENERATED_DESCRIPTORS: Any = default_google_proto_descriptor_pool
"""The descriptors of everything in gen/ (greet.proto and grpc.testing), for `with_reflection`."""


class ChainedPool:
    """The lookups grpclib's reflection makes, answered by the first pool that knows the name."""

    def __init__(self, pools: Iterable[Any]) -> None:
        self.pools = list(pools)

    def _first(self, method: str, *args: Any) -> Any:
        for pool in self.pools:
            try:
                return getattr(pool, method)(*args)
            except KeyError:
                continue
        raise KeyError(args[0] if len(args) == 1 else args)

    def FindFileByName(self, name: str) -> Any:
        return self._first("FindFileByName", name)

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        return self._first("FindFileContainingSymbol", symbol)

    def FindMessageTypeByName(self, name: str) -> Any:
        return self._first("FindMessageTypeByName", name)

    def FindExtensionByNumber(self, message: Any, number: int) -> Any:
        return self._first("FindExtensionByNumber", message, number)

    def FindAllExtensions(self, message: Any) -> Any:
        return self._first("FindAllExtensions", message)


def with_reflection(services: Sequence[Service], *pools: Any) -> list[Service]:
    """`services` plus ServerReflection v1 and v1alpha listing them, described from `pools`."""
    pool = ChainedPool([*pools, descriptor_pool.Default()])
    return cast(list[Service], ServerReflection.extend(services, pool=pool))
