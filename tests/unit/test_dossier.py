"""The deadline engine, rule by rule (DESIGN section 6), with hand-worked 2026 arithmetic.

Office hours 07:30-11:30 and 13:00-17:00 (8 h a day), Monday-Friday. 2026 days off used here:
Tết Monday 16 - Friday 20 February; Hùng Kings Sunday 26 April, observed Monday 27 April;
Thursday 30 April and Friday 1 May; Saturday 22 August is a working day (swapped for Monday
31 August); 1-2 September.
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lienthong.services.domain.alerts import Alert
from lienthong.services.domain.catalogue import Catalogue, parse_catalogue
from lienthong.services.domain.dossier import (
    SKIPPED,
    Applied,
    DossierState,
    Rejected,
    apply_event,
    late_for_statistics,
    mark_fired,
    next_alarm,
    recompute,
    report,
    time_alerts,
)
from lienthong.services.domain.events import Event, parse_event

ICT = timezone(timedelta(hours=7))
DESK = "000.00.15.H99"  # commune one-stop desk (receiving agency)
POLICE = "000.02.10.H99"
BHXH = "000.03.10.H99"  # social insurance
BUILD = "000.00.04.H99"  # department of construction
PROVINCE = "000.00.00.H99"
CODE = "000.00.15.H99-20260105-0000001"

CATALOGUE_DATA: dict[str, Any] = {
    "province": {"code": "H99", "name": "Tỉnh Mẫu"},
    "calendar": {"due_soon_hours": 4},
    "agencies": [
        {"code": PROVINCE, "name": "UBND tỉnh Mẫu", "level": "province"},
        {"code": BUILD, "name": "Sở Xây dựng", "level": "department", "parent": PROVINCE},
        {"code": POLICE, "name": "Công an tỉnh", "level": "vertical", "parent": PROVINCE},
        {"code": BHXH, "name": "Bảo hiểm xã hội tỉnh", "level": "vertical", "parent": PROVINCE},
        {"code": DESK, "name": "UBND xã Hòa Bình", "level": "commune", "parent": PROVINCE},
        {"code": "VNPOST", "name": "Bưu điện tỉnh", "level": "system"},
        {"code": "DVCQG", "name": "Cổng DVC quốc gia", "level": "system"},
    ],
    "procedures": [
        {"code": "1.001193", "name": "Liên thông khai sinh", "total": {"days": 5},
         "steps": [{"agency": "@receiving", "allot": {"hours": 4}},
                   {"agency": POLICE, "allot": {"days": 2}},
                   {"agency": BHXH, "allot": {"days": 2}},
                   {"agency": "@receiving", "allot": {"hours": 4}}]},
        {"code": "2.000815", "name": "Chứng thực bản sao", "total": {"hours": 4},
         "same_day_cutoff": "15:00",
         "steps": [{"agency": "@receiving", "allot": {"hours": 4}}]},
        {"code": "1.009972", "name": "Cấp giấy phép xây dựng", "total": {"days": 15},
         "on_supplement": "restart",
         "steps": [{"agency": "@receiving", "allot": {"hours": 4}},
                   {"agency": BUILD, "allot": {"days": 14}},
                   {"agency": "@receiving", "allot": {"hours": 4}}]},
        # total shorter than its steps: a dossier late although no step overran
        {"code": "9.000001", "name": "Thủ tục thử", "total": {"hours": 4},
         "steps": [{"agency": "@receiving", "allot": {"hours": 4}},
                   {"agency": POLICE, "allot": {"hours": 4}}]},
    ],
}


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return parse_catalogue(CATALOGUE_DATA)


def T(text: str) -> datetime:
    """'2026-01-09 16:00' in the province's time."""
    return datetime.fromisoformat(text).replace(tzinfo=ICT)


_ids = itertools.count(1)


def ev(etype: str, at: str, agency: str, dossier: str = CODE, **extra: Any) -> Event:
    defaults: dict[str, Any] = {
        "received": {"procedure": "1.001193", "channel": "desk", "applicant": {"name": "Lê B"}},
        "supplement_requested": {"reason": "thiếu giấy"},
        "obligation_requested": {"amount_vnd": 100000},
        "obligation_paid": {"amount_vnd": 100000},
        "result_ready": {"decision": "approved"},
        "returned": {"channel": "desk"},
        "withdrawn": {"reason": "rút"},
        "stopped": {"reason": "dừng"},
        "apology_issued": {"reason": "quá tải"},
    }.get(etype, {})
    data = {"event_id": str(uuid.UUID(int=next(_ids))), "type": etype, "dossier": dossier,
            "at": T(at).isoformat(), "agency": agency, **defaults, **extra}
    return parse_event(data)


class Run:
    """Applies events in order like replay does; collects alerts and deliveries."""

    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat
        self.state: DossierState | None = None
        self.alerts: list[Alert] = []
        self.deliveries: list[Any] = []

    def __call__(self, *events: Event) -> Run:
        for e in events:
            d = apply_event(self.state, e, self.cat)
            assert isinstance(d, Applied), d
            self.state = d.state
            self.alerts += d.alerts
            self.deliveries += d.deliveries
        return self

    @property
    def s(self) -> DossierState:
        assert self.state is not None
        return self.state

    def until(self, at: str) -> list[Alert]:
        due = time_alerts(self.s, self.cat, T(at))
        mark_fired(self.s, due)
        self.alerts += due
        return due

    def report(self, now: str) -> dict[str, Any]:
        return report(self.s, self.cat, T(now))

    def kinds(self) -> list[tuple[str, str, str, str]]:
        return [(a.kind, a.scope, a.agency, a.at.astimezone(ICT).strftime("%m-%d %H:%M"))
                for a in self.alerts]


def iso(text: str) -> str:
    return T(text).isoformat()


# -- rule 3: clock starts and due instants -----------------------------------------------------

def test_received_friday_1600_first_step_due_monday_1030_dossier_due_next_friday(cat) -> None:
    # Step: 4 h from Fri 9 Jan 16:00 = 1 h (16:00-17:00) + 3 h Mon 12 Jan 07:30-10:30.
    # Dossier: 5 days = 40 h = 1 h Fri + 32 h Mon-Thu + 7 h Fri 16 Jan (4 h + 13:00-16:00).
    r = Run(cat)(ev("received", "2026-01-09 16:00", DESK))
    row = r.report("2026-01-09 16:00")
    assert row["received_at"] == iso("2026-01-09 16:00")
    assert row["steps"][0]["due_at"] == iso("2026-01-12 10:30")
    assert row["due_at"] == iso("2026-01-16 16:00")
    assert row["outcome"] == "open" and row["late_agencies"] == []


def test_a_due_landing_on_a_window_end_is_that_end_not_the_next_opening(cat) -> None:
    # Received Mon 5 Jan 13:00; step 4 h = 13:00-17:00 -> due Mon 17:00, not Tue 07:30.
    r = Run(cat)(ev("received", "2026-01-05 13:00", DESK))
    assert r.s.steps[0].clock.due == T("2026-01-05 17:00")
    # ...and 11:30 likewise: received 07:30 -> 4 h -> 11:30 sharp.
    r2 = Run(cat)(ev("received", "2026-01-06 07:30", DESK))
    assert r2.s.steps[0].clock.due == T("2026-01-06 11:30")


