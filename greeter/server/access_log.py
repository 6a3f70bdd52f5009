"""The access log: one line per RPC on the logger ``greeter.access`` (``serve --access-log``).

An interceptor (greeter.server.interceptors): its ``end`` writes, at INFO, one line of
``key=value`` fields (logfmt: easy to grep, to parse and to ship), in this order::

    peer=127.0.0.1:43064 method=/greet.Greeter/SayHello status=OK duration_ms=2.583
    bytes_in=12 bytes_out=18 messages_in=1 messages_out=1

(one line; split here to fit). ``status`` is the gRPC status name; a non-OK status adds
``message="..."`` (quoted, as a JSON string). Bytes are the messages' bytes on the wire, each
its 5-byte prefix plus the (compressed) payload, the counts of grpc-go's stats handlers.
An RPC ends up in the log once its handler ran (interceptors see no RPC refused before: an
unknown method or a request the core rejects is logged by ``greeter.server`` instead).
Nothing is logged unless the server was given the interceptor: the log is off by default.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from greeter.server.handler_stream import RpcOutcome, ServerStream
from greeter.server.interceptors import ServerInterceptor
from greeter.tap.attach import format_peer

log = logging.getLogger("greeter.access")


class AccessLog(ServerInterceptor):
    """Writes one line per finished RPC to ``logger`` (default ``greeter.access``) at INFO."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger

    def end(self, rpc: ServerStream[Any, Any], outcome: RpcOutcome) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        fields = [
            f"peer={format_peer(rpc.peer_address) or '-'}",
            f"method={rpc.path}",
            f"status={outcome.status.name}",
            f"duration_ms={outcome.duration * 1000:.3f}",
            f"bytes_in={outcome.bytes_received}",
            f"bytes_out={outcome.bytes_sent}",
            f"messages_in={outcome.messages_received}",
            f"messages_out={outcome.messages_sent}",
        ]
        if outcome.status.value != 0:
            fields.append(f"message={json.dumps(outcome.message, ensure_ascii=False)}")
        self.logger.info("%s", " ".join(fields))
