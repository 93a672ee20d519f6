"""The working calendar (DESIGN section 6, rules 1-3), by hand-worked cases and properties."""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lienthong.services.domain.calendar import WorkingCalendar

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
CAL = WorkingCalendar(years=range(2025, 2028))
H = timedelta(hours=1)
M = timedelta(minutes=1)


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=TZ)


# -- days (rule 1) -------------------------------------------------------------------------------


@pytest.mark.parametrize("day", [16, 17, 18, 19, 20])
def test_tet_2026_is_off_from_16_to_20_february(day: int) -> None:
    assert not CAL.is_working_day(date(2026, 2, day))


def test_days_around_tet_2026_are_working_days() -> None:
    assert CAL.is_working_day(date(2026, 2, 13))  # Friday before
    assert CAL.is_working_day(date(2026, 2, 23))  # Monday after


def test_hung_kings_2026_falls_on_sunday_and_is_observed_on_monday() -> None:
    # 10th day of the 3rd lunar month 2026 = Sunday 26 April; the day off moves to Monday 27.
    assert not CAL.is_working_day(date(2026, 4, 27))
    assert CAL.is_working_day(date(2026, 4, 28))
    assert not CAL.is_working_day(date(2026, 4, 30))
    assert not CAL.is_working_day(date(2026, 5, 1))


def test_saturday_22_august_2026_is_a_working_day_swapped_for_monday_31() -> None:
    assert CAL.is_working_day(date(2026, 8, 22))
    assert not CAL.is_working_day(date(2026, 8, 23))  # the Sunday stays off
    assert not CAL.is_working_day(date(2026, 8, 31))
    assert not CAL.is_working_day(date(2026, 9, 1))
    assert not CAL.is_working_day(date(2026, 9, 2))
    assert CAL.is_working_day(date(2026, 9, 3))


def test_vietnam_cultural_day_24_november_2026_is_off() -> None:
    assert not CAL.is_working_day(date(2026, 11, 24))
    assert CAL.holiday_name(date(2026, 11, 24)) == "Ngày Văn hóa Việt Nam"


def test_ordinary_weekends_are_off_and_weekdays_on() -> None:
    assert not CAL.is_working_day(date(2026, 6, 6))  # Saturday
    assert not CAL.is_working_day(date(2026, 6, 7))  # Sunday
    assert CAL.is_working_day(date(2026, 6, 8))


def test_extra_days_off_and_extra_working_days_override_the_national_calendar() -> None:
    cal = WorkingCalendar(extra_days_off=[date(2026, 6, 8)],
                          extra_working_days=[date(2026, 6, 6), date(2026, 2, 18)])
    assert not cal.is_working_day(date(2026, 6, 8))
    assert cal.is_working_day(date(2026, 6, 6))
    assert cal.is_working_day(date(2026, 2, 18))


def test_a_date_both_off_and_working_is_refused() -> None:
    with pytest.raises(ValueError, match="2026-06-08"):
        WorkingCalendar(extra_days_off=[date(2026, 6, 8)], extra_working_days=[date(2026, 6, 8)])


def test_overlapping_or_inverted_office_hours_are_refused() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        WorkingCalendar(office_hours=[(time(8), time(12)), (time(11), time(17))])
    with pytest.raises(ValueError, match="closes before"):
        WorkingCalendar(office_hours=[(time(12), time(8))])


# -- instants (rule 3) ---------------------------------------------------------------------------


def test_day_length_is_the_total_of_office_hours() -> None:
    assert CAL.day_length == 8 * H
    assert WorkingCalendar(office_hours=[(time(8), time(11, 30))]).day_length == 3.5 * H


def test_working_instants_are_inside_open_close_half_open() -> None:
    assert CAL.is_working_instant(at(2026, 6, 8, 7, 30))
    assert CAL.is_working_instant(at(2026, 6, 8, 11, 29))
    assert not CAL.is_working_instant(at(2026, 6, 8, 11, 30))  # lunch starts at the close
    assert not CAL.is_working_instant(at(2026, 6, 8, 12, 0))
    assert CAL.is_working_instant(at(2026, 6, 8, 13, 0))
    assert not CAL.is_working_instant(at(2026, 6, 8, 17, 0))
    assert not CAL.is_working_instant(at(2026, 2, 17, 9, 0))  # Tết


