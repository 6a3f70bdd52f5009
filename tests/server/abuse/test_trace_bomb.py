"""Issue 11 item 5: a compression bomb against `greeter serve --trace-file` costs the trace memory
in proportion to the limits, not to the attacker's compression ratio.

Five requests, each a ~65 KB gzip body that inflates to 64 MiB of zeros, reach a server whose
receive limit is 1 MiB, tracing every layer to a JSON Lines file. The server answers each with
RESOURCE_EXHAUSTED; its tap inflates each body only up to the same limit and records the compressed
bytes. Before the fix the tap inflated each bomb to 64 MiB for the trace (peak memory about 540 MB
and a 440 MB trace for a few of them); with the tap's limit set back to 64 MiB this test measures a
VmHWM growth of 333 MiB, against about 2 MiB with the fix and a bound of 8. The server runs as its
own process so that /proc/<pid>/status is its memory alone.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from greeter.tap.jsonl import read_jsonl
from greeter.wire.framing import encode_message
from tests.support.abuse import read_memory
from tests.support.attacker import Attacker
from tests.support.h2peer import SAY_HELLO, StreamResult, data_frame
from tests.support.peers import spawn_greeter_server

pytestmark = pytest.mark.timeout(60)

LIMIT = 1 << 20
BOMBS = 5
INFLATED = 64 << 20


def send_bomb(attacker: Attacker, bomb: bytes) -> StreamResult:
    """One SayHello whose request is `bomb` (a gzip-compressed message); its response."""
    stream_id, headers = attacker.request(SAY_HELLO, extra=[("grpc-encoding", "gzip")])
    frames = [data_frame(stream_id, bomb[i : i + 16384]) for i in range(0, len(bomb), 16384)]
    attacker.send(headers + b"".join(frames) + data_frame(stream_id, b"", True))
    stream = attacker.streams[stream_id]
    attacker.wait_for(lambda: stream.finished, 20, f"the bomb on stream {stream_id}")
    return stream


def test_gzip_bombs_cost_the_trace_memory_in_proportion_to_the_limit(tmp_path: Path) -> None:
    bomb = encode_message(gzip.compress(bytes(INFLATED)), compressed=True)
    trace = tmp_path / "bomb.jsonl"
    limits = ("--max-receive-message-size", str(LIMIT), "--trace-file", str(trace))
    with spawn_greeter_server(*limits) as server:
        port = int(server.target.rpartition(":")[2])
        attacker = Attacker(port)
        try:
            assert attacker.unary("warm").status == 0  # the code paths loaded before measuring
            before = read_memory(server.proc.pid)
            for _ in range(BOMBS):
                assert send_bomb(attacker, bomb).status == 8  # RESOURCE_EXHAUSTED
            after = read_memory(server.proc.pid)
        finally:
            attacker.close()
    growth_mib = after.hwm_mib - before.hwm_mib
    # The server and its tap each inflate at most LIMIT per bomb, with a few copies on the way.
    assert growth_mib < 8 * LIMIT / (1 << 20), f"VmHWM grew {growth_mib:.1f} MiB"
    sent = BOMBS * len(bomb)
    # The trace holds each bomb's bytes about twice (its DATA frames and its message record),
    # base64-encoded: a few times what was sent, never what it inflates to.
    assert trace.stat().st_size < 4 * sent, f"trace of {trace.stat().st_size} bytes"
    records = list(read_jsonl(trace))
    errors = [r["error"] for r in records if r["layer"] == "message" and "error" in r]
    assert errors == [f"decompressed message larger than max ({LIMIT})"] * BOMBS
