"""greeter: an inspectable pure-Python gRPC stack (sans-IO core on h2, asyncio server, wire tap).

The names below are greeter's public face; everything else may change without notice.

- serve: `Server`, `ServerConfig`, `CoreConfig`, `Timeouts`, `Service` (anything with grpclib's
  ``__mapping__()``), TLS contexts `server_context` / `client_context`;
- inside a handler: `current_rpc()` returns the running RPC's `ServerStream` (`RpcContext`);
  `ServerInterceptor` / `RpcOutcome`: middleware around every RPC (``Server(interceptors=)``);
- call: `Channel` (a drop-in for grpclib's under the generated stubs; inside a handler its calls
  inherit the handler's deadline; ``tap=`` traces it), `ClientConfig`, `ChannelState`,
  `ClientInterceptor`, `RetryPolicy`, `RetryThrottling`, `call_options()` / `capture_calls()`
  (per-call options and the metadata of calls a stub makes);
- watch the wire: `TapFactory` / `Tap`, `TraceWriter`, `MessageTypes`, and `WireLog` (the
  ``wire_log`` pytest fixture's collector);
- errors: `GreeterError` is the root of every error greeter raises.

Layers (docs/architecture.md): cli → services, tools, client → server → core, tap → wire.
"""

from __future__ import annotations

from greeter.client import (
    Channel,
    ChannelState,
    ClientConfig,
    ClientInterceptor,
    RetryPolicy,
    RetryThrottling,
    call_options,
    capture_calls,
)
from greeter.server import (
    CoreConfig,
    RpcContext,
    RpcOutcome,
    Server,
    ServerConfig,
    ServerInterceptor,
    ServerStream,
    Service,
    Timeouts,
    current_rpc,
)
from greeter.server.tls import client_context, server_context
from greeter.tap import MessageTypes, Tap, TapFactory, TraceWriter
from greeter.tap.wirelog import WireLog
from greeter.wire.errors import GreeterError

__version__ = "0.2.0"

__all__ = [
    "Channel",
    "ChannelState",
    "ClientConfig",
    "ClientInterceptor",
    "CoreConfig",
    "GreeterError",
    "MessageTypes",
    "RetryPolicy",
    "RetryThrottling",
    "RpcContext",
    "RpcOutcome",
    "Server",
    "ServerConfig",
    "ServerInterceptor",
    "ServerStream",
    "Service",
    "Tap",
    "TapFactory",
    "Timeouts",
    "TraceWriter",
    "WireLog",
    "__version__",
    "call_options",
    "capture_calls",
    "client_context",
    "current_rpc",
    "server_context",
]