def test_next_opening_is_the_instant_itself_inside_a_window() -> None:
    t = at(2026, 6, 8, 9, 15)
    assert CAL.next_opening(t) == t


def test_next_opening_at_a_window_end_is_the_next_window() -> None:
    assert CAL.next_opening(at(2026, 6, 8, 11, 30)) == at(2026, 6, 8, 13, 0)
    assert CAL.next_opening(at(2026, 6, 8, 17, 0)) == at(2026, 6, 9, 7, 30)


def test_next_opening_from_friday_evening_before_the_swapped_saturday_is_saturday() -> None:
    assert CAL.next_opening(at(2026, 8, 21, 17, 0)) == at(2026, 8, 22, 7, 30)


def test_next_opening_accepts_instants_in_other_zones() -> None:
    # 2026-06-08 00:45 UTC is 07:45 in Hà Nội: inside the morning window.
    t = datetime(2026, 6, 8, 0, 45, tzinfo=ZoneInfo("UTC"))
    assert CAL.next_opening(t) == t
    assert CAL.next_opening(datetime(2026, 6, 8, 0, 15, tzinfo=ZoneInfo("UTC"))) == at(
        2026, 6, 8, 7, 30
    )


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        CAL.add_working_time(datetime(2026, 6, 8, 9), H)


# -- adding working time -------------------------------------------------------------------------


def test_a_dossier_received_at_1655_on_the_friday_before_tet_2026() -> None:
    # Fri 13 Feb 16:55 + 8 h: 5 min on Friday; 14-22 Feb off (weekend, Tết 16-20, weekend);
    # Mon 23 Feb: 7 h 55 = 4 h (07:30-11:30) + 3 h 55 from 13:00 -> 16:55.
    assert CAL.add_working_time(at(2026, 2, 13, 16, 55), 8 * H) == at(2026, 2, 23, 16, 55)


def test_five_working_days_across_tet_2026() -> None:
    # Thu 12 Feb 09:00 + 5 days (40 h): Thu 6.5 h (09:00-11:30, 13:00-17:00), Fri 13 8 h (14.5),
    # Mon 23, Tue 24, Wed 25 (38.5); Thu 26: 1.5 h more -> 09:00.
    assert CAL.add_working_time(at(2026, 2, 12, 9), 5 * CAL.day_length) == at(2026, 2, 26, 9)


def test_hung_kings_2026_and_30_april_1_may() -> None:
    # Fri 24 Apr 13:00 + 2 days (16 h): Fri 4 h; Mon 27 off (Hùng Kings observed);
    # Tue 28 8 h (12); Wed 29: 4 h -> 11:30 exactly, the close, not 13:00.
    assert CAL.add_working_time(at(2026, 4, 24, 13), 16 * H) == at(2026, 4, 29, 11, 30)
    # Wed 29 Apr 13:00 + 1 day: Wed 4 h; Thu 30, Fri 1, weekend off; Mon 4 May 4 h -> 11:30.
    assert CAL.add_working_time(at(2026, 4, 29, 13), 8 * H) == at(2026, 5, 4, 11, 30)


def test_the_swapped_working_saturday_22_august_2026_counts() -> None:
    # Fri 21 Aug 13:00 + 1 day: Fri 4 h; Sat 22 is a working day: 4 h -> 11:30 on Saturday.
    assert CAL.add_working_time(at(2026, 8, 21, 13), 8 * H) == at(2026, 8, 22, 11, 30)


