"""A province day that unfolds now: where the demo's day starts and what the hub knows then."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from lienthong.connectors.simulator.day import (
    day_prefix,
    demo_start,
    planned_dossiers,
    resumed_origin,
    split_at,
    working_days_before,
)
from lienthong.connectors.simulator.generate import plan
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.domain.replay import replay

CATALOGUE = load_catalogue(Path(__file__).parents[2] / "examples" / "province-h99.yaml")
CAL = CATALOGUE.calendar
TZ = CAL.tz


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def test_on_a_working_morning_the_day_starts_at_this_mornings_opening() -> None:
    # Thursday 3 December 2026, 11:48: the office opened at 07:30.
    assert demo_start(CAL, at("2026-12-03T11:48")) == at("2026-12-03T07:30")
    assert demo_start(CAL, at("2026-12-03T07:30")) == at("2026-12-03T07:30")


def test_before_opening_or_at_the_weekend_it_is_the_last_working_morning() -> None:
    # 06:00 Thursday: Wednesday's opening. Sunday 6 December: Friday the 4th.
    assert demo_start(CAL, at("2026-12-03T06:00")) == at("2026-12-02T07:30")
    assert demo_start(CAL, at("2026-12-06T15:00")) == at("2026-12-04T07:30")


def test_over_the_national_day_holiday_it_is_the_morning_before() -> None:
    # 2 September 2026 (National Day, a Wednesday) and 1 September (its bridging day, per the
    # holidays package) are days off: Monday 31 August is the last working morning.
    start = demo_start(CAL, at("2026-09-02T10:00"))
    assert CAL.is_working_day(start.date())
    assert start.date() < date(2026, 9, 2)
    assert start.timetz().replace(tzinfo=None).isoformat() == "07:30:00"


@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)))
@settings(max_examples=200, deadline=None)
def test_the_start_is_an_opening_of_a_working_day_at_most_a_week_and_a_half_back(
        naive: datetime) -> None:
    now = naive.replace(tzinfo=TZ)
    start = demo_start(CAL, now)
    assert start <= now
    assert CAL.is_working_day(start.date())
    assert start == CAL.windows_on(start.date())[0][0]
    assert now - start < timedelta(days=11)  # Tết is the longest break
    # and no later working morning lies between the start and now
    d = start.date() + timedelta(days=1)
    while d <= now.date():
        windows = CAL.windows_on(d)
        assert not windows or windows[0][0] > now
        d += timedelta(days=1)


def test_working_days_before_skips_weekends_and_holidays() -> None:
    # Thursday 3 December back 8 working days: 2, 1 Dec, 30, 27, 26, 25, 23 (24 November is
    # Vietnam Culture Day, a day off from 2026), 20 November (Friday).
    assert working_days_before(CAL, at("2026-12-03T07:30"), 8) == at("2026-11-20T07:30")
    assert working_days_before(CAL, at("2026-12-03T07:30"), 0) == at("2026-12-03T07:30")


def test_planned_dossiers_cover_the_backlog_and_live_days() -> None:
    # 30 an hour, 8 working hours, 8 + 2 days: 2,400 dossiers.
    assert planned_dossiers(30, CAL, backlog_days=8, live_days=2) == 2400


def _ev(dossier: str, when: str, etype: str = "handoff") -> dict[str, str]:
    return {"dossier": dossier, "at": f"{when}:00+07:00", "type": etype}


def test_a_dossier_finished_before_the_start_is_left_out_and_open_ones_keep_their_history(
) -> None:
    start = at("2026-12-03T07:30")
    events = [_ev("A", "2026-12-01T08:00", "received"), _ev("B", "2026-12-01T09:00", "received"),
              _ev("A", "2026-12-02T10:00", "returned"), _ev("B", "2026-12-02T11:00"),
              _ev("C", "2026-12-03T07:30", "received"), _ev("B", "2026-12-03T09:00"),
              _ev("C", "2026-12-03T10:00")]
    day = split_at(events, start)
    # C was received at the start instant itself: that is already known when the day starts.
    assert [e["dossier"] for e in day.backlog] == ["B", "B", "C"]
    assert [(e["dossier"], e["at"][11:16]) for e in day.live] == [("B", "09:00"),
                                                                  ("C", "10:00")]
    assert day.finished_before == 1  # A: returned before the start
    assert day.open_at_start() == 2


def test_an_event_exactly_at_the_start_belongs_to_the_backlog_of_an_open_dossier() -> None:
    start = at("2026-12-03T07:30")
    day = split_at([_ev("C", "2026-12-03T07:30", "received"), _ev("C", "2026-12-03T08:00")],
                   start)
    assert [e["at"][11:16] for e in day.backlog] == ["07:30"]
    assert [e["at"][11:16] for e in day.live] == ["08:00"]


def test_the_morning_backlog_is_a_realistic_mix_not_an_all_red_board() -> None:
    # The plan ``lienthong up`` sends by default (30 dossiers an hour, 8 backlog days), judged
    # by the core at the start: many dossiers open, a small share overdue, none rejected.
    start = at("2026-12-03T07:30")
    events = plan(CATALOGUE, seed=1, start=working_days_before(CAL, start, 8),
                  dossiers=planned_dossiers(30, CAL, backlog_days=8, live_days=2),
                  per_working_hour=30)
    day = split_at(events, start)
    import json
    report, rejected = replay([json.dumps(e) for e in day.backlog], CATALOGUE, start)
    assert rejected == []
    outcomes = [d["outcome"] for d in report["dossiers"]]
    open_steps = [s for d in report["dossiers"] for s in d["steps"] if s["ended_at"] is None]
    overdue_steps = [s for s in open_steps if s["outcome"] == "overdue"]
    assert outcomes.count("open") > 500
    assert 0 < len(overdue_steps) < 0.1 * len(open_steps)
    assert outcomes.count("overdue") < 0.05 * len(outcomes)
    # and the day goes on: hundreds of live events in its first working hour
    first_hour = [e for e in day.live if datetime.fromisoformat(e["at"]) <= start
                  + timedelta(hours=1)]
    assert len(first_hour) > 100


def test_each_demo_day_and_plan_has_its_own_topics() -> None:
    thursday, friday = at("2026-12-03T07:30"), at("2026-12-04T07:30")
    assert day_prefix(thursday).startswith("demo20261203-")
    assert day_prefix(thursday) == day_prefix(thursday)
    assert day_prefix(thursday) != day_prefix(friday)
    assert day_prefix(thursday, "30/8/None") != day_prefix(thursday, "15/3/None")
    assert re.fullmatch(r"demo\d{8}-[0-9a-f]{6}\.", day_prefix(thursday))


def test_a_restarted_day_resumes_where_it_got_to_and_another_day_starts_afresh() -> None:
    start = at("2026-12-03T07:30")
    reached = {"start": start.isoformat(), "reached": "2026-12-03T11:42:10+07:00"}
    assert resumed_origin(reached, start) == at("2026-12-03T11:42:10")
    assert resumed_origin(reached, at("2026-12-04T07:30")) == at("2026-12-04T07:30")
    assert resumed_origin(None, start) == start
    for broken in ({"start": start.isoformat()}, {"start": "x", "reached": "y"},
                   {"start": start.isoformat(), "reached": "2026-12-03T11:42:10"},
                   {"start": start.isoformat(), "reached": "2026-12-03T07:00:00+07:00"}):
        assert resumed_origin(broken, start) == start
