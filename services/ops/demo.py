"""Sample ``dossier.status`` snapshots for a catalogue, for ``lienthong dashboard --demo``,
screenshots and browser tests: dossiers received over the last weeks at the communes, moved
along each procedure's route at random speeds, so the board has overdue, due-soon, ended,
paused and withdrawn dossiers. Deterministic for a given seed and ``now``."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from lienthong.services.domain.catalogue import Catalogue, RouteError

FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ")
MIDDLE = ("Văn", "Thị", "Hữu", "Minh", "Ngọc", "Đức", "Thu")
GIVEN = ("An", "Bình", "Cường", "Dung", "Giang", "Hà", "Khánh", "Lan", "Mai", "Nam", "Phúc",
         "Quỳnh", "Sơn", "Thảo", "Uyên", "Việt", "Yến")


def _outcome(end: datetime, due: datetime, catalogue: Catalogue) -> str:
    if end > due:
        return "late"
    day = catalogue.calendar.local_date
    return "early" if day(end) < day(due) else "on_time"


def sample_snapshots(catalogue: Catalogue, now: datetime, count: int = 80,
                     seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    cal = catalogue.calendar
    tz = cal.tz
    communes = [a.code for a in catalogue.agencies.values() if a.level == "commune"]
    procedures = [vs[-1] for vs in catalogue.procedures.values()]
    out: list[dict[str, Any]] = []
    seq = 0
    while len(out) < count:
        seq += 1
        proc = rng.choice(procedures)
        receiving = rng.choice(communes)
        try:
            route = catalogue.route(proc, receiving)
        except RouteError:
            continue
        received = cal.next_opening(now - timedelta(days=rng.uniform(0, 24),
                                                     minutes=rng.randint(0, 600)))
        if received >= now:
            received = now - timedelta(hours=1)
        due = cal.add_working_time(received, proc.total)
        steps: list[dict[str, Any]] = []
        timeline: list[dict[str, Any]] = [{
            "event_id": f"ev-{seq}-0", "type": "received", "at": received.isoformat(),
            "agency": receiving, "to_agency": None, "detail": ""}]
        start = received
        ended_at: datetime | None = None
        speed = rng.choice((0.4, 0.7, 0.9, 1.0, 1.15, 1.5))
        previous = receiving
        for i, (agency, allot) in enumerate(route):
            step_due = cal.add_working_time(start, allot)
            end = cal.add_working_time(start, allot * speed * rng.uniform(0.6, 1.2))
            if i:
                timeline.append({"event_id": f"ev-{seq}-{i}", "type": "handoff",
                                 "at": start.isoformat(), "agency": previous,
                                 "to_agency": agency, "detail": ""})
            if end > now:
                steps.append({"agency": agency, "started_at": start.isoformat(),
                              "due_at": step_due.isoformat(), "ended_at": None,
                              "outcome": "overdue" if now > step_due else "open",
                              "overrun_minutes": 0})
                break
            overrun = cal.working_time_between(step_due, end)
            steps.append({"agency": agency, "started_at": start.isoformat(),
                          "due_at": step_due.isoformat(), "ended_at": end.isoformat(),
                          "outcome": _outcome(end, step_due, catalogue),
                          "overrun_minutes": overrun.total_seconds() / 60})
            start, previous = end, agency
        else:
            ended_at = start
            timeline.append({"event_id": f"ev-{seq}-end", "type": "result_ready",
                             "at": start.isoformat(), "agency": previous, "to_agency": None,
                             "detail": ""})
        state, outcome, pauses = "processing", "open", []
        if ended_at is not None:
            state, outcome = "ended", _outcome(ended_at, due, catalogue)
        elif rng.random() < 0.06:
            state, outcome, ended_at = "withdrawn", "open", now - timedelta(minutes=30)
            steps[-1]["ended_at"] = ended_at.isoformat()
        elif rng.random() < 0.08 and steps:
            state = "paused"
            pauses.append({"kind": rng.choice(("supplement", "obligation")),
                           "requested_by": steps[-1]["agency"],
                           "from": steps[-1]["started_at"], "to": None,
                           "reason": "Thiếu bản sao giấy tờ tùy thân"})
        elif now > due:
            outcome = "overdue"
        holder = steps[-1]["agency"] if steps else receiving
        portal = {"processing": 4, "paused": 5, "ended": 9, "withdrawn": 7}[state]
        if rng.random() < 0.04:
            portal = 2 if state != "processing" else None  # a drifted or unsynced one
        name = f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
        day = received.astimezone(tz)
        code = f"{receiving}-{day:%Y%m%d}-{seq:07d}"
        apologies = []
        if outcome in ("overdue", "late") and rng.random() < 0.4:
            apologies.append({"agency": holder, "at": due.isoformat(),
                              "new_due_at": cal.add_working_time(due, timedelta(days=2))
                              .isoformat(),
                              "reason": "Cần thêm thời gian xác minh"})
        postal = []
        if state == "ended" and rng.random() < 0.3:
            postal.append({"leg": "result_out", "tracking_number": f"EB{seq:09d}VN",
                           "status": "delivered", "at": (ended_at or now).isoformat()})
        out.append({
            "dossier": code, "procedure": proc.code, "procedure_name": proc.name,
            "receiving_agency": receiving, "receiving_level": "commune",
            "channel": rng.choice(("desk", "desk", "online", "postal")),
            "applicant": {"name": name, "id_number": f"0{rng.randint(10, 99)}0"
                          f"{rng.randint(10**8, 10**9 - 1)}"},
            "holder": holder, "holder_level": None, "state": state,
            "received_at": received.isoformat(), "due_at": due.isoformat(),
            "ended_at": None if ended_at is None else ended_at.isoformat(),
            "outcome": outcome, "late_agencies": [holder] if outcome in ("late", "overdue")
            else [], "repeat_supplement": False, "steps": steps, "pauses": pauses,
            "apologies": apologies, "postal": postal, "portal_status": portal,
            "timeline": timeline,
            "updated_at": max(received, ended_at or received, now - timedelta(minutes=5))
            .isoformat(),
        })
    return out


def sample_alerts(snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An overdue alert for each dossier the samples show overdue."""
    return [{"alert_id": f"demo-{s['dossier']}", "kind": "overdue", "scope": "dossier",
             "dossier": s["dossier"], "agency": s["holder"], "destination": None,
             "due_at": s["due_at"], "fired_at": s["due_at"], "detail": ""}
            for s in snapshots if s["outcome"] == "overdue"]


