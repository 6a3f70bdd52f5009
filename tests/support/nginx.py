"""nginx as a test peer (a load balancer in front of greeter instances). Not a test module.

The test binds and listens on nginx's port itself and hands the socket over the way nginx hands
sockets to its own new binary (the NGINX="fd;" environment variable): the port is known without
a race and queues connections before nginx runs, so nothing waits for nginx to start.
Debian's nginx and libnginx-mod-stream come from `make test`'s setup. The balancer tests run
the configurations docs/deploy.md shows (`documented_config`), so the guide and the tests agree.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
DEPLOY_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
EXAMPLE_INSTANCES = ("127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053")
"""The instances' addresses in the guide's examples, replaced by the test's."""
EXAMPLE_LISTEN = re.compile(r"\blisten 8080\b")


def documented_config(runner: str, instances: Sequence[int], port: int) -> str:
    """The nginx block of docs/deploy.md marked "<!-- RUNNER runs this block ... -->", with the
    example instances replaced by those on `instances` and its listener by 127.0.0.1:`port`."""
    text = DEPLOY_GUIDE.read_text()
    marker = f"<!-- {runner} runs this block"
    assert marker in text, f"{DEPLOY_GUIDE} has no block marked {marker!r} -->"
    start = text.index("```nginx\n", text.index(marker)) + len("```nginx\n")
    block = text[start : text.index("```", start)]
    for example, instance in zip(EXAMPLE_INSTANCES, instances, strict=True):
        assert example in block, f"the block {runner} runs names no instance {example}"
        block = block.replace(example, f"127.0.0.1:{instance}")
    block, listeners = EXAMPLE_LISTEN.subn(f"listen 127.0.0.1:{port}", block)
    assert listeners == 1, f"the block {runner} runs must have one `listen 8080`"
    return block


@contextlib.contextmanager
def running_nginx(tmp_path: Path, config: Callable[[int], str]) -> Iterator[int]:
    """nginx with `config(port)` as its configuration's main context; yields the port."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists() and STREAM_MODULE.exists(), (
        "these tests need nginx and its stream module: make setup installs them as root "
        "(apt-get install nginx libnginx-mod-stream)"
    )
    conf = tmp_path / "nginx.conf"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        conf.write_text(
            f"load_module {STREAM_MODULE};\n"
            f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log notice;\n"
            f"events {{}}\n{config(port)}\n"
        )
        fd = listener.fileno()
        process = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
            env={**os.environ, "NGINX": f"{fd};"},
            pass_fds=(fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)
        log = (tmp_path / "error.log").read_text() if (tmp_path / "error.log").exists() else ""
        assert "[emerg]" not in log, log
