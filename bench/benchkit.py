"""Shared plumbing of the broker benchmarks: isolated topics, worker subprocesses, the table.

Each benchmark run gets its own topic prefix and app id on one broker (the embedded one, or
``KAFKA_BOOTSTRAP_SERVERS``). Output topics whose timing is measured are created with
``message.timestamp.type=LogAppendTime``, so a record's timestamp is the instant the broker
appended it, on the same machine clock as the producers' ``CreateTime``.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from lienthong.deploy.embedded.broker import free_port
from lienthong.schemas import topics
from lienthong.services.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "examples" / "province-h99.yaml"
RESULTS = ROOT / "bench" / "results"
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}



@dataclass
class BenchHub:
    """One isolated hub on the broker: its topics (timed ones stamped by the broker) and
    worker subprocesses."""

    bootstrap: str
    workdir: Path
    partitions: int = 4
    prefix: str = field(default_factory=lambda: f"b{uuid.uuid4().hex[:8]}.")
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings(kafka_bootstrap_servers=self.bootstrap, partitions=self.partitions,
                        topic_prefix=self.prefix, app_id=f"{self.prefix}worker",
                        catalog_path=CATALOGUE, data_dir=self.workdir)

    @property
    def names(self) -> topics.TopicNames:
        return topics.names(self.settings)

    def create_topics(self, extra: tuple[str, ...] = ()) -> None:
        """The hub's topics (deliveries, alerts, status and ``extra`` with broker
        timestamps)."""
        n = self.names
        timed = {n.deliveries, n.alerts, n.status}
        new = [NewTopic(s.name, s.partitions, s.replication,
                        topic_configs={**s.config, **(APPEND_TIME if s.name in timed else {})})
               for s in topics.specs(self.settings)]
        new += [NewTopic(name, self.partitions, 1, topic_configs=APPEND_TIME) for name in extra]
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics(new, timeout_ms=30_000)
            admin.wait_for_topics([t.name for t in new], timeout_ms=30_000)
        finally:
            admin.close()

    def start_worker(self, clock: str = "wall",
                     loglevel: str = "warning") -> subprocess.Popen[bytes]:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
               "LIENTHONG_TOPIC_PREFIX": self.prefix,
               "LIENTHONG_PARTITIONS": str(self.partitions),
               "LIENTHONG_APP_ID": self.settings.app_id,
               "LIENTHONG_CATALOG": str(CATALOGUE), "LIENTHONG_CLOCK": clock,
               "LIENTHONG_DATA_DIR": str(self.workdir / f"w{len(self.workers)}"),
               "LIENTHONG_WORKER_PORT": str(free_port())}
        log = open(self.workdir / f"worker{len(self.workers)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "lienthong.services.cli", "worker",
                                 "--loglevel", loglevel], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.workdir)
        self.workers.append(proc)
        return proc

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def log(self, index: int = -1) -> str:
        index = index % max(1, len(self.workers))
        path = self.workdir / f"worker{index}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


class Offsets:
    """Cheap progress probe: the total end offset of a topic (no records fetched)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        parts = self.consumer.partitions_for_topic(topic) or set()
        self.tps = [TopicPartition(topic, p) for p in sorted(parts)]

    def total(self) -> int:
        return sum(self.consumer.end_offsets(self.tps).values())

    def wait(self, count: int, timeout: float, alive: subprocess.Popen[bytes] | None = None,
             every: float = 0.2) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.total() >= count:
                return True
            if alive is not None and alive.poll() is not None:
                return False
            time.sleep(every)
        return False

    def close(self) -> None:
        self.consumer.close()


def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its current end."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             max_partition_fetch_bytes=8 << 20)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
                consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500, max_records=10_000).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cores": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.machine()}",
            "loadavg_1_5_15": [round(x, 2) for x in load]}


@dataclass
class Figure:
    """One line of the table: the measured value, its target and the ratio to the target
    (ratio >= 1 means met whichever way the target points)."""

    name: str
    measured: float
    unit: str
    target: float
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float:
        if self.higher_is_better:
            return self.measured / self.target
        return self.target / self.measured if self.measured > 0 else float("inf")

    @property
    def met(self) -> bool:
        return self.ratio >= 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"measured": round(self.measured, 4), "unit": self.unit,
                "target": self.target,
                "target_direction": ">=" if self.higher_is_better else "<=",
                "ratio_to_target": round(self.ratio, 3), "met": self.met,
                **({"note": self.note} if self.note else {})}


def print_table(title: str, figures: list[Figure]) -> None:
    print(title)
    print(f"  {'figure':44s} {'measured':>14s}  {'target':>14s}  {'ratio':>6s}  verdict")
    for f in figures:
        sign = ">=" if f.higher_is_better else "<="
        print(f"  {f.name:44s} {f.measured:>10,.1f} {f.unit:<3s}  {sign} {f.target:>8,.0f} "
              f"{f.unit:<3s}  {f.ratio:6.2f}  {'met' if f.met else 'NOT MET'}"
              + (f"  ({f.note})" if f.note else ""))


def write_results(name: str, figures: list[Figure], extra: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({
        "bench": name, "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), "figures": {f.name: f.as_dict() for f in figures}, **extra,
    }, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