def demo_day(catalogue: Catalogue, at: datetime, *, start: datetime, seed: int = 1,
             per_working_hour: float = 30.0, backlog_days: int = 8,
             live_days: int = 2) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``dossier.status`` snapshots and alerts of the day ``lienthong up`` runs, as the
    worker would have published them by the simulated instant ``at``: the simulator's plan (same
    seed, rate and backlog), the events up to ``at`` through the domain core, the worker's own
    snapshot and alert records. For screenshots and browser tests that show the real demo
    without a broker."""
    import json

    from lienthong.connectors.simulator.day import (
        planned_dossiers,
        split_at,
        working_days_before,
    )
    from lienthong.connectors.simulator.generate import plan
    from lienthong.services.domain.replay import Replay
    from lienthong.services.processors.snapshot import snapshot_dict
    from lienthong.services.processors.tracker import alert_record

    cal = catalogue.calendar
    events = plan(catalogue, seed=seed, start=working_days_before(cal, start, backlog_days),
                  dossiers=planned_dossiers(per_working_hour, cal, backlog_days=backlog_days,
                                            live_days=live_days),
                  per_working_hour=per_working_hour)
    day = split_at(events, start)
    sent = day.backlog + [e for e in day.live if datetime.fromisoformat(e["at"]) <= at]
    run = Replay(catalogue)
    run.feed([json.dumps(e, ensure_ascii=False) for e in sent], at)
    run.finish(at)
    snapshots = [snapshot_dict(state, catalogue, at) for state in run.states.values()]
    return snapshots, [alert_record(a, cal.tz) for a in run.alerts]
