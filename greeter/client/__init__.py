"""greeter's client: an asyncio `Channel` on the client role of the sans-IO core.

- channel: `Channel`, a drop-in for grpclib's under the generated stubs (targets, one connection
  per address, round-robin, backoff, GOAWAY-safe, transparent retry, deadline propagation);
- call: `ClientCall`, one call as the stubs drive it; `call_options()` and `capture_calls()` for
  the calls a stub makes; transport: one connection's asyncio side;
- targets, backoff, connectivity, config: target names, reconnect backoff, channel states,
  `ClientConfig`;
- propagation: a handler's deadline inherited by the calls it makes; retry: gRFC A6 retries.
"""

from __future__ import annotations

from greeter.client.call import ClientCall, ClientInterceptor, call_options, capture_calls
from greeter.client.channel import Channel
from greeter.client.config import ClientConfig
from greeter.client.connectivity import ChannelState
from greeter.client.propagation import inherited_deadline
from greeter.client.retry import RetryPolicy, RetryThrottling

__all__ = [
    "Channel",
    "ChannelState",
    "ClientCall",
    "ClientConfig",
    "ClientInterceptor",
    "RetryPolicy",
    "RetryThrottling",
    "call_options",
    "capture_calls",
    "inherited_deadline",
]
