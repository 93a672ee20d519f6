"""Evidence: the audit chain's cost to the worker, ``audit verify``'s rate, receipt round trip.

    .venv/bin/python bench/bench_audit.py [--events 30000] [--entries 200000] [--receipts 200]
                                     [--rounds 3] [--append-only]

- **Append cost.** The same ``--events`` simulator events go through one worker ``--rounds``
  times in each condition, each run on a fresh hub of the same broker in the same run: alone,
  and with ``lienthong audit chain`` running beside it (both subprocesses, the chain chaining
  every event, delivery, alert and dead letter as it comes); rounds alternate which goes first,
  and the share is best with ÷ best without (each round's share is printed too). 30,000
  events and three rounds by default: a 10,000-event run lasts about a second, and identical
  runs of it differed by up to 2.5 times (10,173, 6,431 and 4,090 events/s alone in one run).
  Worker rate as in ``bench_pipeline.py``: events / (last delivery's broker append − first
  output's). Target: with the chain at most 10 % slower (≥ 90 %). The chain runs as deployed
  (``--nice 19``, the command's default) and the worker starts once it has resumed; beside the
  share it prints the chain's CPU per entry from then on (its start apart), and how long after
  the worker's last delivery the chain had chained everything.
- **Verify rate.** ``--entries`` audit entries built with the one codec around real encoded
  simulator events (of version 2, and of version 1 in the same rounds:
  ``--verify-rate-only`` runs this part alone) are checked by ``chain.verify_run`` (the
  code ``lienthong audit verify`` runs per partition), on one core, in memory: hashing over
  the pre-framed bytes only. Target ≥ 200,000 entries/s. The rate of the whole ``audit
  verify`` from Kafka (reading included) on the chained run is printed beside it.
- **Verify in bounded memory.** ``--entries`` entries over ``--partitions`` partitions, a
  signed checkpoint every 50,000, as a copy file and on a topic of the broker; each verify runs
  in a fresh interpreter and its peak RSS (``VmHWM``) less that of a bare one (same imports)
  is its memory: the whole log read first (``read_copy`` + ``verify_log``, what verify did
  before) vs streamed (``lienthong audit verify --copy`` and from Kafka). Target ≤ 64 MB,
  whatever the log's size; the streamed checker's in-memory rate keeps the ≥ 200,000/s target,
  the rates from the copy and from Kafka (reading included) are printed beside it.
  ``--verify-memory-only`` runs this part alone.
- **Export in bounded memory.** ``--entries`` entries of 1,000 dossiers over
  ``--partitions`` partitions (a dossier on one partition), the same checkpoints; one
  dossier, every 1,000th entry, is exported — its range is its whole partition — in a fresh
  interpreter each: the whole log read first and the document built whole (as before) vs
  streamed (``lienthong audit export --copy`` and from Kafka), peak RSS above a bare one.
  The three ``CODE.json`` must be the same bytes and verify. Target ≤ 64 MB as for verify.
  ``--export-memory-only`` runs this part alone.
- **Receipt round trip.** ``--receipts`` hand-off deliveries produced one by one (20/s) to the
  delivery service, which POSTs them to the agency doubles on 127.0.0.1; each round trip is
  the receipt record's timestamp on ``receipts`` minus the delivery's produce time. DESIGN has
  no target for it; 250 ms is set here (well inside a working minute).

Uses the embedded broker (or KAFKA_BOOTSTRAP_SERVERS). Writes bench/results/audit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import expected_deliveries, load, province_events
from benchkit import (
    BenchHub,
    Figure,
    Offsets,
    machine,
    percentile,
    print_table,
    read_all,
    write_results,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka import KafkaProducer

from lienthong.deploy.embedded import kafka_cluster
from lienthong.schemas import codec
from lienthong.services.audit import chain
from lienthong.services.audit.entries import Source, append, create_audit_key
from lienthong.services.audit.verify import (
    CHUNK_ENTRIES,
    AuditCopy,
    LogChecker,
    read_log,
    verify_kafka,
    write_copy,
)

TARGET_SHARE = 90.0
TARGET_VERIFY = 200_000.0
TARGET_RECEIPT_MS = 250.0
TARGET_VERIFY_MB = 64.0  # peak memory of a streamed verify above the bare interpreter's


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_run(bootstrap: str, workdir: Path, events: list[dict[str, Any]], partitions: int,
               key: Path | None) -> dict[str, Any]:
    hub = BenchHub(bootstrap, workdir, partitions)
    hub.workdir.mkdir(parents=True)
    hub.create_topics()
    load(bootstrap, hub.names.events, [(e["dossier"].encode(), codec.EVENTS.encode(e))
                                       for e in events])
    clock_at = max(datetime.fromisoformat(e["at"]) for e in events) + timedelta(minutes=1)
    wanted = sum(expected_deliveries(events, clock_at).values())
    chainer = None
    if key is not None:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
               "LIENTHONG_TOPIC_PREFIX": hub.prefix, "LIENTHONG_AUDIT_KEY": str(key)}
        chainer = subprocess.Popen(
            [sys.executable, "-m", "lienthong.services.cli", "audit", "chain",
             "--checkpoint-seconds", "5"], env=env, cwd=workdir,
            stdout=open(workdir / "chain.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        # The worker starts once the chain has resumed, so the chain's CPU per entry is its
        # steady cost beside the worker; what it spent starting (imports, reading its
        # positions) is reported apart.
        deadline = time.monotonic() + 60
        while b"audit chain resumed" not in (workdir / "chain.log").read_bytes():
            if chainer.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the audit chain did not start:\n"
                                 + (workdir / "chain.log").read_text()[-2000:])
            time.sleep(0.05)
        chain_start_cpu = cpu_seconds(chainer.pid)
    probe = Offsets(bootstrap, hub.names.deliveries)
    proc = hub.start_worker(clock=f"scaled:{clock_at.isoformat()}:1")
    try:
        if not probe.wait(wanted, 150, alive=proc):
            raise SystemExit(f"worker did not write {wanted} deliveries:\n{hub.log()}")
        done_at = time.time()
    finally:
        probe.close()
        hub.stop_workers()
    deliveries = read_all(bootstrap, hub.names.deliveries)
    outputs = deliveries + read_all(bootstrap, hub.names.status)
    first = min(r.timestamp for r in outputs)
    last = max(r.timestamp for r in deliveries)
    out: dict[str, Any] = {"events": len(events), "deliveries": len(deliveries),
                           "worker_per_s": round(len(events) / ((last - first) / 1000.0))}
    if chainer is not None:
        sources = sum(Offsets(bootstrap, t).total() for t in
                      (hub.names.events, hub.names.deliveries, hub.names.alerts,
                       hub.names.deadletter, hub.names.receipts,
                       hub.names.operator_actions))
        audit = Offsets(bootstrap, hub.names.audit_log)
        # Transaction markers take offsets too, so wait on records read, not end offsets.
        deadline = time.monotonic() + 120
        copy = read_log(bootstrap, hub.names.audit_log, hub.names.audit_checkpoints)
        while copy.entries < sources and time.monotonic() < deadline:
            time.sleep(1.0)
            copy = read_log(bootstrap, hub.names.audit_log, hub.names.audit_checkpoints)
        lag = time.time() - done_at
        audit.close()
        cpu = cpu_seconds(chainer.pid)
        chainer.send_signal(signal.SIGTERM)
        chainer.wait(30)
        t = time.perf_counter()
        from lienthong.services.audit.entries import load_audit_key
        report = verify_kafka(bootstrap, hub.names.audit_log, hub.names.audit_checkpoints,
                              load_audit_key(key).public_raw)
        whole = time.perf_counter() - t
        out.update({"chained_entries": report.entries, "source_records": sources,
                    "chain_caught_up_s_after_worker": round(lag, 1),
                    "chain_cpu_us_per_entry": round((cpu - chain_start_cpu)
                                                    / max(1, report.entries) * 1e6, 1),
                    "chain_start_cpu_s": round(chain_start_cpu, 2),
                    "verify_from_kafka_ok": report.ok,
                    "verify_from_kafka_per_s": round(report.entries / whole),
                    "checkpoints": report.checkpoints})
    return out


def verify_rate(events: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """``chain.verify_run`` over ``n`` entries of version 2 (what the chain service writes)
    and, in the same rounds, of version 1 (logs written before the dossier digest)."""
    contents = [codec.EVENTS.encode(e) for e in events[:5000]]
    at = datetime.now(UTC)
    chains: dict[int, list[bytes]] = {}
    for version in (1, 2):
        state, values = chain.ChainState(), []
        for i in range(n):
            e = contents[i % len(contents)]
            value, state = append(state, Source("event", "dossier.events", 0, i, 0,
                                                b"000.00.15.H99-20261125-0000001", e), at,
                                  version=version)
            values.append(value)
        chains[version] = values
    best = {1: 0.0, 2: 0.0}
    for _ in range(3):  # the versions alternate, so both see the same load
        for version, values in chains.items():
            t = time.perf_counter()
            result = chain.verify_run(values)
            seconds = time.perf_counter() - t
            assert result.ok and result.checked == n
            best[version] = max(best[version], n / seconds)
    size = sum(len(v) for v in chains[2]) / n
    return {"entries": n, "mean_entry_bytes": round(size), "per_s": round(best[2]),
            "v1_per_s": round(best[1]),
            "v1_mean_entry_bytes": round(sum(len(v) for v in chains[1]) / n)}


# -- verify in bounded memory ------------------------------------------------------------------

_VERIFY_CHILD = """
import json, sys, time
from pathlib import Path
from lienthong.services.audit.verify import (read_copy, verify_copy_file, verify_kafka,
                                             verify_log)
