"""tshark (Debian's `tshark` package) reading the pcapng captures greeter writes.

Not a test module. `Tshark(tmp_path)` runs tshark with its own empty configuration directory
(nothing from the machine's profile), greet.proto alone on the Protobuf search path and every
option on the command line, as a user would (docs/tracing.md): `-d tcp.port==PORT,http2`,
`uat:protobuf_search_paths`, `protobuf.preload_protos` and `protobuf.pbf_as_hf` so that
`pbf.greet.*` fields can be printed. A missing tshark fails the test with the command that
installs it (the Makefile's `system-tools` does so as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support.peers import REPO_ROOT

TSHARK_TIMEOUT = 60.0
FIELD_SEPARATOR = "\x1f"  # no field value holds it
HTTP2_TYPES = {
    0: "DATA",
    1: "HEADERS",
    2: "PRIORITY",
    3: "RST_STREAM",
    4: "SETTINGS",
    5: "PUSH_PROMISE",
    6: "PING",
    7: "GOAWAY",
    8: "WINDOW_UPDATE",
    9: "CONTINUATION",
}


class Tshark:
    """tshark on captures of connections to `port`s, with greet.proto loaded."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("tshark")
        if executable is None:
            pytest.fail(
                "tshark is not installed: as root, apt-get install tshark (make system-tools)",
                pytrace=False,
            )
        self.executable = executable
        self.protos = directory / "protos"
        self.protos.mkdir(exist_ok=True)
        shutil.copy(REPO_ROOT / "greet.proto", self.protos / "greet.proto")
        self.config = directory / "wireshark-config"
        self.config.mkdir(exist_ok=True)

    def options(self, port: int) -> list[str]:
        """What docs/tracing.md tells a user to pass for a server on `port`."""
        return [
            *("-d", f"tcp.port=={port},http2"),
            *("-o", f'uat:protobuf_search_paths:"{self.protos}","TRUE"'),
            *("-o", "protobuf.preload_protos:TRUE"),
            *("-o", "protobuf.pbf_as_hf:TRUE"),
        ]

    def run(self, *args: str) -> str:
        """tshark ARGS; its stdout (stderr only carries the running-as-root notice)."""
        done = subprocess.run(
            [self.executable, *args],
            env={**os.environ, "WIRESHARK_CONFIG_DIR": str(self.config)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TSHARK_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, f"tshark {args} failed:\n{done.stderr}"
        return done.stdout

    def fields(
        self,
        capture: Path,
        port: int,
        fields: Sequence[str],
        display_filter: str = "",
        extra: Sequence[str] = (),
    ) -> list[list[str]]:
        """One row per packet (matching `display_filter`): the values of `fields`, each value
        a comma-joined list when the packet holds several (e.g. one per HTTP/2 frame)."""
        args = [*("-r", str(capture)), *self.options(port), *extra, "-T", "fields"]
        args += ["-E", f"separator={FIELD_SEPARATOR}", "-E", "occurrence=a", "-E", "aggregator=,"]
        for name in fields:
            args += ["-e", name]
        if display_filter:
            args += ["-Y", display_filter]
        output = self.run(*args)
        return [line.split(FIELD_SEPARATOR) for line in output.splitlines()]
