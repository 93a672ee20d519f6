"""Shared plumbing of the broker benchmarks: the local hub, progress probes, the table.

Each benchmark run gets its own local hub (``lienthong.deploy.local``): a topic prefix and app
id on one broker (the embedded one, or ``KAFKA_BOOTSTRAP_SERVERS``). Output topics whose timing
is measured are created with ``message.timestamp.type=LogAppendTime``, so a record's timestamp
is the instant the broker appended it, on the same machine clock as the producers'
``CreateTime``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from lienthong.deploy.local import APPEND_TIME, LocalHub, isolated_prefix  # noqa: F401
from lienthong.services.settings import SAMPLE_CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = SAMPLE_CATALOGUE
RESULTS = ROOT / "bench" / "results"


@dataclass
class BenchHub(LocalHub):
    """The local hub of a benchmark: timed topics stamped by the broker, quiet workers."""

    prefix: str = field(default_factory=lambda: isolated_prefix("b"))
    loglevel: str = "warning"
    broker_timestamps: bool = True

    def stop_workers(self) -> None:
        self.stop_all()


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