mode, arg, topics = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
pub = bytes.fromhex(sys.argv[4])
t = time.perf_counter()
if mode == "whole":
    report = verify_log(read_copy(Path(arg)), pub)
elif mode == "stream":
    report = verify_copy_file(Path(arg), pub)
elif mode == "kafka":
    report = verify_kafka(arg, topics[0], topics[1], pub)
else:
    report = None
seconds = time.perf_counter() - t
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "entries": report.entries if report else 0,
                  "ok": report.ok if report else True, "max_rss_kib": hwm}))
"""


def child_verify(mode: str, arg: str, topics: tuple[str, str], pub: bytes) -> dict[str, Any]:
    """One verify in a fresh interpreter: its result, time and peak RSS.

    The peak is the child's own ``VmHWM`` (/proc): its ``ru_maxrss`` (``wait4``, ``getrusage``)
    keeps the high-water mark of this process at the fork, which holds the built log."""
    result: dict[str, Any] = json.loads(subprocess.run(
        [sys.executable, "-c", _VERIFY_CHILD, mode, arg, ",".join(topics), pub.hex()],
        stdout=subprocess.PIPE, check=True, timeout=900).stdout)
    result["max_rss_mb"] = round(result.pop("max_rss_kib") / 1024, 1)
    return result


def signed_log(events: list[dict[str, Any]], n: int, partitions: int,
               dossier_of: Callable[[int], bytes]
               ) -> tuple[dict[int, list[bytes]], list[bytes], bytes]:
    """``n`` entries of real encoded simulator events, entry ``i`` on partition ``i %
    partitions`` about ``dossier_of(i)``, a signed checkpoint every 50,000 and at the end; the
    chains, the checkpoints and the public key."""
    contents = [codec.EVENTS.encode(e) for e in events[:5000]]
    at = datetime.now(UTC)
    chains: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    states = {p: chain.ChainState() for p in range(partitions)}
    key = Ed25519PrivateKey.generate()
    checkpoints: list[bytes] = []
    for i in range(n):
        p = i % partitions
        value, states[p] = append(states[p], Source("event", "dossier.events", p, i, 0,
                                                    dossier_of(i),
                                                    contents[i % len(contents)]), at)
        chains[p].append(value)
        if (i + 1) % 50_000 == 0 or i + 1 == n:  # a signed checkpoint every 50,000 entries
            checkpoints.append(codec.AUDIT_CHECKPOINTS.encode(chain.sign_checkpoint(
                key, "bench", "audit.log", f"2026-11-25T00:00:{len(checkpoints):02d}+00:00",
                dict(states))))
    return chains, checkpoints, key.public_key().public_bytes_raw()


def on_broker(bootstrap: str, workdir: Path, chains: dict[int, list[bytes]],
              checkpoints: list[bytes]) -> BenchHub:
    """A fresh hub whose audit topics hold ``chains`` and ``checkpoints``."""
    hub = BenchHub(bootstrap, workdir, len(chains))
    hub.workdir.mkdir(parents=True)
    hub.create_topics()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50,
                             batch_size=1 << 20)
    for p, values in chains.items():
        for value in values:
            producer.send(hub.names.audit_log, value=value, partition=p)
    for value in checkpoints:
        producer.send(hub.names.audit_checkpoints, value=value, partition=0)
    producer.flush(120)
    producer.close()
    return hub


def verify_memory(events: list[dict[str, Any]], n: int, bootstrap: str, workdir: Path,
                  partitions: int) -> dict[str, Any]:
    """Peak memory of ``audit verify`` from a copy of ``n`` entries: the whole log read first
    (``read_copy`` + ``verify_log``, as before) vs streamed (``verify_copy_file``); the rates
    from the copy and from Kafka, and the streamed checker's in-memory rate."""
    chains, checkpoints, pub = signed_log(events, n, partitions,
                                          lambda i: b"000.00.15.H99-20261125-0000001")
    path = workdir / "audit-copy.jsonl"
    workdir.mkdir(parents=True, exist_ok=True)
    write_copy(AuditCopy("audit.log", {p: list(enumerate(v)) for p, v in chains.items()},
                         checkpoints), path)
    best = 0.0
    for _ in range(3):  # the streamed checker alone, in memory, chunks of CHUNK_ENTRIES
        t = time.perf_counter()
        checker = LogChecker("audit.log", checkpoints, pub)
        for p, values in chains.items():
            for i in range(0, len(values), CHUNK_ENTRIES):
                part = values[i:i + CHUNK_ENTRIES]
                checker.feed(p, range(i, i + len(part)), part)
        assert checker.report().ok
        best = max(best, n / (time.perf_counter() - t))
    hub = on_broker(bootstrap, workdir / "hub", chains, checkpoints)
    del chains
    names = (hub.names.audit_log, hub.names.audit_checkpoints)
    runs = {mode: child_verify(mode, bootstrap if mode == "kafka" else str(path), names, pub)
            for mode in ("bare", "whole", "stream", "kafka")}
    for mode in ("whole", "stream", "kafka"):
        assert runs[mode]["ok"] and runs[mode]["entries"] == n, runs[mode]
        runs[mode]["per_s"] = round(n / runs[mode]["seconds"])
        runs[mode]["above_bare_mb"] = round(runs[mode]["max_rss_mb"]
                                            - runs["bare"]["max_rss_mb"], 1)
    return {"entries": n, "copy_mb": round(path.stat().st_size / 2**20, 1),
            "checkpoints": len(checkpoints), "chunk_entries": CHUNK_ENTRIES,
            "streamed_in_memory_per_s": round(best), **runs}