def test_a_dossier_received_at_exactly_1700_friday_starts_monday_0730(cat) -> None:
    # 17:00 is a window's end: the clock starts Mon 12 Jan 07:30; 4 h -> 11:30.
    r = Run(cat)(ev("received", "2026-01-09 17:00", DESK))
    assert r.s.steps[0].clock.due == T("2026-01-12 11:30")


def test_received_1655_friday_counts_five_minutes_then_monday(cat) -> None:
    # 5 min Friday; 3 h 55 min from Mon 07:30 -> 11:25.
    r = Run(cat)(ev("received", "2026-01-09 16:55", DESK))
    assert r.s.steps[0].clock.due == T("2026-01-12 11:25")


def test_an_online_dossier_received_sunday_night_starts_monday_morning(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-11 22:40", DESK, channel="online"))
    assert r.s.steps[0].clock.due == T("2026-01-12 11:30")
    # 5 working days from Mon 07:30 -> Fri 16 Jan 17:00 (a window end).
    assert r.s.clock.due == T("2026-01-16 17:00")


def test_tet_2026_is_skipped(cat) -> None:
    # Fri 13 Feb 16:00: 1 h Friday; Mon 16 - Fri 20 Feb is Tết; Mon 23 Feb 07:30 + 3 h = 10:30.
    # Dossier 40 h: 1 h + Mon 23-Thu 26 (32 h) + 7 h Fri 27 -> 16:00.
    r = Run(cat)(ev("received", "2026-02-13 16:00", DESK))
    assert r.s.steps[0].clock.due == T("2026-02-23 10:30")
    assert r.s.clock.due == T("2026-02-27 16:00")


def test_hung_kings_observed_monday_27_april_is_skipped(cat) -> None:
    # Police gets the dossier Fri 24 Apr 10:00 with 2 days (16 h): Fri 1.5 h + 4 h = 5.5 h;
    # Mon 27 (Hùng Kings observed) off; Tue 28: 8 h -> 13.5 h; Wed 29: 2.5 h -> 10:00.
    r = Run(cat)(ev("received", "2026-04-24 09:00", DESK),
                 ev("handoff", "2026-04-24 10:00", DESK, to_agency=POLICE))
    assert r.s.steps[1].clock.due == T("2026-04-29 10:00")
    # Then 30 April and 1 May are off too: BHXH from Wed 29 Apr 09:00, 16 h:
    # Wed 2.5 h + 4 h = 6.5 h; Thu 30, Fri 1, weekend off; Mon 4 May 8 h -> 14.5 h; Tue 5 May
    # 07:30 + 1.5 h = 09:00.
    r(ev("handoff", "2026-04-29 09:00", POLICE, to_agency=BHXH))
    assert r.s.steps[2].clock.due == T("2026-05-05 09:00")


def test_the_swapped_working_saturday_22_august_counts_and_31_august_does_not(cat) -> None:
    # Police from Fri 21 Aug 09:00, 16 h: Fri 2.5 + 4 = 6.5 h; Sat 22 (working) 8 h -> 14.5 h;
    # Mon 24 Aug 07:30 + 1.5 h = 09:00.
    r = Run(cat)(ev("received", "2026-08-21 08:00", DESK),
                 ev("handoff", "2026-08-21 09:00", DESK, to_agency=POLICE))
    assert r.s.steps[1].clock.due == T("2026-08-24 09:00")
    # BHXH from Fri 28 Aug 13:00, 16 h: Fri 4 h; Mon 31 Aug, Tue 1 and Wed 2 Sep off;
    # Thu 3 Sep 8 h -> 12 h; Fri 4 Sep 07:30 + 4 h = 11:30.
    r(ev("handoff", "2026-08-28 13:00", POLICE, to_agency=BHXH))
    assert r.s.steps[2].clock.due == T("2026-09-04 11:30")


# -- rule 4: same-day cut-off ------------------------------------------------------------------

def test_same_day_procedure_received_at_1505_starts_next_working_day(cat) -> None:
    # Cut-off 15:00: received Fri 9 Jan 15:05 -> clock starts Mon 12 Jan 07:30; 4 h -> 11:30.
    r = Run(cat)(ev("received", "2026-01-09 15:05", DESK, procedure="2.000815"))
    assert r.s.clock.due == T("2026-01-12 11:30")
    assert r.s.steps[0].clock.due == T("2026-01-12 11:30")  # choice 2: the step starts with it
    assert r.report("2026-01-09 15:05")["received_at"] == iso("2026-01-09 15:05")


def test_same_day_procedure_received_before_the_cut_off_runs_the_same_day(cat) -> None:
    # 14:59 + 4 h = 2 h 01 min Friday + 1 h 59 min Monday -> Mon 09:29.
    r = Run(cat)(ev("received", "2026-01-09 14:59", DESK, procedure="2.000815"))
    assert r.s.clock.due == T("2026-01-12 09:29")


def test_the_cut_off_applies_on_any_calendar_day(cat) -> None:
    # Saturday 16:00 is after 15:00: the next working day after Saturday is Monday.
    r = Run(cat)(ev("received", "2026-01-10 16:00", DESK, procedure="2.000815"))
    assert r.s.clock.due == T("2026-01-12 11:30")
    # Before Tết: Friday 13 Feb 15:30 -> Monday 23 Feb 07:30 + 4 h.
    r2 = Run(cat)(ev("received", "2026-02-13 15:30", DESK, procedure="2.000815"))
    assert r2.s.clock.due == T("2026-02-23 11:30")


# -- rules 5, 6: steps and the route -----------------------------------------------------------

def test_hand_offs_follow_the_route_and_each_step_starts_at_its_hand_off(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 10:00", DESK, to_agency=POLICE))
    assert [s.agency for s in r.s.steps] == [DESK, POLICE]
    assert r.s.position == 1 and r.s.holder == POLICE
    # Police: 16 h from Mon 10:00 -> Mon 5.5 h, Tue 8 h, Wed 07:30 + 2.5 h = 10:00.
    row = r.report("2026-01-05 10:00")
    assert row["steps"][1] == {"agency": POLICE, "started_at": iso("2026-01-05 10:00"),
                               "due_at": iso("2026-01-07 10:00"), "ended_at": None,
                               "outcome": "open"}
    assert row["steps"][0]["ended_at"] == iso("2026-01-05 10:00")
    assert row["steps"][0]["outcome"] == "on_time"
    assert not [a for a in r.alerts if a.kind == "unexpected_recipient"]


def test_a_hand_off_off_the_route_is_flagged_and_takes_the_later_steps_allotment(cat) -> None:
    # Desk skips the police and sends to BHXH (route step 3, 2 days).
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 10:00", DESK, to_agency=BHXH))
    assert r.s.steps[1].clock.due == T("2026-01-07 10:00")
    assert r.s.position == 2
    (alert,) = [a for a in r.alerts if a.kind == "unexpected_recipient"]
    assert (alert.scope, alert.agency, alert.due_at) == ("dossier", BHXH, None)
    # The route continues from there: BHXH -> desk is the expected next step.
    r(ev("handoff", "2026-01-06 10:00", BHXH, to_agency=DESK))
    assert r.s.position == 3 and len([a for a in r.alerts
                                      if a.kind == "unexpected_recipient"]) == 1


def test_a_recipient_not_on_the_rest_of_the_route_gets_a_zero_allotment(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 10:00", DESK, to_agency=PROVINCE))
    step = r.s.steps[1]
    assert step.clock.due == T("2026-01-05 10:00") and step.unexpected
    assert r.s.position == 0  # choice 4
    # zero allotment: due at its clock start, overdue right then, never a due_soon
    r.until("2026-01-05 10:00")
    step_alerts = [a for a in r.alerts if a.scope == "step" and a.step == 1]
    assert [(a.kind, a.at) for a in step_alerts] == [("overdue", T("2026-01-05 10:00"))]


def test_a_zero_allotment_step_out_of_hours_is_due_at_the_next_opening(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 18:00", DESK, to_agency=PROVINCE))
    assert r.s.steps[1].clock.due == T("2026-01-06 07:30")


# -- rule 7: pauses ----------------------------------------------------------------------------

def test_a_supplement_request_pauses_both_clocks_and_the_remainder_carries_on(cat) -> None:
    # Received Mon 5 Jan 08:00: step due Mon 13:30 (3.5 h + 0.5 h); dossier due Mon 12 Jan
    # 08:00 (five working days later).
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK))
    assert r.s.clock.due == T("2026-01-12 08:00")
    assert r.s.steps[0].clock.due == T("2026-01-05 13:30")
    # Paused Mon 10:00: step has 2 h left (1.5 h + 0.5 h), dossier 38 h.
    r(ev("supplement_requested", "2026-01-05 10:00", DESK))
    paused = r.report("2026-01-13 09:00")  # long after the old due, still paused
    assert paused["due_at"] == iso("2026-01-12 08:00")  # the due in force at the pause
    assert paused["outcome"] == "open"  # paused before its due: not overdue
    assert paused["steps"][0]["outcome"] == "open"
    # Resumed Thu 8 Jan 14:00: step 14:00 + 2 h = 16:00; dossier 38 h = Thu 3 h, Fri 8 h,
    # Mon 12-Tue 13 16 h (27 h), Wed 14 8 h (35 h), Thu 15 07:30 + 3 h = 10:30.
    r(ev("supplement_received", "2026-01-08 14:00", DESK))
    assert r.s.steps[0].clock.due == T("2026-01-08 16:00")
    assert r.s.clock.due == T("2026-01-15 10:30")


def test_a_supplement_request_pauses_across_tet(cat) -> None:
    # Police from Wed 11 Feb 09:00, 16 h; paused Thu 12 Feb 09:00 after 2.5 + 4 + 1.5 = 8 h,
    # 8 h left. Resumed Mon 23 Feb 08:00 (Tết week skipped anyway): 8 h -> Tue 24 Feb 08:00.
    r = Run(cat)(ev("received", "2026-02-11 08:00", DESK),
                 ev("handoff", "2026-02-11 09:00", DESK, to_agency=POLICE),
                 ev("supplement_requested", "2026-02-12 09:00", POLICE),
                 ev("supplement_received", "2026-02-23 08:00", DESK))
    assert r.s.steps[1].clock.due == T("2026-02-24 08:00")


def test_nested_pauses_resume_only_when_every_request_is_answered(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("supplement_requested", "2026-01-05 10:00", DESK),
                 ev("obligation_requested", "2026-01-06 09:00", DESK),
                 ev("supplement_received", "2026-01-07 09:00", DESK))
    assert r.s.paused and r.s.portal_status == 6
    assert r.s.steps[0].clock.run_from is None
    # Obligation paid Fri 9 Jan 13:00: the step's 2 h left run 13:00-15:00.
    r(ev("obligation_paid", "2026-01-09 13:00", DESK))
    assert not r.s.paused
    assert r.s.steps[0].clock.due == T("2026-01-09 15:00")


def test_an_answer_without_an_open_request_is_rejected(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK))
    d = apply_event(r.s, ev("obligation_paid", "2026-01-05 09:00", DESK), cat)
    assert isinstance(d, Rejected) and d.reason == "no_open_request"


def test_a_pause_beginning_after_the_due_keeps_the_due_and_raises_nothing_new(cat) -> None:
    # Step due Mon 5 Jan 13:30; paused Tue 6 Jan 09:00 (after it).
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("supplement_requested", "2026-01-06 09:00", DESK))
    assert [k[:2] for k in r.kinds()] == [("due_soon", "step"), ("overdue", "step")]
    assert r.report("2026-01-07 09:00")["steps"][0]["outcome"] == "overdue"
    r(ev("supplement_received", "2026-01-08 09:00", DESK))
    assert r.s.steps[0].clock.due == T("2026-01-05 13:30")
    r.until("2026-01-08 12:00")
    assert [k[:2] for k in r.kinds()] == [("due_soon", "step"), ("overdue", "step")]


