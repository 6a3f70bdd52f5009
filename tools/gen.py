"""Regenerate gen/ from the repo's .proto files with the pinned betterproto2 compiler, or check it.

The sources: greet.proto (gen/greet) and the grpc.testing interop interface under proto/
(gen/grpc/testing), compiled in one protoc run so gen/'s shared files are made once.

Usage: python tools/gen.py          rewrite gen/
       python tools/gen.py --check  print a diff and exit 1 when gen/ differs from a fresh run

The plugin (protoc-gen-python_betterproto2) and grpc_tools' protoc are the optional extra
``greeter[gen]`` (and in [dev]); nothing here runs at server run time.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
import tempfile
from pathlib import Path

from greeter.tools import codegen

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PROTOS = (
    "greet.proto",  # found via -I ROOT
    "grpc/testing/empty.proto",  # the rest via -I proto/
    "grpc/testing/messages.proto",
    "grpc/testing/test.proto",
)


def generate(out_dir: Path) -> None:
    """The repo's protos, compiled as `greeter gen` compiles a user's (greeter.tools.codegen)."""
    codegen.generate(
        [ROOT / name if name == "greet.proto" else PROTO_DIR / name for name in PROTOS],
        out_dir,
        include=[PROTO_DIR, ROOT],
    )


def tree(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): p.read_text()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="diff instead of writing")
    args = parser.parse_args()
    target = ROOT / "gen"
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        if not args.check:
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(fresh, target)
            print(f"wrote {target}")
            return 0
        old, new = tree(target), tree(fresh)
        diff = [
            line
            for name in sorted(old.keys() | new.keys())
            for line in difflib.unified_diff(
                old.get(name, "").splitlines(True),
                new.get(name, "").splitlines(True),
                f"gen/{name} (committed)",
                f"gen/{name} (generated)",
            )
        ]
        sys.stdout.writelines(diff)
        return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
