"""The servers benchmarks/run.py compares, each serving greet.Greeter with the same semantics.

Usage: .venv/bin/python benchmarks/servers.py {greeter,greeter-uvloop,grpclib,grpc-aio} --port N
       [--cprofile FILE]   (profile the server until SIGTERM, then write pstats to FILE)

Every server answers on loopback with the betterproto2 messages of gen.greet, so the codec is
the same and the transport is what differs. Each kind imports only its own stack (the idle
memory figure compares processes). The bare h2 loop is benchmarks/bare_h2.py; `greeter
--workers N` is the CLI's `python -m greeter serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def greeter_server(port: int) -> None:
    """greeter's own server, default settings, tap off."""
    from greeter.server import Server  # noqa: PLC0415 (each kind imports only its stack)
    from greeter.services.greeter import Greeter  # noqa: PLC0415

    async with Server([Greeter()], host="127.0.0.1", port=port):
        await asyncio.Event().wait()


async def grpclib_server(port: int) -> None:
    """grpclib's server around the very same service class."""
    from grpclib.server import Server  # noqa: PLC0415

    from greeter.services.greeter import Greeter  # noqa: PLC0415

    server = Server([Greeter()])
    await server.start("127.0.0.1", port)
    await server.wait_closed()


async def grpc_aio_server(port: int) -> None:
    """grpc.aio (C-core) with generic handlers: betterproto2 messages as its serializers."""
    from tests.support.aio_greeter import greeter_server  # noqa: PLC0415

    server, _ = greeter_server(port)
    await server.start()
    await server.wait_for_termination()


KINDS: dict[str, Callable[[int], Coroutine[Any, Any, None]]] = {
    "greeter": greeter_server,
    "greeter-uvloop": greeter_server,
    "grpclib": grpclib_server,
    "grpc-aio": grpc_aio_server,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cprofile", help="profile until SIGTERM, then write pstats here")
    args = parser.parse_args()
    if not args.cprofile:
        serve(args.kind, args.port)
        return
    # SIGTERM ends the run with SystemExit so the profile is written (benchmarks/profile_server.py).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        serve(args.kind, args.port)
    finally:
        profiler.disable()
        profiler.dump_stats(args.cprofile)


def serve(kind: str, port: int) -> None:
    """Run one kind of server until the process is stopped."""
    coroutine = KINDS[kind](port)
    if kind.endswith("-uvloop"):
        import uvloop  # noqa: PLC0415 (optional)

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coroutine)
    else:
        asyncio.run(coroutine)


if __name__ == "__main__":
    main()