def verify_memory_figures(mem: dict[str, Any]) -> list[Figure]:
    return [
        Figure("audit verify --copy peak memory, streamed", mem["stream"]["above_bare_mb"],
               "MB", TARGET_VERIFY_MB, higher_is_better=False,
               note=f"{mem['entries']:,} entries ({mem['copy_mb']} MB copy); whole log read "
                    f"first (before): {mem['whole']['above_bare_mb']} MB; from Kafka "
                    f"streamed {mem['kafka']['above_bare_mb']} MB; above the bare "
                    f"interpreter's {mem['bare']['max_rss_mb']} MB"),
        Figure("audit verify streamed in chunks, one core, in memory",
               mem["streamed_in_memory_per_s"], "/s", TARGET_VERIFY,
               note=f"from the copy {mem['stream']['per_s']:,}/s (before "
                    f"{mem['whole']['per_s']:,}/s), from Kafka {mem['kafka']['per_s']:,}/s, "
                    "reading included"),
    ]


def print_verify_memory(mem: dict[str, Any]) -> None:
    print(f"  verify memory: {mem['entries']:,} entries, copy {mem['copy_mb']} MB; peak RSS "
          f"bare {mem['bare']['max_rss_mb']} MB, whole log {mem['whole']['max_rss_mb']} MB, "
          f"streamed copy {mem['stream']['max_rss_mb']} MB, streamed Kafka "
          f"{mem['kafka']['max_rss_mb']} MB; rates copy whole {mem['whole']['per_s']:,}/s, "
          f"streamed {mem['stream']['per_s']:,}/s, Kafka {mem['kafka']['per_s']:,}/s, checker "
          f"in memory {mem['streamed_in_memory_per_s']:,}/s")


