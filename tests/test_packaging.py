"""The package as a downstream project sees it: installed, typed (PEP 561), versioned."""

from __future__ import annotations

import importlib.metadata
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

import greeter

ROOT = Path(__file__).resolve().parent.parent

DOWNSTREAM = """
from gen.greet import GreeterStub, HelloRequest
from greeter import Channel, Server, ServerConfig, TapFactory, TraceWriter, current_rpc


async def bound_port() -> int:
    async with Server([], port=0, config=ServerConfig(grace_period=1.0)) as server:
        return server.port


def time_left() -> float | None:
    return current_rpc().time_remaining()


def tap(writer: TraceWriter) -> TapFactory:
    return TapFactory(writer, role="server")


async def hello(name: str) -> str:
    async with Channel("localhost:50051") as channel:  # the generated stub takes it as it is
        reply = await GreeterStub(channel).say_hello(HelloRequest(name=name))
    return reply.message
"""
WRONG = """
from greeter import Server


def bound_port(server: Server) -> str:
    return server.port
"""


@pytest.mark.timeout(180)
def test_a_downstream_mypy_strict_sees_greeters_types(tmp_path: Path) -> None:
    """greeter built as a wheel and installed into a fresh environment's site-packages: a
    downstream module type-checks under `mypy --strict`, and a wrong one fails on greeter's own
    annotation (without py.typed, mypy would refuse the import or see Any)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    (target,) = venv.glob("lib/python*/site-packages")
    source = tmp_path / "source"  # a copy: the build leaves nothing (build/, egg-info) behind
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("greeter", "gen"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    install += ["--no-build-isolation", "--target", str(target), str(source)]
    subprocess.run(install, check=True, timeout=150, capture_output=True)
    assert (target / "greeter" / "py.typed").is_file()
    assert (target / "greeter" / "tools" / "timeline.html").is_file()  # `greeter trace html`
    # greeter's own dependencies (grpclib, h2, ...) come from this test environment.
    (target / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    (tmp_path / "downstream.py").write_text(DOWNSTREAM)
    (tmp_path / "wrong.py").write_text(WRONG)

    def mypy(module: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental"]
        command += ["--python-executable", str(venv / "bin" / "python"), module]
        return subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
        )

    good = mypy("downstream.py")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = mypy("wrong.py")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert 'Incompatible return value type (got "int", expected "str")' in bad.stdout


def test_version_is_the_distributions() -> None:
    assert greeter.__version__ == importlib.metadata.version("greeter")
    result = subprocess.run(
        [sys.executable, "-m", "greeter", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"greeter {greeter.__version__}"
