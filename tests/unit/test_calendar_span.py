"""The calendar's fast path (spans of one UTC offset) gives exactly what the epoch tables give."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from lienthong.services.domain import calendar as calendar_module
from lienthong.services.domain import deadlines as deadlines_module
from lienthong.services.domain.calendar import WorkingCalendar
from lienthong.services.domain.deadlines import instant_to_json

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
PARIS = ZoneInfo("Europe/Paris")
ZONES = [TZ, UTC, ZoneInfo("America/New_York"), PARIS]
H = timedelta(hours=1)


class EpochTablesOnly(WorkingCalendar):
    """The same calendar with the fast path switched off."""

    def _covers(self, local: datetime) -> bool:
        return False


FAST = WorkingCalendar(extra_days_off=[date(2026, 6, 9)], extra_working_days=[date(2026, 6, 13)])
SLOW = EpochTablesOnly(extra_days_off=[date(2026, 6, 9)],
                       extra_working_days=[date(2026, 6, 13)])

instants = st.builds(
    lambda us, zone: (datetime(2025, 10, 1, tzinfo=UTC) + timedelta(microseconds=us)
                      ).astimezone(zone),
    st.integers(min_value=0, max_value=3 * 366 * 86400 * 10**6),
    st.sampled_from(ZONES),
)
whole_minutes = instants.map(lambda t: t.replace(second=0, microsecond=0))
amounts = st.one_of(
    st.integers(min_value=0, max_value=300 * 8 * 3600 * 10**6).map(
        lambda us: timedelta(microseconds=us)),
    st.integers(min_value=0, max_value=400).map(lambda n: n * timedelta(hours=4)),
)


def same(a: datetime, b: datetime) -> bool:
    return a == b and a.utcoffset() == b.utcoffset() and a.tzinfo is b.tzinfo


@settings(max_examples=400, deadline=None)
@given(start=st.one_of(instants, whole_minutes), amount=amounts)
def test_adding_working_time_matches_the_epoch_tables(start: datetime, amount: timedelta) -> None:
    assert same(FAST.add_working_time(start, amount), SLOW.add_working_time(start, amount))


@settings(max_examples=400, deadline=None)
@given(a=st.one_of(instants, whole_minutes), b=st.one_of(instants, whole_minutes))
def test_measuring_working_time_matches_the_epoch_tables(a: datetime, b: datetime) -> None:
    assert FAST.working_time_between(a, b) == SLOW.working_time_between(a, b)


@settings(max_examples=400, deadline=None)
@given(t=st.one_of(instants, whole_minutes))
def test_openings_and_working_instants_match_the_epoch_tables(t: datetime) -> None:
    assert same(FAST.next_opening(t), SLOW.next_opening(t))
    assert FAST.is_working_instant(t) == SLOW.is_working_instant(t)


def test_window_edges_match_the_epoch_tables() -> None:
    for d in (date(2026, 6, 8), date(2026, 6, 13), date(2026, 12, 31), date(2027, 1, 4)):
        for hh, mm in ((7, 30), (11, 30), (13, 0), (17, 0), (0, 0), (23, 59)):
            t = datetime.combine(d, time(hh, mm), tzinfo=TZ)
            for u in (t - timedelta(microseconds=1), t, t + timedelta(microseconds=1)):
                assert same(FAST.next_opening(u), SLOW.next_opening(u))
                assert FAST.is_working_instant(u) == SLOW.is_working_instant(u)
                for amount in (timedelta(microseconds=1), timedelta(hours=4), 5 * FAST.day_length):
                    assert same(FAST.add_working_time(u, amount), SLOW.add_working_time(u, amount))


def test_a_due_years_ahead_grows_the_span_and_measures_back() -> None:
    cal = WorkingCalendar()
    start = datetime(2026, 6, 8, 9, tzinfo=TZ)
    due = cal.add_working_time(start, 2000 * cal.day_length)
    assert due.year >= 2033
    assert same(due, EpochTablesOnly().add_working_time(start, 2000 * cal.day_length))
    assert cal.working_time_between(start, due) == 2000 * cal.day_length


def test_an_earlier_year_after_a_later_one_rebuilds_the_span_consistently() -> None:
    cal = WorkingCalendar(years=range(2027, 2028))
    early = datetime(2024, 3, 1, 9, tzinfo=TZ)
    late = datetime(2027, 3, 1, 9, tzinfo=TZ)
    assert cal.working_time_between(early, late) == SLOW.working_time_between(early, late)
    assert same(cal.add_working_time(early, 10 * cal.day_length),
                SLOW.add_working_time(early, 10 * cal.day_length))


def test_a_zone_with_daylight_saving_takes_the_epoch_tables_across_the_change() -> None:
    fast = WorkingCalendar(timezone="Europe/Paris", country="FR")
    slow = EpochTablesOnly(timezone="Europe/Paris", country="FR")
    # Fri 27 Mar 2026 16:00 + 2 h: 1 h on Friday; clocks go forward on Sun 29; Mon 30 08:30.
    start = datetime(2026, 3, 27, 16, tzinfo=PARIS)
    due = fast.add_working_time(start, timedelta(hours=2))
    assert due == datetime(2026, 3, 30, 8, 30, tzinfo=PARIS)
    assert due.utcoffset() == timedelta(hours=2)
    assert same(due, slow.add_working_time(start, timedelta(hours=2)))
    assert fast.working_time_between(start, due) == timedelta(hours=2)


def test_calendars_with_no_working_day_still_refuse_to_search_forever() -> None:
    every_day = [date(2026, 1, 1) + timedelta(days=i) for i in range(30 * 366)]
    cal = WorkingCalendar(extra_days_off=every_day)
    start = datetime(2026, 6, 8, 9, tzinfo=TZ)
    try:
        cal.add_working_time(start, timedelta(hours=1))
    except ValueError as exc:
        assert "no working time" in str(exc)
    else:
        raise AssertionError("expected a ValueError")


@settings(max_examples=300, deadline=None)
@given(t=st.one_of(instants, whole_minutes))
def test_local_text_is_the_local_iso_form_to_the_second(t: datetime) -> None:
    expected = t.astimezone(TZ).isoformat("T", "seconds")
    assert FAST.format_local(t) == expected
    assert SLOW.format_local(t) == expected


def test_local_text_in_a_zone_with_daylight_saving_carries_each_offset() -> None:
    cal = WorkingCalendar(timezone="Europe/Paris", country="FR")
    assert cal.format_local(datetime(2026, 3, 28, 12, 0, 5, 900, tzinfo=UTC)) == (
        "2026-03-28T13:00:05+01:00")
    assert cal.format_local(datetime(2026, 3, 30, 12, tzinfo=UTC)) == "2026-03-30T14:00:00+02:00"


def test_decades_without_working_days_before_the_span_keep_results_exact() -> None:
    off = [date(1995, 1, 1) + timedelta(days=i)
           for i in range((date(2021, 1, 1) - date(1995, 1, 1)).days)]
    fast, slow = WorkingCalendar(extra_days_off=off), EpochTablesOnly(extra_days_off=off)
    now = datetime(2026, 6, 8, 9, tzinfo=TZ)
    assert same(fast.add_working_time(now, 8 * H), slow.add_working_time(now, 8 * H))
    early = datetime(1994, 6, 1, 9, tzinfo=TZ)
    for a, b in ((early, now), (now, early)):
        assert fast.working_time_between(a, b) == slow.working_time_between(a, b)
    assert fast.working_time_between(early, now) > timedelta(0)
    assert same(fast.add_working_time(now, 3 * H), slow.add_working_time(now, 3 * H))


def test_remembered_texts_belong_to_their_own_instant(monkeypatch: Any) -> None:
    """format_local and instant_to_json remember answers by the instant object's id: an id
    freed and taken by another instant, and a full memory cleared, still give each instant
    its own text."""
    monkeypatch.setattr(calendar_module, "TEXTS_KEPT", 3)
    monkeypatch.setattr(deadlines_module, "STORED_KEPT", 3)
    cal = WorkingCalendar()
    start = datetime(2026, 6, 8, 9, tzinfo=TZ)
    for i in range(200):  # each instant dies after its turn: ids are taken again
        t = start + timedelta(seconds=37 * i, microseconds=i % 2)
        assert cal.format_local(t) == t.astimezone(TZ).isoformat("T", "seconds")
        assert cal.format_local(t) == t.astimezone(TZ).isoformat("T", "seconds")
        expected = t.isoformat() if t.microsecond else int(t.timestamp())
        assert instant_to_json(t) == expected
        assert instant_to_json(t) == expected
    assert len(cal._texts) <= 3 and len(deadlines_module._STORED) <= 3
