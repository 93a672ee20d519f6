"""Operator voids and corrections: the dossier replayed as if the wrong event had not been there.

Office hours 07:30-11:30 and 13:00-17:00, Monday-Friday. Procedure 1.001193: 5 working days,
route desk 4 h, police 2 days, social insurance 2 days, desk 4 h.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lienthong.services.domain.catalogue import Catalogue, parse_catalogue
from lienthong.services.domain.corrections import VOIDED_NOTE, correct, is_correction
from lienthong.services.domain.dossier import (
    SKIPPED,
    Applied,
    DossierState,
    Rejected,
    apply_event,
    late_for_statistics,
    mark_fired,
    report,
    time_alerts,
)
from lienthong.services.domain.events import Event, parse_event
from tests.unit.test_dossier import BHXH, CATALOGUE_DATA, DESK, POLICE, PROVINCE

ICT = timezone(timedelta(hours=7))
CODE = "000.00.15.H99-20260105-0000001"
OPERATOR = "lan.nguyen"

CATALOGUE = CATALOGUE_DATA  # the deadline engine's test province


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return parse_catalogue(CATALOGUE)


def T(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ICT)


_ids = itertools.count(1)
DEFAULTS: dict[str, dict[str, Any]] = {
    "received": {"procedure": "1.001193", "channel": "desk", "applicant": {"name": "Lê B"}},
    "supplement_requested": {"reason": "thiếu giấy"},
    "result_ready": {"decision": "approved"},
    "returned": {"channel": "desk"},
}


def ev(etype: str, at: str, agency: str, **extra: Any) -> Event:
    data = {"event_id": str(uuid.UUID(int=next(_ids))), "type": etype, "dossier": CODE,
            "at": T(at).isoformat(), "agency": agency, **DEFAULTS.get(etype, {}), **extra}
    return parse_event(data)


def void(target: Event, at: str, reason: str = "Nhập nhầm") -> Event:
    return ev("event_voided", at, PROVINCE, voided_event_id=target.event_id, reason=reason,
              operator=OPERATOR)


def run(cat: Catalogue, events: list[Event], until: str | None = None) -> DossierState:
    state: DossierState | None = None
    for e in events:
        d = apply_event(state, e, cat)
        assert isinstance(d, Applied), d
        state = d.state
    assert state is not None
    if until is not None:
        mark_fired(state, time_alerts(state, cat, T(until)))
    return state


def history(events: list[Event]) -> dict[str, Event]:
    return {e.event_id: e for e in events}


# Monday 5 January 2026 08:00 receipt: the dossier is due Monday 12 January 08:00.
RECEIVED = "2026-01-05 08:00"


def test_voiding_a_result_entered_by_mistake_leaves_the_dossier_overdue(cat: Catalogue) -> None:
    events = [ev("received", RECEIVED, DESK),
              ev("handoff", "2026-01-05 10:00", DESK, to_agency=POLICE)]
    wrong = ev("result_ready", "2026-01-06 09:00", POLICE)  # entered on the wrong dossier
    events.append(wrong)
    state = run(cat, events)
    before = report(state, cat, T("2026-01-13 09:00"))
    assert before["outcome"] == "early"
    assert not late_for_statistics(state, cat, T("2026-01-13 09:00"))

    # The void on Tuesday 13 January 09:00, a day after the due (Monday 12 January 08:00).
    v = void(wrong, "2026-01-13 09:00")
    decision = correct(state, v, history(events), cat, T("2026-01-13 09:00"))
    assert isinstance(decision, Applied), decision
    after = report(decision.state, cat, T("2026-01-13 09:00"))
    assert after["outcome"] == "overdue" and after["ended_at"] is None
    assert after["late_agencies"] == [POLICE]
    assert late_for_statistics(decision.state, cat, T("2026-01-13 09:00"))
    # The overdue alerts the recomputed dossier owes are raised now: the dossier (due Monday
    # 08:00) and the police step (2 working days from Monday 10:00: Wednesday 10:00).
    kinds = {(a.kind, a.scope, a.due_at) for a in decision.alerts}
    assert ("overdue", "dossier", T("2026-01-12 08:00")) in kinds
    assert ("overdue", "step", T("2026-01-07 10:00")) in kinds
    # The original stays on the timeline, voided; the void is listed with its target.
    timeline = decision.state.timeline
    assert (wrong.event_id, "result_ready", VOIDED_NOTE) == (timeline[2][0], timeline[2][1],
                                                             timeline[2][4])
    assert timeline[3][:2] == (v.event_id, "event_voided") and timeline[3][4] == wrong.event_id
    # The portal is told the dossier is processing again (status 4), not processed (9).
    portal = [d for d in decision.deliveries if d.kind == "portal_status"]
    assert [d.payload["status"] for d in portal] == [4]


def test_a_redelivered_void_or_voided_event_is_skipped(cat: Catalogue) -> None:
    events = [ev("received", RECEIVED, DESK),
              ev("handoff", "2026-01-05 10:00", DESK, to_agency=POLICE),
              ev("handoff", "2026-01-05 10:01", POLICE, to_agency=BHXH)]
    state = run(cat, events)
    v = void(events[2], "2026-01-05 11:00")
    decision = correct(state, v, history(events), cat)
    assert isinstance(decision, Applied)
    assert decision.state.holder == POLICE and len(decision.state.steps) == 2
    assert correct(decision.state, v, history(events), cat) is SKIPPED
    assert apply_event(decision.state, events[2], cat) is SKIPPED
    again = void(events[2], "2026-01-05 11:05")
    refused = correct(decision.state, again, history(events), cat)
    assert isinstance(refused, Rejected) and refused.reason == "already_voided"


def test_a_correcting_hand_off_takes_the_wrong_ones_place(cat: Catalogue) -> None:
    # The desk handed the dossier to social insurance instead of the police.
    events = [ev("received", RECEIVED, DESK),
              ev("handoff", "2026-01-05 10:00", DESK, to_agency=BHXH)]
    state = run(cat, events)
    assert state.steps[-1].unexpected
    fix = ev("handoff", "2026-01-05 10:00", DESK, to_agency=POLICE,
             corrects_event_id=events[1].event_id, operator=OPERATOR,
             correction_reason="Chuyển nhầm cơ quan")
    assert is_correction(fix)
    decision = correct(state, fix, history(events), cat, T("2026-01-05 14:00"))
    assert isinstance(decision, Applied), decision
    s = decision.state
    assert s.holder == POLICE and [st.agency for st in s.steps] == [DESK, POLICE]
    assert not s.steps[-1].unexpected
    # Police step: 2 working days from Monday 10:00 = Wednesday 10:00.
    assert s.steps[-1].clock.due == T("2026-01-07 10:00")
    # The police get the dossier now; nothing new for the portal (still processing).
    assert [(d.kind, d.destination) for d in decision.deliveries] == [("handoff", POLICE)]
    assert decision.alerts == []  # the unexpected_recipient of the wrong hand-off stays fired
    assert [e[0] for e in s.timeline] == [events[0].event_id, events[1].event_id,
                                          fix.event_id]
    assert s.timeline[1][4] == VOIDED_NOTE and s.timeline[2][4] == "correction"


def test_a_void_that_would_make_a_later_event_illegal_is_refused(cat: Catalogue) -> None:
    events = [ev("received", RECEIVED, DESK),
              ev("handoff", "2026-01-05 10:00", DESK, to_agency=POLICE),
              ev("handoff", "2026-01-06 10:00", POLICE, to_agency=BHXH)]
    state = run(cat, events)
    before = state.to_dict()
    decision = correct(state, void(events[1], "2026-01-06 11:00"), history(events), cat)
    assert isinstance(decision, Rejected) and decision.reason == "correction_conflict"
    assert events[2].event_id in decision.detail and "not_holder" in decision.detail
    assert state.to_dict() == before


@pytest.mark.parametrize(("case", "reason"), [
    ("receipt", "invalid_correction"), ("unknown", "unknown_event"),
    ("missing", "history_incomplete"), ("future", "future_event")])
def test_voids_that_cannot_be_applied_say_why(cat: Catalogue, case: str, reason: str) -> None:
    events = [ev("received", RECEIVED, DESK),
              ev("handoff", "2026-01-05 10:00", DESK, to_agency=POLICE),
              ev("supplement_requested", "2026-01-05 11:00", POLICE)]
    state = run(cat, events)
    target = events[0] if case == "receipt" else events[1]
    if case == "unknown":
        target = ev("handoff", "2026-01-05 10:30", DESK, to_agency=BHXH)
    v = void(target, "2026-01-05 11:30")
    known = history(events[:2]) if case == "missing" else history(events)
    now = T("2026-01-05 11:00") if case == "future" else None
    decision = correct(state, v, known, cat, now)
    assert isinstance(decision, Rejected) and decision.reason == reason, decision


def test_a_void_cannot_itself_be_voided(cat: Catalogue) -> None:
    events = [ev("received", RECEIVED, DESK),
              ev("handoff", "2026-01-05 10:00", DESK, to_agency=POLICE)]
    first = void(events[1], "2026-01-05 11:00")
    d = correct(run(cat, events), first, history(events), cat)
    assert isinstance(d, Applied)
    d2 = correct(d.state, void(first, "2026-01-05 11:10"), history(events), cat)
    assert isinstance(d2, Rejected) and d2.reason == "invalid_correction"


def test_the_engine_alone_refuses_voids_and_corrections(cat: Catalogue) -> None:
    events = [ev("received", RECEIVED, DESK),
              ev("handoff", "2026-01-05 10:00", DESK, to_agency=POLICE)]
    state = run(cat, events)
    d = apply_event(state, void(events[1], "2026-01-05 11:00"), cat)
    assert isinstance(d, Rejected) and d.reason == "invalid_correction"


def test_alerts_already_fired_stay_fired_and_are_not_raised_again(cat: Catalogue) -> None:
    # The desk step (4 h from Monday 08:00, due 13:00) ran overdue before the hand-off.
    events = [ev("received", RECEIVED, DESK),
              ev("handoff", "2026-01-05 14:00", DESK, to_agency=POLICE),
              ev("supplement_requested", "2026-01-05 15:00", POLICE)]
    state = run(cat, events)
    fired = set(state.fired)
    assert fired  # the desk step's due_soon and overdue
    decision = correct(state, void(events[2], "2026-01-05 16:00"), history(events), cat,
                       T("2026-01-05 16:00"))
    assert isinstance(decision, Applied)
    assert decision.alerts == []
    assert decision.state.fired >= fired
    assert decision.state.open_requests == []
    # The snapshot for the dashboard lists no pause for the voided request.
    from lienthong.services.processors.snapshot import snapshot_dict
    assert snapshot_dict(state, cat, T("2026-01-05 16:00"))["pauses"] != []
    snap = snapshot_dict(decision.state, cat, T("2026-01-05 16:00"))
    assert snap["pauses"] == [] and snap["state"] == "processing"


# -- property: a void is the replay without the voided event ------------------------------

STEP_AGENCIES = [DESK, POLICE, BHXH, DESK]


@st.composite
def dossier_events(draw: st.DrawFn) -> list[Event]:
    """A receipt, then hand-offs along the route and supplement pauses, one hour apart."""
    start = T(RECEIVED)
    events = [ev("received", RECEIVED, DESK)]
    holder, position, paused = DESK, 0, False
    for i in range(draw(st.integers(1, 8))):
        at = (start + timedelta(hours=3 * (i + 1))).strftime("%Y-%m-%d %H:%M")
        choice = draw(st.sampled_from(["handoff", "pause", "resume", "result"]))
        if choice == "pause" and not paused:
            events.append(ev("supplement_requested", at, holder))
            paused = True
        elif choice == "resume" and paused:
            events.append(ev("supplement_received", at, holder))
            paused = False
        elif choice == "handoff" and position + 1 < len(STEP_AGENCIES):
            position += 1
            to = STEP_AGENCIES[position]
            events.append(ev("handoff", at, holder, to_agency=to))
            holder = to
        elif choice == "result":
            events.append(ev("result_ready", at, holder))
            break
    return events


def _replay(cat: Catalogue, events: list[Event]) -> DossierState | Rejected:
    state: DossierState | None = None
    for e in events:
        d = apply_event(state, e, cat, with_deliveries=False)
        if isinstance(d, Rejected):
            return d
        assert isinstance(d, Applied)
        state = d.state
    assert state is not None
    return state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dossier_events(), st.data())
def test_a_void_equals_the_replay_without_the_voided_event(events: list[Event],
                                                           data: st.DataObject) -> None:
    assume(len(events) > 1)
    cat = parse_catalogue(CATALOGUE)
    state = run(cat, events)
    k = data.draw(st.integers(1, len(events) - 1))
    now = T("2026-01-20 09:00")
    decision = correct(state, void(events[k], "2026-01-20 09:00"), history(events), cat, now)
    expected = _replay(cat, events[:k] + events[k + 1:])
    if isinstance(expected, Rejected):
        assert isinstance(decision, Rejected) and decision.reason == "correction_conflict"
        return
    assert isinstance(decision, Applied), decision
    got = report(decision.state, cat, now)
    assert got == report(expected, cat, now)
    assert decision.state.holder == expected.holder
    assert decision.state.open_requests == expected.open_requests


# -- the replay command ------------------------------------------------------------------

def test_the_replay_command_applies_a_void_from_the_events_file(tmp_path: Any, capsys: Any
                                                                ) -> None:
    import json

    import yaml

    from lienthong.services.cli import main

    catalog = tmp_path / "catalogue.yaml"
    catalog.write_text(yaml.safe_dump(CATALOGUE, allow_unicode=True), encoding="utf-8")
    lines = [
        {"event_id": str(uuid.uuid4()), "type": "received", "dossier": CODE,
         "at": "2026-01-05T08:00:00+07:00", "agency": DESK, **DEFAULTS["received"]},
        {"event_id": str(uuid.uuid4()), "type": "handoff", "dossier": CODE,
         "at": "2026-01-05T10:00:00+07:00", "agency": DESK, "to_agency": POLICE},
        {"event_id": str(uuid.uuid4()), "type": "result_ready", "dossier": CODE,
         "at": "2026-01-06T09:00:00+07:00", "agency": POLICE, "decision": "approved"},
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in lines), encoding="utf-8")
    assert main(["replay", "--catalog", str(catalog), str(events),
                 "--now", "2026-01-13T09:00:00+07:00"]) == 0
    assert json.loads(capsys.readouterr().out)["dossiers"][0]["outcome"] == "early"

    lines.append({"event_id": str(uuid.uuid4()), "type": "event_voided", "dossier": CODE,
                  "at": "2026-01-13T09:00:00+07:00", "agency": PROVINCE,
                  "voided_event_id": lines[2]["event_id"], "reason": "Nhập nhầm hồ sơ",
                  "operator": OPERATOR})
    events.write_text("".join(json.dumps(e) + "\n" for e in lines), encoding="utf-8")
    assert main(["replay", "--catalog", str(catalog), str(events),
                 "--now", "2026-01-13T09:00:00+07:00"]) == 0
    report_after = json.loads(capsys.readouterr().out)
    assert report_after["dossiers"][0]["outcome"] == "overdue"
    assert {"kind": "overdue", "scope": "dossier", "dossier": CODE, "agency": POLICE,
            "due_at": "2026-01-12T08:00:00+07:00"} in report_after["alerts"]
