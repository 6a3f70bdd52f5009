"""gRPC's connection backoff (greeter.client.backoff) with fixed randomness."""

from __future__ import annotations

import itertools
import math

import pytest

from greeter.client.backoff import Backoff, BackoffPolicy

pytestmark = pytest.mark.timeout(10)

NO_JITTER = 0.5
ALMOST_ONE = math.nextafter(1.0, 0.0)


def delays(backoff: Backoff, count: int) -> list[float]:
    return [backoff.next_delay() for _ in range(count)]


def test_default_policy_is_the_docs() -> None:
    policy = BackoffPolicy()
    assert (policy.initial, policy.multiplier, policy.jitter) == (1.0, 1.6, 0.2)
    assert (policy.max_backoff, policy.min_connect_timeout) == (120.0, 20.0)
    assert Backoff().policy == policy


def test_exact_sequence_without_jitter_is_capped_at_max_backoff() -> None:
    backoff = Backoff(BackoffPolicy(), random=lambda: NO_JITTER)
    expected = [min(1.6**n, 120.0) for n in range(15)]
    assert expected[:4] == pytest.approx([1.0, 1.6, 2.56, 4.096])
    assert delays(backoff, 15) == pytest.approx(expected)
    # 1.6**11 = 175.9 > 120: from the 12th delay on it stays at the cap.
    assert delays(backoff, 5) == pytest.approx([120.0] * 5)
    assert backoff.current == 120.0


def test_jitter_bounds() -> None:
    low = Backoff(BackoffPolicy(), random=lambda: 0.0)
    high = Backoff(BackoffPolicy(), random=lambda: ALMOST_ONE)
    for n, (short, long) in enumerate(zip(delays(low, 15), delays(high, 15), strict=True)):
        base = min(1.6**n, 120.0)
        assert short == pytest.approx(0.8 * base)
        assert long == pytest.approx(1.2 * base)
        assert long < 1.2 * base * (1 + 1e-12)
    # The cap applies before the jitter, as in the doc's pseudo-code.
    assert low.next_delay() == pytest.approx(96.0)
    assert high.next_delay() == pytest.approx(144.0)


def test_jitter_is_uniform_over_the_random_value() -> None:
    values = iter([0.25, 0.75, 0.1])
    backoff = Backoff(
        BackoffPolicy(initial=10.0, multiplier=2.0, jitter=0.5), random=lambda: next(values)
    )
    # factor = 1 + jitter * (2r - 1)
    assert delays(backoff, 3) == pytest.approx([10.0 * 0.75, 20.0 * 1.25, 40.0 * 0.6])


def test_random_delays_stay_within_bounds() -> None:
    backoff = Backoff(BackoffPolicy())
    for n, delay in enumerate(delays(backoff, 30)):
        base = min(1.6**n, 120.0)
        assert 0.8 * base - 1e-9 <= delay <= 1.2 * base + 1e-9


def test_reset_starts_over() -> None:
    backoff = Backoff(BackoffPolicy(), random=lambda: NO_JITTER)
    delays(backoff, 6)
    backoff.reset()
    assert backoff.current == 1.0
    assert delays(backoff, 3) == pytest.approx([1.0, 1.6, 2.56])
    backoff.reset()
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(1.0)


def test_multiplier_one_keeps_the_delay() -> None:
    backoff = Backoff(BackoffPolicy(initial=2.0, multiplier=1.0, jitter=0.0))
    assert delays(backoff, 4) == [2.0, 2.0, 2.0, 2.0]


def test_initial_above_max_is_capped() -> None:
    backoff = Backoff(BackoffPolicy(initial=5.0, max_backoff=3.0), random=lambda: NO_JITTER)
    assert delays(backoff, 2) == pytest.approx([3.0, 3.0])


def test_connect_timeout_is_the_backoff_deadline_but_never_below_min_connect_timeout() -> None:
    backoff = Backoff(BackoffPolicy(), random=lambda: NO_JITTER)
    for delay in delays(backoff, 20):
        assert backoff.connect_timeout(delay) == max(delay, 20.0)
        assert backoff.connect_timeout(delay) >= 20.0
    assert backoff.connect_timeout(1.0) == 20.0
    assert backoff.connect_timeout(0.0) == 20.0
    assert backoff.connect_timeout(-3.0) == 20.0
    assert backoff.connect_timeout(25.0) == 25.0
    assert backoff.connect_timeout(144.0) == 144.0
    short = Backoff(BackoffPolicy(min_connect_timeout=0.5))
    assert short.connect_timeout(0.1) == 0.5


def test_connect_with_backoff_schedule() -> None:
    """The doc's ConnectWithBackoff driven by a fake clock: attempt starts and their timeouts."""
    backoff = Backoff(BackoffPolicy(), random=lambda: NO_JITTER)
    now = 0.0
    starts, timeouts = [], []
    for _ in range(5):
        delay = backoff.next_delay()
        starts.append(now)
        timeouts.append(backoff.connect_timeout(delay))
        now += 0.01  # the attempt fails fast
        now = max(now, starts[-1] + delay)  # SleepUntil(current_deadline)
    assert starts == pytest.approx([0.0, 1.0, 2.6, 5.16, 9.256])
    assert timeouts == [20.0] * 5


def test_valid_edge_policies() -> None:
    BackoffPolicy(jitter=0.0, multiplier=1.0, initial=1, max_backoff=1, min_connect_timeout=1)
    BackoffPolicy(jitter=0.999)


def test_backoff_is_deterministic_with_a_fixed_random() -> None:
    source = itertools.cycle([0.0, 0.5, 0.9])
    first = delays(Backoff(random=lambda: next(source)), 9)
    source = itertools.cycle([0.0, 0.5, 0.9])
    assert delays(Backoff(random=lambda: next(source)), 9) == first
