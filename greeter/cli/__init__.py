"""The `greeter` command: serve, hello, proxy, replay and interop-server.

- main: the argument parser, the commands and `main()` (the console script's entry);
- limits: `serve`'s limit options, mapped onto ServerConfig, CoreConfig and Timeouts;
- tracing: the ``--trace*`` options of serve, hello and proxy, and the tap they build.
"""

from __future__ import annotations

from greeter.cli.main import main

__all__ = ["main"]
