"""Replay throughput of the domain core (target: >= 100,000 events/s on one core).

Generates synthetic dossiers of the sample province — every procedure, received at communes
through the year 2026, handed along their routes with realistic delays, some with a supplement
request, a financial obligation or an apology, ended by result_ready and returned — as JSONL
lines in memory, then times ``Replay`` over them: JSON decoding, event parsing and validation,
the state machine and deadlines, the final alert sweep and the report. Like ``lienthong replay``
it runs with Python's cyclic garbage collector held off (``collector_paused``); ``--with-gc``
measures with the collector running, as a long-lived worker would.

    .venv/bin/python bench/bench_replay.py [--events 120000] [--seed 7] [--with-gc]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import uuid
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from lienthong.services.domain.catalogue import Procedure, load_catalogue
from lienthong.services.domain.replay import Replay, collector_paused

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "examples" / "province-h99.yaml"
TARGET = 100_000  # events/s on one core


def _dossier(rnd: random.Random, code: str, receiving: str, procedure: Procedure,
             route: tuple[tuple[str, timedelta], ...], at: datetime) -> list[dict[str, object]]:
    """One dossier's events: received, hand-offs along the route, result, return."""
    events: list[dict[str, object]] = []

    def add(etype: str, agency: str, **extra: object) -> None:
        events.append({"event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                       "type": etype, "dossier": code, "at": at.isoformat(),
                       "agency": agency, **extra})

    add("received", receiving, procedure=procedure.code,
        channel=rnd.choice(("desk", "desk", "online", "postal")),
        applicant={"name": "Nguyễn Văn A", "id_number": "001099012345"})
    holder = receiving
    for i, (agency, allot) in enumerate(route[1:], 1):
        at += timedelta(hours=rnd.uniform(0.5, 1.6) * max(allot.total_seconds(), 7200) / 1200)
        if i == 1 and rnd.random() < 0.1:
            add("supplement_requested", holder, reason="thiếu giấy tờ")
            at += timedelta(days=rnd.randrange(1, 6))
            add("supplement_received", receiving)
            at += timedelta(hours=2)
        add("handoff", holder, to_agency=agency)
        holder = agency
    at += timedelta(hours=rnd.uniform(1, 30))
    if rnd.random() < 0.05:
        add("apology_issued", holder, new_due_at=(at + timedelta(days=3)).isoformat(),
            reason="quá tải")
        at += timedelta(hours=20)
    add("result_ready", holder, decision="approved")
    at += timedelta(hours=rnd.uniform(1, 40))
    add("returned", receiving, channel=rnd.choice(("desk", "postal")))
    return events


def generate(n_events: int, seed: int) -> list[bytes]:
    """About ``n_events`` JSONL lines of dossiers received through 2026."""
    rnd = random.Random(seed)
    catalogue = load_catalogue(CATALOGUE)
    tz = catalogue.calendar.tz
    communes = [a.code for a in catalogue.agencies.values()
                if a.level == "commune" and a.parent is not None]
    procedures = [vs[-1] for vs in catalogue.procedures.values()]
    lines: list[bytes] = []
    start = datetime(2026, 1, 5, 7, 30, tzinfo=tz)
    seq = 0
    per_day: dict[tuple[str, str], int] = {}
    while len(lines) < n_events:
        seq += 1
        receiving = rnd.choice(communes)
        procedure = rnd.choice(procedures)
        at = start + timedelta(minutes=seq * 3 % (360 * 24 * 60) + rnd.randrange(60))
        day = at.strftime("%Y%m%d")
        number = per_day[(receiving, day)] = per_day.get((receiving, day), 0) + 1
        code = f"{receiving}-{day}-{number:07d}"
        events = _dossier(rnd, code, receiving, procedure,
                          catalogue.route(procedure, receiving), at)
        lines.extend(json.dumps(e, ensure_ascii=False).encode() for e in events)
    return lines


def _write_results(name: str, data: dict[str, Any]) -> None:
    """bench/results/<name>.json, for comparison over time."""
    path = Path(__file__).resolve().parent / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"bench": name, "when": datetime.now(UTC).isoformat(
        timespec="seconds"), "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        **data}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--with-gc", action="store_true",
                        help="keep the cyclic garbage collector running")
    args = parser.parse_args()
    lines = generate(args.events, args.seed)
    catalogue = load_catalogue(CATALOGUE)
    catalogue.calendar.add_working_time(datetime(2026, 1, 5, 8, tzinfo=catalogue.calendar.tz),
                                        timedelta(days=400))  # build the year tables first
    with nullcontext() if args.with_gc else collector_paused():  # as ``lienthong replay``
        started = time.process_time()
        run = Replay(catalogue)
        run.feed(lines)
        when = run.finish()
        applied = time.process_time()
        report = run.report(when)
        orjson.dumps(report)
        done = time.process_time()
    n = len(lines)
    apply_rate, total_rate = n / (applied - started), n / (done - started)
    print(f"events: {n}, dossiers: {len(run.states)}, alerts: {len(run.alerts)}, "
          f"rejected: {len(run.rejected)}")
    print(f"target: >= {TARGET:,} events/s on one core (DESIGN section 10); "
          f"garbage collector {'on' if args.with_gc else 'paused'}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"apply (parse + state machine + alerts): {apply_rate:,.0f} events/s "
          f"({apply_rate / TARGET:.2f} x target)")
    print(f"end to end (incl. report + JSON): {total_rate:,.0f} events/s "
          f"({total_rate / TARGET:.2f} x target)")
    if run.rejected:
        print("first rejections:", *run.rejected[:3], sep="\n  ")
    _write_results("replay", {
        "events": n, "dossiers": len(run.states), "alerts": len(run.alerts),
        "rejected": len(run.rejected), "gc": args.with_gc, "target_per_s": TARGET,
        "apply_per_s": round(apply_rate), "end_to_end_per_s": round(total_rate),
        "ratio_apply_to_target": round(apply_rate / TARGET, 3),
        "ratio_end_to_end_to_target": round(total_rate / TARGET, 3)})


if __name__ == "__main__":
    main()
