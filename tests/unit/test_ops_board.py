"""The operations read model, from hand-made ``dossier.status`` snapshots.

Calendar of the sample province: Monday-Friday 07:30-11:30 and 13:00-17:00 (8 working hours a
day). 1-4 December 2026 are Tuesday-Friday, 7 December a Monday.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.ops.board import OpsBoard, Period, SnapshotError
from lienthong.services.ops.i18n import format_duration, format_number, format_percent
from lienthong.services.ops.privacy import mask_id, mask_name

CATALOGUE = load_catalogue(Path(__file__).parents[2] / "examples" / "province-h99.yaml")
COMMUNE = "000.00.15.H99"
POLICE = "000.02.10.H99"
INSURANCE = "000.03.10.H99"
DISTRICT = "000.00.20.H99"
DISTRICT_COMMUNE = "000.01.20.H99"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text + "+07:00")


def iso(text: str) -> str:
    return text + "+07:00"


def snapshot(code: str, *, received: str = "2026-12-01T08:00", due: str = "2026-12-08T08:00",
             state: str = "processing", outcome: str = "open", holder: str = COMMUNE,
             receiving: str = COMMUNE, procedure: str = "1.001193", ended: str | None = None,
             steps: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    if steps is None:
        steps = [{"agency": holder, "started_at": iso(received), "due_at": iso(due),
                  "ended_at": None if ended is None else iso(ended), "outcome": outcome,
                  "overrun_minutes": 0}]
    data: dict[str, Any] = {
        "dossier": code, "procedure": procedure, "procedure_name": "Liên thông khai sinh",
        "receiving_agency": receiving, "receiving_level": "commune", "channel": "desk",
        "applicant": {"name": "Nguyễn Văn A", "id_number": "001099012345"},
        "holder": holder, "holder_level": None, "state": state,
        "received_at": iso(received), "due_at": iso(due),
        "ended_at": None if ended is None else iso(ended), "outcome": outcome,
        "late_agencies": [], "repeat_supplement": False, "steps": steps, "pauses": [],
        "apologies": [], "postal": [], "portal_status": 4, "timeline": [],
        "updated_at": iso(received),
    }
    data.update(extra)
    return data


def board_with(*snapshots: dict[str, Any]) -> OpsBoard:
    b = OpsBoard(CATALOGUE)
    for s in snapshots:
        b.apply_snapshot(s)
    return b


# -- board -----------------------------------------------------------------------------------

def test_a_dossier_one_working_day_past_due_is_overdue_by_eight_hours() -> None:
    b = board_with(snapshot("D1", due="2026-12-01T09:00"))
    rows = b.overdue_board(at("2026-12-02T09:00"))
    assert [(r.scope, r.urgency) for r in rows] == [("dossier", "overdue"), ("step", "overdue")]
    assert rows[0].late_by == timedelta(hours=8)
    assert rows[0].agency_name == "Ủy ban nhân dân xã Hòa Bình"
    assert rows[0].level == "commune"


def test_lateness_counts_only_office_hours_over_a_weekend() -> None:
    # Friday 16:00 -> 17:00 is 1 h; Monday 07:30 -> 08:30 is 1 h: 2 working hours late.
    b = board_with(snapshot("D1", due="2026-12-04T16:00"))
    rows = b.overdue_board(at("2026-12-07T08:30"))
    assert rows[0].late_by == timedelta(hours=2)


def test_board_is_sorted_most_late_first_then_due_soon_by_time_left() -> None:
    b = board_with(
        snapshot("LATE-1H", due="2026-12-02T08:00"),
        snapshot("LATE-1D", due="2026-12-01T09:00"),
        snapshot("SOON-3H", due="2026-12-02T13:00"),   # 09:00->11:30 + 13:00 = 2.5 h left
        snapshot("SOON-1H", due="2026-12-02T10:00"),
        snapshot("LATER", due="2026-12-04T10:00"),     # days away: not on the board
    )
    rows = [r for r in b.overdue_board(at("2026-12-02T09:00")) if r.scope == "dossier"]
    assert [r.dossier.code for r in rows] == ["LATE-1D", "LATE-1H", "SOON-1H", "SOON-3H"]
    assert [r.urgency for r in rows] == ["overdue", "overdue", "due_soon", "due_soon"]
    assert rows[3].remaining == timedelta(hours=2, minutes=30)


def test_a_step_past_due_shows_even_when_the_dossier_is_not() -> None:
    steps = [{"agency": COMMUNE, "started_at": iso("2026-12-01T08:00"),
              "due_at": iso("2026-12-01T12:00"), "ended_at": iso("2026-12-01T10:00"),
              "outcome": "early"},
             {"agency": POLICE, "started_at": iso("2026-12-01T10:00"),
              "due_at": iso("2026-12-03T10:00"), "ended_at": None, "outcome": "open"}]
    b = board_with(snapshot("D1", holder=POLICE, due="2026-12-08T08:00", steps=steps))
    rows = b.overdue_board(at("2026-12-03T11:00"))
    assert [(r.scope, r.agency, r.level, r.late_by) for r in rows] == [
        ("step", POLICE, "vertical", timedelta(hours=1))]


def test_a_clock_paused_before_its_due_is_not_overdue() -> None:
    pause = {"kind": "supplement", "requested_by": COMMUNE, "from": iso("2026-12-01T10:00"),
             "to": None, "reason": "thiếu giấy tờ"}
    b = board_with(snapshot("D1", state="paused", due="2026-12-02T08:00", pauses=[pause]))
    assert b.overdue_board(at("2026-12-10T08:00")) == []


def test_a_pause_after_the_due_stops_the_lateness_at_the_pause() -> None:
    # Due 08:00, paused at 10:00 the same day: 2 working hours late, whatever the time now.
    pause = {"kind": "supplement", "requested_by": COMMUNE, "from": iso("2026-12-02T10:00"),
             "to": None, "reason": ""}
    b = board_with(snapshot("D1", state="paused", due="2026-12-02T08:00", pauses=[pause]))
    rows = b.overdue_board(at("2026-12-09T08:00"))
    assert rows[0].late_by == timedelta(hours=2) and rows[0].paused


def test_ended_withdrawn_and_stopped_dossiers_are_not_on_the_board() -> None:
    b = board_with(
        snapshot("E", state="ended", outcome="late", due="2026-12-01T09:00",
                 ended="2026-12-01T10:00"),
        snapshot("W", state="withdrawn", outcome="open", due="2026-12-01T09:00",
                 ended="2026-12-01T09:30"),
    )
    assert b.overdue_board(at("2026-12-02T09:00")) == []


def test_board_filters_by_level_agency_subtree_and_procedure() -> None:
    b = board_with(
        snapshot("A", due="2026-12-01T09:00"),
        snapshot("B", due="2026-12-01T09:00", holder=DISTRICT_COMMUNE,
                 receiving=DISTRICT_COMMUNE),
        snapshot("C", due="2026-12-01T09:00", procedure="1.004227"),
    )
    now = at("2026-12-02T09:00")
    assert {r.dossier.code for r in b.overdue_board(now, agency=DISTRICT)} == {"B"}
    assert {r.dossier.code for r in b.overdue_board(now, procedure="1.004227")} == {"C"}
    assert {r.dossier.code for r in b.overdue_board(now, level="commune")} == {"A", "B", "C"}
    assert b.overdue_board(now, level="vertical") == []


def test_an_operator_scoped_to_a_district_sees_only_its_subtree() -> None:
    b = board_with(
        snapshot("A", due="2026-12-01T09:00"),
        snapshot("B", due="2026-12-01T09:00", holder=DISTRICT_COMMUNE,
                 receiving=DISTRICT_COMMUNE),
    )
    scope = b.subtree(DISTRICT)
    assert scope == {DISTRICT, DISTRICT_COMMUNE, "000.02.20.H99"}
    assert {r.dossier.code for r in b.overdue_board(at("2026-12-02T09:00"), scope=scope)} \
        == {"B"}
    assert not b.visible(b.dossier("A"), scope)  # type: ignore[arg-type]


def test_next_due_is_the_earliest_running_due_after_now() -> None:
    b = board_with(snapshot("A", due="2026-12-03T09:00"), snapshot("B", due="2026-12-02T15:00"))
    assert b.next_due(at("2026-12-02T09:00")) == at("2026-12-02T15:00")


# -- ingest ----------------------------------------------------------------------------------

def test_an_older_snapshot_does_not_replace_a_newer_one() -> None:
    new = snapshot("A", state="ended", outcome="early", ended="2026-12-01T10:00",
                   updated_at=iso("2026-12-01T10:00"))
    old = snapshot("A", updated_at=iso("2026-12-01T08:00"))
    b = board_with(new, old)
    assert b.dossier("A").state == "ended"  # type: ignore[union-attr]


def test_a_malformed_snapshot_names_the_field() -> None:
    with pytest.raises(SnapshotError, match=r"steps\[0\]\.due_at"):
        board_with(snapshot("A", steps=[{"agency": COMMUNE, "started_at": iso("2026-12-01T08:00"),
                                         "due_at": "tomorrow"}]))
    with pytest.raises(SnapshotError, match="state"):
        board_with(snapshot("A", state="lost"))


def test_the_same_alert_id_is_one_alert() -> None:
    b = OpsBoard(CATALOGUE)
    alert = {"alert_id": "a-1", "kind": "overdue", "scope": "dossier", "dossier": "D1",
             "agency": COMMUNE, "destination": None, "due_at": iso("2026-12-01T09:00"),
             "fired_at": iso("2026-12-01T09:00"), "detail": ""}
    assert b.add_alert(alert) is not None
    assert b.add_alert(dict(alert)) is None
    assert [a.alert_id for a in b.alerts()] == ["a-1"]
    assert b.alerts(scope=b.subtree(DISTRICT)) == []


def test_dead_letters_are_listed_newest_first_by_their_offset() -> None:
    b = OpsBoard(CATALOGUE)
    for offset, reason in ((0, "invalid_record"), (1, "delivery_exhausted")):
        b.add_deadletter(0, offset, {"original": b"xx", "key": b"D1", "reason": reason,
                                     "detail": "", "source_topic": "deliveries",
                                     "partition": 2, "offset": 40 + offset,
                                     "at": iso("2026-12-01T09:00")})
    assert [(d.offset, d.reason, d.key) for d in b.deadletters()] == [
        (1, "delivery_exhausted", "D1"), (0, "invalid_record", "D1")]


# -- scoreboard ------------------------------------------------------------------------------

def _ended(code: str, outcome: str, day: str = "2026-12-02", **kw: Any) -> dict[str, Any]:
    return snapshot(code, state="ended", outcome=outcome, due="2026-12-03T09:00",
                    ended=f"{day}T10:00", **kw)


def test_scoreboard_counts_like_a_provincial_report() -> None:
    b = board_with(
        _ended("E1", "early"), _ended("E2", "early"), _ended("O1", "on_time"),
        _ended("L1", "late"),
        _ended("R1", "early", repeat_supplement=True),     # Decision 766: counts late
        snapshot("W1", state="withdrawn", ended="2026-12-02T10:00"),
        snapshot("S1", state="stopped", ended="2026-12-02T10:00"),
        snapshot("OV", due="2026-12-02T09:00"),             # open, past due now
        snapshot("OP", due="2026-12-09T09:00"),             # open, not due yet
        _ended("POLICE", "early", receiving=POLICE, holder=POLICE),
    )
    board = b.scoreboard(Period(date(2026, 12, 1), date(2026, 12, 31)), at("2026-12-03T08:00"))
    by = {r.agency: r.tally for r in board.rows}
    t = by[COMMUNE]
    assert (t.received, t.ended, t.early, t.on_time, t.late, t.overdue, t.withdrawn,
            t.stopped, t.open) == (9, 5, 2, 1, 2, 1, 1, 1, 2)
    # (2 early + 1 on time) / (5 ended + 1 overdue) = 50 %
    assert t.on_time_rate == pytest.approx(0.5)
    assert format_percent(t.on_time_rate, "vi") == "50,00%"
    assert [level for level, _ in board.levels] == ["commune", "vertical"]
    assert board.total.received == 10


def test_scoreboard_by_step_judges_each_agency_on_its_own_steps() -> None:
    steps = [{"agency": COMMUNE, "started_at": iso("2026-12-01T08:00"),
              "due_at": iso("2026-12-01T12:00"), "ended_at": iso("2026-12-01T10:00"),
              "outcome": "early"},
             {"agency": POLICE, "started_at": iso("2026-12-01T10:00"),
              "due_at": iso("2026-12-02T10:00"), "ended_at": iso("2026-12-02T15:00"),
              "outcome": "late", "overrun_minutes": 300}]
    b = board_with(snapshot("D1", holder=POLICE, steps=steps))
    board = b.scoreboard(Period(date(2026, 12, 1), date(2026, 12, 1)), at("2026-12-05T08:00"),
                         basis="step")
    by = {r.agency: r.tally for r in board.rows}
    assert (by[COMMUNE].early, by[COMMUNE].ended) == (1, 1)
    assert by[POLICE].received == 1 and by[POLICE].ended == 0  # ended on the 2nd, out of period


def test_daily_rate_series_has_every_day_of_the_period() -> None:
    b = board_with(_ended("A", "early", day="2026-12-01"), _ended("B", "late", day="2026-12-01"),
                   _ended("C", "on_time", day="2026-12-02"))
    series = b.daily_rates(Period(date(2026, 12, 1), date(2026, 12, 3)), at("2026-12-05T08:00"))
    assert [(r.day.day, r.tally.on_time_rate) for r in series] == [(1, 0.5), (2, 1.0), (3, None)]


def test_decision_766_indicators_include_the_portal_sync_share() -> None:
    b = board_with(
        _ended("A", "early", portal_status=9),
        _ended("B", "on_time", portal_status=4),            # ended, portal still "processing"
        snapshot("C", portal_status=None),                  # never synced
        snapshot("D", portal_status=4),
    )
    ind = b.indicators(Period(date(2026, 12, 1), date(2026, 12, 31)), at("2026-12-02T08:00"))
    assert (ind.received, ind.portal_synced) == (4, 2)
    assert ind.on_time_rate == 1.0 and ind.portal_synced_rate == 0.5


# -- tracking slip ---------------------------------------------------------------------------

def test_the_slip_lists_each_hand_off_with_giver_receiver_and_outcome() -> None:
    steps = [{"agency": COMMUNE, "started_at": iso("2026-12-01T08:00"),
              "due_at": iso("2026-12-01T12:00"), "ended_at": iso("2026-12-01T10:00"),
              "outcome": "early"},
             {"agency": POLICE, "started_at": iso("2026-12-01T10:00"),
              "due_at": iso("2026-12-02T10:00"), "ended_at": None, "outcome": "open"}]
    b = board_with(snapshot("D1", holder=POLICE, due="2026-12-08T08:00", steps=steps,
                            apologies=[{"agency": POLICE, "at": iso("2026-12-02T09:00"),
                                        "new_due_at": iso("2026-12-04T09:00"),
                                        "reason": "chờ xác minh"}]))
    slip = b.slip("D1", at("2026-12-02T11:00"))
    assert slip is not None
    assert [(h.giver, h.receiver, h.outcome) for h in slip.handoffs] == [
        (None, COMMUNE, "early"), (COMMUNE, POLICE, "overdue")]
    assert slip.handoffs[1].overrun == timedelta(hours=1)
    assert slip.outcome == "open" and slip.dossier.apologies[0].reason == "chờ xác minh"
    assert b.slip("nope", at("2026-12-02T11:00")) is None


# -- formats and masking ---------------------------------------------------------------------

def test_vietnamese_numbers_use_a_decimal_comma_and_thousands_dot() -> None:
    assert format_percent(0.99714, "vi") == "99,71%"
    assert format_percent(0.99714, "en") == "99.71%"
    assert format_number(12345, "vi") == "12.345"
    assert format_percent(None, "vi") == "—"


def test_durations_are_in_working_days_of_the_calendar() -> None:
    assert format_duration(timedelta(hours=10, minutes=5), timedelta(hours=8), "vi") \
        == "1 ngày 2 giờ 5 phút"
    assert format_duration(timedelta(0), timedelta(hours=8), "en") == "0 min"


def test_names_and_id_numbers_are_masked() -> None:
    assert mask_name("Nguyễn Văn A") == "Nguyễn V** A"
    assert mask_name("Trần Thị Bích Ngọc") == "Trần T** B** N**"
    assert mask_id("001099012345") == "0010******45"
    assert mask_id("1234") == "****"
