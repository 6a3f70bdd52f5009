"""`greeter trace html` in a real headless browser: Debian's chromium loads the page from file://.

Each page is written by the CLI (a subprocess) and loaded by `chromium --headless --dump-dom`
with console logging on stderr: the page must log nothing to the console, must not show the
#errors banner its window.onerror writes, and its DOM must show what the trace holds (a lane per
RPC with method and outcome, a mark per frame, GOAWAY, stalls, PING round trips). The address
fragment presets the filters, so the filters are checked in the same way. A page with a script
error proves that both signals catch one. The Makefile installs chromium (SYSTEM_PACKAGES).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from greeter.tap.jsonl import read_jsonl
from greeter.tools.timeline import MAX_B64, render
from tests.support.peers import REPO_ROOT
from tests.support.sample_trace import record

pytestmark = pytest.mark.timeout(120)

CANNED = REPO_ROOT / "tests" / "tap" / "golden" / "canned.jsonl"
CHROMIUM = Path("/usr/bin/chromium")


def trace_html(trace: Path, out: Path, *extra: str) -> None:
    """`python -m greeter trace html TRACE -o OUT EXTRA`."""
    done = subprocess.run(
        [sys.executable, "-m", "greeter", "trace", "html", str(trace), "-o", str(out), *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out}: ")


def load(page: Path, tmp_path: Path, fragment: str = "") -> tuple[str, list[str]]:
    """(the DOM after the page's scripts ran, the console messages) in headless chromium."""
    assert CHROMIUM.exists(), "chromium is missing: make system-tools installs it"
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",  # tests may run as root (CI containers)
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def lanes(dom: str) -> list[tuple[str, str]]:
    """(method, outcome) of every RPC lane label, in page order."""
    return re.findall(
        r'class="label[^"]*" data-lane="[^"]+" data-method="([^"]*)" data-status="([^"]*)"', dom
    )


def count(dom: str, pattern: str) -> int:
    return len(re.findall(pattern, dom))


def test_the_canned_trace_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "canned.html"
    trace_html(CANNED, page)
    dom, console = load(page, tmp_path)
    assert console == []
    assert 'id="errors"' not in dom
    assert 'data-rendered="ok"' in dom
    assert 'data-rpcs="7" data-frames="52" data-connections="1"' in dom
    assert lanes(dom) == [
        ("/greet.Greeter/SayHello", "OK"),
        ("/greet.Greeter/LotsOfReplies", "OK"),
        ("/greet.Greeter/LotsOfGreetings", "OK"),
        ("/greet.Greeter/BidiHello", "OK"),
        ("/greet.Greeter/SayHello", "NOT_FOUND"),
        ("/greet.Greeter/LotsOfReplies", "RST_STREAM CANCEL"),
        ("/greet.Greeter/SayHello", "OK"),
    ]
    assert count(dom, r'class="mark frame"') == 52
    assert count(dom, r'class="mark message"') == 19
    assert count(dom, r'class="stall mark"') == 1  # s13's stream window, 1.125 s
    assert "PING rtt 125.000 ms" in dom


def test_the_filters_preset_by_the_address(tmp_path: Path) -> None:
    page = tmp_path / "canned.html"
    trace_html(CANNED, page)
    dom, console = load(page, tmp_path, "#status=NOT_FOUND&hide=DATA,messages")
    assert console == []
    assert lanes(dom) == [("/greet.Greeter/SayHello", "NOT_FOUND")]
    assert count(dom, r'class="mark frame"[^>]*data-type="DATA"') == 0
    assert count(dom, r'class="mark message"') == 0
    assert count(dom, r'class="mark frame"[^>]*data-type="HEADERS"') > 0
    dom, _ = load(page, tmp_path, "#method=/greet.Greeter/LotsOfReplies&lane=c1s3")
    assert [method for method, _ in lanes(dom)] == ["/greet.Greeter/LotsOfReplies"] * 2
    assert "s3 stream out" in dom  # the selected stream's windows are charted


def test_a_real_trace_in_chromium(tmp_path: Path) -> None:
    """A trace of greeter's server and grpclib clients (tests/support/sample_trace.py): two
    connections, every RPC kind, a NOT_FOUND, a reset, stalls, PINGs, GOAWAYs; filtered on the
    command line to one method."""
    trace = tmp_path / "sample.jsonl"
    asyncio.run(record(trace))
    objects = list(read_jsonl(trace))
    frames = sum(1 for obj in objects if obj["layer"] == "frame")
    page = tmp_path / "sample.html"
    trace_html(trace, page, "--title", "sample")
    dom, console = load(page, tmp_path)
    assert console == []
    assert 'id="errors"' not in dom
    assert f'data-rpcs="8" data-frames="{frames}" data-connections="2"' in dom
    outcomes = dict(lanes(dom))
    assert outcomes["/grpc.health.v1.Health/Check"] == "NOT_FOUND"
    assert outcomes["/greet.Greeter/BidiHello"] == "OK"
    assert any(outcome.startswith("RST_STREAM") for _, outcome in lanes(dom))
    assert count(dom, r'class="mark frame"') == frames
    assert count(dom, r'class="stall mark"') >= 1
    assert count(dom, r'class="goaway-line mark"') >= 2
    assert "PING rtt" in dom
    trace_html(trace, page, "--method", "*/LotsOfGreetings")
    dom, console = load(page, tmp_path)
    assert console == []
    assert lanes(dom) == [("/greet.Greeter/LotsOfGreetings", "OK")]


def test_a_script_error_is_caught_by_both_signals(tmp_path: Path) -> None:
    """The checks above can fail: a page whose script throws shows #errors and logs to the
    console."""
    page = tmp_path / "broken.html"
    html = render(read_jsonl(CANNED), title="broken")
    marker = 'document.body.dataset.rendered = "ok";'
    page.write_text(html.replace(marker, "null.boom;\n" + marker, 1))
    dom, console = load(page, tmp_path)
    assert 'id="errors"' in dom
    assert "timeline error: Uncaught TypeError" in dom
    assert any("Uncaught TypeError" in line for line in console)


def test_long_values_are_cut_and_the_page_cannot_end_its_script() -> None:
    record = {
        "v": 1,
        "layer": "message",
        "conn": 1,
        "stream": 1,
        "t": 1.0,
        "data_b64": "A" * 10_000,
        "decoded": {"name": "</script><script>alert(1)</script>" + "x" * 5000},
    }
    html = render([record], title="</title>")
    data = html[html.index('<script id="trace-data"') :]
    data = data[: data.index("</script>")]
    assert "<script>alert" not in data and "</title>" not in data
    assert '"data_b64_cut":true' in data
    assert f'"data_b64":"{"A" * MAX_B64}"' in data
    assert "… (5034 chars)" in data


def test_a_trace_of_frames_only_still_names_its_rpcs(tmp_path: Path) -> None:
    """`--trace-layer frame` traces have no rpc records: the lanes take the HEADERS' :path."""
    frames_only = [obj for obj in read_jsonl(CANNED) if obj["layer"] == "frame"]
    page = tmp_path / "frames.html"
    page.write_text(render(frames_only, title="frames only"))
    dom, console = load(page, tmp_path)
    assert console == []
    methods = [method for method, _ in lanes(dom)]
    assert methods[:2] == ["/greet.Greeter/SayHello", "/greet.Greeter/LotsOfReplies"]
    assert {outcome for _, outcome in lanes(dom)} == {"no end in trace"}
