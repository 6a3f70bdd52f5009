"""greet.Greeter's SayHello and LotsOfReplies from nginx + Lua: the client benchmark's server.

Usage: .venv/bin/python benchmarks/nginx_greeter.py --port N   (serves until Ctrl-C)

benchmarks/clients.py measures clients, so its server must never be what limits a figure.
Measured on the 2-core benchmark machine with h2load on one connection (server CPU time per
unary call at 1 / 64 in flight; per streamed message): greeter's own server 390 / 190 µs,
grpcio's sync server 340 / 220 µs, grpc.aio's 440 / 240 µs and 52 µs per message, as much CPU
as the clients being compared; grpc-js 140 / 43 µs and 9 µs per message, as much as a Python
client spends receiving one. nginx with its Lua module (C event loop, LuaJIT handlers) spends
10-40 / 9 µs per call and under 0.1 µs per message. nghttpd cannot serve gRPC (it sends no
content-type for these paths), and nginx serving static files answers on the request's HEADERS
frame and resets every stream. This server answers like a gRPC server:

- the request's HelloRequest is decoded and echoed ("Hello " + name; LotsOfReplies: `count`
  replies "Hello NAME #i", built once per distinct request), so the clients' checks of every
  reply mean what they say; a request that is not one uncompressed HelloRequest message gets
  grpc-status 3;
- it replies once the request message is complete, with exactly HEADERS (:status 200,
  content-type), DATA and a trailing HEADERS (grpc-status): no server or date header, no
  RST_STREAM, and no stream WINDOW_UPDATE when the request's HEADERS and DATA arrive together
  (a client that writes them separately gets one, as nginx reads a body);
- its header blocks are the same bytes on every response and leave the client's HPACK table
  alone (literals without indexing), as a warm C-core or grpc-go server's blocks do (theirs
  index the table instead: a decoder without a cache decodes a few more bytes here);
- one process (master_process off), so its CPU time is the server's.

It serves only those two methods: the client benchmark uses no others. Debian packages:
nginx and libnginx-mod-http-lua (which brings LuaJIT and lua-resty-core); `missing()` names
what is absent. The handlers are benchmarks/nginx_greeter.lua.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = HERE / "nginx_greeter.lua"
MODULES = Path("/usr/lib/nginx/modules")
LUA_MODULES = ("ndk_http_module.so", "ngx_http_lua_module.so")
"""Lua needs the nginx development kit (NDK) module loaded first."""
PACKAGES = "nginx libnginx-mod-http-lua"


def nginx_binary() -> str | None:
    """The nginx executable (Debian's is /usr/sbin/nginx, not on every user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def missing() -> str | None:
    """None when nginx and its Lua module are installed, else what to run to install them."""
    absent = [] if nginx_binary() else ["nginx"]
    absent += [name for name in LUA_MODULES if not (MODULES / name).exists()]
    if not absent:
        return None
    return (
        f"{', '.join(absent)} not found: the client benchmark's server is nginx with its Lua "
        f"module; install them with: apt-get install {PACKAGES}"
    )


def version() -> str:
    """'nginx 1.22.1, lua module 0.10.23' (as far as the machine tells)."""
    nginx = subprocess.run(
        [nginx_binary() or "nginx", "-v"], check=False, capture_output=True, text=True
    ).stderr.strip()  # "nginx version: nginx/1.22.1"
    lua = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "libnginx-mod-http-lua"],
        check=False,
        capture_output=True,
        text=True,
    ).stdout.strip()  # "1:0.10.23-1+deb12u1"
    text = nginx.rpartition(" ")[2].replace("/", " ") or "nginx ?"
    if lua:
        text += f", lua module {lua.split(':')[-1].split('-')[0]}"
    return text


def config(port: int, directory: Path) -> str:
    """nginx.conf for 127.0.0.1:`port`, every file it writes under `directory`."""
    loads = "".join(f"load_module {MODULES / name};\n" for name in LUA_MODULES)
    temp_paths = "".join(
        f"  {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{loads}daemon off;
master_process off;
worker_processes 1;
error_log stderr warn;
pid {directory / "nginx.pid"};
events {{ worker_connections 1024; }}
http {{
  access_log off;
{temp_paths}  client_body_buffer_size 64k;
  # one connection for the whole run: no GOAWAY after 1000 requests (the default), no idle close
  keepalive_requests 1000000000;
  keepalive_timeout 1h;
  http2_max_concurrent_streams 1000;
  http2_chunk_size 16k;
  # content-type as a plain header: a literal without indexing, so every response's header
  # block is the same bytes and leaves the client's HPACK table alone (nginx's own
  # content-type would be inserted into that table on every response)
  lua_use_default_type off;
  init_by_lua_file {LUA};
  server {{
    listen 127.0.0.1:{port} http2;
    add_header content-type application/grpc;
    set $grpc_status 0;
    add_trailer grpc-status $grpc_status;
    location = /greet.Greeter/SayHello {{ content_by_lua_block {{ say_hello() }} }}
    location = /greet.Greeter/LotsOfReplies {{ content_by_lua_block {{ lots_of_replies() }} }}
  }}
}}
"""


def start(port: int, directory: Path) -> subprocess.Popen[bytes]:
    """Start nginx on 127.0.0.1:`port` in its own process group (run.stop() ends it); its
    config, pid file, temporary files and log (nginx.log) live in `directory`."""
    problem = missing()
    if problem is not None:
        raise RuntimeError(problem)
    conf = directory / "nginx.conf"
    conf.write_text(config(port, directory))
    with (directory / "nginx.log").open("wb") as log:
        return subprocess.Popen(
            [nginx_binary() or "nginx", "-p", str(directory), "-e", "stderr", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    problem = missing()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: nginx is stopped below
    with tempfile.TemporaryDirectory(prefix="greeter-nginx-") as tmp:
        process = start(args.port, Path(tmp))
        print(f"serving SayHello and LotsOfReplies on 127.0.0.1:{args.port}", file=sys.stderr)
        try:
            return process.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
            sys.stderr.write(Path(tmp, "nginx.log").read_text(errors="replace"))


if __name__ == "__main__":
    sys.exit(main())
