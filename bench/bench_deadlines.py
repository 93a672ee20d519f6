"""Deadline index: memory per open deadline and rebuild time at 1,000,000 dossiers; alert
lateness of the real worker.

    .venv/bin/python bench/bench_deadlines.py [--dossiers 1000000] [--alerts 5000]

DESIGN section 10 targets: <= 256 bytes per open deadline in the in-memory index; index
rebuilt in <= 10 s; overdue alerts p99 <= 1 s after the due instant.

- Memory: ``DeadlineIndex.schedule`` of ``--dossiers`` dossiers the way the tracker calls it
  (a dossier code decoded from the table's key bytes, an epoch float per alarm), measured with
  tracemalloc (every Python allocation the index holds) and as the process's RSS growth.
- Rebuild: ``Tracker.rebuild_index`` over ``--dossiers`` real ``DossierState`` objects, every
  partition owned: as after a restart (no next alarm computed yet; each key's partition known,
  as faust's store records it while recovering the changelog), again as after a rebalance
  (next alarms known), and once hashing every key (murmur2). The states are copies of the open
  dossiers of a simulated province (each a DossierState of its own with its own dossier code,
  sharing clocks, steps and timeline with its template: ``next_alarm`` only reads them, and
  its due_soon instants are already computed, as in states recovered from the changelog).
- Lateness: one ``lienthong worker`` with a scaled clock (``scaled:ISO:SPEED@EPOCH``) and
  ``--alerts`` dossiers received so that their first step falls overdue spread over a
  ``--window``-second real window, with no traffic meanwhile. Lateness = broker append time of
  the overdue alert - the real instant of its due (virtual due mapped through the clock).

Uses the embedded broker (or KAFKA_BOOTSTRAP_SERVERS) for the lateness part only. Writes
bench/results/deadlines.json.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (
    CATALOGUE,
    BenchHub,
    Figure,
    Offsets,
    machine,
    percentile,
    print_table,
    read_all,
    write_results,
)

from lienthong.connectors.simulator.generate import plan
from lienthong.deploy.embedded import kafka_cluster
from lienthong.schemas import codec
from lienthong.services.clock import WallClock
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.domain.dossier import (
    Applied,
    DossierState,
    apply_event,
    next_alarm,
)
from lienthong.services.domain.events import parse_event
from lienthong.services.domain.replay import collector_paused
from lienthong.services.processors.deadline_index import DeadlineIndex
from lienthong.services.processors.holdings import Holdings
from lienthong.services.processors.partitioning import partition_of
from lienthong.services.processors.tracker import InMemoryStates, Tracker

TARGET_BYTES = 256.0
TARGET_REBUILD_S = 10.0
TARGET_P99_S = 1.0
PARTITIONS = 12
COMMUNE = "000.00.15.H99"


def code(i: int) -> str:
    return f"{COMMUNE}-20261125-{i:07d}"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def index_memory(n: int) -> dict[str, float]:
    """Bytes per dossier held by a DeadlineIndex of ``n`` open deadlines."""
    keys = [code(i).encode() for i in range(n)]  # the table's keys (not counted)
    base_ts = datetime.fromisoformat("2026-11-25T08:00:00+07:00").timestamp()

    def fill(idx: DeadlineIndex) -> None:
        for i, key in enumerate(keys):
            # as Tracker._schedule: the code decoded from the key, a fresh float per alarm
            idx.schedule(i % PARTITIONS, key.decode(), base_ts + (i * 7919) % 2_592_000 + 0.5)

    gc.collect()
    rss0 = rss_bytes()
    idx = DeadlineIndex()
    t = time.perf_counter()
    fill(idx)
    fill_s = time.perf_counter() - t
    gc.collect()
    rss = (rss_bytes() - rss0) / n
    del idx
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    idx = DeadlineIndex()
    fill(idx)
    traced = (tracemalloc.get_traced_memory()[0] - before) / n
    # the same index when it keeps the codes the table already holds (no decoded copy)
    shared = [k.decode() for k in keys[: n // 10]]
    mid = tracemalloc.get_traced_memory()[0]
    idx2 = DeadlineIndex()
    for i, c in enumerate(shared):
        idx2.schedule(i % PARTITIONS, c, base_ts + i + 0.5)
    traced_shared = (tracemalloc.get_traced_memory()[0] - mid) / len(shared)
    tracemalloc.stop()
    assert len(idx) == n
    print(f"  index of {n:,}: {traced:.0f} B/deadline traced ({traced_shared:.0f} B without "
          f"the decoded code copy), RSS growth {rss:.0f} B/deadline; filled in {fill_s:.1f} s")
    return {"dossiers": n, "traced_bytes_per_deadline": round(traced, 1),
            "traced_bytes_without_code_copy": round(traced_shared, 1),
            "rss_bytes_per_deadline": round(rss, 1), "fill_seconds": round(fill_s, 2)}


def open_templates() -> list[DossierState]:
    """Open dossiers of a simulated province, halfway through its traffic."""
    catalogue = load_catalogue(CATALOGUE)
    events = plan(catalogue, seed=5, dossiers=2000,
                  start=datetime.fromisoformat("2026-10-05T08:00:00+07:00"),
                  per_working_hour=120)
    cut = datetime.fromisoformat(events[len(events) // 2]["at"])
    states: dict[str, DossierState] = {}
    for raw in events:
        e = parse_event(raw)
        if e.at > cut:
            break
        d = apply_event(states.get(e.dossier), e, catalogue)
        assert isinstance(d, Applied)
        states[e.dossier] = d.state
    out = [s for s in states.values() if s.end_type is None]
    for s in out:
        next_alarm(s, catalogue)  # as the worker leaves them: due_soon instants computed
    return out


def copies(templates: list[DossierState], n: int) -> dict[bytes, DossierState]:
    """``n`` state objects of their own, each with its own code; clocks, steps and the rest
    are shared with their template (read-only for ``next_alarm``, whose due_soon instants are
    already computed, as in states recovered from the changelog). Like states just read back
    from the changelog, none has its next alarm computed yet."""
    names = [f.name for f in fields(DossierState) if f.init]
    assert names[0] == "code"
    rest = [tuple(getattr(t, name) for name in names[1:]) for t in templates]
    return {code(i).encode(): DossierState(code(i), *rest[i % len(rest)]) for i in range(n)}


def rebuild(n: int) -> dict[str, float]:
    """``Tracker.rebuild_index`` over ``n`` states three ways: as after a restart (states
    fresh from the changelog, whose partition faust's store recorded while recovering them),
    as after a rebalance (the same states again: their next alarms already known), and with
    no partition known (every key hashed)."""
    catalogue = load_catalogue(CATALOGUE)
    templates = open_templates()
    t = time.perf_counter()
    states = copies(templates, n)
    # what faust's in-memory store records while it recovers the changelog
    recovered = {key: partition_of(key, PARTITIONS) for key in states}
    built = time.perf_counter() - t
    table = InMemoryStates(states, partitions=recovered)
    tracker = Tracker(catalogue=catalogue, clock=WallClock(), states=table,
                      outputs=None, partitions=PARTITIONS)  # type: ignore[arg-type]
    gc.collect()
    t = time.perf_counter()
    indexed = tracker.rebuild_index(range(PARTITIONS))
    took = time.perf_counter() - t
    gc.collect()
    t = time.perf_counter()
    again = tracker.rebuild_index(range(PARTITIONS))
    warm = time.perf_counter() - t
    assert again == indexed
    table.partitions = {}
    gc.collect()
    t = time.perf_counter()
    hashed = tracker.rebuild_index(range(PARTITIONS))
    hashing = time.perf_counter() - t
    assert hashed == indexed
    # where the time goes, on a tenth of the states (fresh copies: no alarm computed yet)
    sample = list(copies(templates, max(1, n // 10)).items())
    with collector_paused():
        t = time.perf_counter()
        for key, _ in sample:
            partition_of(key, PARTITIONS)
        part_us = (time.perf_counter() - t) / len(sample) * 1e6
        t = time.perf_counter()
        for _, state in sample:
            next_alarm(state, catalogue)
        alarm_us = (time.perf_counter() - t) / len(sample) * 1e6
        t = time.perf_counter()
        for _, state in sample:
            next_alarm(state, catalogue)
        cached_us = (time.perf_counter() - t) / len(sample) * 1e6
        t = time.perf_counter()
        Holdings(catalogue).recount(sample, WallClock().now())
        holdings_us = (time.perf_counter() - t) / len(sample) * 1e6
    print(f"  rebuild over {n:,} states ({len(templates)} templates, {built:.1f} s to copy): "
          f"{indexed:,} open deadlines indexed in {took:.2f} s = {took / n * 1e6:.1f} us/state "
          f"as after a restart; {warm:.2f} s after a rebalance (alarms known), {hashing:.2f} s "
          f"hashing every key (partition_of {part_us:.1f} us, next_alarm {alarm_us:.1f} us, "
          f"{cached_us:.2f} us once known, holdings recount {holdings_us:.1f} us)")
    del states, tracker, sample, table, recovered
    gc.collect()
    return {"states": n, "indexed": indexed, "seconds": round(took, 3),
            "seconds_after_rebalance": round(warm, 3),
            "seconds_hashing_every_key": round(hashing, 3),
            "templates": len(templates), "partition_of_us": round(part_us, 2),
            "next_alarm_us": round(alarm_us, 2), "next_alarm_known_us": round(cached_us, 3),
            "holdings_recount_us": round(holdings_us, 2)}


def received(dossier: str, at: datetime) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "received", "dossier": dossier,
            "at": at.isoformat(), "agency": COMMUNE, "procedure": "1.001193",
            "channel": "desk", "applicant": {"name": "Trần Thị Bích",
                                             "id_number": "001099012345"}}


def lateness(bootstrap: str, workdir: Path, n: int, window: float,
             lead: float) -> dict[str, Any]:
    """Overdue alerts of ``n`` dossiers, due spread over ``window`` real seconds."""
    catalogue = load_catalogue(CATALOGUE)
    first = datetime.fromisoformat("2026-11-25T09:00:00+07:00")
    spread = 600  # virtual seconds of receipts, so of step dues
    events = [received(code(i), first + timedelta(seconds=i * spread // n)) for i in range(n)]
    dues: dict[str, datetime] = {}
    for e in events:
        d = apply_event(None, parse_event(e), catalogue)
        assert isinstance(d, Applied)
        dues[e["dossier"]] = d.state.steps[-1].clock.due
    origin = min(dues.values())
    speed = max(1.0, (max(dues.values()) - origin).total_seconds() / window)
    hub = BenchHub(bootstrap, workdir / "lateness", PARTITIONS)
    hub.workdir.mkdir(parents=True)
    hub.create_topics()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for e in events:
        producer.send(hub.names.events, key=e["dossier"].encode(), value=codec.EVENTS.encode(e))
    producer.flush()
    producer.close()
    epoch = time.time() + lead  # virtual time reaches the first due then
    proc = hub.start_worker(clock=f"scaled:{origin.isoformat()}:{speed}@{epoch}")
    status = Offsets(bootstrap, hub.names.status)
    alerts = Offsets(bootstrap, hub.names.alerts)
    try:
        ready = status.wait(n, lead, alive=proc)
        spare = epoch - time.time()
        if not ready or spare < 0:
            print(f"  warning: the worker had not applied all receipts {-spare:.1f} s after "
                  "the first due")
        last_real = epoch + window + 3.0
        while time.time() < last_real and proc.poll() is None:
            time.sleep(0.5)
        alerts.wait(alerts.total(), 1)
    finally:
        status.close()
        alerts.close()
        hub.stop_workers()
    late: list[float] = []
    seen: set[str] = set()
    for r in read_all(bootstrap, hub.names.alerts):
        a = codec.ALERTS.decode(r.value)
        if a["kind"] != "overdue" or a["scope"] != "step" or a["dossier"] in seen:
            continue
        seen.add(a["dossier"])
        due = datetime.fromisoformat(a["due_at"])
        due_real = epoch + (due - origin).total_seconds() / speed
        late.append(r.timestamp / 1000.0 - due_real)
    missing = n - len(seen)
    p50, p99 = percentile(late, 50), percentile(late, 99)
    print(f"  lateness of {len(late):,} overdue alerts over {window:.0f} s "
          f"(speed {speed:.0f}x, {spare:.1f} s spare after ingest): p50 {p50 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {max(late) * 1000:.0f} ms, early "
          f"{sum(1 for x in late if x < 0)}, missing {missing}")
    return {"dossiers": n, "window_s": window, "speed": round(speed, 2),
            "alerts": len(late), "missing": missing, "p50_s": round(p50, 4),
            "p99_s": round(p99, 4), "max_s": round(max(late), 4),
            "spare_after_ingest_s": round(spare, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dossiers", type=int, default=1_000_000)
    parser.add_argument("--alerts", type=int, default=5_000)
    parser.add_argument("--window", type=float, default=20.0, help="real seconds of dues")
    parser.add_argument("--lead", type=float, default=25.0,
                        help="real seconds for the worker to start and apply the receipts")
    args = parser.parse_args()
    print(f"deadlines bench: machine {machine()}")
    mem = index_memory(args.dossiers)
    reb = rebuild(args.dossiers)
    with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp, \
            kafka_cluster() as bootstrap:
        lat = lateness(bootstrap, Path(tmp), args.alerts, args.window, args.lead)
    figures = [
        Figure(f"index bytes per open deadline ({args.dossiers:,})",
               mem["traced_bytes_per_deadline"], "B", TARGET_BYTES, higher_is_better=False,
               note=f"RSS {mem['rss_bytes_per_deadline']:.0f} B"),
        Figure(f"index rebuild from {args.dossiers:,} states", reb["seconds"], "s",
               TARGET_REBUILD_S, higher_is_better=False,
               note=f"after a rebalance {reb['seconds_after_rebalance']:.1f} s, hashing "
                    f"every key {reb['seconds_hashing_every_key']:.1f} s"),
        Figure(f"p99 overdue alert lateness ({lat['alerts']:,} alerts)", lat["p99_s"] * 1000,
               "ms", TARGET_P99_S * 1000, higher_is_better=False,
               note=f"p50 {lat['p50_s'] * 1000:.0f} ms, missing {lat['missing']}"),
    ]
    print_table("deadlines", figures)
    path = write_results("deadlines", figures, {"memory": mem, "rebuild": reb,
                                                "lateness": lat})
    print(f"  results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
