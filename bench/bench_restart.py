"""Restart time of a worker to serving, with 1,000,000 dossier states in its table's changelog.

    .venv/bin/python bench/bench_restart.py [--states 1000000] [--timeout 600]

Target: <= 60 s from the start of a ``lienthong worker`` process to serving: its
table recovered from the changelog, its deadline index built, and every partition of
``dossier.events`` swept.

- The changelog (``topics.changelog``) is written directly, before any worker runs, with
  aiokafka's producer: ``--states`` states, each the stored form (``DossierStateCodec``) of
  one of the open dossiers of a simulated province halfway through its traffic, under its own
  dossier code, on the partition of that code (as the worker writes it). ``dossier.events`` is
  empty, so the worker has no backlog of events to apply.
- One real ``lienthong worker`` subprocess is started at ``--loglevel info`` with a clock at
  the simulated province's instant (so the states' alerts are not all long overdue), and its
  log is read for the instants of faust's "Restoring state from changelog topics", "Done
  reading from changelog topics", the worker's "deadline index rebuilt: N dossiers" and the
  last partition's "caught up ... sweeping it". The figure is the last of these minus the
  process start.
- Beside it, in the same run: a bare aiokafka consumer reading the same changelog without
  decoding a record (the floor for any reader of those bytes with that client), and the
  decoding of a state (``DossierStateCodec.loads``: JSON, then ``DossierState.from_dict``)
  times the number of states.

Uses the embedded broker (or KAFKA_BOOTSTRAP_SERVERS). Writes bench/results/restart.json.
Takes about as long as the restart itself plus a minute to write the changelog.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deadlines import code, open_templates
from benchkit import CATALOGUE, BenchHub, Figure, machine, print_table, write_results

from lienthong.deploy.embedded import kafka_cluster
from lienthong.schemas import topics
from lienthong.services.domain.catalogue import Catalogue, load_catalogue
from lienthong.services.domain.dossier import DossierState, next_alarm
from lienthong.services.processors.app import DossierStateCodec
from lienthong.services.processors.partitioning import partition_of

TARGET_S = 60.0
PARTITIONS = 12
STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")
MARKS = {
    "recovery_started": "Restoring state from changelog topics",
    "recovery_read": "Done reading from changelog topics",
    "indexed": "deadline index rebuilt:",
}


def changelog_payloads(templates: list[DossierState], catalogue: Catalogue,
                       ) -> list[tuple[str, bytes]]:
    """(template code, stored form) of every template, as the worker stores it (with the
    index header of ``stored.py``)."""
    state_codec = DossierStateCodec(catalogue.calendar.tz, catalogue)
    return [(t.code, state_codec.dumps(t)) for t in templates]


async def write_changelog(bootstrap: str, topic: str, payloads: list[tuple[str, bytes]],
                          n: int) -> int:
    """``n`` states on ``topic``, state i the stored form of template i mod len(templates)
    under dossier code ``code(i)``; returns the bytes written."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20,
                                max_batch_size=1 << 20, max_request_size=8 << 20)
    await producer.start()
    written = 0
    try:
        pending: list[asyncio.Future[Any]] = []
        for i in range(n):
            template_code, stored = payloads[i % len(payloads)]
            key = code(i).encode()
            value = stored.replace(template_code.encode(), key, 1)
            written += len(value)
            pending.append(await producer.send(topic, value, key=key,
                                               partition=partition_of(key, PARTITIONS)))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return written


