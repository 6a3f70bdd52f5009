"""Time limits of one connection: handshake, idle, keepalive, write-stall and age deadlines.

The core has no timers; this module owns them for the connection driver, which reports what happens
(bytes read, RPCs starting and ending, the write buffer pausing) and is called back with a reason
when a limit runs out. Each limit is one lazily re-armed `call_at` handle, so the per-RPC and
per-read cost is a float store, never a timer reschedule.

Defaults and why (grpc-go / C-core for comparison):
- handshake 10 s: the client preface must arrive in time (slowloris). grpc-go waits 120 s
  (ConnectionTimeout), C-core 120 s; a gRPC client sends its preface at once, so 10 s is ample.
- idle 600 s: a connection with no RPC for that long gets GOAWAY. grpc-go and C-core default to
  infinity (MaxConnectionIdle); an idle connection costs ~20 KiB here, but a limit bounds what a
  peer can hold by opening connections and doing nothing.
- keepalive 7200 s / 20 s: after that long without reading anything the server PINGs and closes
  if no ACK comes within the timeout — grpc-go's and C-core's server defaults (2 h, 20 s).
- write stall 60 s: a peer that reads nothing while we have more than the transport's high-water
  mark queued is dropped (grpc-go relies on keepalive for this; it would take 2 h).
- max connection age: off, as in grpc-go. When set (gRFC A9), ±10 % jitter keeps connections
  opened together from all retiring together; the GOAWAY is graceful, and the grace (off: none)
  bounds how long the RPCs left may run.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from greeter.server.config import Timeouts


class Watchdog:
    """The deadlines of one connection; `expire(reason, hard)` is called when one passes.

    `hard` means the peer is not reading: the connection must be dropped, not drained.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeouts: Timeouts,
        *,
        expire: Callable[[str, bool], None],
        ping: Callable[[], None],
        retire: Callable[[str], None],
    ) -> None:
        self._loop = loop
        self._timeouts = timeouts
        self._expire = expire
        self._ping = ping
        self._retire = retire
        """Graceful GOAWAY with a reason: the connection closes once its RPCs are done."""
        now = loop.time()
        self.last_read = now
        self.idle_since: float | None = now
        """Loop time since which the connection has had no RPC; None while it has one."""
        self._handshake_done = False
        self._paused_since: float | None = None
        self._ping_sent_at: float | None = None
        self._handles: dict[str, asyncio.TimerHandle] = {}

    def start(self) -> None:
        timeouts = self._timeouts
        now = self._loop.time()
        for name, delay in (
            ("handshake", timeouts.handshake),
            ("idle", timeouts.idle),
            ("keepalive", timeouts.keepalive_time),
        ):
            if delay is not None:
                self._arm(name, now + delay)
        age = timeouts.max_connection_age
        if age is not None:
            self._arm("age", now + age * random.uniform(0.9, 1.1))

    def stop(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    # -- what the driver reports -----------------------------------------------------------

    def handshake_done(self) -> None:
        if not self._handshake_done:
            self._handshake_done = True
            self._cancel("handshake")

    def rpcs_active(self, active: bool) -> None:
        """An RPC started (True) or the last one ended (False)."""
        self.idle_since = None if active else self._loop.time()

    def write_paused(self, paused: bool) -> None:
        if not paused:
            self._paused_since = None
            self._cancel("write_stall")
        elif self._timeouts.write_stall is not None and self._paused_since is None:
            self._paused_since = self._loop.time()
            self._arm("write_stall", self._paused_since + self._timeouts.write_stall)

    def ping_acknowledged(self) -> None:
        self._ping_sent_at = None
        self._cancel("keepalive_ack")
        if self._timeouts.keepalive_time is not None:
            self._arm("keepalive", self._loop.time() + self._timeouts.keepalive_time)

    # -- timers --------------------------------------------------------------------------------

    def _arm(self, name: str, when: float) -> None:
        self._cancel(name)
        self._handles[name] = self._loop.call_at(when, self._fire, name)

    def _cancel(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _fire(self, name: str) -> None:
        self._handles.pop(name, None)
        getattr(self, f"_on_{name}")()

    def _on_handshake(self) -> None:
        self._expire(f"no HTTP/2 preface within {self._timeouts.handshake} s", False)

    def _on_idle(self) -> None:
        idle = self._timeouts.idle
        assert idle is not None
        since = self.idle_since
        now = self._loop.time()
        if since is not None and now - since >= idle:
            self._expire(f"idle for {idle} s", False)
        else:
            self._arm("idle", (since if since is not None else now) + idle)

    def _on_keepalive(self) -> None:
        interval = self._timeouts.keepalive_time
        assert interval is not None
        now = self._loop.time()
        if now - self.last_read < interval:
            self._arm("keepalive", self.last_read + interval)
            return
        # One PING at a time: the next is armed once this one is answered (ping_acknowledged)
        # or the peer shows life, so the ACK deadline never moves.
        self._ping_sent_at = now
        self._ping()
        self._arm("keepalive_ack", now + self._timeouts.keepalive_timeout)

    def _on_keepalive_ack(self) -> None:
        sent = self._ping_sent_at
        interval = self._timeouts.keepalive_time
        if sent is not None and self.last_read > sent and interval is not None:
            # The peer sent something meanwhile: it is alive (grpc-go reasons the same).
            self._ping_sent_at = None
            self._arm("keepalive", self.last_read + interval)
            return
        timeout = self._timeouts.keepalive_timeout
        self._expire(f"keepalive PING not acknowledged within {timeout} s", True)

    def _on_age(self) -> None:
        self._retire(f"max connection age {self._timeouts.max_connection_age:g} s")
        grace = self._timeouts.max_connection_age_grace
        if grace is not None:
            self._arm("age_grace", self._loop.time() + grace)

    def _on_age_grace(self) -> None:
        grace = self._timeouts.max_connection_age_grace
        self._expire(f"max connection age grace of {grace:g} s over", False)

    def _on_write_stall(self) -> None:
        # hard: a peer that reads nothing would never take the GOAWAY either.
        self._expire(f"peer read nothing for {self._timeouts.write_stall} s", True)