def test_pause_waiting_after_the_due_is_not_counted_as_overrun(cat) -> None:
    # Step due Mon 13:30; paused Tue 09:00 (overrun so far: Mon 3.5 h + Tue 1.5 h = 5 h);
    # resumed Thu 09:00; handed on Thu 10:00 (1 h more): overrun 6 h, not 6 h + 2 days.
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("supplement_requested", "2026-01-06 09:00", DESK),
                 ev("supplement_received", "2026-01-08 09:00", DESK),
                 ev("handoff", "2026-01-08 10:00", DESK, to_agency=POLICE))
    step = r.s.steps[0]
    assert step.clock.overrun(cat.calendar, step.judged_at, T("2026-01-08 10:00")) == \
        timedelta(hours=6)


def test_an_item_ending_while_paused_is_judged_when_the_pause_began(cat) -> None:
    # Step due Mon 13:30, paused Mon 10:00, handed off (still paused) Wed 10:00: judged at
    # Mon 10:00, the due's date -> on_time; the new step starts paused.
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("supplement_requested", "2026-01-05 10:00", DESK),
                 ev("handoff", "2026-01-07 10:00", DESK, to_agency=POLICE))
    row = r.report("2026-01-07 10:00")
    assert row["steps"][0]["outcome"] == "on_time"
    assert row["steps"][0]["ended_at"] == iso("2026-01-07 10:00")
    police = r.s.steps[1].clock
    assert police.run_from is None and police.paused_at == T("2026-01-07 10:00")
    # Resumed Thu 8 Jan 13:00: police gets its full 16 h from then: Thu 4 h, Fri 8 h,
    # Mon 12 Jan 07:30 + 4 h = 11:30.
    r(ev("supplement_received", "2026-01-08 13:00", DESK))
    assert police.due == T("2026-01-12 11:30")


