"""What the sans-IO core tells its driver: small records, one per thing that happened.

The server role reports requests (RequestReceived, RequestEnded, ...), the client role responses
(ResponseStarted, CallEnded); MessageReceived, SendUnblocked, ConnectionTerminated and the rest
are shared.

Named in the past tense; the driver (greeter.server.driver, or a test) reacts to them. Every event
that concerns an RPC carries the HTTP/2 stream id. They are slotted dataclasses compared by value,
and not frozen: a frozen dataclass sets each field through object.__setattr__, which made an
event cost about three times as much to build, and a unary call builds three on each side.
Nothing changes an event once the core has returned it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from grpclib.const import Status

Metadata = tuple[tuple[str, str | bytes], ...]
"""Custom metadata in wire order; values of `-bin` keys are bytes, all others str."""


@dataclass(slots=True)
class RequestReceived:
    """A valid gRPC request's headers arrived; the RPC starts."""

    stream_id: int
    path: str
    metadata: Metadata
    timeout: float | None
    """Seconds from grpc-timeout, measured from now; None when the client set no deadline."""
    authority: str | None
    user_agent: str | None
    encoding: str
    """The request's grpc-encoding (identity when absent); the core already decompresses."""


@dataclass(slots=True)
class MessageReceived:
    """One complete request message, decompressed; `flow_bytes` are acknowledged on consumption."""

    stream_id: int
    payload: bytes
    flow_bytes: int
    compressed: bool = False
    """The message arrived with the compressed flag set (it was compressed on the wire)."""
    wire_size: int = field(default=0, compare=False)
    """Its size on the wire: the 5-byte prefix plus Message-Length (compressed size); left out
    of equality, being the size of what the other fields describe."""


@dataclass(slots=True)
class RequestEnded:
    """The client half-closed the stream (END_STREAM): no more request messages will come."""

    stream_id: int


@dataclass(slots=True)
class RpcAborted:
    """The core ended the RPC itself (bad request data) and already sent the client its status."""

    stream_id: int
    status: Status
    message: str


@dataclass(slots=True)
class StreamReset:
    """The peer reset the stream (RST_STREAM): the RPC is cancelled, nothing more can be sent."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class RequestRejected:
    """A request was answered by the core before any RPC started (bad headers, stream refused)."""

    stream_id: int
    reason: str


@dataclass(slots=True)
class SendUnblocked:
    """Everything queued on the stream has been handed to HTTP/2 flow control: sending may go on."""

    stream_id: int


@dataclass(slots=True)
class ConnectionTerminated:
    """The peer sent GOAWAY, or (`local`) the connection failed with a protocol error."""

    error_code: int
    last_stream_id: int
    reason: str
    local: bool


@dataclass(slots=True)
class ShutdownAcknowledged:
    """Graceful shutdown: the final GOAWAY went out; no stream above `last_stream_id` will start."""

    last_stream_id: int


@dataclass(slots=True)
class DefenceTriggered:
    """A defence against a hostile or broken peer fired (the driver logs it at WARNING).

    `name` is stable for logs and tests: "stream_resets", "control_frames", "ping_strikes",
    "header_block", "header_list". `error_code` is the GOAWAY code sent (None when nothing was
    sent); a ConnectionTerminated(local=True) follows whenever the connection is closed.
    """

    name: str
    detail: str
    error_code: int | None


@dataclass(slots=True)
class KeepaliveAcknowledged:
    """The peer acknowledged the PING of `ServerConnection.send_keepalive_ping`: it is alive."""


@dataclass(slots=True)
class ResponseStarted:
    """Client role: the response's headers arrived (a gRPC response that goes on)."""

    stream_id: int
    metadata: Metadata
    """Initial metadata (custom fields)."""


@dataclass(slots=True)
class CallEnded:
    """Client role: the call is over, with its status; the stream is forgotten.

    From the trailers (or Trailers-Only), or decided by the core: a response that is not gRPC,
    bad message data (the core reset the stream), the peer's RST_STREAM, its GOAWAY. With
    `unprocessed` the server never processed the call (REFUSED_STREAM, or a stream above the
    GOAWAY's last stream id): it may be retried transparently (gRFC A6).
    """

    stream_id: int
    status: Status
    message: str
    metadata: Metadata = ()
    """Trailing metadata (custom fields)."""
    details: bytes | None = None
    """grpc-status-details-bin: a serialized google.rpc.Status."""
    unprocessed: bool = False
    retry_pushback: str | None = None
    """grpc-retry-pushback-ms as the server sent it (gRFC A6); None when absent."""


Event = (
    RequestReceived
    | MessageReceived
    | RequestEnded
    | RpcAborted
    | StreamReset
    | RequestRejected
    | SendUnblocked
    | ConnectionTerminated
    | ShutdownAcknowledged
    | DefenceTriggered
    | KeepaliveAcknowledged
    | ResponseStarted
    | CallEnded
)
