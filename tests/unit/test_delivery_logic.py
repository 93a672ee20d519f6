"""Pure decisions of the delivery connector: backoff schedule, circuit breaker, ordered commits,
answer classification and delivery_failing streaks."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lienthong.connectors.delivery import (
    BreakerConfig,
    CircuitBreaker,
    CircuitState,
    DeliveryPolicy,
    FailureStreaks,
    Outcome,
    PartitionOffsets,
    classify_status,
    delivery_failing_id,
)
from lienthong.connectors.http import RetryPolicy

# --- backoff schedule -------------------------------------------------------------------------


def test_backoff_gives_one_pause_between_each_pair_of_tries() -> None:
    policy = DeliveryPolicy(retry=RetryPolicy(attempts=8, base_delay=0.05, max_delay=1.0))
    assert len(list(policy.retry.delays(random.Random(1)))) == 7


@given(seed=st.integers(0, 2**32), base=st.floats(0.001, 2.0), cap=st.floats(0.001, 30.0))
def test_backoff_pauses_stay_under_the_doubling_envelope_and_the_cap(
        seed: int, base: float, cap: float) -> None:
    # pause n is drawn from [0, min(cap, base * 2**n)]: 50 ms base -> 50, 100, 200, 400 ms ...
    policy = RetryPolicy(attempts=10, base_delay=base, max_delay=cap)
    for n, pause in enumerate(policy.delays(random.Random(seed))):
        assert 0.0 <= pause <= min(cap, base * 2**n)


def test_backoff_grows_exponentially_on_average() -> None:
    policy = RetryPolicy(attempts=6, base_delay=0.1, max_delay=100.0)
    rng = random.Random(7)
    runs = [list(policy.delays(rng)) for _ in range(2000)]
    means = [sum(r[n] for r in runs) / len(runs) for n in range(5)]
    # full jitter: mean of uniform(0, 0.1 * 2**n) is 0.05 * 2**n
    for n, mean in enumerate(means):
        assert mean == pytest.approx(0.05 * 2**n, rel=0.1)


def test_backoff_jitter_spreads_the_retries_of_many_deliveries() -> None:
    policy = RetryPolicy(attempts=4, base_delay=1.0, max_delay=10.0)
    rng = random.Random(3)
    firsts = {round(next(policy.delays(rng)), 3) for _ in range(100)}
    assert len(firsts) > 90


# --- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "outcome"), [
    (200, Outcome.DELIVERED), (201, Outcome.DELIVERED), (204, Outcome.DELIVERED),
    (400, Outcome.PERMANENT), (401, Outcome.PERMANENT), (404, Outcome.PERMANENT),
    (409, Outcome.PERMANENT), (422, Outcome.PERMANENT),
    (408, Outcome.RETRY), (429, Outcome.RETRY), (425, Outcome.RETRY),
    (500, Outcome.RETRY), (502, Outcome.RETRY), (503, Outcome.RETRY), (504, Outcome.RETRY),
    (301, Outcome.RETRY),
])
def test_answers_are_classified_as_delivered_permanent_or_retry(
        status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


# --- circuit breaker --------------------------------------------------------------------------

CFG = BreakerConfig(failure_threshold=3, open_seconds=1.0, max_open_seconds=4.0)


def _fail(b: CircuitBreaker, now: float) -> None:
    permit = b.acquire(now)
    assert permit is not None
    b.record_failure(permit, now)


def test_breaker_opens_after_the_threshold_of_consecutive_failures() -> None:
    b = CircuitBreaker(CFG)
    _fail(b, 0.0)
    _fail(b, 0.1)
    assert b.state(0.1) is CircuitState.CLOSED
    _fail(b, 0.2)
    assert b.state(0.2) is CircuitState.OPEN
    assert b.acquire(0.5) is None
    assert b.wait_hint(0.5) == pytest.approx(0.7)


def test_a_success_resets_the_failure_count() -> None:
    b = CircuitBreaker(CFG)
    _fail(b, 0.0)
    _fail(b, 0.1)
    permit = b.acquire(0.2)
    assert permit is not None
    b.record_success(permit, 0.2)
    _fail(b, 0.3)
    _fail(b, 0.4)
    assert b.state(0.4) is CircuitState.CLOSED


def test_half_open_lets_one_probe_through_and_its_success_closes_the_circuit() -> None:
    b = CircuitBreaker(CFG)
    for t in (0.0, 0.1, 0.2):
        _fail(b, t)
    assert b.state(1.2) is CircuitState.HALF_OPEN
    probe = b.acquire(1.2)
    assert probe is not None and probe.probe
    assert b.acquire(1.3) is None  # the others wait for the probe's verdict
    assert b.wait_hint(1.3) is None
    assert b.record_success(probe, 1.4)
    assert b.state(1.4) is CircuitState.CLOSED
    assert b.acquire(1.4) is not None


def test_a_failed_probe_reopens_with_a_doubled_pause_up_to_the_cap() -> None:
    b = CircuitBreaker(CFG)
    for t in (0.0, 0.1, 0.2):
        _fail(b, t)
    now = 0.2
    for expected_pause in (2.0, 4.0, 4.0):
        now += 10
        probe = b.acquire(now)
        assert probe is not None
        b.record_failure(probe, now)
        assert b.state(now) is CircuitState.OPEN
        assert b.wait_hint(now) == pytest.approx(expected_pause)


def test_a_stale_result_from_before_the_circuit_opened_is_ignored() -> None:
    b = CircuitBreaker(CFG)
    slow = b.acquire(0.0)  # a request that will answer late
    assert slow is not None
    for t in (0.1, 0.2, 0.3):
        _fail(b, t)
    assert b.state(0.3) is CircuitState.OPEN
    assert not b.record_success(slow, 0.4)  # must not close the circuit early
    assert b.state(0.4) is CircuitState.OPEN


def test_a_cancelled_probe_gives_its_slot_back() -> None:
    b = CircuitBreaker(CFG)
    for t in (0.0, 0.1, 0.2):
        _fail(b, t)
    probe = b.acquire(2.0)
    assert probe is not None
    b.release(probe)
    assert b.acquire(2.0) is not None


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["ok", "fail", "acquire"]), st.floats(0, 3)),
                max_size=60))
def test_breaker_invariants_hold_under_any_sequence(
        steps: list[tuple[str, float]]) -> None:
    b = CircuitBreaker(CFG)
    now = 0.0
    permits = []
    for action, dt in steps:
        now += dt
        if action == "acquire":
            permit = b.acquire(now)
            if permit is not None:
                permits.append(permit)
            elif b.state(now) is CircuitState.CLOSED:
                raise AssertionError("a closed circuit refused a request")
        elif permits:
            permit = permits.pop(0)
            before = b.generation
            changed = (b.record_success if action == "ok" else b.record_failure)(permit, now)
            assert changed == (b.generation != before)
        state = b.state(now)
        # an open circuit never hands out a permit before its pause elapsed
        if state is CircuitState.OPEN:
            assert b.acquire(now) is None
        hint = b.wait_hint(now)
        assert hint is None or hint >= 0.0


# --- ordered commits --------------------------------------------------------------------------


def test_commit_position_waits_for_the_oldest_unfinished_offset() -> None:
    p = PartitionOffsets()
    for o in (10, 11, 12, 13):
        p.take(o)
    p.finish(12)
    p.finish(11)
    assert p.position() is None  # 10 still running: nothing may be committed
    p.finish(10)
    assert p.position() == 13  # 10, 11 and 12 are done; 13 is not
    assert p.in_flight == 1
    p.finish(13)
    assert p.to_commit() == 14
    p.committed(14)
    assert p.to_commit() is None


def test_offsets_with_gaps_commit_past_the_gap() -> None:
    # compaction and transaction markers leave holes in a partition's offsets
    p = PartitionOffsets(committed=5)
    p.take(7)
    p.take(9)
    p.finish(9)
    assert p.to_commit() is None
    p.finish(7)
    assert p.position() == 10


def test_offsets_must_be_taken_in_increasing_order_and_finished_once() -> None:
    p = PartitionOffsets()
    p.take(3)
    with pytest.raises(ValueError):
        p.take(3)
    p.finish(3)
    with pytest.raises(ValueError):
        p.finish(3)
    with pytest.raises(ValueError):
        p.finish(99)


@settings(max_examples=300)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=80), st.randoms(use_true_random=False))
def test_committed_prefix_never_passes_an_unfinished_offset(
        gaps: list[int], rnd: random.Random) -> None:
    offsets, o = [], 0
    for g in gaps:
        o += g
        offsets.append(o)
    p = PartitionOffsets()
    for off in offsets:
        p.take(off)
    order = offsets[:]
    rnd.shuffle(order)
    finished: set[int] = set()
    for off in order:
        p.finish(off)
        finished.add(off)
        pos = p.position()
        unfinished = [x for x in offsets if x not in finished]
        if pos is not None:
            # everything below the position is finished ...
            assert all(x in finished for x in offsets if x < pos)
        # ... and the position is as far as it can be
        if unfinished:
            assert pos is None or pos <= unfinished[0]
            if unfinished[0] != offsets[0]:
                prev = max(x for x in offsets if x < unfinished[0])
                assert pos == prev + 1
        assert p.in_flight == len(unfinished)
    assert p.position() == offsets[-1] + 1


# --- delivery_failing streaks -----------------------------------------------------------------

T0 = datetime(2026, 6, 9, 2, 0, tzinfo=UTC)


def test_a_streak_is_reported_once_at_the_threshold_with_its_first_failure() -> None:
    s = FailureStreaks(threshold=3)
    reports = [s.failure("G09.20", T0 + timedelta(seconds=i), "503") for i in range(6)]
    hits = [r for r in reports if r is not None]
    assert len(hits) == 1
    assert hits[0].first_failure == T0
    assert hits[0].alert_id == delivery_failing_id("G09.20", "delivery_failing", T0)


def test_an_answer_ends_the_streak_and_the_next_streak_gets_a_new_id() -> None:
    s = FailureStreaks(threshold=2)
    s.failure("G09.20", T0, "503")
    first = s.failure("G09.20", T0 + timedelta(seconds=1), "503")
    s.success("G09.20")
    s.failure("G09.20", T0 + timedelta(minutes=5), "timeout")
    second = s.failure("G09.20", T0 + timedelta(minutes=6), "timeout")
    assert first is not None and second is not None
    assert first.alert_id != second.alert_id


def test_streaks_of_different_destinations_are_independent() -> None:
    s = FailureStreaks(threshold=2)
    assert s.failure("A1", T0, "x") is None
    assert s.failure("B2", T0, "x") is None
    assert s.failure("A1", T0, "x") is not None


def test_alert_id_is_deterministic_and_ignores_the_offset_notation() -> None:
    local = T0.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Ho_Chi_Minh"))
    assert delivery_failing_id("VNPOST", "delivery_failing", T0) == \
        delivery_failing_id("VNPOST", "delivery_failing", local)
    assert delivery_failing_id("VNPOST", "delivery_failing", T0) != \
        delivery_failing_id("DVCQG", "delivery_failing", T0)