def test_a_dossier_ending_while_paused_after_its_due_is_late(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK, procedure="9.000001"),
                 ev("supplement_requested", "2026-01-06 09:00", DESK),
                 ev("withdrawn", "2026-01-09 09:00", DESK))
    row = r.report("2026-01-09 09:00")
    assert row["outcome"] == "late" and row["late_agencies"] == [DESK]


def test_restart_procedure_starts_both_clocks_from_zero_and_re_arms_due_soon(cat) -> None:
    # Construction permit (restart). Received Mon 5 Jan 08:00; request Mon 10:00 after the
    # step's due_soon (threshold min(4 h, 2 h) = 2 h -> fires Mon 10:00? no: at 2 h left,
    # 08:00 + 2 h = 10:00 - the request at that instant counts first, so it does not fire).
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK, procedure="1.009972"),
                 ev("supplement_requested", "2026-01-05 10:00", DESK),
                 ev("supplement_received", "2026-01-07 16:00", DESK))
    # Full 4 h from Wed 16:00: 1 h + Thu 07:30-10:30. Dossier 15 days = 120 h from Wed 16:00:
    # 1 h Wed, then 14 full days (Thu 8 Jan ... Tue 27 Jan) = 113 h, then 7 h Wed 28 Jan -> 16:00.
    assert r.s.steps[0].clock.due == T("2026-01-08 10:30")
    assert r.s.clock.due == T("2026-01-28 16:00")
    r.until("2026-01-08 10:30")
    # due_soon re-armed: 2 h left at Thu 08:30
    assert ("due_soon", "step", DESK, "01-08 08:30") in r.kinds()


def test_a_restart_ignores_the_same_day_cut_off(cat) -> None:
    # Same-day copies pause, but the rule is about restart; use a hand-made procedure.
    data = json.loads(json.dumps(CATALOGUE_DATA))
    data["procedures"][1]["on_supplement"] = "restart"
    c = parse_catalogue(data)
    r = Run(c)(ev("received", "2026-01-05 08:00", DESK, procedure="2.000815"),
               ev("supplement_requested", "2026-01-05 09:00", DESK),
               ev("supplement_received", "2026-01-05 16:00", DESK))
    # 16:00 is after the 15:00 cut-off, yet the restart counts from 16:00: 1 h + 3 h Tue.
    assert r.s.clock.due == T("2026-01-06 10:30")


def test_a_second_supplement_request_raises_repeat_supplement_once(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 09:00", DESK, to_agency=POLICE),
                 ev("supplement_requested", "2026-01-05 10:00", POLICE),
                 ev("supplement_received", "2026-01-05 11:00", DESK),
                 ev("supplement_requested", "2026-01-05 14:00", POLICE),
                 ev("supplement_received", "2026-01-05 15:00", DESK),
                 ev("supplement_requested", "2026-01-05 16:00", POLICE))
    repeats = [a for a in r.alerts if a.kind == "repeat_supplement"]
    assert [(a.agency, a.scope, a.due_at) for a in repeats] == [(POLICE, "dossier", None)]
    assert late_for_statistics(r.s, cat, T("2026-01-05 16:00"))
    assert r.report("2026-01-05 16:00")["outcome"] == "open"  # the plain time comparison


# -- rule 8: outcomes --------------------------------------------------------------------------

@pytest.mark.parametrize(("end", "outcome"), [
    ("2026-01-05 16:00", "early"),     # due Tue 6 Jan 10:00, ended the day before
    ("2026-01-06 08:00", "on_time"),   # the due date, before the due
    ("2026-01-06 10:00", "on_time"),   # exactly at the due
    ("2026-01-06 10:01", "late"),
])
def test_outcomes_compare_the_end_with_the_due_and_its_date(cat, end: str, outcome: str) -> None:
    # Procedure 9.000001: 4 h from Mon 5 Jan 15:30 = 1.5 h + 2.5 h Tue 07:30-10:00.
    r = Run(cat)(ev("received", "2026-01-05 15:30", DESK, procedure="9.000001"),
                 ev("result_ready", end, DESK))
    assert r.s.clock.due == T("2026-01-06 10:00")
    assert r.report(end)["outcome"] == outcome
    r.until("2026-01-10 00:00")
    assert ("overdue" in [a.kind for a in r.alerts]) == (outcome == "late")


def test_an_unended_dossier_is_overdue_once_its_due_has_passed(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 15:30", DESK, procedure="9.000001"))
    assert r.report("2026-01-06 10:00")["outcome"] == "open"
    row = r.report("2026-01-06 10:01")
    assert row["outcome"] == "overdue" and row["late_agencies"] == [DESK]


# -- rule 9: apologies -------------------------------------------------------------------------

def test_an_apology_changes_nothing_but_raises_one_more_overdue_at_its_date(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 15:30", DESK, procedure="9.000001"),
                 ev("apology_issued", "2026-01-06 10:00", DESK,
                    new_due_at=iso("2026-01-08 17:00")))
    r.until("2026-01-09 08:00")
    overdue = [(a.scope, a.due_at) for a in r.alerts if a.kind == "overdue"]
    assert ("dossier", T("2026-01-06 10:00")) in overdue  # the original due still fires
    assert ("dossier", T("2026-01-08 17:00")) in overdue  # one more at the apology date
    row = r.report("2026-01-09 08:00")
    assert row["due_at"] == iso("2026-01-06 10:00") and row["outcome"] == "overdue"
    assert not [a for a in r.alerts if a.kind == "due_soon" and a.due_at == T("2026-01-08 17:00")]


def test_an_apology_date_passed_after_the_end_raises_nothing(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 15:30", DESK, procedure="9.000001"),
                 ev("apology_issued", "2026-01-06 10:00", DESK,
                    new_due_at=iso("2026-01-08 17:00")),
                 ev("result_ready", "2026-01-08 17:00", DESK))
    r.until("2026-01-09 08:00")
    assert [(a.scope, a.due_at) for a in r.alerts if a.kind == "overdue"] == [
        ("dossier", T("2026-01-06 10:00")), ("step", T("2026-01-06 10:00"))]


# -- rule 10: lateness attribution -------------------------------------------------------------

def test_in_a_two_agency_chain_the_late_second_agency_is_blamed(cat) -> None:
    # Desk hands on in time; police (due Wed 7 Jan 10:00) hands on Fri 9 Jan 10:00: 2 days over.
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 10:00", DESK, to_agency=POLICE),
                 ev("handoff", "2026-01-09 10:00", POLICE, to_agency=BHXH),
                 ev("handoff", "2026-01-12 10:00", BHXH, to_agency=DESK),
                 ev("result_ready", "2026-01-12 14:00", DESK))
    row = r.report("2026-01-12 14:00")
    assert row["outcome"] == "late"  # due Mon 12 Jan 08:00
    assert row["late_agencies"] == [POLICE]
    assert [s["outcome"] for s in row["steps"]] == ["on_time", "late", "early", "on_time"]


