"""CPU per unary call of greeter's client alone, against an in-process canned HTTP/2 responder.

Usage: .venv/bin/python benchmarks/client_cpu.py [--in-flight 64] [--calls 20000] [--rounds 5]
       .venv/bin/python benchmarks/client_cpu.py --source /path/to/other/checkout   (A/B)

A development tool for work on the client's hot path, not a comparison: benchmarks/clients.py is
the benchmark. Here no server runs and no socket is opened: the channel's connection is a fake
asyncio transport that answers every request it is written with the bytes a gRPC server would
send (response HEADERS, one HelloReply, trailers), in the next loop turn. What remains is the
client's own CPU time (greeter's client, betterproto2's stub and codec, asyncio), measured with
time.process_time() and so nearly free of the machine's other load; the best of `--rounds` is
printed. `--source` puts another checkout of greeter first on sys.path, so two versions can be
run one after the other on the same machine (interleave a few runs of each: a busy machine
still moves every figure by a few %).
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import time
from pathlib import Path
from typing import Any

REPLY_NAME = "x"


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """RFC 9113 §4.1 frame: 24-bit length, type, flags, stream id."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


def _literal_block(fields: list[tuple[bytes, bytes]]) -> bytes:
    """An HPACK block of literals without indexing (RFC 7541 §6.2.2): the same bytes on every
    response, as a warm server's are."""
    return b"".join(b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v for n, v in fields)


class CannedServer(asyncio.Transport):
    """A transport whose peer answers each request (a HEADERS or DATA frame with END_STREAM)
    with a whole unary response, one loop turn later."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: Any, reply: bytes) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._unparsed = b""
        self._pending: list[bytes] = []
        self._closing = False
        message = b"\x00" + struct.pack(">I", len(reply)) + reply
        self._head = _literal_block([(b":status", b"200"), (b"content-type", b"application/grpc")])
        self._message = message
        self._trailers = _literal_block([(b"grpc-status", b"0")])
        # SETTINGS (a stream limit of 1,000), our ACK of the client's, and a connection window
        # large enough that the client never waits for a WINDOW_UPDATE.
        self._preamble = (
            _frame(0x4, 0, 0, struct.pack(">HI", 0x3, 1000))
            + _frame(0x4, 0x1, 0, b"")
            + _frame(0x8, 0, 0, struct.pack(">I", 2**31 - 1 - 65_535))
        )

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50051), "sockname": ("127.0.0.1", 1)}.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        data = self._unparsed + bytes(data)
        position, answers = 0, []
        if data.startswith(b"PRI * HTTP/2.0"):
            position = 24
            answers.append(self._preamble)
        while len(data) - position >= 9:
            length = int.from_bytes(data[position : position + 3], "big")
            if len(data) - position < 9 + length:
                break
            kind, flags = data[position + 3], data[position + 4]
            stream_id = int.from_bytes(data[position + 5 : position + 9], "big") & 0x7FFF_FFFF
            if kind in (0x0, 0x1) and flags & 0x1:  # END_STREAM: the request is complete
                answers.append(
                    _frame(0x1, 0x4, stream_id, self._head)
                    + _frame(0x0, 0, stream_id, self._message)
                    + _frame(0x1, 0x5, stream_id, self._trailers)
                )
            position += 9 + length
        self._unparsed = data[position:]
        if answers:
            if not self._pending:
                self._loop.call_soon(self._deliver)
            self._pending += answers

    def _deliver(self) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        if hasattr(self._protocol, "get_buffer"):
            buffer = self._protocol.get_buffer(len(data))
            buffer[: len(data)] = data
            self._protocol.buffer_updated(len(data))
        else:
            self._protocol.data_received(data)


async def measure(in_flight: int, calls: int, rounds: int) -> float:
    """The best round's client CPU µs per call."""
    from gen.greet import GreeterStub, HelloReply, HelloRequest  # noqa: PLC0415 (after --source)
    from greeter.client import Channel  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    reply = bytes(HelloReply(message=f"Hello {REPLY_NAME}"))

    async def connect(factory: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        protocol = factory()
        transport = CannedServer(loop, protocol, reply)
        protocol.connection_made(transport)
        return transport, protocol

    loop.create_connection = connect  # type: ignore[method-assign]
    channel = Channel("127.0.0.1:50051")
    stub = GreeterStub(channel)

    async def one_after_another(count: int) -> None:
        for _ in range(count):
            answer = await stub.say_hello(HelloRequest(name=REPLY_NAME))
            assert answer.message == f"Hello {REPLY_NAME}", answer

    await one_after_another(500)  # warm-up: the connection, the caches
    per_loop = calls // in_flight
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        await asyncio.gather(*(one_after_another(per_loop) for _ in range(in_flight)))
        best = min(best, (time.process_time() - started) / (per_loop * in_flight) * 1e6)
    channel.close()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-flight", type=int, default=64, help="calls in flight (default 64)")
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is printed")
    parser.add_argument("--source", type=Path, help="a greeter checkout to import instead")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    root = args.source or here
    sys.path[:0] = [str(root), str(here)]  # greeter (and gen/, if it has one) from `root` first
    best = asyncio.run(measure(args.in_flight, args.calls, args.rounds))
    print(
        f"{root}: {best:.1f} µs client CPU per unary call, {args.in_flight} in flight"
        f" (best of {args.rounds})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
