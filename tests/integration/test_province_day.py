"""A province day through the real worker matches ``lienthong replay`` over the same events.

The day is on the topic before the worker starts, so the worker catches up on a backlog: the
sweeper waits until each partition's backlog is applied, and then raises exactly the alerts the
domain core raises over the whole day."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lienthong.connectors.simulator.generate import plan
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.domain.replay import replay
from tests.integration.hub import CATALOGUE, Hub, TopicReader, decoded

STEP_FIELDS = ("agency", "started_at", "due_at", "ended_at", "outcome")
ROW_FIELDS = ("dossier", "procedure", "received_at", "due_at", "ended_at", "outcome",
              "late_agencies")


def next_saturday_morning(after: datetime) -> datetime:
    """A Saturday 10:00 after ``after``: no working time passes while the test runs, so an
    outcome judged a few seconds later is the same."""
    day = after.date() + timedelta(days=1)
    while day.weekday() != 5:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 10, 0, tzinfo=after.tzinfo)


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {**{k: row[k] for k in ROW_FIELDS},
            "steps": [{k: s[k] for k in STEP_FIELDS} for s in row["steps"]]}


def test_a_province_day_through_the_worker_gives_the_outcomes_and_alerts_of_replay(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    catalogue = load_catalogue(CATALOGUE)
    events = plan(catalogue, seed=7, dossiers=80,
                  start=datetime.fromisoformat("2026-11-25T07:30:00+07:00"))
    now = next_saturday_morning(max(datetime.fromisoformat(e["at"]) for e in events))
    expected, rejected = replay((json.dumps(e) for e in events), catalogue, now)
    assert rejected == []
    rows = {row["dossier"]: comparable(row) for row in expected["dossiers"]}
    wanted_alerts = {(a["kind"], a["scope"], a["dossier"], a["due_at"])
                     for a in expected["alerts"]}
    per_dossier: dict[str, int] = {}
    for e in events:
        per_dossier[e["dossier"]] = per_dossier.get(e["dossier"], 0) + 1

    hub = Hub(kafka_bootstrap, tmp_path)
    hub.create_topics()
    hub.publish(events)  # the whole day is on the topic before the worker starts
    hub.start_worker(clock=f"scaled:{now.isoformat()}:1@{time.time()}")
    status = TopicReader(hub.bootstrap, hub.names.status)
    alerts = TopicReader(hub.bootstrap, hub.names.alerts)
    try:
        latest: dict[str, dict[str, Any]] = {}
        read = [0]

        def all_applied(records: list[Any]) -> bool:
            for r in records[read[0]:]:
                latest[r.key.decode()] = json.loads(r.value)
            read[0] = len(records)
            return len(latest) == len(per_dossier) and all(
                len(latest[d]["timeline"]) >= n for d, n in per_dossier.items())

        assert status.until(all_applied, 120, hub.live()), hub.log()

        def fired(records: list[Any]) -> set[tuple[Any, ...]]:
            return {(a["kind"], a["scope"], a["dossier"], a["due_at"])
                    for a in decoded(records, "alert")}

        assert alerts.until(lambda r: wanted_alerts <= fired(r), 60, hub.live()), (
            sorted(wanted_alerts - fired(alerts.records))[:5])
        time.sleep(1.0)
        alerts.poll()
        assert fired(alerts.records) == wanted_alerts, "the same alerts, none more"
        got = {code: comparable(snap) for code, snap in latest.items()}
        mismatched = [code for code in rows if got.get(code) != rows[code]]
        assert not mismatched, (mismatched[:3], [(rows[c], got.get(c)) for c in mismatched[:1]])
        print(f"{len(events)} events, {len(rows)} dossiers: outcomes and {len(wanted_alerts)} "
              f"alerts identical to replay ({len(alerts.records)} alert records on the wire)")
    finally:
        status.close()
        alerts.close()
        hub.stop_all()
