"""`greeter gen`: a user's .proto becomes a package greeter serves and calls, through reflection
too; a .proto that does not compile gets protoc's error line, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.peers import REPO_ROOT, assert_one_line_failure, run_greeter

pytestmark = pytest.mark.timeout(60)

SHOP = """
syntax = "proto3";
package shop;
service Shop { rpc Buy (Item) returns (Receipt); }
message Item { string name = 1; int32 quantity = 2; }
message Receipt { string text = 1; }
"""
USE = """
import asyncio
from greeter import Channel, Server
from greeter.services.reflection import with_reflection
from out.google_proto_descriptor_pool import default_google_proto_descriptor_pool as pool
from out.shop import Item, Receipt, ShopBase, ShopStub

class Shop(ShopBase):
    async def buy(self, message: Item) -> Receipt:
        return Receipt(text=f"{message.quantity} x {message.name}")

async def main() -> None:
    async with Server(with_reflection([Shop()], pool), port=0) as server:
        async with Channel(f"127.0.0.1:{server.port}") as channel:
            print((await ShopStub(channel).buy(Item(name="tea", quantity=2))).text, flush=True)

asyncio.run(main())
"""


def test_a_users_proto_is_generated_served_and_called(tmp_path: Path) -> None:
    (tmp_path / "shop.proto").write_text(SHOP)
    done = run_greeter("gen", str(tmp_path / "shop.proto"), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {tmp_path / 'out'}: shop"
    (tmp_path / "use.py").write_text(USE)
    used = subprocess.run(
        [sys.executable, str(tmp_path / "use.py")],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}:{REPO_ROOT}", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert used.stdout == "2 x tea\n", used.stderr


def test_a_proto_that_does_not_compile_is_one_line_from_protoc(tmp_path: Path) -> None:
    bad = tmp_path / "bad.proto"
    bad.write_text('syntax = "proto3";\nmessage X { strin a = 1; }\n')
    line = assert_one_line_failure(run_greeter("gen", str(bad), "--out", str(tmp_path / "o")))
    assert line.startswith("greeter gen: ") and "bad.proto:2:" in line, line
    assert '"strin" is not defined' in line
    missing = run_greeter("gen", str(tmp_path / "none.proto"), "--out", str(tmp_path / "o"))
    assert (
        assert_one_line_failure(missing) == f"greeter gen: {tmp_path / 'none.proto'}: no such file"
    )
