"""Worker pipeline: dossier.events -> tracker -> deliveries, vs a raw aiokafka passthrough.

    .venv/bin/python bench/bench_pipeline.py [--events 30000] [--rate 1000] [--seconds 10]
                                        [--warmup 15] [--low-rate 250]

DESIGN section 10 targets: one worker sustains >= 5,000 events/s and >= 50 % of a raw aiokafka
consume-and-produce passthrough of the same records on the same broker in the same run; p99
event-to-delivery latency <= 100 ms at 1,000 events/s.

Throughput: ``--events`` events of the province simulator (``plan()``: receipts, hand-offs
along each procedure's route, supplements, results, returns by post) are loaded into
``dossier.events`` first. The passthrough (one aiokafka consumer and producer, batches of up to
500 records, ``acks=all``, every batch acknowledged before its offsets are committed) copies
them to another topic: once untimed to warm the broker up, then timed first and once more last
(the faster is the baseline: the runs before warm the broker up further); between them one
``lienthong worker`` subprocess processes them. Each rate is records in / (broker append time
of the last output - of the first output), so start-up time is left out of both. The worker is
done when every delivery the domain core expects is on ``deliveries``. Then, before the last
copy, a passthrough writes instead of a copy of each event the records the worker wrote
(deliveries and snapshots, then changelog states, the same share for each batch of events,
outputs acknowledged before states, as record batches like the worker): the worker's writes
with no domain core, which bounds its share.

Latency: a fresh hub and worker; after 200 warm-up events, events are produced at ``--rate``
for ``--warmup`` + ``--seconds`` without a pause, and the latencies of the events sent in the
last ``--seconds`` are the figure; those of the first ``--warmup`` seconds are printed apart as
the cold start. A broker started minutes before spends most of its first ten seconds or so at
this rate compiling (its C2 JIT threads at 0.4-0.9 of a core on 2 shared cores), so that part
measures the broker's start, not the hub's steady state. Then (same worker, once those
deliveries are out) events at ``--low-rate`` for up to 2,000 events, a load the worker keeps up
with, so its own delay shows apart from a backlog. Each delivery's latency is its broker append
time minus its event's produce time (both on this machine's clock).

Uses the embedded broker (or KAFKA_BOOTSTRAP_SERVERS). Writes bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
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
from lienthong.schemas import codec, topics
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.domain.dossier import Applied, apply_event
from lienthong.services.domain.events import parse_event
from lienthong.services.record_batches import send_by_partition

TARGET_RATE = 5_000.0
TARGET_SHARE = 0.50
TARGET_P99_MS = 100.0
START = datetime.fromisoformat("2026-10-05T08:00:00+07:00")


def province_events(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """About ``n`` events of the simulator (whole dossiers), in order of their instants."""
    catalogue = load_catalogue(CATALOGUE)
    events = plan(catalogue, seed=seed, dossiers=max(1, round(n / 6.2)), start=START,
                  per_working_hour=120)
    return events[:n] if len(events) >= n else events


def expected_deliveries(events: list[dict[str, Any]], now: datetime) -> Counter[str]:
    """Deliveries by kind the domain core makes of ``events`` (what the worker must write)."""
    catalogue = load_catalogue(CATALOGUE)
    states: dict[str, Any] = {}
    kinds: Counter[str] = Counter()
    for raw in events:
        e = parse_event(raw)
        decision = apply_event(states.get(e.dossier), e, catalogue, now)
        if isinstance(decision, Applied):
            states[e.dossier] = decision.state
            kinds.update(d.kind for d in decision.deliveries)
    return kinds


def load(bootstrap: str, topic: str, encoded: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             batch_size=256 << 10, enable_idempotence=True)
    for key, value in encoded:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def span(records: list[Any]) -> float:
    """Seconds between the first and the last broker append among ``records``."""
    stamps = [r.timestamp for r in records]
    return (max(stamps) - min(stamps)) / 1000.0


async def passthrough(bootstrap: str, source: str, sink: str, total: int,
                      timeout: float) -> None:
    """Raw consume-and-produce: batches of up to 500, acknowledged, then committed."""
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap,
                                group_id=f"passthrough-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        done = 0
        deadline = time.monotonic() + timeout
        while done < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            acks = []
            for tp, records in batches.items():
                for r in records:
                    acks.append(await producer.send(sink, r.value, key=r.key,
                                                    partition=tp.partition))
                done += len(records)
            if acks:
                await asyncio.gather(*acks)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def output_passthrough(bootstrap: str, source: str, outputs: list[Any],
                             states: list[Any], sinks: tuple[str, str], total: int,
                             timeout: float) -> None:
    """The passthrough writing what the worker wrote instead of a copy of each event: for each
    batch of events consumed, the same share of the worker's output records (deliveries and
    snapshots, acknowledged first) and then of its changelog states, as record batches per
    partition (``send_records``, as the worker writes), then the offsets committed. What the
    worker's writes cost with no domain core at all: the bound of its share."""
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap,
                                group_id=f"output-passthrough-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                max_batch_size=512 << 10, max_request_size=4 << 20)
    await consumer.start()
    await producer.start()

    async def write(topic: str, records: list[Any]) -> None:
        await asyncio.gather(*await send_by_partition(
            producer, topic, ((r.partition, r.key, r.value) for r in records)))

    try:
        done = 0
        deadline = time.monotonic() + timeout
        while done < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            n = sum(len(records) for records in batches.values())
            if not n:
                continue
            for topic, records in ((sinks[0], outputs), (sinks[1], states)):
                share = len(records) / total
                await write(topic, records[round(done * share):round((done + n) * share)])
            await consumer.commit()
            done += n
    finally:
        await consumer.stop()
        await producer.stop()