def test_overruns_are_summed_per_agency_largest_first(cat) -> None:
    # Desk late 1 h (due 13:30, hands on 14:30). Police 16 h from Mon 14:30 (2.5 + 8 + 5.5 h)
    # -> due Wed 14:30, hands on 16:30: 2 h late. BHXH 16 h from Wed 16:30 (0.5 + 8 + 7.5 h)
    # -> due Fri 16:30, exactly on time. Desk 4 h from Fri 16:30 (0.5 + 3.5 h) -> due Mon
    # 11:00, result 15:00: 0.5 + 2 = 2.5 h late. Desk 3.5 h > police 2 h.
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 14:30", DESK, to_agency=POLICE),
                 ev("handoff", "2026-01-07 16:30", POLICE, to_agency=BHXH),
                 ev("handoff", "2026-01-09 16:30", BHXH, to_agency=DESK),
                 ev("result_ready", "2026-01-12 15:00", DESK))
    assert r.s.steps[3].clock.due == T("2026-01-12 11:00")
    row = r.report("2026-01-12 15:00")
    assert row["late_agencies"] == [DESK, POLICE]


def test_equal_overruns_are_listed_in_the_order_the_agencies_held_the_dossier(cat) -> None:
    # Desk on time (due 13:30). Police 16 h from Mon 13:30 (3.5 + 8 + 4.5 h) -> due Wed 13:30,
    # hands on 14:30: 1 h. BHXH 16 h from Wed 14:30 (2.5 + 8 + 5.5 h) -> due Fri 14:30, hands
    # on 15:30: 1 h. Desk 4 h from Fri 15:30 -> Mon 10:00, result then. Dossier due Mon 08:00.
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 13:30", DESK, to_agency=POLICE),
                 ev("handoff", "2026-01-07 14:30", POLICE, to_agency=BHXH),
                 ev("handoff", "2026-01-09 15:30", BHXH, to_agency=DESK),
                 ev("result_ready", "2026-01-12 10:00", DESK))
    row = r.report("2026-01-12 10:00")
    assert [s["outcome"] for s in row["steps"]] == ["on_time", "late", "late", "on_time"]
    assert row["late_agencies"] == [POLICE, BHXH]


def test_a_late_dossier_with_no_overrun_blames_the_holder_at_its_due(cat) -> None:
    # 9.000001: dossier 4 h but steps 4 h + 4 h. Received Mon 08:00 (dossier due 13:30),
    # desk hands to police at 13:00 (on time), police finishes 16:00 (due 17:00, on time).
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK, procedure="9.000001"),
                 ev("handoff", "2026-01-05 13:00", DESK, to_agency=POLICE),
                 ev("result_ready", "2026-01-05 16:00", POLICE))
    row = r.report("2026-01-05 16:00")
    assert row["outcome"] == "late"
    assert row["late_agencies"] == [POLICE]


def test_a_step_late_by_zero_working_time_has_no_overrun(cat) -> None:
    # Received Fri 9 Jan 13:00 (9.000001): due Fri 17:00; ended Saturday -> late, overrun 0;
    # the holder at the due (desk) is named.
    r = Run(cat)(ev("received", "2026-01-09 13:00", DESK, procedure="9.000001"),
                 ev("result_ready", "2026-01-10 09:00", DESK))
    row = r.report("2026-01-10 09:00")
    assert row["outcome"] == "late" and row["late_agencies"] == [DESK]
    step = r.s.steps[0]
    assert step.clock.overrun(cat.calendar, step.judged_at, T("2026-01-10 09:00")) == \
        timedelta(0)


# -- rule 11: order and authority --------------------------------------------------------------

def test_rejections_name_their_reason(cat) -> None:
    d = apply_event(None, ev("handoff", "2026-01-05 08:00", DESK, to_agency=POLICE), cat)
    assert isinstance(d, Rejected) and d.reason == "unknown_dossier"
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK))
    cases = [
        (ev("received", "2026-01-05 09:00", DESK), "duplicate_dossier"),
        (ev("handoff", "2026-01-05 07:00", DESK, to_agency=POLICE), "out_of_order"),
        (ev("handoff", "2026-01-05 09:00", POLICE, to_agency=BHXH), "not_holder"),
        (ev("handoff", "2026-01-05 09:00", DESK, to_agency=DESK), "invalid_handoff"),
        (ev("handoff", "2026-01-05 09:00", DESK, to_agency="000.99.99.H99"), "unknown_agency"),
        (ev("postal_update", "2026-01-05 09:00", DESK, tracking_number="EB1VN",
            leg="result_out", status="picked_up"), "not_holder"),
        (ev("apology_issued", "2026-01-05 09:00", DESK, new_due_at=iso("2026-01-05 08:30")),
         "invalid_apology"),
    ]
    before = r.s.to_dict()
    for event, reason in cases:
        d = apply_event(r.s, event, cat)
        assert isinstance(d, Rejected) and d.reason == reason, (event.type, d)
        assert d.detail
    assert r.s.to_dict() == before  # nothing applied


def test_future_events_are_rejected_only_when_the_hub_clock_is_given(cat) -> None:
    e = ev("received", "2026-01-05 08:06", DESK)
    d = apply_event(None, e, cat, now=T("2026-01-05 08:00"))
    assert isinstance(d, Rejected) and d.reason == "future_event"
    assert isinstance(apply_event(None, e, cat, now=T("2026-01-05 08:01")), Applied)
    assert isinstance(apply_event(None, e, cat), Applied)


def test_the_receiving_desk_may_answer_requests_and_return_but_not_stop(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 09:00", DESK, to_agency=POLICE),
                 ev("obligation_requested", "2026-01-05 10:00", POLICE),
                 ev("obligation_paid", "2026-01-05 11:00", DESK))
    d = apply_event(r.s, ev("stopped", "2026-01-05 12:00", DESK), cat)
    assert isinstance(d, Rejected) and d.reason == "not_holder"
    d = apply_event(r.s, ev("supplement_requested", "2026-01-05 12:00", DESK), cat)
    assert isinstance(d, Rejected) and d.reason == "not_holder"
    r(ev("withdrawn", "2026-01-05 13:00", DESK))
    assert r.s.end_type == "withdrawn"


def test_a_repeated_event_id_is_skipped_and_changes_nothing(cat) -> None:
    e = ev("handoff", "2026-01-05 09:00", DESK, to_agency=POLICE)
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK), e)
    before = r.s.to_dict()
    assert apply_event(r.s, e, cat) is SKIPPED
    assert r.s.to_dict() == before


def test_equal_instants_keep_input_order(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 08:00", DESK, to_agency=POLICE),
                 ev("handoff", "2026-01-05 08:00", POLICE, to_agency=BHXH))
    assert r.s.holder == BHXH


def test_events_after_the_end_stay_on_the_timeline_without_steps_or_alerts(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("result_ready", "2026-01-05 09:00", DESK),
                 ev("handoff", "2026-01-05 10:00", DESK, to_agency=POLICE),
                 ev("returned", "2026-01-20 10:00", POLICE, channel="postal"))
    assert len(r.s.steps) == 1
    assert [t[1] for t in r.s.timeline] == ["received", "result_ready", "handoff", "returned"]
    assert r.s.timeline[2][4] == "after_end"
    r.until("2026-02-01 00:00")
    assert [a.kind for a in r.alerts] == []
    assert r.report("2026-02-01 00:00")["ended_at"] == iso("2026-01-05 09:00")
    assert r.s.portal_status == 10


