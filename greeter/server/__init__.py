"""The asyncio server: listeners and lifecycle, one driver per connection, the handler's stream.

- listeners: `Server` (TCP, TLS, Unix socket; `async with`, start/stop with a grace period);
- backlog: closing a listener without dropping connections it has already accepted;
- driver: one accepted connection around its sans-IO core (task per RPC, deadlines,
  back-pressure, GOAWAY), depending on the small `ConnectionHost` interface the server implements;
- handler_stream: `ServerStream`, what a grpclib-style handler receives;
- context: `current_rpc()`, the running handler's stream for betterproto2 handlers;
- interceptors: `ServerInterceptor` (middleware around every RPC) and `RpcOutcome`;
- signals: SIGINT/SIGTERM caught before a server says it is ready;
- watchdog: handshake, idle, keepalive and write-stall timers; tls: TLS contexts and the ALPN
  gate; workers: the event-loop choice and N processes on one port; config: `ServerConfig`.
"""

from __future__ import annotations

from greeter.core.config import CoreConfig
from greeter.server.config import ServerConfig, Timeouts
from greeter.server.context import RpcContext, current_rpc
from greeter.server.handler_stream import RpcOutcome, ServerStream
from greeter.server.interceptors import ServerInterceptor
from greeter.server.listeners import Server, Service

__all__ = [
    "CoreConfig",
    "RpcContext",
    "RpcOutcome",
    "Server",
    "ServerConfig",
    "ServerInterceptor",
    "ServerStream",
    "Service",
    "Timeouts",
    "current_rpc",
]