# -- export in bounded memory ------------------------------------------------------------------

_EXPORT_CHILD = """
import json, sys, time
from pathlib import Path
from lienthong.services.audit import export as ex
from lienthong.services.audit.verify import read_copy
mode, arg, topics, dossier, out = sys.argv[1], sys.argv[2], sys.argv[3].split(","), \\
    sys.argv[4], Path(sys.argv[5])
key = {"key_id": "bench", "ed25519": sys.argv[6]}
t = time.perf_counter()
records = 0
if mode == "whole":  # as before: the whole log read, the document built whole, then dumped
    document = ex.build_export(read_copy(Path(arg)), dossier, key)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(document, f, ensure_ascii=False, indent=1)
    records = len(document["records"])
elif mode in ("stream", "kafka"):
    export = ex.export_copy_file(Path(arg), dossier, key) if mode == "stream" else \\
        ex.export_kafka(arg, topics[0], topics[1], dossier, key)
    with export:
        ex.write_export(export, out, out.with_name(out.name + ".html"))
        records = len(export.records)
seconds = time.perf_counter() - t
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "records": records, "max_rss_kib": hwm}))
"""

EXPORTED = 1  # the dossier exported: every 1,000th entry from entry 1 on, so one partition


def export_dossier(i: int) -> bytes:
    """Entry ``i``'s dossier: one of 1,000 (each on one partition when 1,000 divides by the
    partition count, as the chain puts a dossier's records on one partition)."""
    return f"000.00.15.H99-20261125-{i % 1000:07d}".encode()


