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

The names are imported when first used (PEP 562 ``__getattr__``), so ``import greeter`` -- and
with it the `greeter` command's start, which installs its signal handlers before anything heavy
(greeter.cli) -- costs nothing until a name is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

_HOME = {  # where each name lives, imported on first use
    "Channel": "greeter.client",
    "ChannelState": "greeter.client",
    "ClientConfig": "greeter.client",
    "ClientInterceptor": "greeter.client",
    "CoreConfig": "greeter.server",
    "GreeterError": "greeter.wire.errors",
    "MessageTypes": "greeter.tap",
    "RetryPolicy": "greeter.client",
    "RetryThrottling": "greeter.client",
    "RpcContext": "greeter.server",
    "RpcOutcome": "greeter.server",
    "Server": "greeter.server",
    "ServerConfig": "greeter.server",
    "ServerInterceptor": "greeter.server",
    "ServerStream": "greeter.server",
    "Service": "greeter.server",
    "Tap": "greeter.tap",
    "TapFactory": "greeter.tap",
    "Timeouts": "greeter.server",
    "TraceWriter": "greeter.tap",
    "WireLog": "greeter.tap.wirelog",
    "call_options": "greeter.client",
    "capture_calls": "greeter.client",
    "client_context": "greeter.server.tls",
    "current_rpc": "greeter.server",
    "server_context": "greeter.server.tls",
}


def __getattr__(name: str) -> object:
    """A public name, imported from its module the first time it is used (PEP 562)."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'greeter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