async def raw_read(bootstrap: str, topic: str) -> tuple[int, float]:
    """Every record of ``topic`` read by a bare aiokafka consumer, nothing decoded."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        started = time.perf_counter()
        count, total = 0, sum(ends.values())
        deadline = time.monotonic() + 300
        while count < total and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=50_000)).values():
                count += len(batch)
        return count, time.perf_counter() - started
    finally:
        await consumer.stop()


def decode_cost(payloads: list[tuple[str, bytes]], tz: Any) -> float:
    """Microseconds to decode one stored state (mean over the templates, three passes)."""
    state_codec = DossierStateCodec(tz)
    started = time.perf_counter()
    for _ in range(3):
        for _, stored in payloads:
            state_codec.loads(stored)
    return (time.perf_counter() - started) / (3 * len(payloads)) * 1e6


def log_instant(line: str) -> float | None:
    match = STAMP.search(line)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def watch(log: Path, proc: Any, partitions: int, timeout: float) -> dict[str, float]:
    """Instants (epoch seconds) of the marks in the worker's log, until every partition is
    swept, the worker exits or ``timeout`` passes."""
    seen: dict[str, float] = {}
    swept: set[int] = set()
    deadline = time.monotonic() + timeout
    offset = 0
    while time.monotonic() < deadline and proc.poll() is None and len(swept) < partitions:
        time.sleep(0.2)
        text = log.read_text(errors="replace") if log.exists() else ""
        for line in text[offset:].splitlines():
            at = log_instant(line)
            if at is None:
                continue
            for mark, words in MARKS.items():
                if words in line and mark not in seen:
                    seen[mark] = at
            caught = re.search(r"partition (\d+) caught up at offset \d+: sweeping it", line)
            if caught:
                swept.add(int(caught.group(1)))
                if len(swept) == partitions:
                    seen["sweeping"] = at
        offset = text.rfind("\n") + 1 if text else 0
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the worker to serve")
    args = parser.parse_args()
    print(f"restart bench: machine {machine()}")
    catalogue = load_catalogue(CATALOGUE)
    tz = catalogue.calendar.tz
    templates = open_templates()
    payloads = changelog_payloads(templates, catalogue)
    with_alarm = [next_alarm(t, catalogue) is not None for t in templates]
    expected = sum(with_alarm[i % len(templates)] for i in range(args.states))
    virtual_now = max(t.last_at for t in templates)
    with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp, \
            kafka_cluster() as bootstrap:
        hub = BenchHub(bootstrap, Path(tmp) / "restart", PARTITIONS)
        hub.workdir.mkdir(parents=True)
        hub.create_topics()
        changelog = topics.changelog(hub.settings)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.create_topics([NewTopic(changelog, PARTITIONS, 1,
                                          topic_configs={"cleanup.policy": "compact"})])
            admin.wait_for_topics([changelog], timeout_ms=30_000)
        finally:
            admin.close()
        started = time.perf_counter()
        written = asyncio.run(write_changelog(bootstrap, changelog, payloads, args.states))
        write_s = time.perf_counter() - started
        print(f"  changelog: {args.states:,} states, {written / 1e6:,.0f} MB written in "
              f"{write_s:.1f} s")
        raw_count, raw_s = asyncio.run(raw_read(bootstrap, changelog))
        if raw_count != args.states:
            print(f"  warning: the bare read stopped at {raw_count:,} records")
        print(f"  bare aiokafka read of the changelog: {raw_s:.1f} s "
              f"({raw_count / raw_s:,.0f} records/s)")
        decode_us = decode_cost(payloads, tz)
        print(f"  decoding a stored state: {decode_us:.1f} us, x {args.states:,} = "
              f"{decode_us * args.states / 1e6:.1f} s")
        epoch = time.time()
        proc = hub.start_worker(clock=f"scaled:{virtual_now.isoformat()}:1@{epoch}",
                                loglevel="info")
        try:
            marks = watch(hub.workdir / "worker0.log", proc, PARTITIONS, args.timeout)
        finally:
            hub.stop_workers()
        log_text = (hub.workdir / "worker0.log").read_text(errors="replace")
    indexed = re.search(r"deadline index rebuilt: (\d+) dossiers", log_text)
    if "sweeping" not in marks:
        print(f"  the worker did not serve within {args.timeout:.0f} s; marks {marks}; "
              f"log tail:\n{log_text[-3000:]}")
        return 1
    since = {mark: at - epoch for mark, at in marks.items()}
    phases = {
        "start_to_recovery_s": since.get("recovery_started"),
        "recovery_s": (marks["recovery_read"] - marks["recovery_started"]
                       if {"recovery_read", "recovery_started"} <= marks.keys() else None),
        "recovery_to_indexed_s": (marks["indexed"] - marks["recovery_read"]
                                  if {"recovery_read", "indexed"} <= marks.keys() else None),
        "indexed_to_sweeping_s": (marks["sweeping"] - marks["indexed"]
                                  if "indexed" in marks else None),
    }
    serving = since["sweeping"]
    count = int(indexed.group(1)) if indexed else -1
    print(f"  worker: serving after {serving:.1f} s; "
          + ", ".join(f"{k} {v:.1f}" for k, v in phases.items() if v is not None)
          + f"; {count:,} dossiers indexed (expected {expected:,})")
    recovery = phases["recovery_s"]
    figures = [
        Figure(f"worker restart to serving, {args.states:,} states in the changelog",
               serving, "s", TARGET_S, higher_is_better=False,
               note=(f"recovery {recovery:.1f} s, bare read {raw_s:.1f} s, decode "
                     f"{decode_us * args.states / 1e6:.1f} s" if recovery is not None else "")),
    ]
    print_table("restart", figures)
    path = write_results("restart", figures, {
        "states": args.states, "changelog_mb": round(written / 1e6, 1),
        "changelog_write_s": round(write_s, 1), "bare_read_s": round(raw_s, 2),
        "decode_us_per_state": round(decode_us, 2), "indexed": count,
        "expected_indexed": expected,
        **{k: None if v is None else round(v, 2) for k, v in {**phases,
                                                              "serving_s": serving}.items()}})
    print(f"  results: {path}")
    return 0 if count == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