def bare_faust(hub: BenchHub, sink: str, total: int) -> float:
    """The rate of a bare faust agent copying dossier.events (``faust_passthrough.py``)."""
    log = hub.workdir / "faust-passthrough.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name(
            "faust_passthrough.py")), hub.names.events, sink],
            env=hub.env(LIENTHONG_DATA_DIR=str(hub.workdir / "faust-passthrough")),
            stdout=out, stderr=subprocess.STDOUT)
    probe = Offsets(hub.bootstrap, sink)
    try:
        if not probe.wait(total, 150, alive=proc):
            raise SystemExit(f"bare faust agent did not copy {total} records:\n"
                             f"{log.read_text(errors='replace')[-3000:]}")
    finally:
        probe.close()
        proc.terminate()
        proc.wait(15)
    copied = read_all(hub.bootstrap, sink)
    return len(copied) / span(copied)


def throughput(bootstrap: str, workdir: Path, events: list[dict[str, Any]],
               partitions: int) -> dict[str, Any]:
    hub = BenchHub(bootstrap, workdir / "throughput", partitions)
    hub.workdir.mkdir(parents=True)
    copies = (f"{hub.prefix}passthrough-warmup", f"{hub.prefix}passthrough",
              f"{hub.prefix}passthrough-again")
    faust_copy = f"{hub.prefix}faust-passthrough"
    io_sinks = (f"{hub.prefix}io-outputs", f"{hub.prefix}io-states")
    hub.create_topics(extra=(*copies, faust_copy, *io_sinks))
    encoded = [(e["dossier"].encode(), codec.EVENTS.encode(e)) for e in events]
    t = time.perf_counter()
    load(bootstrap, hub.names.events, encoded)
    print(f"  loaded {len(encoded):,} events in {time.perf_counter() - t:.1f} s")
    last_at = max(datetime.fromisoformat(e["at"]) for e in events)
    clock_at = last_at + timedelta(minutes=1)
    wanted = expected_deliveries(events, clock_at)
    n_deliveries = sum(wanted.values())

    def copy_rate(sink: str, what: str = "passthrough") -> float:
        asyncio.run(passthrough(bootstrap, hub.names.events, sink, len(encoded), 120))
        copied = read_all(bootstrap, sink)
        rate = len(copied) / span(copied)
        print(f"  {what}: {len(copied):,} records at {rate:,.0f}/s")
        return rate

    # A fresh broker's JIT compiles for seconds under a new load, and whatever runs later
    # gains: one copy untimed first, and the timed copy once before and once after the rest.
    copy_rate(copies[0], "passthrough to warm the broker up (not counted)")
    passthrough_first = copy_rate(copies[1])
    faust_rate = bare_faust(hub, faust_copy, len(encoded))
    print(f"  bare faust agent on the worker's faust app: {faust_rate:,.0f}/s")

    probe = Offsets(bootstrap, hub.names.deliveries)
    started = time.monotonic()
    proc = hub.start_worker(clock=f"scaled:{clock_at.isoformat()}:1")
    try:
        ok = probe.wait(n_deliveries, 150, alive=proc)
        wall = time.monotonic() - started
    finally:
        probe.close()
        hub.stop_workers()
    if not ok:
        raise SystemExit(f"worker did not write {n_deliveries} deliveries:\n{hub.log()}")
    deliveries = read_all(bootstrap, hub.names.deliveries)
    outputs = deliveries + read_all(bootstrap, hub.names.status)
    first = min(r.timestamp for r in outputs)
    last = max(r.timestamp for r in deliveries)
    worker_rate = len(events) / ((last - first) / 1000.0)
    distinct = len({codec.DELIVERIES.decode(r.value)["delivery_id"] for r in deliveries})
    print(f"  worker: {len(events):,} events -> {len(deliveries):,} deliveries "
          f"({distinct:,} distinct, {n_deliveries:,} expected) at {worker_rate:,.0f}/s; "
          f"{wall:.1f} s from process start")

    states = sorted(read_all(bootstrap, topics.changelog(hub.settings)),
                    key=lambda r: r.timestamp)
    outputs.sort(key=lambda r: r.timestamp)
    asyncio.run(output_passthrough(bootstrap, hub.names.events, outputs, states, io_sinks,
                                   len(events), 120))
    written = read_all(bootstrap, io_sinks[0]) + read_all(bootstrap, io_sinks[1])
    io_rate = len(events) / span(written)
    io_bytes = sum(len(r.value or b"") + len(r.key or b"") for r in outputs + states)
    print(f"  passthrough writing the worker's {len(outputs) + len(states):,} records "
          f"({(len(outputs) + len(states)) / len(events):.1f} and "
          f"{io_bytes / len(events):,.0f} B per event) instead of a copy: {io_rate:,.0f} "
          f"events/s")
    passthrough_last = copy_rate(copies[2])  # the faster of the two is the baseline
    passthrough_rate = max(passthrough_first, passthrough_last)
    return {"events": len(events), "deliveries_expected": dict(wanted),
            "deliveries_written": len(deliveries), "deliveries_distinct": distinct,
            "passthrough_per_s": round(passthrough_rate),
            "passthrough_first_last_per_s": [round(passthrough_first), round(passthrough_last)],
            "worker_per_s": round(worker_rate),
            "bare_faust_per_s": round(faust_rate), "output_passthrough_per_s": round(io_rate),
            "worker_records_per_event": round((len(outputs) + len(states)) / len(events), 2),
            "worker_bytes_per_event": round(io_bytes / len(events)),
            "worker_wall_seconds_from_start": round(wall, 1), "partitions": partitions}