def child_export(mode: str, arg: str, topics: tuple[str, str], dossier: str, out: Path,
                 pub: bytes) -> dict[str, Any]:
    """One export in a fresh interpreter: its time, records and peak RSS (``VmHWM``)."""
    result: dict[str, Any] = json.loads(subprocess.run(
        [sys.executable, "-c", _EXPORT_CHILD, mode, arg, ",".join(topics), dossier, str(out),
         pub.hex()], stdout=subprocess.PIPE, check=True, timeout=900).stdout)
    result["max_rss_mb"] = round(result.pop("max_rss_kib") / 1024, 1)
    return result


def export_memory(events: list[dict[str, Any]], n: int, bootstrap: str, workdir: Path,
                  partitions: int) -> dict[str, Any]:
    """Peak memory of ``audit export`` of one dossier from a log of ``n`` entries of 1,000
    dossiers: the whole log read first and the document built whole (as before) vs streamed
    from the copy and from Kafka; the three CODE.json must be the same bytes."""
    chains, checkpoints, pub = signed_log(events, n, partitions, export_dossier)
    workdir.mkdir(parents=True, exist_ok=True)
    hub = on_broker(bootstrap, workdir / "hub", chains, checkpoints)
    path = workdir / "audit-copy.jsonl"  # a copy of that topic, under its name
    write_copy(AuditCopy(hub.names.audit_log, {p: list(enumerate(v))
                                               for p, v in chains.items()}, checkpoints), path)
    del chains
    names = (hub.names.audit_log, hub.names.audit_checkpoints)
    dossier = export_dossier(EXPORTED).decode()
    runs = {mode: child_export(mode, bootstrap if mode == "kafka" else str(path), names,
                               dossier, workdir / f"{mode}.json", pub)
            for mode in ("bare", "whole", "stream", "kafka")}
    whole = (workdir / "whole.json").read_bytes()
    document = json.loads(whole)
    assert chain.verify_export(document) == [], "the export does not verify"
    for mode in ("stream", "kafka"):
        assert (workdir / f"{mode}.json").read_bytes() == whole, f"{mode} export differs"
    for mode in ("whole", "stream", "kafka"):
        runs[mode]["above_bare_mb"] = round(runs[mode]["max_rss_mb"]
                                            - runs["bare"]["max_rss_mb"], 1)
    return {"entries": n, "copy_mb": round(path.stat().st_size / 2**20, 1),
            "records": len(document["records"]), "links": len(document["segment"]["links"]),
            "export_mb": round(len(whole) / 2**20, 1), "chunk_entries": CHUNK_ENTRIES, **runs}


