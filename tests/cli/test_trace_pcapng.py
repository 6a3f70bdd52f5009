"""`--trace-format pcapng` and `greeter trace pcapng` from the command line, read by tshark.

`serve` and `proxy` write a capture of a `hello` call that tshark decodes down to the
Protobuf fields, with the exact options docs/tracing.md gives; `hello --trace-bytes` writes a
JSONL trace that `trace pcapng` converts. Contradictory options and a trace without raw bytes
fail with one line. Servers run as subprocesses and are waited for on their start-up line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.peers import (
    assert_one_line_failure,
    run_greeter,
    spawn_greeter_server,
    spawn_proxy,
)
from tests.support.tshark import Tshark

pytestmark = pytest.mark.timeout(60)


def decoded_messages(tshark: Tshark, capture: Path, port: int) -> list[str]:
    rows = tshark.fields(
        capture, port, ["pbf.greet.HelloRequest.name", "pbf.greet.HelloReply.message"], "grpc"
    )
    return [value for row in rows for value in row if value]


def port_of(target: str) -> int:
    return int(target.rpartition(":")[2])


def test_serve_writes_a_capture_tshark_decodes(tmp_path: Path) -> None:
    capture = tmp_path / "serve.pcapng"
    with spawn_greeter_server("--trace-format", "pcapng", "--trace-file", str(capture)) as server:
        done = run_greeter("hello", "세계", "--target", server.target)
        assert done.returncode == 0, done.stderr
    assert decoded_messages(Tshark(tmp_path), capture, port_of(server.target)) == [
        "세계",
        "Hello 세계",
    ]


def test_the_proxy_writes_a_capture_of_both_legs(tmp_path: Path) -> None:
    capture = tmp_path / "proxy.pcapng"
    pcapng = ("--trace-format", "pcapng", "--trace-file", str(capture))
    with spawn_greeter_server() as server, spawn_proxy(server.target, *pcapng) as proxy:
        done = run_greeter("hello", "proxied", "--target", proxy.target)
        assert done.returncode == 0, done.stderr
    messages = decoded_messages(Tshark(tmp_path), capture, port_of(proxy.target))
    assert messages == ["proxied", "Hello proxied"]


def test_hello_trace_bytes_converts_with_trace_pcapng(tmp_path: Path, greeter_target: str) -> None:
    trace, capture = tmp_path / "hello.jsonl", tmp_path / "hello.pcapng"
    done = run_greeter(
        "hello", "세계", "--target", greeter_target, "--trace-bytes", "--trace-file", str(trace)
    )
    assert done.returncode == 0, done.stderr
    converted = run_greeter("trace", "pcapng", str(trace), "-o", str(capture))
    assert converted.returncode == 0, converted.stderr
    assert "(1 connection) to" in converted.stderr
    assert decoded_messages(Tshark(tmp_path), capture, port_of(greeter_target)) == [
        "세계",
        "Hello 세계",
    ]


def test_trace_pcapng_needs_raw_bytes(tmp_path: Path, greeter_target: str) -> None:
    trace = tmp_path / "plain.jsonl"
    done = run_greeter("hello", "x", "--target", greeter_target, "--trace-file", str(trace))
    assert done.returncode == 0, done.stderr
    converted = run_greeter("trace", "pcapng", str(trace), "-o", str(tmp_path / "out.pcapng"))
    line = assert_one_line_failure(converted)
    assert "holds no raw bytes: record the trace with --trace-bytes" in line
    assert not (tmp_path / "out.pcapng").exists()


def test_pcapng_refuses_the_record_filters() -> None:
    done = run_greeter("serve", "--trace-format", "pcapng", "--trace-method", "/x/*")
    assert done.returncode == 2
    assert "--trace-method does not apply to --trace-format pcapng" in done.stderr


def test_a_client_capture_needs_a_file(greeter_target: str) -> None:
    done = run_greeter("hello", "x", "--target", greeter_target, "--trace-format", "pcapng")
    assert done.returncode == 0  # without --trace nothing is traced
    done = run_greeter(
        "hello", "x", "--target", greeter_target, "--trace", "--trace-format", "pcapng"
    )
    line = assert_one_line_failure(done)
    assert "--trace-format pcapng writes a binary capture: give --trace-file PATH" in line