# -- alerts ------------------------------------------------------------------------------------

def test_due_soon_threshold_is_half_a_short_allotment_and_four_hours_otherwise(cat) -> None:
    # Step 4 h -> threshold 2 h: Mon 08:00 + 2 h = 10:00. Dossier 40 h -> 4 h before
    # Mon 12 Jan 08:00 = Fri 9 Jan 13:30 (08:00 back: 0.5 h Mon, 3.5 h Fri afternoon).
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK))
    assert r.until("2026-01-05 10:00")[0].kind == "due_soon"
    r(ev("handoff", "2026-01-05 11:00", DESK, to_agency=POLICE))
    r.until("2026-01-12 09:00")
    soon = [(a.scope, a.at) for a in r.alerts if a.kind == "due_soon"]
    assert ("step", T("2026-01-05 10:00")) in soon
    assert ("dossier", T("2026-01-09 13:30")) in soon
    # police step 16 h from Mon 11:00: 0.5 + 4 h Mon, 8 h Tue, 3.5 h Wed -> due Wed 11:00;
    # 4 h left at Tue 16:30 (0.5 h Tue + 3.5 h Wed).
    assert ("step", T("2026-01-06 16:30")) in soon


def test_dossier_alerts_name_the_holder_at_the_firing_instant(cat) -> None:
    # Dossier due_soon fires Fri 9 Jan 13:30. A hand-off at exactly 13:30 counts as done.
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 09:00", DESK, to_agency=POLICE),
                 ev("handoff", "2026-01-07 09:00", POLICE, to_agency=BHXH),
                 ev("handoff", "2026-01-09 13:30", BHXH, to_agency=DESK))
    r.until("2026-01-09 13:30")
    (soon,) = [a for a in r.alerts if a.kind == "due_soon" and a.scope == "dossier"]
    assert soon.agency == DESK and soon.at == T("2026-01-09 13:30")
    r.until("2026-01-12 08:00")
    (over,) = [a for a in r.alerts if a.kind == "overdue" and a.scope == "dossier"]
    assert over.agency == DESK and over.due_at == T("2026-01-12 08:00")


def test_a_clock_resuming_below_its_threshold_fires_no_due_soon(cat) -> None:
    # Step 4 h (threshold 2 h) paused Mon 09:30 with 2 h... choose 10:30 -> 1 h left < 2 h.
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK))
    r.until("2026-01-05 09:59")
    r(ev("supplement_requested", "2026-01-05 09:59", DESK),
      ev("supplement_received", "2026-01-06 08:00", DESK))
    # at 09:59 remaining 2 h 01 min: armed; resumes Tue 08:00, fires at 08:01.
    r.until("2026-01-06 12:00")
    assert ("due_soon", "step", DESK, "01-06 08:01") in r.kinds()
    r2 = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                  ev("supplement_requested", "2026-01-05 10:30", DESK),
                  ev("supplement_received", "2026-01-06 08:00", DESK))
    r2.until("2026-01-06 12:00")
    # the first run's due_soon fired at 10:00 before the pause; no second one after resume
    assert [k for k in r2.kinds() if k[0] == "due_soon" and k[1] == "step"] == [
        ("due_soon", "step", DESK, "01-05 10:00")]


def test_a_pause_arriving_after_a_due_soon_was_raised_still_lets_the_real_one_fire(cat) -> None:
    # The hub's clock passed Mon 10:00 (due_soon of the 4 h step) before the supplement
    # request made at 08:30 reached it. The clock really paused with 3 h 30 left, so after
    # the resume Tue 08:00 its due_soon fires at 09:30 (2 h left, due 11:30).
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK))
    assert [a.kind for a in r.until("2026-01-05 10:30")] == ["due_soon"]
    r(ev("supplement_requested", "2026-01-05 08:30", DESK),
      ev("supplement_received", "2026-01-06 08:00", DESK))
    later = r.until("2026-01-06 10:00")
    assert [(a.kind, a.scope, a.at, a.due_at) for a in later if a.scope == "step"] == [
        ("due_soon", "step", T("2026-01-06 09:30"), T("2026-01-06 11:30"))]


def test_no_time_alert_fires_while_paused(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("supplement_requested", "2026-01-05 08:30", DESK))
    assert time_alerts(r.s, cat, T("2026-03-01 00:00")) == []
    assert next_alarm(r.s, cat) is None


def test_an_apology_date_passing_during_a_pause_fires_at_the_resume(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 15:30", DESK, procedure="9.000001"),
                 ev("apology_issued", "2026-01-06 10:00", DESK,
                    new_due_at=iso("2026-01-07 10:00")),
                 ev("supplement_requested", "2026-01-06 11:00", DESK),
                 ev("supplement_received", "2026-01-08 09:00", DESK))
    r.until("2026-01-08 09:00")
    (alert,) = [a for a in r.alerts if a.due_at == T("2026-01-07 10:00")]
    assert alert.at == T("2026-01-08 09:00") and alert.kind == "overdue"


def test_appointment_mismatch_compares_local_dates(cat) -> None:
    # Hub's due: Mon 12 Jan 08:00. Same date, other time: no alert; another date: alert.
    same = Run(cat)(ev("received", "2026-01-05 08:00", DESK,
                       appointment_at=iso("2026-01-12 16:00")))
    assert same.alerts == []
    other = Run(cat)(ev("received", "2026-01-05 08:00", DESK,
                        appointment_at="2026-01-11T20:00:00+00:00"))  # 12 Jan 03:00 local!
    assert other.alerts == []
    diff = Run(cat)(ev("received", "2026-01-05 08:00", DESK,
                       appointment_at=iso("2026-01-13 08:00")))
    (a,) = diff.alerts
    assert (a.kind, a.agency, a.due_at) == ("appointment_mismatch", DESK, T("2026-01-12 08:00"))


def test_alert_ids_are_deterministic_and_time_alerts_are_marked_once(cat) -> None:
    def run() -> list[str]:
        r = Run(cat)(ev("received", "2026-01-05 08:00", DESK, dossier=CODE))
        r.until("2026-01-20 00:00")
        assert time_alerts(r.s, cat, T("2026-01-20 00:00")) == []
        return [a.alert_id for a in r.alerts]

    first, second = run(), run()
    assert first == second and len(set(first)) == len(first) == 4


def test_next_alarm_is_the_earliest_pending_alert(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK))
    assert next_alarm(r.s, cat) == T("2026-01-05 10:00")  # step due_soon
    r.until("2026-01-05 10:00")
    assert next_alarm(r.s, cat) == T("2026-01-05 13:30")  # step overdue


# -- deliveries --------------------------------------------------------------------------------

