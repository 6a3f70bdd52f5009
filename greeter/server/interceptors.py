"""Server interceptors: middleware around every RPC of a server, of the four kinds.

`Server(services, interceptors=[a, b])` runs, for each RPC, in the RPC's own task:

- `start(rpc)` in order (a, then b) before the handler: it sees `rpc.path`, `rpc.metadata`,
  `rpc.peer`, `rpc.deadline` (and `current_rpc()` works); raising `GRPCError` ends the RPC
  with that status and the handler never runs;
- `receive(rpc, message)` in order for each request message, `send(rpc, message)` in reverse
  order for each response message: each returns the message to pass on (the same or another);
- `end(rpc, outcome)` in reverse order once the RPC is over, however it ended: `RpcOutcome`
  holds the status, its message, the duration and the message counts.

Wrappers nest as in grpc-go's chained interceptors: the first sees the request first and the
response last. With none installed an RPC pays one empty loop per hook. An interceptor that
raises anything but GRPCError fails the RPC as UNKNOWN with the traceback logged (a handler's
error); one raising in `end` is logged and the others still run.
"""

from __future__ import annotations

from typing import Any

from greeter.server.handler_stream import RpcOutcome, ServerStream

__all__ = ["RpcOutcome", "ServerInterceptor"]  # RpcOutcome lives with the stream it describes


class ServerInterceptor:
    """Middleware for every RPC of a server: override the hooks you need."""

    async def start(self, rpc: ServerStream[Any, Any]) -> None:
        """Before the handler; raise GRPCError to end the RPC with that status instead."""

    def receive(self, rpc: ServerStream[Any, Any], message: Any) -> Any:
        """Each request message: return it, or the message the handler gets instead."""
        return message

    def send(self, rpc: ServerStream[Any, Any], message: Any) -> Any:
        """Each response message: return it, or the message to send instead."""
        return message

    def end(self, rpc: ServerStream[Any, Any], outcome: RpcOutcome) -> None:
        """The RPC is over (any status, or the client gone); for logs and metrics."""
