"""`greeter gen PROTO... --out DIR`: betterproto2 code for a user's .proto files.

Only wiring: argparse in, greeter.tools.codegen.generate, one line out (or protoc's error lines).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from greeter.tools.codegen import CodegenError, generate


def add_gen_parser(commands: Any) -> None:
    gen = commands.add_parser(
        "gen",
        help="generate dataclass messages, service bases and stubs from .proto files",
        description="Compiles the .proto files with the pinned betterproto2 compiler and greeter's "
        "options (async grpclib-style service bases and stubs, descriptors embedded for server "
        "reflection), as greeter's own gen/ is made. Needs pip install 'greeter[gen]'.",
    )
    gen.add_argument("protos", nargs="+", type=Path, metavar="PROTO")
    gen.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    gen.add_argument(
        "-I",
        "--include",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="import path (repeatable; default: the directories of the PROTO files)",
    )


async def gen(args: argparse.Namespace) -> int:
    """Generate; 0 and one line naming what was written, or 1 and the compiler's errors."""
    try:
        generate(args.protos, args.out, args.include)
    except CodegenError as exc:
        print(f"greeter gen: {exc}", file=sys.stderr)
        return 1
    packages = sorted(p.parent.relative_to(args.out) for p in args.out.rglob("__init__.py"))
    names = ", ".join(str(p).replace("/", ".") for p in packages if str(p) != ".")
    print(f"wrote {args.out}: {names}")
    return 0