def test_deliveries_for_hand_offs_status_changes_results_and_post(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK, channel="postal"),
                 ev("handoff", "2026-01-05 09:00", DESK, to_agency=POLICE),
                 ev("supplement_requested", "2026-01-05 10:00", POLICE),
                 ev("supplement_received", "2026-01-05 11:00", DESK),
                 ev("result_ready", "2026-01-05 14:00", POLICE),
                 ev("returned", "2026-01-06 09:00", DESK, channel="postal"))
    got = [(d.kind, d.destination, d.payload.get("status")) for d in r.deliveries]
    assert got == [
        ("portal_status", "DVCQG", 2),
        ("handoff", POLICE, None), ("portal_status", "DVCQG", 4),
        ("portal_status", "DVCQG", 5),
        ("portal_status", "DVCQG", 4),
        ("result", DESK, None), ("shipment", "VNPOST", None), ("portal_status", "DVCQG", 9),
        ("portal_status", "DVCQG", 10),  # shipment already ordered at result_ready
    ]
    assert {d.payload["channel"] for d in r.deliveries if d.kind == "portal_status"} == {3}
    ids = [d.delivery_id for d in r.deliveries]
    assert len(set(ids)) == len(ids)
    handoff = r.deliveries[1]
    assert handoff.payload["step_due_at"] == T("2026-01-07 09:00").isoformat()


def test_delivery_ids_are_the_same_when_an_event_is_applied_again_after_a_restart(cat) -> None:
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK))
    saved = json.loads(json.dumps(r.s.to_dict()))
    e = ev("handoff", "2026-01-05 09:00", DESK, to_agency=POLICE)
    a = apply_event(r.s, e, cat)
    b = apply_event(DossierState.from_dict(saved), e, cat)
    assert isinstance(a, Applied) and isinstance(b, Applied)
    assert [d.delivery_id for d in a.deliveries] == [d.delivery_id for d in b.deliveries]


# -- a day off announced late ------------------------------------------------------------------

def test_a_day_off_announced_late_moves_open_deadlines_visibly(cat) -> None:
    # Police due Wed 7 Jan 10:00; the province declares Tue 6 Jan off, announced Mon 12:00.
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 10:00", DESK, to_agency=POLICE))
    later = cat.with_calendar_changes(extra_days_off=[datetime(2026, 1, 6).date()])
    d = recompute(r.s, later, T("2026-01-05 12:00"))
    assert r.s.steps[1].clock.due == T("2026-01-08 10:00")
    assert r.s.clock.due == T("2026-01-13 08:00")
    entry = r.s.timeline[-1]
    assert entry[1] == "deadline_recomputed" and "2026-01-08T10:00:00+07:00" in (entry[4] or "")
    assert d.alerts == []


# -- properties --------------------------------------------------------------------------------

AGENCIES = [DESK, POLICE, BHXH, PROVINCE]
START = T("2026-01-05 08:00")


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """A random but well-formed history of one dossier."""
    at = START + timedelta(minutes=draw(st.integers(0, 60 * 24 * 3)))
    procedure = draw(st.sampled_from(["1.001193", "1.009972", "2.000815", "9.000001"]))
    events = [ev("received", at.strftime("%Y-%m-%d %H:%M"), DESK, procedure=procedure)]
    holder = DESK
    open_: set[str] = set()
    for _ in range(draw(st.integers(0, 8))):
        at += timedelta(minutes=draw(st.integers(0, 60 * 30)))
        when = at.strftime("%Y-%m-%d %H:%M")
        choice = draw(st.sampled_from(["handoff", "supp", "obl", "answer", "apology"]))
        if choice == "handoff":
            to = draw(st.sampled_from([a for a in AGENCIES if a != holder]))
            events.append(ev("handoff", when, holder, to_agency=to))
            holder = to
        elif choice in ("supp", "obl"):
            kind = "supplement" if choice == "supp" else "obligation"
            events.append(ev(f"{kind}_requested", when, holder))
            open_.add(kind)
        elif choice == "answer" and open_:
            kind = sorted(open_)[0]
            events.append(ev("supplement_received" if kind == "supplement"
                             else "obligation_paid", when, DESK))
            open_.discard(kind)
        elif choice == "apology":
            events.append(ev("apology_issued", when, holder,
                             new_due_at=(at + timedelta(days=2)).isoformat()))
    if draw(st.booleans()):
        at += timedelta(minutes=draw(st.integers(0, 60 * 40)))
        events.append(ev("result_ready", at.strftime("%Y-%m-%d %H:%M"), holder))
    return events


SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _play(cat: Catalogue, events: list[Event], twice: bool = False) -> tuple[Run, datetime]:
    r = Run(cat)
    for e in events:
        d = apply_event(r.state, e, cat)
        assert isinstance(d, Applied), d
        r.state = d.state
        r.alerts += d.alerts
        if twice:
            assert apply_event(r.state, e, cat) is SKIPPED
    now = events[-1].at + timedelta(days=3)
    due = time_alerts(r.s, cat, now)
    mark_fired(r.s, due)
    r.alerts += due
    return r, now


@SETTINGS
@given(histories())
def test_state_round_trips_through_plain_json(events: list[Event]) -> None:
    cat = parse_catalogue(CATALOGUE_DATA)
    r, now = _play(cat, events[:-1] or events)
    data = json.loads(json.dumps(r.s.to_dict()))
    back = DossierState.from_dict(data)
    assert back.to_dict() == r.s.to_dict()
    assert report(back, cat, now) == report(r.s, cat, now)
    # and it keeps working identically after the round trip
    last = events[-1]
    if len(events) > 1:
        a, b = apply_event(r.s, last, cat), apply_event(back, last, cat)
        assert type(a) is type(b)
        if isinstance(a, Applied) and isinstance(b, Applied):
            assert a.alerts == b.alerts and a.deliveries == b.deliveries
            assert a.state.to_dict() == b.state.to_dict()


@SETTINGS
@given(histories())
def test_repeated_event_ids_change_nothing(events: list[Event]) -> None:
    cat = parse_catalogue(CATALOGUE_DATA)
    once, now = _play(cat, events)
    twice, _ = _play(cat, events, twice=True)
    assert report(once.s, cat, now) == report(twice.s, cat, now)
    assert [a.alert_id for a in once.alerts] == [a.alert_id for a in twice.alerts]


@SETTINGS
@given(histories())
def test_every_alert_id_is_raised_once_and_outcomes_are_consistent(events: list[Event]) -> None:
    cat = parse_catalogue(CATALOGUE_DATA)
    r, now = _play(cat, events)
    ids = [a.alert_id for a in r.alerts]
    assert len(ids) == len(set(ids))
    row = report(r.s, cat, now)
    assert (row["late_agencies"] != []) == (row["outcome"] in ("late", "overdue"))
    assert (row["ended_at"] is None) == (row["outcome"] in ("open", "overdue"))
    for s in row["steps"]:
        if s["outcome"] in ("early", "on_time"):
            assert s["ended_at"] is not None
    # no time alert ever fires while paused or after the end
    for a in r.alerts:
        if a.kind in ("due_soon", "overdue") and r.s.ended_at is not None:
            assert a.at <= r.s.ended_at


