"""Project rules that keep the architecture true: layers as folders, no cycles, generated code.

The layer rules are folder rules (docs/architecture.md): a module may import its own folder and
any folder of a lower rank; folders of the same rank never import each other (the core and the
tap meet only in wire/). Imports under `if TYPE_CHECKING:` count too: a type-only import up the
layers is still a dependency up the layers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "greeter"

RANK = {
    "wire": 0,
    "core": 1,
    "tap": 1,
    "server": 2,
    "client": 3,
    "tools": 3,
    "services": 3,
    "cli": 4,
}
"""cli → services, tools, client → server → core, tap → wire."""
NO_IO = {"wire", "core", "tap"}
"""Sans-IO folders: no asyncio, sockets, selectors, threads, ssl or processes."""
IO_EDGES = {"greeter.tap.sinks"}
"""The tap's one I/O edge: trace writers and an asyncio queue of records."""
IO_MODULES = {"asyncio", "socket", "selectors", "threading", "ssl", "multiprocessing", "subprocess"}
GENERATED_CODE_USERS = {"services"}
"""Only the services know gen/; the stack serves and traces any service."""
PUBLIC_FACE = {"greeter", "greeter.__main__"}
"""greeter/__init__.py re-exports from every layer; nothing inside imports it."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at run time or for type checking; ``from greeter.wire import
    framing`` imports greeter.wire.framing (the package's own __init__ is not a dependency)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                names.add(submodule if submodule in MODULES else node.module)
    return names


def folder(module: str) -> str | None:
    """The layer folder of a greeter module (None for the public face)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def violations(module: str, names: set[str]) -> list[str]:
    """What breaks the folder rules when `module` imports `names`."""
    own = folder(module)
    if own is None:
        return [f"{module} is outside the layer folders {sorted(RANK)}"]
    found = []
    for name in sorted(names):
        if name == "greeter" or name.startswith("greeter."):
            other = folder(name)
            if other is None:
                found.append(f"{module} imports the public face {name}")
            elif other != own and RANK[other] >= RANK[own]:
                found.append(f"{module} ({own}) imports {name} ({other})")
        elif name.split(".")[0] == "gen" and own not in GENERATED_CODE_USERS:
            found.append(f"{module} knows the generated code: {name}")
        elif name.split(".")[0] in IO_MODULES and own in NO_IO and module not in IO_EDGES:
            found.append(f"{module} is sans-IO but imports {name}")
    return found


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One import cycle of `graph` (module -> imported modules), or None."""
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> list[str] | None:
        if module in trail:
            return [*trail[trail.index(module) :], module]
        if module in done:
            return None
        for name in graph.get(module, []):
            cycle = visit(name, [*trail, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    return next((c for m in sorted(graph) if (c := visit(m, [])) is not None), None)


@pytest.mark.parametrize("module", sorted(set(MODULES) - PUBLIC_FACE))
def test_imports_follow_the_layers(module: str) -> None:
    assert violations(module, imported_modules(MODULES[module])) == []


def test_no_import_cycles() -> None:
    graph = {
        module: sorted(n for n in imported_modules(path) if n in MODULES and n != module)
        for module, path in MODULES.items()
    }
    assert find_cycle(graph) is None


def test_the_rules_catch_what_they_forbid(tmp_path: Path) -> None:
    """Type-only imports count; upward, sideways, gen/ and I/O imports fail; cycles are found."""
    source = tmp_path / "bad.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import asyncio\n"
        "from gen.greet import HelloRequest\n"
        "from greeter.wire import framing\n"
        "if TYPE_CHECKING:\n"
        "    from greeter.server.listeners import Server\n"
        "    from greeter.tap.records import Record\n"
    )
    names = imported_modules(source)
    assert {"greeter.wire.framing", "greeter.server.listeners", "greeter.tap.records"} <= names
    found = violations("greeter.core.bad", names)
    assert len(found) == 4, found  # server (up), tap (sideways), gen, asyncio
    assert violations("greeter.services.bad", names) == []
    assert violations("greeter.wire.bad", {"greeter.wire.framing", "h2.errors"}) == []
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


def test_every_module_says_what_it_does() -> None:
    for module, path in MODULES.items():
        assert ast.get_docstring(ast.parse(path.read_text())), f"{module} has no docstring"


def test_public_face_exports_what_it_names() -> None:
    import greeter  # noqa: PLC0415 -- the face itself is the subject

    missing = [name for name in greeter.__all__ if not hasattr(greeter, name)]
    assert not missing, missing


@pytest.mark.timeout(120)
def test_generated_code_matches_proto() -> None:
    """gen/ is exactly what the pinned betterproto2 compiler makes of greet.proto and proto/."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, (
        f"gen/ drifted from the .proto files:\n{result.stdout}{result.stderr}"
    )