def test_national_day_2026_with_the_swapped_monday_31_august() -> None:
    # Fri 28 Aug 13:00 + 1 day: Fri 4 h; 29-30 weekend, 31 Aug (swapped), 1-2 Sep off;
    # Thu 3 Sep: 4 h -> 11:30.
    assert CAL.add_working_time(at(2026, 8, 28, 13), 8 * H) == at(2026, 9, 3, 11, 30)


def test_a_due_landing_on_1700_stays_at_1700() -> None:
    assert CAL.add_working_time(at(2026, 6, 8, 7, 30), 8 * H) == at(2026, 6, 8, 17, 0)
    # Mon 13:00 + 4 h ends exactly at the close, never at Tuesday's 07:30.
    assert CAL.add_working_time(at(2026, 6, 8, 13), 4 * H) == at(2026, 6, 8, 17, 0)


def test_a_start_at_1700_starts_at_the_next_opening() -> None:
    # 17:00 is a window's end: the clock starts Tue 07:30; + 1 h -> 08:30.
    assert CAL.add_working_time(at(2026, 6, 8, 17, 0), H) == at(2026, 6, 9, 8, 30)


def test_the_lunch_break_is_not_working_time() -> None:
    # Mon 11:00 + 1 h: 30 min to 11:30, lunch, 30 min from 13:00 -> 13:30.
    assert CAL.add_working_time(at(2026, 6, 8, 11), H) == at(2026, 6, 8, 13, 30)
    # Starting during lunch: the clock starts at 13:00.
    assert CAL.add_working_time(at(2026, 6, 8, 12, 10), 30 * M) == at(2026, 6, 8, 13, 30)


def test_an_online_dossier_received_sunday_night_starts_monday_morning() -> None:
    # Sun 7 Jun 22:40 -> Mon 8 Jun 07:30; + 0.5 day (4 h) -> 11:30.
    assert CAL.add_working_time(at(2026, 6, 7, 22, 40), 0.5 * CAL.day_length) == at(
        2026, 6, 8, 11, 30
    )


def test_fractions_of_days_and_seconds_are_exact() -> None:
    # 0.25 day = 2 h; 07:30 + 2 h 0 min 30 s.
    assert CAL.add_working_time(at(2026, 6, 8, 7, 30), 0.25 * CAL.day_length + timedelta(
        seconds=30)) == datetime(2026, 6, 8, 9, 30, 30, tzinfo=TZ)


def test_zero_working_time_returns_the_start_unchanged() -> None:
    t = at(2026, 6, 6, 23, 0)  # a Saturday night
    assert CAL.add_working_time(t, timedelta(0)) is t


def test_negative_working_time_is_refused() -> None:
    with pytest.raises(ValueError):
        CAL.add_working_time(at(2026, 6, 8, 9), -H)


def test_adding_across_new_year_skips_1_january() -> None:
    # Wed 31 Dec 2025 16:00 + 2 h: 1 h on Wednesday; Thu 1 Jan off; Fri 2 Jan 1 h -> 08:30.
    assert CAL.add_working_time(at(2025, 12, 31, 16), 2 * H) == at(2026, 1, 2, 8, 30)


def test_a_province_day_off_moves_the_due() -> None:
    start = at(2026, 6, 8, 9)
    late = CAL.with_changes(extra_days_off=[date(2026, 6, 9)])
    # Mon 09:00 + 1 day: Mon 6.5 h; Tue 1.5 h -> 09:00; with Tuesday off, Wed 09:00.
    assert CAL.add_working_time(start, 8 * H) == at(2026, 6, 9, 9)
    assert late.add_working_time(start, 8 * H) == at(2026, 6, 10, 9)
    assert late.extra_days_off == {date(2026, 6, 9)}


def test_a_later_announcement_wins_over_an_earlier_one() -> None:
    cal = WorkingCalendar(extra_working_days=[date(2026, 6, 6)])
    changed = cal.with_changes(extra_days_off=[date(2026, 6, 6)])
    assert not changed.is_working_day(date(2026, 6, 6))
    assert changed.with_changes(extra_working_days=[date(2026, 6, 6)]).is_working_day(
        date(2026, 6, 6))


