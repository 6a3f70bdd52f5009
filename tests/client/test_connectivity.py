"""The channel connectivity state machine (greeter.client.connectivity).

Waiting is synchronised by state changes made from other tasks, never by sleeps; timeouts are
small and only exercised where nothing changes.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from greeter.client.connectivity import ChannelState, Connectivity

pytestmark = pytest.mark.timeout(10)

IDLE = ChannelState.IDLE
CONNECTING = ChannelState.CONNECTING
READY = ChannelState.READY
TRANSIENT_FAILURE = ChannelState.TRANSIENT_FAILURE
SHUTDOWN = ChannelState.SHUTDOWN

SHORT = 0.05


async def started(coro_task: asyncio.Task[bool]) -> asyncio.Task[bool]:
    """Let `coro_task` run until it blocks on the state machine."""
    for _ in range(3):
        await asyncio.sleep(0)
    assert not coro_task.done()
    return coro_task


def test_states_are_grpcs() -> None:
    assert [state.name for state in ChannelState] == [
        "IDLE",
        "CONNECTING",
        "READY",
        "TRANSIENT_FAILURE",
        "SHUTDOWN",
    ]


def test_starts_idle_and_transitions() -> None:
    connectivity = Connectivity()
    assert connectivity.state is IDLE
    for state in (CONNECTING, TRANSIENT_FAILURE, CONNECTING, READY, IDLE, CONNECTING, READY):
        connectivity.set(state)
        assert connectivity.state is state
    assert Connectivity(CONNECTING).state is CONNECTING


def test_shutdown_is_final() -> None:
    connectivity = Connectivity(READY)
    seen: list[ChannelState] = []
    connectivity.subscribe(seen.append)
    connectivity.set(SHUTDOWN)
    for state in ChannelState:
        connectivity.set(state)
        assert connectivity.state is SHUTDOWN
    assert seen == [SHUTDOWN]


def test_subscribers_see_every_change_and_only_changes() -> None:
    connectivity = Connectivity()
    seen: list[ChannelState] = []
    unsubscribe = connectivity.subscribe(seen.append)
    connectivity.set(IDLE)  # no change
    connectivity.set(CONNECTING)
    connectivity.set(CONNECTING)  # no change
    connectivity.set(READY)
    assert seen == [CONNECTING, READY]
    unsubscribe()
    unsubscribe()  # idempotent
    connectivity.set(IDLE)
    assert seen == [CONNECTING, READY]


def test_same_callback_twice_is_two_subscriptions() -> None:
    connectivity = Connectivity()
    seen: list[ChannelState] = []
    first = connectivity.subscribe(seen.append)
    connectivity.subscribe(seen.append)
    connectivity.set(CONNECTING)
    assert seen == [CONNECTING, CONNECTING]
    first()
    connectivity.set(READY)
    assert seen == [CONNECTING, CONNECTING, READY]


def test_raising_subscriber_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    connectivity = Connectivity()
    seen: list[ChannelState] = []

    def broken(state: ChannelState) -> None:
        raise RuntimeError(f"subscriber bug on {state.name}")

    connectivity.subscribe(broken)
    connectivity.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="greeter.client"):
        connectivity.set(CONNECTING)
        connectivity.set(READY)
    assert connectivity.state is READY
    assert seen == [CONNECTING, READY]
    records = [r for r in caplog.records if r.name == "greeter.client"]
    assert len(records) == 2
    assert records[0].exc_info is not None
    assert "subscriber bug on CONNECTING" in str(records[0].exc_info[1])


def test_subscriber_may_change_state_and_unsubscribe() -> None:
    """A subscriber that calls set() does not reorder what the others see."""
    connectivity = Connectivity()
    first_seen: list[ChannelState] = []
    second_seen: list[ChannelState] = []

    def fail_fast(state: ChannelState) -> None:
        first_seen.append(state)
        if state is CONNECTING:
            connectivity.set(TRANSIENT_FAILURE)

    connectivity.subscribe(fail_fast)
    unsubscribe = connectivity.subscribe(second_seen.append)
    connectivity.set(CONNECTING)
    assert connectivity.state is TRANSIENT_FAILURE
    assert first_seen == [CONNECTING, TRANSIENT_FAILURE]
    assert second_seen == [CONNECTING, TRANSIENT_FAILURE]

    left: list[ChannelState] = []

    def leave(state: ChannelState) -> None:
        left.append(state)
        leave_unsubscribe()

    leave_unsubscribe = connectivity.subscribe(leave)
    connectivity.set(READY)
    connectivity.set(IDLE)
    assert left == [READY]
    unsubscribe()
    connectivity.set(CONNECTING)
    assert second_seen == [CONNECTING, TRANSIENT_FAILURE, READY, IDLE]


@pytest.mark.asyncio
async def test_wait_for_state_change_returns_at_once_when_already_different() -> None:
    connectivity = Connectivity(READY)
    assert await connectivity.wait_for_state_change(IDLE) is True
    assert await connectivity.wait_for_state_change(IDLE, timeout=0) is True


@pytest.mark.asyncio
async def test_wait_for_state_change_wakes_on_change_from_another_task() -> None:
    connectivity = Connectivity()
    waiter = await started(asyncio.create_task(connectivity.wait_for_state_change(IDLE, 5.0)))
    connectivity.set(IDLE)  # not a change
    await asyncio.sleep(0)
    assert not waiter.done()
    connectivity.set(CONNECTING)
    assert await waiter is True


@pytest.mark.asyncio
async def test_wait_for_state_change_counts_a_change_undone_before_the_waiter_runs() -> None:
    connectivity = Connectivity()
    waiter = await started(asyncio.create_task(connectivity.wait_for_state_change(IDLE)))
    connectivity.set(CONNECTING)
    connectivity.set(IDLE)
    assert await waiter is True


@pytest.mark.asyncio
async def test_wait_for_state_change_times_out() -> None:
    connectivity = Connectivity(READY)
    assert await connectivity.wait_for_state_change(READY, timeout=SHORT) is False
    assert await connectivity.wait_for_state_change(READY, timeout=0) is False
    assert await connectivity.wait_for_state_change(READY, timeout=-1) is False
    assert connectivity._waiters == []


@pytest.mark.asyncio
async def test_many_waiters_all_wake() -> None:
    connectivity = Connectivity()
    waiters = [asyncio.create_task(connectivity.wait_for_state_change(IDLE)) for _ in range(5)]
    for _ in range(3):
        await asyncio.sleep(0)
    connectivity.set(CONNECTING)
    assert await asyncio.gather(*waiters) == [True] * 5
    assert connectivity._waiters == []


@pytest.mark.asyncio
async def test_wait_for_reaches_the_state() -> None:
    connectivity = Connectivity()
    waiter = await started(asyncio.create_task(connectivity.wait_for(READY, timeout=5.0)))
    connectivity.set(CONNECTING)
    connectivity.set(TRANSIENT_FAILURE)
    await asyncio.sleep(0)
    assert not waiter.done()
    connectivity.set(CONNECTING)
    connectivity.set(READY)
    assert await waiter is True
    assert await connectivity.wait_for(READY, timeout=0) is True


@pytest.mark.asyncio
async def test_wait_for_counts_a_state_left_before_the_waiter_runs() -> None:
    connectivity = Connectivity()
    waiter = await started(asyncio.create_task(connectivity.wait_for(READY)))
    connectivity.set(READY)
    connectivity.set(IDLE)
    assert await waiter is True


@pytest.mark.asyncio
async def test_wait_for_times_out() -> None:
    connectivity = Connectivity()
    assert await connectivity.wait_for(READY, timeout=SHORT) is False
    assert await connectivity.wait_for(READY, timeout=0) is False
    assert connectivity._waiters == []


@pytest.mark.asyncio
async def test_shutdown_ends_waits_for_other_states() -> None:
    connectivity = Connectivity(CONNECTING)
    ready = await started(asyncio.create_task(connectivity.wait_for(READY)))
    down = await started(asyncio.create_task(connectivity.wait_for(SHUTDOWN)))
    change = await started(asyncio.create_task(connectivity.wait_for_state_change(CONNECTING)))
    connectivity.set(SHUTDOWN)
    assert await ready is False
    assert await down is True
    assert await change is True
    # After SHUTDOWN nothing can change: no waiting, whatever the timeout.
    assert await connectivity.wait_for(READY) is False
    assert await connectivity.wait_for(SHUTDOWN) is True
    assert await connectivity.wait_for_state_change(SHUTDOWN) is False
    assert await connectivity.wait_for_state_change(READY) is True


@pytest.mark.asyncio
async def test_cancelled_waiter_leaves_nothing_behind() -> None:
    connectivity = Connectivity()
    waiter = await started(asyncio.create_task(connectivity.wait_for(READY)))
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert connectivity._waiters == []
    connectivity.set(READY)  # no stale future to set
    assert connectivity.state is READY


def test_waiting_works_across_event_loops() -> None:
    """Futures are made in the running loop when a wait starts, so no loop is remembered."""
    connectivity = Connectivity()

    async def wait_then_change(target: ChannelState) -> bool:
        waiter = await started(asyncio.create_task(connectivity.wait_for(target)))
        connectivity.set(target)
        return await waiter

    assert asyncio.run(wait_then_change(CONNECTING)) is True
    assert asyncio.run(wait_then_change(READY)) is True