Phase = tuple[float, float, float]  # events/s, seconds timed, seconds of warm-up before them


def latency(bootstrap: str, workdir: Path, events: list[dict[str, Any]],
            phases: list[Phase], partitions: int) -> list[dict[str, Any]]:
    """One worker; for each (rate, seconds, warm-up) in turn, events at that rate for the
    warm-up and then the timed seconds, then wait until their deliveries are out; the
    latencies of each phase's timed events apart (and of its warm-up, when it has one)."""
    hub = BenchHub(bootstrap, workdir / "latency", partitions)
    hub.workdir.mkdir(parents=True)
    hub.create_topics()
    total = 200 + sum(int(rate * (seconds + warm)) for rate, seconds, warm in phases)
    events = events[:total]
    clock_at = max(datetime.fromisoformat(e["at"]) for e in events) + timedelta(minutes=1)
    proc = hub.start_worker(clock=f"scaled:{clock_at.isoformat()}:1")
    probe = Offsets(bootstrap, hub.names.deliveries)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                             enable_idempotence=True)
    results: list[dict[str, Any]] = []
    sent_at: list[dict[str, int]] = []
    warm_at: list[dict[str, int]] = []
    try:
        for e in events[:200]:  # warm-up
            producer.send(hub.names.events, key=e["dossier"].encode(),
                          value=codec.EVENTS.encode(e))
        producer.flush()
        if not probe.wait(1, 90, alive=proc):
            raise SystemExit(f"worker did not start:\n{hub.log()}")
        time.sleep(2.0)  # let the warm-up drain
        done = 200
        for rate, seconds, warm in phases:
            n_warm = int(rate * warm)
            batch = events[done:done + n_warm + int(rate * seconds)]
            encoded = [(e["event_id"], e["dossier"].encode(), codec.EVENTS.encode(e))
                       for e in batch]
            sent: dict[str, int] = {}
            warming: dict[str, int] = {}
            t0 = time.time()
            t_timed = t0 + n_warm / rate
            for i, (event_id, key, value) in enumerate(encoded):
                delay = t0 + i / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
                stamp = int(time.time() * 1000)
                (sent if i >= n_warm else warming)[event_id] = stamp
                producer.send(hub.names.events, key=key, value=value, timestamp_ms=stamp)
            producer.flush()
            results.append({"rate_per_s": round(len(sent) / (time.time() - t_timed)),
                            "events": len(sent), "warmup_events": len(warming)})
            sent_at.append(sent)
            warm_at.append(warming)
            done += len(batch)
            wanted = sum(expected_deliveries(events[:done], clock_at).values())
            if not probe.wait(wanted, 60, alive=proc):
                raise SystemExit(f"worker did not write {wanted} deliveries:\n{hub.log()}")
    finally:
        producer.close()
        probe.close()
        hub.stop_workers()
    records = [(r.timestamp, codec.DELIVERIES.decode(r.value)["event_id"])
               for r in read_all(bootstrap, hub.names.deliveries)]
    for result, sent, warming in zip(results, sent_at, warm_at, strict=True):
        if warming:
            cold = [float(ts - warming[eid]) for ts, eid in records if eid in warming]
            result["warmup"] = {"events": len(warming), "deliveries": len(cold),
                                "p50_ms": percentile(cold, 50), "p99_ms": percentile(cold, 99),
                                "max_ms": max(cold)}
            print(f"  warm-up at the same rate, {len(warming):,} events first (the cold start): "
                  f"p50 {percentile(cold, 50):.0f} ms, p99 {percentile(cold, 99):.0f} ms, "
                  f"max {max(cold):.0f} ms")
        lat = [float(ts - sent[eid]) for ts, eid in records if eid in sent]
        result.update({"deliveries": len(lat), "p50_ms": percentile(lat, 50),
                       "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
                       "max_ms": max(lat)})
        print(f"  latency at {result['rate_per_s']:,} events/s over {result['events']:,} "
              f"events ({len(lat):,} deliveries): p50 {result['p50_ms']:.0f} ms, "
              f"p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s for latency")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency run length")
    parser.add_argument("--warmup", type=float, default=15.0,
                        help="seconds at --rate before the timed ones (their latencies are "
                        "printed apart as the cold start)")
    parser.add_argument("--low-rate", type=float, default=250.0,
                        help="a second, lighter latency run (0: none)")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()

    t = time.perf_counter()
    phases: list[Phase] = [(args.rate, args.seconds, args.warmup)]
    if args.low_rate > 0:
        phases.append((args.low_rate, min(args.seconds, 2000 / args.low_rate), 0.0))
    events = province_events(max(args.events,
                                 200 + sum(int(r * (s + w)) for r, s, w in phases)))
    print(f"pipeline bench: {len(events):,} simulator events planned in "
          f"{time.perf_counter() - t:.1f} s; machine {machine()}")
    with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp, \
            kafka_cluster() as bootstrap:
        tput = throughput(bootstrap, Path(tmp), events[:args.events], args.partitions)
        lats = latency(bootstrap, Path(tmp), events, phases, args.partitions)
    share = tput["worker_per_s"] / tput["passthrough_per_s"]
    figures = [
        Figure("worker throughput (events/s)", tput["worker_per_s"], "/s", TARGET_RATE),
        Figure("worker / raw aiokafka passthrough", share * 100, "%", TARGET_SHARE * 100,
               note=f"passthrough {tput['passthrough_per_s']:,}/s, the faster of "
               f"{' and '.join(f'{x:,}' for x in tput['passthrough_first_last_per_s'])}"),
        Figure("bare faust agent / raw aiokafka passthrough",
               tput["bare_faust_per_s"] / tput["passthrough_per_s"] * 100, "%",
               TARGET_SHARE * 100, note=f"bare faust {tput['bare_faust_per_s']:,}/s: "
               "faust's consumer and producer alone"),
        Figure("passthrough writing the worker's records / passthrough",
               tput["output_passthrough_per_s"] / tput["passthrough_per_s"] * 100, "%",
               TARGET_SHARE * 100, note=f"{tput['output_passthrough_per_s']:,}/s: "
               f"{tput['worker_records_per_event']} records, "
               f"{tput['worker_bytes_per_event']:,} B per event, no domain core"),
        *(Figure(f"p99 event-to-delivery at {lat['rate_per_s']:,}/s", lat["p99_ms"], "ms",
                 TARGET_P99_MS, higher_is_better=False, note=f"p50 {lat['p50_ms']:.0f} ms"
                 + (f"; the {lat['warmup']['events']:,} events before, from a cold start: "
                    f"p99 {lat['warmup']['p99_ms']:.0f} ms" if "warmup" in lat else ""))
          for lat in lats),
    ]
    print_table("pipeline (one worker, same broker, same run)", figures)
    path = write_results("pipeline", figures, {"throughput": tput, "latency": lats})
    print(f"  results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
