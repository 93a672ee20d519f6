"""An alert id is raised once, also when apologies repeat a date (DESIGN: exactly once)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from lienthong.services.domain.alerts import Alert
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.domain.dossier import (
    Applied,
    DossierState,
    apply_event,
    mark_fired,
    time_alerts,
)
from lienthong.services.domain.events import parse_event

CAT = load_catalogue(Path(__file__).resolve().parents[2] / "examples" / "province-h99.yaml")
TZ = CAT.calendar.tz
BASE = {"dossier": "000.00.15.H99-20260105-0000001", "agency": "000.00.15.H99"}


def play(*events: dict[str, Any]) -> tuple[DossierState, list[Alert]]:
    state: DossierState | None = None
    alerts: list[Alert] = []
    for i, e in enumerate(events, 1):
        d = apply_event(state, parse_event({**BASE, "event_id": f"00000000-0000-4000-8000-{i:012d}",
                                            **e}, TZ), CAT)
        assert isinstance(d, Applied), d
        state = d.state
        alerts += d.alerts
    assert state is not None
    return state, alerts


RECEIVED = {"type": "received", "at": "2026-01-05T08:00:00+07:00", "procedure": "1.001193",
            "channel": "desk", "applicant": {"name": "Lê B"}}


def apology(at: str, new_due_at: str) -> dict[str, Any]:
    return {"type": "apology_issued", "at": at, "new_due_at": new_due_at, "reason": "quá tải"}


def test_two_apologies_with_the_same_date_raise_one_overdue_alert() -> None:
    new_date = "2026-01-07T08:00:00+07:00"
    state, alerts = play(RECEIVED, apology("2026-01-05T08:00:00+07:00", new_date),
                         apology("2026-01-05T09:00:00+07:00", new_date))
    due = time_alerts(state, CAT, datetime(2026, 1, 12, 8, tzinfo=TZ))
    mark_fired(state, due)
    alerts += due
    ids = [a.alert_id for a in alerts]
    assert len(ids) == len(set(ids))
    at_apology = [a for a in alerts if a.due_at == datetime(2026, 1, 7, 8, tzinfo=TZ)]
    assert [(a.kind, a.scope) for a in at_apology] == [("overdue", "dossier")]
    assert time_alerts(state, CAT, datetime(2026, 1, 20, 8, tzinfo=TZ)) == []


def test_the_apology_date_sweep_inside_an_event_raises_it_once_too() -> None:
    _, alerts = play(RECEIVED, apology("2026-01-05T08:00:00+07:00", "2026-01-06T08:00:00+07:00"),
                     apology("2026-01-05T08:30:00+07:00", "2026-01-06T08:00:00+07:00"),
                     {"type": "result_ready", "at": "2026-01-08T08:00:00+07:00",
                      "decision": "approved"})
    ids = [a.alert_id for a in alerts]
    assert len(ids) == len(set(ids))
    assert sum(1 for a in alerts if a.due_at == datetime(2026, 1, 6, 8, tzinfo=TZ)) == 1