@SETTINGS
@given(st.integers(0, 60 * 24 * 10), st.integers(0, 60 * 24 * 10))
def test_a_pause_of_zero_length_changes_no_due(start_min: int, pause_min: int) -> None:
    cat = parse_catalogue(CATALOGUE_DATA)
    t0 = START + timedelta(minutes=start_min)
    tp = t0 + timedelta(minutes=pause_min)
    fmt = "%Y-%m-%d %H:%M"
    plain = Run(cat)(ev("received", t0.strftime(fmt), DESK))
    paused = Run(cat)(ev("received", t0.strftime(fmt), DESK),
                      ev("supplement_requested", tp.strftime(fmt), DESK),
                      ev("supplement_received", tp.strftime(fmt), DESK))
    for a, b in ((plain.s.clock, paused.s.clock),
                 (plain.s.steps[0].clock, paused.s.steps[0].clock)):
        if tp <= a.due:
            # remaining time carries on: the same due (a due at a window end stays there)
            assert b.due == a.due or (cat.calendar.working_time_between(a.due, b.due)
                                      == timedelta(0) and b.due >= a.due)
        else:
            assert b.due == a.due


@SETTINGS
@given(st.integers(0, 60 * 24 * 6), st.integers(1, 60 * 24 * 6))
def test_outcomes_are_monotone_in_the_end_instant(end1: int, extra: int) -> None:
    cat = parse_catalogue(CATALOGUE_DATA)
    rank = {"early": 0, "on_time": 1, "late": 2}
    received = "2026-01-05 15:30"
    outcomes = []
    for minutes in (end1, end1 + extra):
        end = (T(received) + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M")
        r = Run(cat)(ev("received", received, DESK, procedure="9.000001"),
                     ev("result_ready", end, DESK))
        outcomes.append(rank[r.report(end)["outcome"]])
    assert outcomes[0] <= outcomes[1]


@SETTINGS
@given(st.integers(0, 60 * 24 * 10), st.integers(0, 60 * 24 * 10), st.integers(1, 60 * 24 * 20))
def test_a_pause_carries_the_remaining_working_time_over(start_min: int, pause_min: int,
                                                         length_min: int) -> None:
    cat = parse_catalogue(CATALOGUE_DATA)
    cal = cat.calendar
    fmt = "%Y-%m-%d %H:%M"
    t0 = START + timedelta(minutes=start_min)
    tp = t0 + timedelta(minutes=pause_min)
    tr = tp + timedelta(minutes=length_min)
    r = Run(cat)(ev("received", t0.strftime(fmt), DESK))
    before = r.s.clock.due
    r(ev("supplement_requested", tp.strftime(fmt), DESK),
      ev("supplement_received", tr.strftime(fmt), DESK))
    after = r.s.clock.due
    if tp <= before:
        # the working time left at the pause is exactly the working time from resume to due
        assert cal.working_time_between(tr, after) == cal.working_time_between(
            max(tp, t0), before)
        assert after >= before
    else:
        assert after == before  # a pause after the due does not move it


def _fresh_alarm(state: DossierState, cat: Catalogue) -> datetime | None:
    """next_alarm of the same dossier read back from its stored form: nothing cached."""
    return next_alarm(DossierState.from_dict(state.to_dict(), cat.calendar.tz), cat)


@SETTINGS
@given(histories(), st.lists(st.tuples(st.integers(0, 60 * 24 * 4),
                                       st.sampled_from(["sweep", "stray", "recompute", "none"])),
                             max_size=12))
def test_the_kept_next_alarm_always_equals_a_fresh_computation(
        events: list[Event], actions: list[tuple[int, str]]) -> None:
    # Between the events of a random history: sweeps that record fired alerts, events that are
    # rejected (from an agency not holding the dossier), duplicates (skipped) and calendar
    # changes. After each, the alarm the state keeps is the one computed from scratch.
    cat = parse_catalogue(CATALOGUE_DATA)
    state: DossierState | None = None
    for number, e in enumerate(events):
        minutes, action = actions[number] if number < len(actions) else (0, "none")
        d = apply_event(state, e, cat)
        assert isinstance(d, Applied), d
        state = d.state
        assert next_alarm(state, cat) == _fresh_alarm(state, cat)
        assert next_alarm(state, cat) == _fresh_alarm(state, cat)  # asked again: kept
        until = e.at + timedelta(minutes=minutes)
        nxt = events[number + 1].at if number + 1 < len(events) else until
        until = min(until, nxt)
        if action == "sweep":
            mark_fired(state, time_alerts(state, cat, until))
        elif action == "stray":
            wrong = next(a for a in AGENCIES if a != state.holder)
            stray = ev("supplement_requested", until.strftime("%Y-%m-%d %H:%M"), wrong)
            assert isinstance(apply_event(state, stray, cat), Rejected | type(SKIPPED))
            assert apply_event(state, e, cat) is SKIPPED
        elif action == "recompute":  # at the event, the next day is announced as a day off
            day_off = (e.at.astimezone(ICT) + timedelta(days=1)).date()
            later = cat.with_calendar_changes(extra_days_off=[day_off])
            recompute(state, later, e.at)
            assert next_alarm(state, later) == _fresh_alarm(state, later)
            continue
        assert next_alarm(state, cat) == _fresh_alarm(state, cat)


def test_next_alarm_is_kept_until_the_dossier_changes(cat) -> None:
    # Received Mon 5 Jan 08:00, first step 4 h: 08:00-11:30 is 3.5 h, then 13:00-13:30, so
    # due 13:30; due_soon at 2 h left, 2 working hours after 08:00 = 10:00.
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK))
    assert next_alarm(r.s, cat) == T("2026-01-05 10:00")
    assert r.s.alarm_cache == T("2026-01-05 10:00")
    mark_fired(r.s, time_alerts(r.s, cat, T("2026-01-05 10:00")))
    assert next_alarm(r.s, cat) == T("2026-01-05 13:30")  # the step's overdue next
    r(ev("supplement_requested", "2026-01-05 11:00", DESK))
    assert next_alarm(r.s, cat) is None  # paused: nothing can fire


def test_a_recomputed_deadline_moves_the_kept_next_alarm(cat) -> None:
    # Police step from Mon 5 Jan 10:00, 2 days: due Wed 7 Jan 10:00; due_soon 4 working hours
    # before (2.5 h on Wed from 07:30, 1.5 h back from Tue 17:00): Tue 6 Jan 15:30. Tue 6 Jan
    # declared off at Mon 12:00: due Thu 8 Jan 10:00, due_soon Wed 7 Jan 15:30 (the dossier's
    # own due_soon, days later, is not the earliest).
    r = Run(cat)(ev("received", "2026-01-05 08:00", DESK),
                 ev("handoff", "2026-01-05 10:00", DESK, to_agency=POLICE))
    assert next_alarm(r.s, cat) == T("2026-01-06 15:30")
    later = cat.with_calendar_changes(extra_days_off=[datetime(2026, 1, 6).date()])
    recompute(r.s, later, T("2026-01-05 12:00"))
    assert next_alarm(r.s, later) == T("2026-01-07 15:30") == _fresh_alarm(r.s, later)
