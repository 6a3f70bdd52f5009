"""Generate betterproto2 code from .proto files, as greeter's own gen/ is generated.

protoc (grpc_tools') with the pinned betterproto2 plugin and greeter's options: dataclass
messages, grpclib-style async service bases and stubs, and the files' descriptors embedded so
server reflection can describe them (greeter.services.reflection). `greeter gen` and the
repository's tools/gen.py both run `generate`. The compiler is the optional extra
``greeter[gen]`` (it is not needed to serve or call).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from greeter.wire.errors import GreeterError

__all__ = ["OPTIONS", "CodegenError", "generate"]

OPTIONS = "server_generation=async,client_generation=async,google_protobuf_descriptors"
PLUGIN = "protoc-gen-python_betterproto2"


class CodegenError(GreeterError):
    """The code could not be generated: the compiler is missing or a .proto does not compile."""


def generate(protos: Sequence[Path], out_dir: Path, include: Sequence[Path] = ()) -> None:
    """Compile `protos` into betterproto2 packages under `out_dir`.

    Each .proto is found relative to an `include` directory (default: the directories the
    protos are in, as protoc's -I); CodegenError carries protoc's own error lines.
    """
    # The plugin and the formatter it runs (ruff) live next to this interpreter in a venv.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    plugin = shutil.which(PLUGIN, path=path)
    if importlib.util.find_spec("grpc_tools") is None or plugin is None:
        raise CodegenError(
            "greeter gen needs the betterproto2 compiler and grpc_tools' protoc: "
            "pip install 'greeter[gen]'"
        )
    for proto in protos:
        if not proto.is_file():
            raise CodegenError(f"{proto}: no such file")
    roots = list(include) or list(dict.fromkeys(p.resolve().parent for p in protos))
    out_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            *(f"-I{root}" for root in roots),
            f"--plugin=protoc-gen-python_betterproto2={plugin}",
            f"--python_betterproto2_out={out_dir}",
            f"--python_betterproto2_opt={OPTIONS}",
            *(str(_relative(proto, roots)) for proto in protos),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": path},
    )
    if done.returncode != 0:
        raise CodegenError(done.stderr.strip() or f"protoc failed with status {done.returncode}")


def _relative(proto: Path, roots: Sequence[Path]) -> Path:
    """`proto` as protoc wants it: relative to the include directory that holds it."""
    absolute = proto.resolve()
    for root in roots:
        try:
            return absolute.relative_to(Path(root).resolve())
        except ValueError:
            continue
    raise CodegenError(f"{proto} is in none of the include directories {[str(r) for r in roots]}")
