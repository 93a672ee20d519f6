"""Token buckets shared by the gateway (per agency) and the dashboard's login."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lienthong.services.ratelimit import TokenBuckets


def test_a_burst_is_allowed_then_refused_with_the_seconds_to_the_next_token() -> None:
    # 2 tokens per second, 3 at once: the 4th request at t=0 waits 1/2 s -> Retry-After 1.
    buckets = TokenBuckets(rate=2, burst=3)
    assert [buckets.take("A", 0.0).allowed for _ in range(4)] == [True, True, True, False]
    refused = buckets.take("A", 0.0)
    assert (refused.allowed, refused.retry_after) == (False, 1)
    assert buckets.take("A", 0.5).allowed  # one token refilled
    assert not buckets.take("A", 0.5).allowed


def test_a_slow_rate_says_how_many_seconds_to_wait() -> None:
    buckets = TokenBuckets(rate=0.1, burst=1)  # one request per 10 s
    assert buckets.take("lan", 0.0).allowed
    assert buckets.take("lan", 2.0).retry_after == 8


def test_keys_have_their_own_buckets() -> None:
    buckets = TokenBuckets(rate=1, burst=1)
    assert buckets.take("A", 0).allowed
    assert buckets.take("B", 0).allowed
    assert not buckets.take("A", 0).allowed


def test_rate_zero_is_no_limit() -> None:
    buckets = TokenBuckets(rate=0, burst=0)
    assert all(buckets.take("A", 0).allowed for _ in range(1000))
    assert len(buckets) == 0


def test_a_limited_bucket_needs_a_token() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(rate=1, burst=0.5)


def test_memory_is_bounded_by_max_keys() -> None:
    buckets = TokenBuckets(rate=1, burst=2, max_keys=100)
    for i in range(1000):
        buckets.take(f"user{i}", float(i))
    assert len(buckets) == 100


@given(st.lists(st.floats(min_value=0, max_value=0.5, allow_nan=False), min_size=1,
                max_size=200), st.floats(0.5, 50), st.integers(1, 20))
def test_never_more_than_burst_plus_rate_times_elapsed(gaps: list[float], rate: float,
                                                      burst: int) -> None:
    buckets = TokenBuckets(rate=rate, burst=burst)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += buckets.take("A", now).allowed
    assert allowed <= burst + rate * now + 1e-9
