"""Deadline inheritance for client calls made inside a greeter handler.

A call made from a handler (in the handler's task, where `current_rpc()` works) gets the earlier
of its own deadline (``timeout=`` / ``deadline=``) and the handler's, so the downstream server
sees the time that is really left (``grpc-timeout``); `Channel(propagate=True)`, the default,
applies it to every call::

    backend = BackendStub(Channel("backend:50051"))

    class Frontend(FrontendBase):
        async def lookup(self, message: Query) -> Answer:
            return await backend.fetch(message)   # inherits this RPC's deadline

Cancellation needs no help: the call runs in the handler's task, so when the handler's RPC is
cancelled (client reset, deadline, shutdown) the awaiting call is cancelled and resets its stream
(RST_STREAM CANCEL), which cancels the downstream handler. A call that must outlive a cancelled
handler runs in a task of its own, in a context without the handler's RPC (e.g.
``asyncio.create_task(coro, context=contextvars.Context())``), or on a
``Channel(propagate=False)``.
"""

from __future__ import annotations

from grpclib.metadata import Deadline

from greeter.server.context import current_rpc_or_none

__all__ = ["inherited_deadline"]


def inherited_deadline(
    timeout: float | None = None, deadline: Deadline | None = None
) -> Deadline | None:
    """The earliest of `timeout` (from now), `deadline` and the current handler's deadline."""
    if timeout is None and deadline is None:  # most calls: no list to build
        rpc = current_rpc_or_none()
        return rpc.deadline if rpc is not None else None
    candidates: list[Deadline] = []
    if timeout is not None:
        candidates.append(Deadline.from_timeout(timeout))
    if deadline is not None:
        candidates.append(deadline)
    rpc = current_rpc_or_none()
    if rpc is not None and rpc.deadline is not None:
        candidates.append(rpc.deadline)
    return min(candidates) if candidates else None
