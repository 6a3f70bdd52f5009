"""Project rules that keep the architecture true: import direction, generated code, layout."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "greeter"

# DESIGN.md §1: sans-IO and pure modules never touch asyncio, sockets, selectors or threads.
PURE_MODULES = {
    "framing",
    "compression",
    "protowire",
    "metadata",
    "events",
    "headers",
    "connection",
    "status_details",
    "codec",
    "budget",
    "defences",
    "config",
    "h2setup",
    "streams",
}
IO_MODULES = {"asyncio", "socket", "selectors", "threading", "ssl", "multiprocessing"}
# Who may import which greeter module (cli -> server -> connection -> pure -> h2).
ALLOWED_INTERNAL = {
    "framing": set(),
    "compression": set(),
    "protowire": set(),
    "metadata": set(),
    "status_details": set(),
    "events": set(),
    "config": set(),
    "budget": set(),
    "defences": {"budget", "config"},
    "headers": {"compression", "metadata", "events"},
    "h2setup": {"config"},
    "streams": {"compression", "framing", "headers"},
    "connection": {"config", "defences", "events", "h2setup", "headers", "streams"},
    "codec": {"protowire"},
    "stream": {"codec", "connection", "events", "status_details"},
    "observers": set(),
    "watchdog": {"config"},
    "tls": set(),
    "context": {"stream"},
    "driver": {"connection", "context", "events", "observers", "stream", "watchdog"},
    "server": {"config", "driver", "observers", "tls"},
    "serve_options": {"config"},
    "proxy": {"observers"},
    "client_tap": {"observers"},
    "replay": set(),
    "service": set(),
    "interop": {"context"},
    "propagation": {"context"},
    "reflection": {"server"},
}
# The application modules that know generated code (gen/); the stack itself never does.
APPLICATION_MODULES = {"service", "interop"}


def imported_modules(path: Path) -> set[str]:
    """Modules a file imports at run time (imports under `if TYPE_CHECKING:` are type-only)."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}
        for statement in node.body
        for inner in ast.walk(statement)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", sorted(PURE_MODULES))
def test_pure_modules_do_no_io(module: str) -> None:
    roots = {name.split(".")[0] for name in imported_modules(PACKAGE / f"{module}.py")}
    assert not roots & IO_MODULES, f"greeter.{module} imports {roots & IO_MODULES}"


@pytest.mark.parametrize("module", sorted(ALLOWED_INTERNAL))
def test_dependency_direction(module: str) -> None:
    names = imported_modules(PACKAGE / f"{module}.py")
    internal = {n.split(".")[1] for n in names if n.startswith("greeter.") and n.count(".") >= 1}
    internal -= {"greeter"}
    internal &= {p.stem for p in PACKAGE.glob("*.py")}
    assert internal <= ALLOWED_INTERNAL[module], f"greeter.{module} imports {internal}"
    if module not in APPLICATION_MODULES:
        assert not any(n == "gen" or n.startswith("gen.") for n in names), (
            f"greeter.{module} must not know the generated code"
        )


def test_every_module_states_its_layer() -> None:
    for path in PACKAGE.glob("*.py"):
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring, f"{path.name} has no module docstring"


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


@pytest.mark.parametrize("path", sorted((PACKAGE / "tap").glob("*.py")), ids=lambda p: p.name)
def test_the_tap_never_touches_the_core_or_io(path: Path) -> None:
    """DESIGN.md §1: the core never imports the tap and the tap never imports core or server."""
    names = imported_modules(path)
    roots = {name.split(".")[0] for name in names}
    if path.name != "sinks.py":  # the tap's one I/O edge: writers and an asyncio queue
        assert not roots & IO_MODULES, f"greeter/tap/{path.name} imports {roots & IO_MODULES}"
    forbidden = {"greeter.connection", "greeter.server", "greeter.stream", "greeter.cli"}
    assert not names & forbidden, f"greeter/tap/{path.name} imports {names & forbidden}"
    for module in PURE_MODULES | {"server", "stream"}:
        core_imports = imported_modules(PACKAGE / f"{module}.py")
        assert not any(n.startswith("greeter.tap") for n in core_imports)
