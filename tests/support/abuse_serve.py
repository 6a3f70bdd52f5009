"""A greeter server with a ServerConfig given as JSON, for the abuse tests' subprocesses.

Not a test module. `python -m tests.support.abuse_serve '{"limits": {...}, "timeouts": {...},
"max_connections": 5}'` serves greet.Greeter and grpc.health.v1.Health on 127.0.0.1 (port 0),
logs like `greeter serve` (with the level, to stdout) and prints the same "serving ... on
HOST:PORT" line, so tests.support.peers.ServerProcess can wait for it (tests.support.abuse
starts it). `limits` are CoreConfig fields, `timeouts` greeter.server.config.Timeouts fields. A
field this version of greeter does not have is reported on a line starting "abuse-serve:
unknown" and ignored: the test of that defence then fails on the missing behaviour, not on
start-up. SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
from typing import Any

from grpclib.health.service import Health

from greeter.core.config import CoreConfig
from greeter.server import Server, ServerConfig
from greeter.server.config import Timeouts
from greeter.services.greeter import Greeter

log = logging.getLogger("abuse-serve")


def _build(cls: Any, values: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    for name in sorted(set(values) - known):
        print(f"abuse-serve: unknown {cls.__name__} field {name} ignored", flush=True)
    return cls(**{k: v for k, v in values.items() if k in known})


async def _serve(config: ServerConfig) -> None:
    server = Server([Greeter(), Health()], host="127.0.0.1", port=0, config=config)

    def ready() -> None:  # once SIGTERM is a graceful stop (it used to come before the handlers)
        log.info("serving %s on %s", ", ".join(server.service_names), server.address)

    await server.serve_until_signalled(ready=ready)
    log.info("stopped")


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(argv[1]) if len(argv) > 1 else {}
    config = ServerConfig(
        limits=_build(CoreConfig, spec.get("limits", {})),
        timeouts=_build(Timeouts, spec.get("timeouts", {})),
        max_connections=spec.get("max_connections", 1000),
        grace_period=0.5,
    )
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    asyncio.run(_serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
