"""Deadline and cancellation propagation for client calls made inside a greeter handler.

grpclib's client Channel plus greeter.server.context. A call made through a
`PropagatingChannel` from a handler (in the handler's task, where `current_rpc()` works) gets
the earlier of its own deadline (`timeout=` / `deadline=`) and the handler's deadline, so the
downstream server sees the time that is really left (`grpc-timeout`). Outside a handler it is
an ordinary grpclib Channel::

    backend = BackendStub(PropagatingChannel("backend", 50051))

    class Frontend(FrontendBase):
        async def lookup(self, message: Query) -> Answer:
            return await backend.fetch(message)   # inherits this RPC's deadline

Cancellation needs no help: the call runs in the handler's task, so when the handler's RPC is
cancelled (client reset, deadline, shutdown) the awaiting call is cancelled and grpclib resets
its stream, which cancels the downstream handler. Opt-outs: `PropagatingChannel(...,
propagate=False)` or a plain `grpclib.client.Channel` keeps the call's own deadline only; a call
that must outlive a cancelled handler has to run in a task of its own (and in a context without
the handler's RPC, e.g. ``asyncio.create_task(coro, context=contextvars.Context())``).
"""

from __future__ import annotations

from typing import Any, TypeVar

from grpclib.client import Channel, Stream
from grpclib.const import Cardinality
from grpclib.metadata import Deadline, _MetadataLike

from greeter.server.context import current_rpc

__all__ = ["PropagatingChannel", "inherited_deadline"]

_SendType = TypeVar("_SendType")
_RecvType = TypeVar("_RecvType")


def inherited_deadline(
    timeout: float | None = None, deadline: Deadline | None = None
) -> Deadline | None:
    """The earliest of `timeout` (from now), `deadline` and the current handler's deadline."""
    candidates: list[Deadline] = []
    if timeout is not None:
        candidates.append(Deadline.from_timeout(timeout))
    if deadline is not None:
        candidates.append(deadline)
    try:
        handler_deadline: Deadline | None = current_rpc().deadline
    except LookupError:
        handler_deadline = None
    if handler_deadline is not None:
        candidates.append(handler_deadline)
    return min(candidates) if candidates else None


class PropagatingChannel(Channel):
    """A grpclib Channel whose calls inside a handler inherit the handler's deadline."""

    def __init__(self, *args: Any, propagate: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.propagate = propagate
        """False: behave as a plain Channel (the call's own deadline only)."""

    def request(
        self,
        name: str,
        cardinality: Cardinality,
        request_type: type[_SendType],
        reply_type: type[_RecvType],
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
        metadata: _MetadataLike | None = None,
    ) -> Stream[_SendType, _RecvType]:
        if self.propagate:
            deadline, timeout = inherited_deadline(timeout, deadline), None
        return super().request(
            name,
            cardinality,
            request_type,
            reply_type,
            timeout=timeout,
            deadline=deadline,
            metadata=metadata,
        )
