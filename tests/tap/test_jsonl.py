"""JSON Lines trace output: golden objects per record kind, round trip, version checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from grpclib.health.v1.health_pb2 import HealthCheckRequest

from gen.greet import HelloRequest
from greeter.tap.jsonl import SCHEMA_VERSION, dumps, read_jsonl, to_json
from greeter.tap.records import (
    ConnectionRecord,
    DecodeErrorRecord,
    PrefaceRecord,
    Priority,
    RawField,
    Record,
    RpcRecord,
)
from tests.support.records import GOLDEN, HEADERS, PATH, RPC_END, RPC_START, frame, message

GOLDEN_JSON: list[tuple[Record, str]] = [
    (
        PrefaceRecord(1, "in", 10.0),
        '{"v":1,"layer":"frame","type":"PREFACE","direction":"in","conn":1,"stream":0,"t":10.0}',
    ),
    (
        HEADERS,
        '{"v":1,"layer":"frame","type":"HEADERS","direction":"in","conn":1,"stream":1,"t":10.0,'
        '"flags":["END_HEADERS"],"raw_flags":4,"length":40,'
        '"headers":[[":path","/greet.Greeter/SayHello"],["content-type","application/grpc"]]}',
    ),
    (
        frame("SETTINGS", length=12, settings=(("INITIAL_WINDOW_SIZE", 1), ("0x0a", 2))),
        '{"v":1,"layer":"frame","type":"SETTINGS","direction":"in","conn":1,"stream":0,"t":10.0,'
        '"flags":[],"raw_flags":0,"length":12,"settings":[["INITIAL_WINDOW_SIZE",1],["0x0a",2]]}',
    ),
    (
        frame("DATA", 1, flags=("PADDED",), raw_flags=8, length=9, data=b"hello", padding=3),
        '{"v":1,"layer":"frame","type":"DATA","direction":"in","conn":1,"stream":1,"t":10.0,'
        '"flags":["PADDED"],"raw_flags":8,"length":9,"data_b64":"aGVsbG8=","padding":3}',
    ),
    (
        frame("GOAWAY", length=11, error_code="PROTOCOL_ERROR", last_stream_id=5, debug_data=b"x"),
        '{"v":1,"layer":"frame","type":"GOAWAY","direction":"in","conn":1,"stream":0,"t":10.0,'
        '"flags":[],"raw_flags":0,"length":11,"error_code":"PROTOCOL_ERROR","last_stream_id":5,'
        '"debug_data_b64":"eA=="}',
    ),
    (
        frame("PRIORITY", 3, direction="out", length=5, priority=Priority(1, 16, False)),
        '{"v":1,"layer":"frame","type":"PRIORITY","direction":"out","conn":1,"stream":3,"t":10.0,'
        '"flags":[],"raw_flags":0,"length":5,'
        '"priority":{"depends_on":1,"weight":16,"exclusive":false}}',
    ),
    (
        DecodeErrorRecord(1, "in", 10.5, "frame too large", 24),
        '{"v":1,"layer":"frame","type":"DECODE_ERROR","direction":"in","conn":1,"stream":0,'
        '"t":10.5,"reason":"frame too large","offset":24}',
    ),
    (
        message(decoded=HelloRequest(name="world")),
        '{"v":1,"layer":"message","direction":"in","conn":1,"stream":1,"t":10.002,'
        '"method":"/greet.Greeter/SayHello","index":1,"compressed":false,"length":7,'
        '"encoding":"identity","data_b64":"CgV3b3JsZA==","decoded":{"name":"world"},'
        '"message_type":"greet.HelloRequest"}',
    ),
    (
        message(fields=(RawField(1, 2, b"world"), RawField(3, 2, (RawField(1, 0, 150),)))),
        '{"v":1,"layer":"message","direction":"in","conn":1,"stream":1,"t":10.002,'
        '"method":"/greet.Greeter/SayHello","index":1,"compressed":false,"length":7,'
        '"encoding":"identity","data_b64":"CgV3b3JsZA==","fields":['
        '{"field":1,"wire":2,"value_b64":"d29ybGQ="},'
        '{"field":3,"wire":2,"fields":[{"field":1,"wire":0,"value":150}]}]}',
    ),
    (
        message(method=None, data=b"\xff", length=1, error="truncated varint"),
        '{"v":1,"layer":"message","direction":"in","conn":1,"stream":1,"t":10.002,"index":1,'
        '"compressed":false,"length":1,"encoding":"identity","data_b64":"/w==",'
        '"error":"truncated varint"}',
    ),
    (
        RPC_START,
        '{"v":1,"layer":"rpc","event":"start","direction":"in","conn":1,"stream":1,"t":10.0,'
        '"method":"/greet.Greeter/SayHello","peer":"127.0.0.1:5555","timeout":1.0,'
        '"metadata":[["x-user","bob"]],"requests":0,"responses":0,"timings":{},'
        '"request_bytes":0,"response_bytes":0}',
    ),
    (
        RPC_END,
        '{"v":1,"layer":"rpc","event":"end","direction":"out","conn":1,"stream":1,"t":10.0005,'
        '"wall":"2026-01-15T09:30:00.500000Z","method":"/greet.Greeter/SayHello","metadata":[],"status":5,"status_name":"NOT_FOUND",'
        '"status_message":"nope","status_details":['
        '{"type_url":"type.googleapis.com/greet.HelloReply","decoded":{"message":"why"},'
        '"message_type":"greet.HelloReply"},'
        '{"type_url":"type.googleapis.com/x.Unknown","fields":[{"field":1,"wire":0,"value":3}]}],'
        '"requests":1,"responses":0,'
        '"timings":{"response_headers":0.0002,"first_request":0.0003,"trailers":0.0005},'
        '"duration":0.0005,"request_bytes":12,"response_bytes":0}',
    ),
    (
        ConnectionRecord(1, None, 10.1, 0, "window", connection_in=100, connection_out=0),
        '{"v":1,"layer":"connection","event":"window","direction":null,"conn":1,"stream":0,'
        '"t":10.1,"connection_in":100,"connection_out":0}',
    ),
    (
        ConnectionRecord(1, "out", 10.2, 1, "unstall", duration=0.25),
        '{"v":1,"layer":"connection","event":"unstall","direction":"out","conn":1,"stream":1,'
        '"t":10.2,"duration":0.25}',
    ),
]


@pytest.mark.parametrize(("record", "expected"), GOLDEN_JSON)
def test_golden_json(record: Record, expected: str) -> None:
    assert dumps(record) == expected
    assert "\n" not in dumps(record)


@pytest.mark.parametrize("record", [record for record, _ in GOLDEN])
def test_every_object_carries_the_common_keys(record: Record) -> None:
    obj = to_json(record)
    assert list(obj)[:2] == ["v", "layer"]
    assert obj["v"] == SCHEMA_VERSION
    assert obj["layer"] == record.layer
    assert {"direction", "conn", "stream", "t"} <= obj.keys()
    assert ("type" in obj) == (record.layer == "frame")
    assert ("event" in obj) == (record.layer in ("rpc", "connection"))
    assert all(not isinstance(value, bytes) for value in obj.values())


def test_round_trip_through_read_jsonl(tmp_path: Path) -> None:
    records = [record for record, _ in GOLDEN + GOLDEN_JSON]
    expected = [json.loads(json.dumps(to_json(record))) for record in records]
    lines = [dumps(record) + "\n" for record in records]
    assert list(read_jsonl(lines)) == expected
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(lines) + "\n", encoding="utf-8")  # a trailing blank line is fine
    assert list(read_jsonl(trace)) == expected
    assert list(read_jsonl(str(trace))) == expected


def test_non_ascii_text_kept_as_utf8(tmp_path: Path) -> None:
    record = frame("HEADERS", 1, headers=(("x-name", "wörld"),))
    assert '["x-name","wörld"]' in dumps(record)
    trace = tmp_path / "trace.jsonl"
    trace.write_text(dumps(record) + "\n", encoding="utf-8")
    assert next(read_jsonl(trace))["headers"] == [["x-name", "wörld"]]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"v":2,"layer":"frame"}', r"line 2: unsupported trace schema version 2 \(this reader"),
        ('{"layer":"frame"}', "line 2: unsupported trace schema version None"),
        ("[1, 2]", "line 2: expected a JSON object"),
        ("{not json", "line 2: not JSON"),
    ],
)
def test_bad_lines_rejected(line: str, match: str) -> None:
    good = dumps(PrefaceRecord(1, "in", 0.0))
    with pytest.raises(ValueError, match=match):
        list(read_jsonl([good, line]))


def test_google_protobuf_and_unknown_decoded_objects() -> None:
    health = to_json(message(decoded=HealthCheckRequest(service="greet.Greeter")))
    assert health["decoded"] == {"service": "greet.Greeter"}
    assert health["message_type"] == "grpc.health.v1.HealthCheckRequest"
    odd = to_json(message(decoded=Priority(0, 16, False)))
    assert odd["decoded"] == "Priority(depends_on=0, weight=16, exclusive=False)"
    assert odd["message_type"] == "greeter.tap.records.Priority"


def test_status_details_kept_as_bytes_when_undecoded() -> None:
    record = RpcRecord(1, "out", 1.0, 1, "end", PATH, status=2, status_details=(("u", b"\x01"),))
    assert to_json(record)["status_details"] == [{"type_url": "u", "value_b64": "AQ=="}]
