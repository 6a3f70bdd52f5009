"""`greeter trace html`: a JSON Lines trace as one self-contained HTML page, the timeline.

The page is the template greeter/tools/timeline.html (package data) with the trace embedded as
JSON in a ``<script type="application/json">`` element: no network fetch, no external file, it
opens from ``file://``. The template's script draws one lane per stream (RPC name, status,
duration; each connection's stream 0 above its RPCs), frames and messages as marks on a shared
time axis with their details on hover and click, stalls, PING round trips and GOAWAYs, the
flow-control windows over time, and filters by RPC, status and frame type.

Long values are cut before they are embedded, so that a trace of large messages still makes a
page a browser opens at once: base64 fields to :data:`MAX_B64` characters (with ``<key>_cut``
set to true), other strings to :data:`MAX_TEXT` characters, lists to :data:`MAX_ITEMS` items.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from typing import Any

from greeter.tools.selection import JsonObject

TEMPLATE = "timeline.html"
PLACEHOLDER = "__TRACE_DATA__"
MAX_B64 = 1368
"""Base64 characters kept of a bytes field: 1 KiB of data."""
MAX_TEXT = 2000
MAX_ITEMS = 500


def render(objects: Iterable[JsonObject], *, title: str) -> str:
    """The HTML page of a trace's objects."""
    template = resources.files("greeter.tools").joinpath(TEMPLATE).read_text(encoding="utf-8")
    data = {"title": title, "records": [_trim(obj) for obj in objects]}
    return template.replace(PLACEHOLDER, _embedded(data), 1)


def _embedded(data: object) -> str:
    """JSON that cannot end its <script> element: every ``<`` escaped (it occurs in strings
    only, where ``\\u003c`` means the same)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _trim(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key.endswith("_b64") and isinstance(item, str) and len(item) > MAX_B64:
                out[key], out[f"{key}_cut"] = item[:MAX_B64], True
            else:
                out[key] = _trim(item)
        return out
    if isinstance(value, list):
        return [_trim(item) for item in value[:MAX_ITEMS]]
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + f"… ({len(value)} chars)"
    return value
