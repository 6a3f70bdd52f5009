"""greeter's message codec beside betterproto2's own, on the same dataclasses: µs per message.

Usage: .venv/bin/python benchmarks/codec.py [--number 20000] [--rounds 5]

Encodes and decodes a few messages of gen/ with betterproto2 (`bytes(message)`,
`Class.FromString(data)`) and with greeter.wire.codec (`encode`, and `decode`, which also
checks the bytes: protowire.check_wire_format), in one process, interleaved, best of
`--rounds`. The two must give the same bytes and equal messages, or the script fails. A script,
not a test: numbers quoted in the docs come from it (`greeter/wire/dataclass_codec.py` says why
greeter has its own encoder and decoder).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from run import TIMES

from gen.greet import HelloReply, HelloRequest
from gen.grpc.testing import (
    EchoStatus,
    Payload,
    PayloadType,
    ResponseParameters,
    SimpleRequest,
    SimpleResponse,
    StreamingOutputCallRequest,
)
from greeter.wire import codec

MESSAGES: list[tuple[str, Any]] = [
    ("greet.HelloRequest", HelloRequest(name="Ada", count=3)),
    ("greet.HelloReply", HelloReply(message="Hello Ada")),
    (
        "grpc.testing.SimpleRequest (271-byte payload)",
        SimpleRequest(
            response_type=PayloadType.COMPRESSABLE,
            response_size=314,
            payload=Payload(body=bytes(271)),
            fill_username=True,
            response_status=EchoStatus(code=2, message="x"),
        ),
    ),
    (
        "grpc.testing.SimpleResponse",
        SimpleResponse(payload=Payload(body=bytes(314)), username="ada", oauth_scope="s"),
    ),
    (
        "grpc.testing.StreamingOutputCallRequest (4 parameters)",
        StreamingOutputCallRequest(
            response_parameters=[ResponseParameters(size=n, interval_us=n) for n in range(4)]
        ),
    ),
]


def per_call(action: Callable[[], object], number: int) -> float:
    started = time.perf_counter()
    for _ in range(number):
        action()
    return (time.perf_counter() - started) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is kept")
    args = parser.parse_args()
    print("| message | encode µs betterproto2 / greeter | decode µs betterproto2 / greeter |")
    print("| --- | --- | --- |")
    for name, message in MESSAGES:
        cls, data = type(message), bytes(message)
        if codec.encode(message) != data or codec.decode(cls, data) != cls.FromString(data):
            print(f"{name}: greeter's codec disagrees with betterproto2's", file=sys.stderr)
            return 1
        timings: dict[str, float] = {}
        actions = {
            "bp_encode": lambda m=message: bytes(m),
            "encode": lambda m=message: codec.encode(m),
            "bp_decode": lambda c=cls, d=data: c.FromString(d),
            "decode": lambda c=cls, d=data: codec.decode(c, d),
        }
        for _ in range(args.rounds):
            for key, action in actions.items():
                timing = per_call(action, args.number)
                timings[key] = min(timings.get(key, timing), timing)
        encode = f"{timings['bp_encode']:.2f} / {timings['encode']:.2f}"
        decode = f"{timings['bp_decode']:.2f} / {timings['decode']:.2f}"
        encode += f" ({timings['bp_encode'] / timings['encode']:.1f}{TIMES})"
        decode += f" ({timings['bp_decode'] / timings['decode']:.1f}{TIMES})"
        print(f"| {name} | {encode} | {decode} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
