"""Reading the audit log back — from Kafka or from a copy file — and checking all of it.

``read_log`` takes every committed entry of ``audit.log`` and every checkpoint; ``verify_log``
recomputes each partition's chain (``chain.verify_run``) and checks every checkpoint's signature
and heads. A copy (``write_copy``/``read_copy``) is one JSON object a line — the audit topic and
then each record's partition, offset and base64 bytes — so the log can be archived, handed over
and checked away from the cluster.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from lienthong.schemas import codec
from lienthong.services.audit.chain import (
    ChainState,
    Mismatch,
    checkpoint_signature_ok,
    verify_run,
)

COPY_FORMAT = "lienthong-audit-copy-v1"


@dataclass
class AuditCopy:
    """The audit log as read: entries per partition (offset, bytes), and checkpoints."""

    audit_topic: str
    partitions: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)
    checkpoints: list[bytes] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return sum(len(v) for v in self.partitions.values())


def _read_topic(bootstrap: str, topic: str, timeout_s: float) -> dict[int, list[tuple[int, bytes]]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed", group_id=None,
                             max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        if not parts:
            raise ValueError(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: dict[int, list[tuple[int, bytes]]] = {p: [] for p in parts}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout_s} s")
            for tp, records in consumer.poll(timeout_ms=500, max_records=50_000).items():
                out[tp.partition].extend((r.offset, r.value) for r in records
                                         if r.offset < end[tp])
        return out
    finally:
        consumer.close()


def read_log(bootstrap: str, audit_topic: str, checkpoints_topic: str, *,
             timeout_s: float = 600.0) -> AuditCopy:
    partitions = _read_topic(bootstrap, audit_topic, timeout_s)
    checkpoints = [v for recs in _read_topic(bootstrap, checkpoints_topic, timeout_s).values()
                   for _, v in recs]
    return AuditCopy(audit_topic, partitions, checkpoints)


def write_copy(copy: AuditCopy, path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"format": COPY_FORMAT, "audit_topic": copy.audit_topic}) + "\n")
        for p, records in sorted(copy.partitions.items()):
            for offset, value in records:
                f.write(json.dumps({"partition": p, "offset": offset,
                                    "entry": base64.b64encode(value).decode()}) + "\n")
        for value in copy.checkpoints:
            f.write(json.dumps({"checkpoint": base64.b64encode(value).decode()}) + "\n")


def read_copy(path: Path) -> AuditCopy:
    with path.open(encoding="utf-8") as f:
        header = json.loads(f.readline() or "{}")
        if header.get("format") != COPY_FORMAT:
            raise ValueError(f"{path}: not a {COPY_FORMAT} file")
        copy = AuditCopy(header["audit_topic"])
        for n, line in enumerate(f, start=2):
            try:
                row = json.loads(line)
                if "checkpoint" in row:
                    copy.checkpoints.append(base64.b64decode(row["checkpoint"]))
                else:
                    copy.partitions.setdefault(int(row["partition"]), []).append(
                        (int(row["offset"]), base64.b64decode(row["entry"])))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a copy line ({exc})") from None
    return copy


@dataclass
class Problem:
    partition: int | None
    offset: int | None
    mismatch: Mismatch | None
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class LogReport:
    entries: int
    partitions: int
    checkpoints: int
    problems: list[Problem]
    seconds: float
    heads: dict[int, ChainState]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "partitions": self.partitions,
                "checkpoints": self.checkpoints, "seconds": round(self.seconds, 3),
                "heads": {str(p): {"seq": s.seq - 1, "head": s.head.hex()}
                          for p, s in sorted(self.heads.items())},
                "problems": [str(p) for p in self.problems]}


def verify_log(copy: AuditCopy, public_key_raw: bytes | None) -> LogReport:
    """Check every chain and every checkpoint; the first mismatch of each partition is named
    by partition, entry (seq) and Kafka offset."""
    started = time.perf_counter()
    checkpoints = [codec.AUDIT_CHECKPOINTS.decode(v) for v in copy.checkpoints]
    wanted: dict[int, set[int]] = {}
    for cp in checkpoints:
        for h in cp["heads"]:
            if h["seq"] >= 0:
                wanted.setdefault(h["partition"], set()).add(h["seq"])
    problems: list[Problem] = []
    heads: dict[int, ChainState] = {}
    at_seq: dict[tuple[int, int], bytes] = {}
    for p, records in sorted(copy.partitions.items()):
        values = [v for _, v in records]
        state = ChainState()
        stops = [*sorted(s + 1 for s in wanted.get(p, ()) if s < len(values)), len(values)]
        done = 0
        for stop in stops:
            if stop <= done:
                continue
            result = verify_run(values[done:stop], state)
            if result.mismatch is not None:
                m = result.mismatch
                offset = records[m.seq][0] if 0 <= m.seq < len(records) else None
                problems.append(Problem(p, offset, m, f"{copy.audit_topic} {m.describe(p)} "
                                        f"(Kafka offset {offset})"))
                break
            state = result.state
            done = stop
            at_seq[(p, stop - 1)] = state.head
        heads[p] = state
    if checkpoints and public_key_raw is None:
        problems.append(Problem(None, None, None, "checkpoints not checked: no audit public "
                                "key given (--public-key or --audit-key)"))
    for cp in checkpoints:
        if public_key_raw is not None and not checkpoint_signature_ok(cp, public_key_raw):
            problems.append(Problem(None, None, None, f"checkpoint at {cp['at']}: the "
                                    f"signature does not verify with key {cp['key_id']}"))
            continue
        for h in cp["heads"]:
            p, seq = h["partition"], h["seq"]
            if seq < 0:
                continue
            got = at_seq.get((p, seq))
            if got is None:
                if any(x.partition == p for x in problems):
                    continue  # already reported: the chain broke before this entry
                problems.append(Problem(p, None, None, f"checkpoint at {cp['at']}: partition "
                                        f"{p} entry {seq} is missing from the log"))
            elif got.hex() != h["head"]:
                problems.append(Problem(p, None, None, f"checkpoint at {cp['at']}: partition "
                                        f"{p} entry {seq} does not match the signed head"))
    return LogReport(copy.entries, len(copy.partitions), len(checkpoints), problems,
                     time.perf_counter() - started, heads)
