"""The current RPC for betterproto handlers, whose `async def method(self, request)` has no stream.

A contextvar, nothing else. The connection driver binds the handler-facing `ServerStream` around
each handler call (`rpc_scope`); inside the handler, in anything it awaits or iterates, and in the
tasks it spawns (asyncio copies the context into a new task, so ``asyncio.gather`` of downstream
calls inherits the handler's deadline: greeter.client.propagation), `current_rpc()` returns it::

    from greeter.server.context import current_rpc

    class Echo(EchoBase):
        async def say(self, message: Request) -> Reply:
            rpc = current_rpc()
            await rpc.send_initial_metadata([("x-seen", rpc.metadata.get("x-id", ""))])
            rpc.set_trailing_metadata([("x-done", "1")])
            return Reply()

The handler context is the `ServerStream` itself (no wrapper): `metadata`, `deadline`,
`time_remaining()`, `peer_address`, `peer_certificate`, `last_message_compressed`, `cancelled`,
`send_initial_metadata`, `set_trailing_metadata`, `set_response_compression(enabled)` (the RPC's
default) and `set_message_compression(enabled)` (the next response message only).

Rule: handler code only reads the stream's request side (metadata, deadline, peer) and uses its
metadata and compression calls; it never sends messages or trailers itself, which the generated
wrapper does.
Outside a handler (a task the handler did not spawn, a task started with a fresh
``contextvars.Context()``, a thread) `current_rpc()` raises LookupError.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from greeter.server.handler_stream import ServerStream

RpcContext: TypeAlias = "ServerStream[Any, Any]"
"""What `current_rpc()` returns: the handler-facing ServerStream (for annotations)."""

_CURRENT: ContextVar[RpcContext] = ContextVar("greeter_current_rpc")


def current_rpc() -> RpcContext:
    """The RPC whose handler runs this task (or spawned it); LookupError outside any handler."""
    try:
        return _CURRENT.get()
    except LookupError:
        raise LookupError("current_rpc() called outside a greeter RPC handler") from None


def current_rpc_or_none() -> RpcContext | None:
    """`current_rpc()` for callers that only look (no exception outside a handler: cheaper on
    a client's every call)."""
    return _CURRENT.get(None)


@contextmanager
def rpc_scope(stream: ServerStream[Any, Any]) -> Iterator[None]:
    """Make `stream` the current RPC for the block (the driver wraps each handler call)."""
    token = _CURRENT.set(stream)
    try:
        yield
    finally:
        _CURRENT.reset(token)
