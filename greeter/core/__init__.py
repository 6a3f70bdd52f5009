"""The sans-IO core: an HTTP/2 connection's gRPC side; bytes in, events out; commands in, bytes out.

No asyncio, sockets, threads or clocks of its own (time is injected). The server role is
`ServerConnection` (server_connection.py); the pieces it is built of are shared by every role:

- events: what the core reports, small frozen records;
- headers: request validation (stream errors per RFC 9113 §8.1.1) and response header blocks;
- stream_state: per-RPC state, request reassembly and decompression, the send queue;
- defences, budget: rate budgets, the gRFC A8 ping policy and a frame-header scanner;
- config: `CoreConfig` and the h2 connection it configures.
"""

from __future__ import annotations

from greeter.core.config import CoreConfig
from greeter.core.server_connection import BytesObserver, ServerConnection

__all__ = ["BytesObserver", "CoreConfig", "ServerConnection"]