def export_memory_figures(mem: dict[str, Any]) -> list[Figure]:
    return [Figure("audit export --copy peak memory, streamed", mem["stream"]["above_bare_mb"],
                   "MB", TARGET_VERIFY_MB, higher_is_better=False,
                   note=f"{mem['records']} records over {mem['links']:,} links "
                        f"({mem['export_mb']} MB JSON) of {mem['entries']:,} entries "
                        f"({mem['copy_mb']} MB copy); whole log read first (before): "
                        f"{mem['whole']['above_bare_mb']} MB; from Kafka streamed "
                        f"{mem['kafka']['above_bare_mb']} MB; the three files identical")]


def print_export_memory(mem: dict[str, Any]) -> None:
    print(f"  export memory: {mem['records']} records, {mem['links']:,} links, "
          f"{mem['export_mb']} MB JSON from {mem['entries']:,} entries; peak RSS bare "
          f"{mem['bare']['max_rss_mb']} MB, whole log {mem['whole']['max_rss_mb']} MB "
          f"({mem['whole']['seconds']:.1f} s), streamed copy {mem['stream']['max_rss_mb']} MB "
          f"({mem['stream']['seconds']:.1f} s), streamed Kafka {mem['kafka']['max_rss_mb']} MB "
          f"({mem['kafka']['seconds']:.1f} s)")


async def receipt_round_trip(bootstrap: str, workdir: Path, n: int) -> dict[str, Any]:
    from aiohttp import web

    from lienthong.connectors.delivery.policy import DeliveryPolicy
    from lienthong.connectors.delivery.service import DeliveryService
    from lienthong.connectors.doubles.agencies import AgencyDoubles
    from lienthong.connectors.http.serving import listening
    from lienthong.services.domain.receipts import demo_keys

    hub = BenchHub(bootstrap, workdir, 2)
    hub.workdir.mkdir(parents=True)
    hub.create_topics()
    dest = "000.02.10.H99"
    doubles = AgencyDoubles([dest])
    app = web.Application()
    doubles.add_routes(app)
    sent: dict[str, float] = {}
    async with listening(app) as base:
        service = DeliveryService(
            bootstrap, lambda code: f"{base}/agencies/{code}/inbox", signer=None,
            policy=DeliveryPolicy(), group_id=f"{hub.prefix}delivery",
            deliveries_topic=hub.names.deliveries, alerts_topic=hub.names.alerts,
            deadletter_topic=hub.names.deadletter, receipts_topic=hub.names.receipts,
            expected_topic=hub.names.receipts_expected, receipt_keys=demo_keys([dest]),
            rng=random.Random(1))
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await asyncio.wait_for(service.started.wait(), 30)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        for i in range(n):
            dossier = f"000.00.15.H99-20261125-{i:07d}"
            d = {"delivery_id": f"{dossier}/h/{uuid.uuid4().hex[:6]}", "destination": dest,
                 "kind": "handoff", "dossier": dossier, "event_id": str(uuid.uuid4()),
                 "at": "2026-11-25T09:00:00+07:00", "payload": {"to_agency": dest}}
            sent[d["delivery_id"]] = time.time()
            producer.send(hub.names.deliveries, key=dossier.encode(),
                          value=codec.encode_delivery(d))
            producer.flush()
            await asyncio.sleep(0.05)
        producer.close()
        probe = Offsets(bootstrap, hub.names.receipts)
        deadline = time.monotonic() + 30
        while probe.total() < n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        probe.close()
        stop.set()
        await asyncio.wait_for(task, 30)
    records = read_all(bootstrap, hub.names.receipts)
    trips = [r.timestamp / 1000.0 - sent[codec.decode_receipt(r.value)["delivery_id"]]
             for r in records]
    ms = [t * 1000 for t in trips]
    return {"receipts": len(records), "sent": n, "p50_ms": round(percentile(ms, 50), 1),
            "p99_ms": round(percentile(ms, 99), 1)}


