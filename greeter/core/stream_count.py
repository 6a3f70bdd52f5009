"""Opening streams, and counting open ones without walking them all for every new stream.

h2 checks SETTINGS_MAX_CONCURRENT_STREAMS for each new stream by walking every stream it holds
(`H2Connection._open_streams`), and that walk is also the only place h2 forgets closed streams.
At 64 calls in flight that walk was a visible share of the client's time per call. The frame
reader (new request streams on the server) and the frame writer (new call streams on the
client) ask `may_open_stream` instead, whose `has_room_for_stream` walks only when the answer
is not obvious and often enough that closed streams never pile up; they open the stream with
`begin_stream` (h2's `_begin_new_stream` without its three debug-log calls and the checks the
callers already made), and the core hands each ended RPC's stream back with
`forget_closed_stream`.

h2 4.x seam: `_open_streams`, `_closed_streams` (an OrderedDict with a size limit), `streams`,
`highest_inbound_stream_id`, `highest_outbound_stream_id`, `H2Stream`'s constructor and
`max_outbound_frame_size` (tests/core/test_frame_reader.py, test_frame_writer.py and
test_client_connection.py compare the results with h2's).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, cast

import h2.connection
from h2.stream import H2Stream

__all__ = ["StreamCountingH2Connection"]

SWEEP_SLACK = 16
"""Closed streams h2 may hold, at least, before a new stream sweeps them."""


class StreamCountingH2Connection(h2.connection.H2Connection):
    """h2's connection with an amortised O(1) "may one more stream open?" check."""

    _sweep_at = SWEEP_SLACK

    def may_open_stream(self, stream_id: int, *, inbound: bool) -> bool:
        """h2 would take `stream_id` as a new client-initiated stream (a server's request, or
        a client's call) without its checks raising: odd, above every stream of that
        direction, under that direction's stream limit."""
        if self.config.client_side == inbound or not stream_id & 1:
            return False  # RFC 9113 §5.1.1: client-initiated streams are odd
        if inbound:
            highest = self.highest_inbound_stream_id
            limit = self.local_settings.max_concurrent_streams
        else:
            highest = self.highest_outbound_stream_id
            limit = self.remote_settings.max_concurrent_streams
        return stream_id > highest and self.has_room_for_stream(limit, inbound=inbound)

    def begin_stream(self, stream_id: int, *, outbound: bool) -> H2Stream:
        """Create the stream `stream_id` (checked: the right parity, above the highest one)."""
        stream = H2Stream(
            stream_id,
            config=self.config,
            inbound_window_size=self.local_settings.initial_window_size,
            outbound_window_size=self.remote_settings.initial_window_size,
        )
        stream.max_outbound_frame_size = self.max_outbound_frame_size
        self.streams[stream_id] = stream
        if outbound:
            self.highest_outbound_stream_id = stream_id
        else:
            self.highest_inbound_stream_id = stream_id
        return stream

    def forget_closed_stream(self, stream_id: int) -> None:
        """Forget `stream_id` now if it is closed, as h2's walk would later (recording how it
        closed, for frames that still arrive on it): the core calls this when an RPC ends, so
        the walk rarely finds anything left to do."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.closed:
            del self.streams[stream_id]
            # h2's SizeLimitDict (an OrderedDict) checks its limit in Python on every insertion;
            # the same insertion and limit, in C.
            closed = self._closed_streams
            OrderedDict.__setitem__(closed, stream_id, stream.closed_by)
            if len(closed) > self.MAX_CLOSED_STREAMS:
                cast(OrderedDict[int, Any], closed).popitem(last=False)

    def has_room_for_stream(self, limit: int, *, inbound: bool) -> bool:
        """One more stream of that direction stays within `limit` open streams.

        While the streams h2 holds (closed ones included) are fewer than the limit, the answer
        is yes without counting. Otherwise, and at the latest once they have grown by the open
        count (at least SWEEP_SLACK) since the previous walk, h2's walk counts them and forgets
        the closed ones: closed streams never pile up, and walks cost O(1) per stream.
        """
        held = len(self.streams)
        if held + 1 <= limit and held < self._sweep_at:
            return True
        # Client-initiated streams are odd (RFC 9113 §5.1.1).
        remainder = int(self.config.client_side) ^ int(inbound)
        count = self._open_streams(remainder)
        self._sweep_at = len(self.streams) + max(SWEEP_SLACK, count)
        return count + 1 <= limit
