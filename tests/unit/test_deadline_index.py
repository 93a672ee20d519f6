from hypothesis import given
from hypothesis import strategies as st

from lienthong.services.processors.deadline_index import DeadlineIndex


def test_only_the_latest_alarm_of_a_dossier_fires() -> None:
    index = DeadlineIndex()
    index.schedule(0, "A", 100.0)
    index.schedule(0, "A", 50.0)  # rescheduled earlier: the 100.0 entry is superseded
    index.schedule(1, "B", 70.0)
    assert index.pop_due(60.0) == [(0, "A")]
    assert index.pop_due(1000.0) == [(1, "B")]
    assert index.pop_due(1000.0) == []
    assert len(index) == 0


def test_cleared_alarm_never_fires() -> None:
    index = DeadlineIndex()
    index.schedule(3, "A", 10.0)
    index.schedule(3, "A", None)
    assert index.pop_due(100.0) == []
    assert index.next_instant() is None


def test_dropped_partition_forgets_its_dossiers() -> None:
    index = DeadlineIndex()
    index.schedule(0, "A", 10.0)
    index.schedule(1, "B", 20.0)
    index.drop_partitions([0])
    assert index.pop_due(100.0) == [(1, "B")]


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from("ABCDEFG"),
                          st.floats(0, 1000, allow_nan=False)), max_size=60),
       st.floats(0, 1000, allow_nan=False))
def test_pop_due_returns_exactly_the_live_alarms_due(
    ops: list[tuple[int, str, float]], now: float
) -> None:
    index = DeadlineIndex()
    live: dict[str, tuple[int, float]] = {}
    for partition, dossier, at in ops:
        index.schedule(partition, dossier, at)
        live[dossier] = (partition, at)
    expected = sorted((p, d) for d, (p, at) in live.items() if at <= now)
    assert sorted(index.pop_due(now)) == expected
    assert len(index) == len(live) - len(expected)


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 1000, allow_nan=False)),
                max_size=60), st.floats(0, 1000, allow_nan=False))
def test_an_index_built_at_once_pops_what_one_built_entry_by_entry_pops(
        alarms: list[tuple[int, float]], now: float) -> None:
    one_by_one, per_partition = DeadlineIndex(), {}
    for number, (partition, at) in enumerate(alarms):
        one_by_one.schedule(partition, f"D{number}", at)
        per_partition.setdefault(partition, []).append((at, f"D{number}"))
    at_once = DeadlineIndex.of(per_partition)
    assert len(at_once) == len(one_by_one) == len(alarms)
    assert at_once.next_instant() == one_by_one.next_instant()
    assert sorted(at_once.pop_due(now)) == sorted(one_by_one.pop_due(now))
    assert sorted(at_once.pop_due(2000.0)) == sorted(one_by_one.pop_due(2000.0))
