"""Side-by-side throughput of greeter, grpclib and grpc.aio serving the same Greeter, via h2load.

Usage: .venv/bin/python bench/compare.py [--requests N] [--clients C] [--streams M]

Each server runs in its own subprocess on loopback with the same betterproto2 messages (so the
codec cost is equal and the transport is what differs); h2load (Debian's nghttp2-client) is the
neutral load generator. Reports req/s (unary SayHello) and messages/s (LotsOfReplies count 1000)
and the ratio to grpc.aio, measured in one run on one machine. A script, not a test.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVERS = {
    "greeter": """
import asyncio
from grpclib.health.service import Health
from greeter.server import Server
from greeter.service import Greeter
async def main():
    async with Server([Greeter(), Health()], port={port}):
        await asyncio.Event().wait()
asyncio.run(main())
""",
    "grpclib": """
import asyncio
from grpclib.server import Server
from greeter.service import Greeter
async def main():
    server = Server([Greeter()])
    await server.start("127.0.0.1", {port})
    await server.wait_closed()
asyncio.run(main())
""",
    "grpc.aio": """
import asyncio, grpc
from gen.greet import HelloReply, HelloRequest
async def say_hello(request, context):
    return HelloReply(message="Hello " + request.name)
async def lots_of_replies(request, context):
    for i in range(1, request.count + 1):
        yield HelloReply(message=f"Hello {{request.name}} #{{i}}")
async def main():
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("greet.Greeter", {{
        "SayHello": grpc.unary_unary_rpc_method_handler(
            say_hello, request_deserializer=HelloRequest.FromString, response_serializer=bytes),
        "LotsOfReplies": grpc.unary_stream_rpc_method_handler(
            lots_of_replies, request_deserializer=HelloRequest.FromString,
            response_serializer=bytes),
    }})])
    server.add_insecure_port("127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
""",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def h2load(port: int, path: str, body: Path, args: argparse.Namespace, streams: int) -> float:
    command = [
        "h2load",
        "-n",
        str(args.requests),
        "-c",
        str(args.clients),
        "-m",
        str(streams),
        "-t",
        "1",
        "-d",
        str(body),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        f"http://127.0.0.1:{port}{path}",
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    succeeded = re.search(r"(\d+) succeeded", output)
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output)
    if not succeeded or not rate or int(succeeded.group(1)) != args.requests:
        raise RuntimeError(f"h2load failed:\n{output}")
    return float(rate.group(1))


def request_body(directory: Path, name: str, count: int) -> Path:
    sys.path.insert(0, str(ROOT))
    from gen.greet import HelloRequest  # noqa: PLC0415 (the script's own sys.path first)

    payload = bytes(HelloRequest(name=name, count=count))
    path = directory / f"{name}-{count}.bin"
    path.write_bytes(b"\x00" + len(payload).to_bytes(4, "big") + payload)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--streams", type=int, default=16, help="concurrent streams per client")
    parser.add_argument("--stream-requests", type=int, default=200)
    args = parser.parse_args()
    if not shutil.which("h2load"):
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 1
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        unary = request_body(Path(tmp), "world", 0)
        streaming = request_body(Path(tmp), "world", 1000)
        for name, source in SERVERS.items():
            port = free_port()
            process = subprocess.Popen([sys.executable, "-c", source.format(port=port)], cwd=ROOT)
            try:
                wait_listening(port)
                h2load(port, "/greet.Greeter/SayHello", unary, args, args.streams)  # warm-up
                rps = h2load(port, "/greet.Greeter/SayHello", unary, args, args.streams)
                stream_args = argparse.Namespace(**{**vars(args), "requests": args.stream_requests})
                sps = h2load(port, "/greet.Greeter/LotsOfReplies", streaming, stream_args, 1)
                results[name] = (rps, sps * 1000)
            finally:
                process.terminate()
                process.wait(timeout=10)
    base_rps, base_mps = results["grpc.aio"]
    ratio = "vs grpc.aio"
    print(f"{'server':<10} {'unary req/s':>12} {ratio:>12} {'stream msg/s':>13} {ratio:>12}")
    for name, (rps, mps) in results.items():
        unary_ratio, stream_ratio = rps / base_rps, mps / base_mps
        print(f"{name:<10} {rps:>12.0f} {unary_ratio:>11.2f}x {mps:>13.0f} {stream_ratio:>11.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
