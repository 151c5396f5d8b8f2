"""The GCRA token bucket, exact at its edges: time is an argument, so nothing sleeps."""

from __future__ import annotations

import math

import pytest

from mcp_trio._limiter import DEFAULT_MAX_KEYS, TokenBucket


def admitted_at(bucket: TokenBucket, key: object, now: float, attempts: int) -> int:
    """How many of ``attempts`` calls at the same instant are admitted."""
    return sum(bucket.try_acquire(key, now) == 0.0 for _ in range(attempts))


# Rates whose interval is exact in binary (4/s: 0.25 s) and ones that are not (10/s: 0.1 s).
@pytest.mark.parametrize("rate", [1.0, 4.0, 10.0, 3.0, 1000.0])
@pytest.mark.parametrize("burst", [0, 1, 5, 20])
def test_burst_plus_one_pass_at_once_then_wait_one_interval(rate: float, burst: int) -> None:
    bucket = TokenBucket(rate, burst)
    interval = 1.0 / rate
    for _ in range(burst + 1):
        assert bucket.try_acquire("k", 0.0) == 0.0
    wait = bucket.try_acquire("k", 0.0)
    assert wait == pytest.approx(interval, rel=1e-9)
    # Refusals do not consume: asking again gives the same answer.
    assert bucket.try_acquire("k", 0.0) == pytest.approx(interval, rel=1e-9)


@pytest.mark.parametrize("rate, burst", [(1.0, 0), (4.0, 3), (10.0, 2), (3.0, 1)])
def test_edge_of_the_next_token(rate: float, burst: int) -> None:
    bucket = TokenBucket(rate, burst)
    interval = 1.0 / rate
    assert admitted_at(bucket, "k", 0.0, burst + 1) == burst + 1
    early = bucket.try_acquire("k", interval - 0.001)
    assert early == pytest.approx(0.001, abs=1e-9)
    assert bucket.try_acquire("k", interval) == 0.0
    # Exactly one token came back: the next call at the same instant waits a full interval.
    assert bucket.try_acquire("k", interval) == pytest.approx(interval, rel=1e-9)


def test_steady_rate_over_many_intervals() -> None:
    # 10/s with no burst: one call per 0.1 s, for 1000 intervals, never drifts (0.1 is inexact).
    bucket = TokenBucket(10.0, 0)
    for i in range(1000):
        now = i / 10
        assert bucket.try_acquire("k", now) == 0.0, i
        assert bucket.try_acquire("k", now) > 0.0, i


def test_idle_time_refills_only_up_to_burst() -> None:
    bucket = TokenBucket(1.0, 2)
    assert admitted_at(bucket, "k", 0.0, 3) == 3
    # A long idle period does not bank more than burst + 1.
    assert admitted_at(bucket, "k", 1000.0, 10) == 3
    assert bucket.try_acquire("k", 1000.0) == pytest.approx(1.0)


def test_partial_refill() -> None:
    bucket = TokenBucket(2.0, 3)  # interval 0.5 s
    assert admitted_at(bucket, "k", 0.0, 10) == 4
    # After 1.0 s two tokens are back.
    assert admitted_at(bucket, "k", 1.0, 10) == 2
    assert bucket.try_acquire("k", 1.0) == pytest.approx(0.5)


def test_cost_greater_than_one() -> None:
    bucket = TokenBucket(1.0, 2)  # 3 tokens at once
    assert bucket.try_acquire("k", 0.0, cost=3) == 0.0
    assert bucket.try_acquire("k", 0.0) == pytest.approx(1.0)
    assert bucket.try_acquire("k", 1.0) == 0.0
    assert bucket.try_acquire("k", 1.0) == pytest.approx(1.0)


def test_cost_two_then_one_uses_the_whole_burst() -> None:
    bucket = TokenBucket(1.0, 2)
    assert bucket.try_acquire("k", 0.0, cost=2) == 0.0
    assert bucket.try_acquire("k", 0.0) == 0.0
    assert bucket.try_acquire("k", 0.0) == pytest.approx(1.0)