def append_rounds(bootstrap: str, workdir: Path, events: list[dict[str, Any]],
                  partitions: int, rounds: int,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``rounds`` pairs of worker runs, alone and with the chain; rounds alternate which run
    goes first (alone, chained; then chained, alone), and the share compares the best of
    each: other load on a shared machine only slows runs."""
    key = create_audit_key(workdir / "audit-bench.pem").key_id
    key_path = workdir / f"{key}.pem"
    alones: list[dict[str, Any]] = []
    chaineds: list[dict[str, Any]] = []
    for r in range(rounds):
        order = ("alone", "chained") if r % 2 == 0 else ("chained", "alone")
        for which in order:
            run = worker_run(bootstrap, workdir / f"{which}{r}", events, partitions,
                             key_path if which == "chained" else None)
            (chaineds if which == "chained" else alones).append(run)
            if which == "alone":
                print(f"  round {r + 1}, worker alone: {run['worker_per_s']:,} events/s")
                continue
            print(f"  round {r + 1}, worker with the chain service: "
                  f"{run['worker_per_s']:,} events/s; {run['chained_entries']:,} entries "
                  f"chained ({run['source_records']:,} source records, "
                  f"{run['chain_cpu_us_per_entry']} µs CPU each after "
                  f"{run['chain_start_cpu_s']} s to start), caught up "
                  f"{run['chain_caught_up_s_after_worker']} s after the worker; verify "
                  f"from Kafka {run['verify_from_kafka_per_s']:,}/s, "
                  f"ok={run['verify_from_kafka_ok']}")
    return alones, chaineds


def best_runs(alones: list[dict[str, Any]], chaineds: list[dict[str, Any]],
              ) -> tuple[dict[str, Any], dict[str, Any], list[float]]:
    """The fastest run alone, the fastest with the chain, and each round's share in %."""
    alone = max(alones, key=lambda run: run["worker_per_s"])
    chained = max(chaineds, key=lambda run: run["worker_per_s"])
    pairs = [round(c["worker_per_s"] / a["worker_per_s"] * 100, 1)
             for a, c in zip(alones, chaineds, strict=True)]
    return alone, chained, pairs


def share_figure(alones: list[dict[str, Any]], chaineds: list[dict[str, Any]]) -> Figure:
    """Best with the chain ÷ best alone, with each round's share in the note."""
    alone, chained, pairs = best_runs(alones, chaineds)
    return Figure("worker with audit chain / without",
                  chained["worker_per_s"] / alone["worker_per_s"] * 100, "%", TARGET_SHARE,
                  note=f"best {chained['worker_per_s']:,} vs {alone['worker_per_s']:,} events/s, "
                       f"rounds {' / '.join(f'{x} %' for x in pairs)}; "
                       f"chain {chained['chain_cpu_us_per_entry']} µs CPU/entry, caught up "
                       f"{chained['chain_caught_up_s_after_worker']} s after the worker")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--receipts", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3,
                        help="pairs of worker runs, alone and with the chain (default 3)")
    parser.add_argument("--verify-memory-only", action="store_true",
                        help="only the peak memory and rates of a streamed verify of --entries "
                        "(writes bench/results/audit_verify_memory.json)")
    parser.add_argument("--verify-rate-only", action="store_true",
                        help="only chain.verify_run's rate over --entries entries of version 2 "
                        "and of version 1 (prints it, writes nothing)")
    parser.add_argument("--export-memory-only", action="store_true",
                        help="only the peak memory of a streamed export of one dossier from "
                        "--entries (writes bench/results/audit_export_memory.json)")
    parser.add_argument("--append-only", action="store_true",
                        help="only the worker's rate alone and with the chain, --rounds pairs "
                        "(prints the share, writes nothing)")
    args = parser.parse_args()
    events = province_events(args.events)
    print(f"audit bench: {len(events):,} simulator events; machine {machine()}")
    if args.append_only:
        with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp, \
                kafka_cluster() as bootstrap:
            rounds = append_rounds(bootstrap, Path(tmp), events, args.partitions, args.rounds)
        print_table("audit chain's cost to the worker (same broker, same run)",
                    [share_figure(*rounds)])
        return 0
    if args.verify_memory_only:
        with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp, \
                kafka_cluster() as bootstrap:
            mem = verify_memory(events, args.entries, bootstrap, Path(tmp) / "memory",
                                args.partitions)
        print_verify_memory(mem)
        figures = verify_memory_figures(mem)
        print_table("audit verify in bounded memory (same run)", figures)
        print(f"  results: {write_results('audit_verify_memory', figures, mem)}")
        return 0
    if args.verify_rate_only:
        verify = verify_rate(events, args.entries)
        print(f"  verify: {verify['entries']:,} entries, version 2 ({verify['mean_entry_bytes']} "
              f"B) {verify['per_s']:,}/s, version 1 ({verify['v1_mean_entry_bytes']} B) "
              f"{verify['v1_per_s']:,}/s")
        return 0
    if args.export_memory_only:
        with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp, \
                kafka_cluster() as bootstrap:
            exp = export_memory(events, args.entries, bootstrap, Path(tmp) / "export",
                                args.partitions)
        print_export_memory(exp)
        figures = export_memory_figures(exp)
        print_table("audit export in bounded memory (same run)", figures)
        print(f"  results: {write_results('audit_export_memory', figures, exp)}")
        return 0
    verify = verify_rate(events, args.entries)
    print(f"  verify: {verify['entries']:,} entries of {verify['mean_entry_bytes']} B at "
          f"{verify['per_s']:,}/s (version 1: {verify['v1_per_s']:,}/s)")
    with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp, \
            kafka_cluster() as bootstrap:
        alones, chaineds = append_rounds(bootstrap, Path(tmp), events, args.partitions,
                                         args.rounds)
        alone, chained, pairs = best_runs(alones, chaineds)
        trips = asyncio.run(receipt_round_trip(bootstrap, Path(tmp) / "receipts",
                                               args.receipts))
        mem = verify_memory(events, args.entries, bootstrap, Path(tmp) / "memory",
                            args.partitions)
        print_verify_memory(mem)
        exp = export_memory(events, args.entries, bootstrap, Path(tmp) / "export",
                            args.partitions)
        print_export_memory(exp)
        print(f"  receipts: {trips['receipts']} of {trips['sent']}, p50 {trips['p50_ms']} ms")
    figures = [
        share_figure(alones, chaineds),
        Figure("audit verify, one core, in memory", verify["per_s"], "/s", TARGET_VERIFY,
               note=f"entries of version 2; version 1 in the same rounds "
                    f"{verify['v1_per_s']:,}/s; from Kafka incl. reading: "
                    f"{chained['verify_from_kafka_per_s']:,}/s"),
        Figure("receipt round trip p99", trips["p99_ms"], "ms", TARGET_RECEIPT_MS,
               higher_is_better=False, note=f"p50 {trips['p50_ms']} ms"),
        *verify_memory_figures(mem),
        *export_memory_figures(exp),
    ]
    print_table("audit chain and receipts (same broker, same run)", figures)
    path = write_results("audit", figures, {"alone": alone, "chained": chained,
                                            "rounds": [{"alone": a, "chained": c}
                                                       for a, c in zip(alones, chaineds,
                                                                       strict=True)],
                                            "share_per_round_pct": pairs,
                                            "verify": verify, "receipts": trips,
                                            "verify_memory": mem, "export_memory": exp})
    print(f"  results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