def test_due_dates_decades_ahead_still_compute() -> None:
    # 250 working days of 8 h from 2026 lands in 2027; years are built on demand.
    due = CAL.add_working_time(at(2026, 6, 8, 9), 250 * CAL.day_length)
    assert due.year == 2027
    assert CAL.working_time_between(at(2026, 6, 8, 9), due) == 250 * CAL.day_length


# -- measuring working time ----------------------------------------------------------------------


def test_working_time_between_counts_only_windows() -> None:
    # Fri 13 Feb 16:00 -> Mon 23 Feb 08:00: 1 h + 30 min.
    assert CAL.working_time_between(at(2026, 2, 13, 16), at(2026, 2, 23, 8)) == 90 * M
    assert CAL.working_time_between(at(2026, 6, 8, 11), at(2026, 6, 8, 13, 30)) == H


def test_working_time_between_is_zero_backwards() -> None:
    assert CAL.working_time_between(at(2026, 6, 9), at(2026, 6, 8)) == timedelta(0)


def test_first_opening_after_a_date_skips_days_off() -> None:
    assert CAL.first_opening_after(date(2026, 2, 13)) == at(2026, 2, 23, 7, 30)
    assert CAL.first_opening_after(date(2026, 8, 21)) == at(2026, 8, 22, 7, 30)


def test_windows_on_a_day_off_are_empty() -> None:
    assert CAL.windows_on(date(2026, 2, 17)) == ()
    assert CAL.windows_on(date(2026, 6, 8))[1] == (at(2026, 6, 8, 13), at(2026, 6, 8, 17))


# -- properties ----------------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(2025, 11, 1), max_value=datetime(2027, 3, 1)
).map(lambda t: t.replace(tzinfo=TZ))
amounts = st.integers(min_value=0, max_value=40 * 8 * 3600 * 10**6).map(
    lambda us: timedelta(microseconds=us)
)


@settings(max_examples=300, deadline=None)
@given(start=instants, amount=amounts)
def test_adding_then_measuring_gives_back_the_amount(start: datetime, amount: timedelta) -> None:
    due = CAL.add_working_time(start, amount)
    assert CAL.working_time_between(start, due) == amount


@settings(max_examples=300, deadline=None)
@given(start=instants, amount=amounts.filter(bool))
def test_a_due_is_never_outside_working_time_except_at_a_window_end(
    start: datetime, amount: timedelta
) -> None:
    due = CAL.add_working_time(start, amount)
    before = due - timedelta(microseconds=1)
    assert CAL.is_working_instant(due) or CAL.is_working_instant(before)
    assert due > start


@settings(max_examples=300, deadline=None)
@given(start=instants, a=amounts, b=amounts)
def test_adding_is_monotonic_in_the_amount(start: datetime, a: timedelta, b: timedelta) -> None:
    small, large = sorted((a, b))
    assert CAL.add_working_time(start, small) <= CAL.add_working_time(start, large)


@settings(max_examples=300, deadline=None)
@given(s=instants, t=instants, amount=amounts.filter(bool))
def test_adding_is_monotonic_in_the_start(s: datetime, t: datetime, amount: timedelta) -> None:
    early, late = sorted((s, t))
    assert CAL.add_working_time(early, amount) <= CAL.add_working_time(late, amount)


@settings(max_examples=300, deadline=None)
@given(a=instants, b=instants, c=instants)
def test_working_time_between_adds_up(a: datetime, b: datetime, c: datetime) -> None:
    a, b, c = sorted((a, b, c))
    assert (CAL.working_time_between(a, b) + CAL.working_time_between(b, c)
            == CAL.working_time_between(a, c))


@settings(max_examples=200, deadline=None)
@given(t=instants)
def test_next_opening_is_a_working_instant_with_no_working_time_before_it(t: datetime) -> None:
    opening = CAL.next_opening(t)
    assert CAL.is_working_instant(opening)
    assert opening >= t
    assert CAL.working_time_between(t, opening) == timedelta(0)
