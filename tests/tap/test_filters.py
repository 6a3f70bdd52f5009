"""Record filters: layer, frame type, method glob and the stream -> method memory."""

from __future__ import annotations

from greeter.tap.filters import RecordFilter, frame_type
from greeter.tap.records import (
    ConnectionRecord,
    DecodeErrorRecord,
    MessageRecord,
    PrefaceRecord,
    Record,
    RpcRecord,
)
from tests.support.records import PATH, frame, message

OTHER = "/grpc.health.v1.Health/Check"


def rpc(event: str, stream_id: int, method: str, connection_id: int = 1) -> RpcRecord:
    return RpcRecord(connection_id, "in", 1.0, stream_id, event, method)  # type: ignore[arg-type]


def window(stream_id: int, connection_id: int = 1) -> ConnectionRecord:
    return ConnectionRecord(connection_id, "out", 1.0, stream_id, "window", 1, 1, 1, 1)


def kept(keep: RecordFilter, records: list[Record]) -> list[Record]:
    return [record for record in records if keep(record)]


def test_no_criteria_keeps_everything() -> None:
    records: list[Record] = [PrefaceRecord(1, "in", 0.0), frame("PING"), rpc("start", 1, PATH)]
    assert kept(RecordFilter(), records) == records


def test_layers() -> None:
    keep = RecordFilter(layers=["rpc", "connection"])
    records: list[Record] = [frame("PING"), message(), rpc("start", 1, PATH), window(0)]
    assert kept(keep, records) == records[2:]


FRAME_TYPE_RECORDS: list[Record] = [
    frame("HEADERS", 1),
    frame("DATA", 1),
    frame("UNKNOWN(0x0a)"),
    PrefaceRecord(1, "in", 0.0),
    DecodeErrorRecord(1, "in", 0.0, "bad", 0),
    message(),
    window(0),
]


def test_frame_types_alone_keep_only_those_frames() -> None:
    """Issue 11: `--trace-frame HEADERS` means only HEADERS frames, no other layer's records."""
    keep = RecordFilter(frame_types=["headers", "UNKNOWN*", "preface"])
    records = FRAME_TYPE_RECORDS
    assert kept(keep, records) == [records[0], records[2], records[3]]


def test_frame_types_with_layers_constrain_the_frame_records_only() -> None:
    keep = RecordFilter(layers=["frame", "message", "connection"], frame_types=["HEADERS"])
    records = FRAME_TYPE_RECORDS
    assert kept(keep, records) == [records[0], records[5], records[6]]


def test_frame_type_names() -> None:
    assert frame_type(PrefaceRecord(1, "in", 0.0)) == "PREFACE"
    assert frame_type(DecodeErrorRecord(1, "in", 0.0, "bad", 0)) == "DECODE_ERROR"
    assert frame_type(frame("GOAWAY")) == "GOAWAY"
    assert frame_type(message()) is None


def test_method_glob_follows_streams_through_headers_frames() -> None:
    keep = RecordFilter(methods=["/greet.Greeter/*"])
    records: list[Record] = [
        frame("SETTINGS"),  # stream 0: no RPC
        frame("HEADERS", 1, headers=((":path", PATH),)),
        frame("HEADERS", 3, headers=((":path", OTHER),)),
        frame("DATA", 1),
        frame("DATA", 3),
        frame("DATA", 5),  # a stream whose headers were never seen
        window(1),
        window(0),
    ]
    assert kept(keep, records) == [records[1], records[3], records[6]]


def test_method_glob_without_leading_slash_and_from_messages() -> None:
    keep = RecordFilter(methods=["grpc.health.v1.Health/*"])
    health = MessageRecord(1, "in", 1.0, 7, OTHER, 1, False, 0, "identity", b"")
    assert keep(health)
    assert keep(frame("DATA", 7))
    assert not keep(message())


def test_streams_are_per_connection() -> None:
    keep = RecordFilter(methods=[PATH])
    assert keep(rpc("start", 1, PATH, connection_id=1))
    assert not keep(rpc("start", 1, OTHER, connection_id=2))
    assert keep(frame("DATA", 1))  # connection 1
    assert not keep(window(1, connection_id=2))


def test_method_known_from_records_the_layer_filter_drops() -> None:
    keep = RecordFilter(methods=[PATH], layers=["frame"])
    assert not keep(rpc("start", 1, PATH))
    assert keep(frame("DATA", 1))


def test_ended_streams_still_match_late_frames_then_are_forgotten() -> None:
    keep = RecordFilter(methods=[PATH], ended_streams=2)
    for stream_id in (1, 3, 5):
        keep(rpc("start", stream_id, PATH))
    for stream_id in (1, 3, 5):
        assert keep(rpc("end", stream_id, PATH))
    assert keep(frame("WINDOW_UPDATE", 5))
    assert keep(frame("WINDOW_UPDATE", 3))
    assert not keep(frame("WINDOW_UPDATE", 1))  # the oldest ended stream was forgotten


def test_live_streams_are_bounded() -> None:
    keep = RecordFilter(methods=[PATH], max_streams=2)
    for stream_id in (1, 3, 5):
        keep(frame("HEADERS", stream_id, headers=((":path", PATH),)))
    assert not keep(frame("DATA", 1))
    assert keep(frame("DATA", 3))
    assert keep(frame("DATA", 5))


def test_connection_close_forgets_its_streams() -> None:
    keep = RecordFilter(methods=[PATH])
    keep(rpc("start", 1, PATH))
    keep(rpc("start", 3, PATH))
    keep(rpc("end", 3, PATH))
    keep(rpc("start", 1, PATH, connection_id=2))
    assert not keep(ConnectionRecord(1, None, 2.0, 0, "close"))
    assert not keep(frame("DATA", 1))
    assert not keep(frame("DATA", 3))
    assert keep(window(1, connection_id=2))
