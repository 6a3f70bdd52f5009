"""Text trace output: golden lines for every record kind, colour, truncation and the time origin."""

from __future__ import annotations

import pytest
from grpclib.health.v1.health_pb2 import HealthCheckRequest

from gen.greet import HelloRequest
from greeter.tap.records import PrefaceRecord, Record, RpcRecord
from greeter.tap.text import TextFormatter
from tests.support.records import GOLDEN, HEADERS, PATH, RPC_END, frame, message


@pytest.mark.parametrize(("record", "expected"), GOLDEN)
def test_golden_text(record: Record, expected: str) -> None:
    assert TextFormatter(max_bytes=16, origin=10.0).format(record) == expected


def test_colour_marks_direction_layer_and_errors() -> None:
    formatter = TextFormatter(color=True, origin=10.0)
    assert formatter.format(HEADERS).splitlines()[0] == (
        "+0.000000 c1 s1 \x1b[32m<-\x1b[0m \x1b[36mframe\x1b[0m HEADERS END_HEADERS len=40"
    )
    rst = frame("RST_STREAM", 3, direction="out", length=4, error_code="CANCEL")
    assert formatter.format(rst) == (
        "+0.000000 c1 s3 \x1b[34m->\x1b[0m \x1b[36mframe\x1b[0m "
        "RST_STREAM len=4 \x1b[31mCANCEL\x1b[0m"
    )
    assert "\x1b[31mNOT_FOUND 'nope'\x1b[0m" in formatter.format(RPC_END)
    ok_end = RpcRecord(1, "out", 10.0, 1, "end", PATH, status=0, status_name="OK")
    assert formatter.format(ok_end) == (
        "+0.000000 c1 s1 \x1b[34m->\x1b[0m \x1b[33mrpc  \x1b[0m end /greet.Greeter/SayHello OK "
        "requests=0 (0 bytes) responses=0 (0 bytes)"
    )


def test_no_escape_codes_without_colour() -> None:
    formatter = TextFormatter(origin=10.0)
    assert all("\x1b" not in formatter.format(record) for record, _ in GOLDEN)


def test_long_payload_truncated_with_its_size() -> None:
    big = frame("UNKNOWN(0x0b)", length=1 << 20, payload=b"x" * (1 << 20))
    line = TextFormatter(max_bytes=4).format(big)
    assert line.endswith("len=1048576 b'xxxx…' (1048576 bytes)")
    decoded = message(decoded=HelloRequest(name="w" * 100))
    assert "    name: 'wwww'… (100 chars)" in TextFormatter(max_bytes=4).format(decoded)
    quoted = message(data=b"'" * 10, error="bad")
    assert TextFormatter(max_bytes=2).format(quoted).endswith("""    b"''…" (10 bytes)""")


def test_origin_defaults_to_the_first_record() -> None:
    formatter = TextFormatter()
    first = PrefaceRecord(1, "in", 100.0)
    later = PrefaceRecord(2, "out", 100.001234)
    assert formatter.format(first).startswith("+0.000000 c1 s0 <- ")
    assert formatter.format(later).startswith("+0.001234 c2 s0 -> ")
    assert TextFormatter(origin=101.0).format(first).startswith("-1.000000 ")


def test_google_protobuf_message_shown_in_its_text_form() -> None:
    record = message(decoded=HealthCheckRequest(service="greet.Greeter"))
    assert TextFormatter(origin=10.0).format(record) == (
        "+0.002000 c1 s1 <- msg   grpc.health.v1.HealthCheckRequest #1 7 bytes\n"
        '    service: "greet.Greeter"'
    )
