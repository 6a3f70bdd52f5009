"""greeter's error tree: one root, and on every error what it means on the wire.

Every error greeter raises about a peer's bytes or a command derives from `GreeterError` and
says how it is answered (the core maps errors to the wire in one place, from these attributes):

- `status`: the gRPC status an RPC ends with because of it (PROTOCOL-HTTP2.md, doc/statuscodes.md);
- `error_code`: the HTTP/2 error code (RFC 9113 §7) of the RST_STREAM it causes, when HTTP/2
  itself answers (None: the answer is a gRPC status);
- `http_status`: the `:status` of the response that carries the answer (200 for gRPC answers).

    GreeterError
    ├── MessageError                 a message's bytes are bad
    │   ├── FramingError                 malformed message prefix         INTERNAL
    │   ├── MessageTooLargeError         length above the receive limit   RESOURCE_EXHAUSTED
    │   ├── DecompressionError           corrupt compressed body          INTERNAL
    │   ├── DecompressedTooLargeError    inflates beyond the limit        RESOURCE_EXHAUSTED
    │   ├── UnannouncedCompressionError  flag set, no grpc-encoding       INTERNAL
    │   └── WireFormatError              not protobuf wire format         INTERNAL
    ├── InvalidTimeoutError          grpc-timeout outside its grammar     INTERNAL
    ├── MalformedHeadersError        RFC 9113 §8.1.1                      RST_STREAM(PROTOCOL_ERROR)
    ├── RejectedRequestError         refused by gRPC rules                its status and HTTP status
    ├── SettingError                 a setting outside its range          (raised at configuration)
    ├── SetupFileError               a file a setting names is unusable   (raised at configuration)
    ├── StreamGoneError              a command names a closed stream      CANCELLED
    └── UnavailableError             the connection takes no new call     UNAVAILABLE

Programming errors (a bad argument, a call out of order) stay ValueError, TypeError and
RuntimeError, as in the standard library; `InvalidTimeoutError`, `WireFormatError`,
`SettingError` and `SetupFileError` are also ValueErrors: they are raised by parsers and checks
of values.
"""

from __future__ import annotations

from grpclib.const import Status
from h2.errors import ErrorCodes

__all__ = [
    "DecompressedTooLargeError",
    "DecompressionError",
    "FramingError",
    "GreeterError",
    "InvalidTimeoutError",
    "MalformedHeadersError",
    "MessageError",
    "MessageTooLargeError",
    "RejectedRequestError",
    "SettingError",
    "SetupFileError",
    "StreamGoneError",
    "UnannouncedCompressionError",
    "UnavailableError",
    "WireFormatError",
]


class GreeterError(Exception):
    """The root of greeter's errors; the attributes say how the error is answered on the wire."""

    status: Status = Status.INTERNAL
    """The gRPC status an RPC ends with because of this error."""
    error_code: ErrorCodes | None = None
    """The RST_STREAM error code when HTTP/2 answers the error; None when a gRPC status does."""
    http_status: int = 200
    """The HTTP `:status` of the response carrying the answer (200: a gRPC response)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MessageError(GreeterError):
    """A message's bytes are bad: its framing, its compression or its protobuf encoding."""


class FramingError(MessageError):
    """The prefix is malformed (Compressed-Flag other than 0 or 1)."""


class MessageTooLargeError(MessageError):
    """Message-Length exceeds the receive limit; decided from the prefix, the body never read."""

    status = Status.RESOURCE_EXHAUSTED

    def __init__(self, length: int, limit: int) -> None:
        # Same wording as grpc-go, so logs and interop tests read alike across stacks.
        super().__init__(f"received message larger than max ({length} vs. {limit})")
        self.length = length
        self.limit = limit


class DecompressionError(MessageError):
    """The compressed body is corrupt, truncated or followed by garbage."""

    def __init__(self, encoding: str, detail: str) -> None:
        super().__init__(f"corrupt {encoding} message: {detail}")
        self.encoding = encoding
        self.detail = detail


class DecompressedTooLargeError(MessageError):
    """The decompressed message would exceed the limit (found without inflating past it)."""

    status = Status.RESOURCE_EXHAUSTED

    def __init__(self, limit: int) -> None:
        super().__init__(f"decompressed message larger than max ({limit})")
        self.limit = limit


class UnannouncedCompressionError(MessageError):
    """PROTOCOL-HTTP2.md: a message with the compressed flag on a stream without grpc-encoding."""

    def __init__(self) -> None:
        super().__init__("compressed message without grpc-encoding")


class WireFormatError(MessageError, ValueError):
    """The bytes are not a valid protobuf encoding; the message names the byte offset."""


class InvalidTimeoutError(GreeterError, ValueError):
    """grpc-timeout does not match its grammar (grpc-go and C-core answer INTERNAL)."""


class MalformedHeadersError(GreeterError):
    """RFC 9113 §8.1.1: a malformed request or response is a stream error (PROTOCOL_ERROR)."""

    error_code = ErrorCodes.PROTOCOL_ERROR


class RejectedRequestError(GreeterError):
    """A well-formed HTTP/2 request that gRPC refuses before the RPC starts."""

    def __init__(self, status: Status, message: str, http_status: int = 200) -> None:
        super().__init__(message)
        self.status = status
        self.http_status = http_status


class SettingError(GreeterError, ValueError):
    """A config field or option outside its allowed values (greeter.wire.ranges)."""

    def __init__(self, setting: str, value: object, allowed: str) -> None:
        super().__init__(f"{setting}: {value!r} is out of range: allowed is {allowed}")
        self.setting = setting
        self.value = value
        self.allowed = allowed


class SetupFileError(GreeterError, ValueError):
    """A file a setting names is missing, unreadable or not what it should be (a TLS certificate,
    key or CA bundle, a Unix socket's directory); the message names the file."""


class StreamGoneError(GreeterError):
    """A command named a stream that is no longer open (reset, finished or never started)."""

    status = Status.CANCELLED


class UnavailableError(GreeterError):
    """A call cannot start on this connection: the peer sent GOAWAY, or the connection closed."""

    status = Status.UNAVAILABLE