def test_fractional_cost() -> None:
    bucket = TokenBucket(1.0, 0)
    assert admitted_at(bucket, "k", 0.0, 1) == 1
    assert bucket.try_acquire("k", 1.0, cost=0.5) == 0.0
    assert bucket.try_acquire("k", 1.5, cost=0.5) == 0.0
    assert bucket.try_acquire("k", 1.5) == pytest.approx(0.5)


def test_keys_are_independent() -> None:
    bucket = TokenBucket(1.0, 1)
    assert admitted_at(bucket, "alice", 0.0, 5) == 2
    assert admitted_at(bucket, "bob", 0.0, 5) == 2
    assert admitted_at(bucket, ("tenant", 1), 0.0, 5) == 2
    assert bucket.try_acquire("alice", 0.0) == pytest.approx(1.0)
    assert len(bucket) == 3


def test_max_keys_bound_forgets_idle_keys_first() -> None:
    bucket = TokenBucket(1.0, 0, max_keys=3)
    for key in ("a", "b", "c"):
        assert bucket.try_acquire(key, 0.0) == 0.0
    assert len(bucket) == 3
    # At t=5 every bucket has refilled: a new key evicts the idle ones, not a live limit.
    assert bucket.try_acquire("d", 5.0) == 0.0
    assert len(bucket) == 1
    assert bucket.try_acquire("d", 5.0) == pytest.approx(1.0)


def test_max_keys_bound_when_everyone_is_mid_burst() -> None:
    bucket = TokenBucket(1.0, 0, max_keys=4)
    for key in range(4):
        assert bucket.try_acquire(key, 0.0) == 0.0
    assert bucket.try_acquire(4, 0.0) == 0.0
    # The oldest half (0, 1) was forgotten; the newest keep their limits.
    assert len(bucket) == 3
    assert bucket.try_acquire(3, 0.0) == pytest.approx(1.0)
    assert bucket.try_acquire(4, 0.0) == pytest.approx(1.0)
    assert bucket.try_acquire(0, 0.0) == 0.0  # forgotten, so admitted as new


@pytest.mark.parametrize("max_keys", [1, 2, 3, 10, 101])
def test_memory_stays_bounded_under_a_flood_of_new_keys(max_keys: int) -> None:
    bucket = TokenBucket(1.0, 0, max_keys=max_keys)
    peak = 0
    for key in range(5000):
        assert bucket.try_acquire(key, 0.0) == 0.0
        peak = max(peak, len(bucket))
    assert peak == max_keys
    assert len(bucket) <= max_keys


def test_existing_keys_never_trigger_eviction() -> None:
    bucket = TokenBucket(1.0, 0, max_keys=2)
    bucket.try_acquire("a", 0.0)
    bucket.try_acquire("b", 0.0)
    for i in range(1, 50):
        assert bucket.try_acquire("a", float(i)) == 0.0
    assert len(bucket) == 2
    assert bucket.try_acquire("b", 0.5) == pytest.approx(0.5)


def test_attributes_and_default() -> None:
    bucket = TokenBucket(4.0, 3)
    assert (bucket.rate, bucket.burst, bucket.interval, bucket.tolerance) == (4.0, 3, 0.25, 0.75)
    assert bucket.max_keys == DEFAULT_MAX_KEYS == 100_000
    assert len(bucket) == 0


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        ((0,), {}, "rate"),
        ((-1.0,), {}, "rate"),
        ((math.nan,), {}, "rate"),
        ((1.0, -1), {}, "burst"),
        ((1.0, 0), {"max_keys": 0}, "max_keys"),
        ((1.0, 0), {"max_keys": -5}, "max_keys"),
    ],
)
def test_invalid_construction(args: tuple[float, ...], kwargs: dict[str, int], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        TokenBucket(*args, **kwargs)  # type: ignore[arg-type]


def test_a_costly_call_waits_for_all_its_tokens() -> None:
    """Cost n needs n tokens: it is not admitted on credit when only one is left."""
    bucket = TokenBucket(rate=10, burst=4)  # 5 tokens at t=0, one every 0.1 s
    for _ in range(3):
        assert bucket.try_acquire("k", 0.0) == 0.0
    # two tokens left: a cost-3 call must wait for one more interval
    wait = bucket.try_acquire("k", 0.0, cost=3)
    assert wait == pytest.approx(0.1)
    assert bucket.try_acquire("k", 0.1, cost=3) == 0.0
