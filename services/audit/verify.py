"""Reading the audit log back — from Kafka or from a copy file — and checking all of it.

Verification streams, so a province's log of years is checked in bounded memory: the
checkpoints are read first (small), then each partition's entries in order, ``chunk_entries``
at a time (a Kafka consumer on one partition after another; a copy file line by line). A
``LogChecker`` carries each partition's chain state (``ChainState``) from chunk to chunk
(``chain.verify_run``), takes the chain hash at every seq a checkpoint signed as it passes it,
and in the end checks every checkpoint's signature and heads. ``verify_kafka`` and
``verify_copy_file`` are the two ways in; ``stream_copy`` writes a copy as it reads.

A copy is one JSON object a line — the audit topic, then each entry's partition, offset and
base64 bytes (partition by partition, in offset order), then the checkpoints — so the log can be
archived, handed over and checked away from the cluster. ``read_log``/``read_copy`` still give
the whole log as an ``AuditCopy`` (for tests and small logs; ``audit export`` streams too, see
``export.ExportBuilder``). Each streamed read can advance a ``ProgressBar`` (``tracked``).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kafka import KafkaConsumer, TopicPartition

from lienthong.schemas import codec
from lienthong.services.audit.chain import (
    ChainState,
    Mismatch,
    checkpoint_signature_ok,
    verify_run,
)
from lienthong.services.progress import ProgressBar

COPY_FORMAT = "lienthong-audit-copy-v1"
CHUNK_ENTRIES = 20_000  # entries held at once per read; a few MB at typical entry sizes

Chunk = tuple[int, Sequence[int], Sequence[bytes]]  # partition, offsets, entry bytes


@dataclass
class AuditCopy:
    """The audit log as read: entries per partition (offset, bytes), and checkpoints."""

    audit_topic: str
    partitions: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)
    checkpoints: list[bytes] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return sum(len(v) for v in self.partitions.values())


# -- reading -----------------------------------------------------------------------------------

def _consumer(bootstrap: str) -> KafkaConsumer:
    return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                         isolation_level="read_committed", group_id=None,
                         max_partition_fetch_bytes=8 << 20, fetch_max_bytes=16 << 20)


def kafka_chunks(bootstrap: str, topic: str, *, chunk_entries: int = CHUNK_ENTRIES,
                 timeout_s: float = 600.0) -> Iterator[Chunk]:
    """Every committed record of ``topic``, one partition after another in offset order, at
    most ``chunk_entries`` at a time (an empty chunk for an empty partition)."""
    consumer = _consumer(bootstrap)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        if not parts:
            raise ValueError(f"topic {topic} does not exist")
        deadline = time.monotonic() + timeout_s
        for p in parts:
            tp = TopicPartition(topic, p)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            end = consumer.end_offsets([tp])[tp]
            yielded = False
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {topic} took longer than {timeout_s} s")
                records = consumer.poll(timeout_ms=500, max_records=chunk_entries).get(tp, [])
                records = [r for r in records if r.offset < end]
                if records:
                    yielded = True
                    yield p, [r.offset for r in records], [r.value for r in records]
            if not yielded:
                yield p, [], []
    finally:
        consumer.close()


def kafka_extent(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """Each partition's first and end offset: what a read of ``topic`` covers (transaction
    markers included, so a little more than its records)."""
    consumer = _consumer(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                        or ())]
        begins, ends = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        return {tp.partition: (begins[tp], ends[tp]) for tp in tps}
    finally:
        consumer.close()


def tracked(chunks: Iterable[Chunk], progress: ProgressBar,
            extent: Mapping[int, tuple[int, int]] | None = None) -> Iterator[Chunk]:
    """``chunks`` as they are, ``progress`` advanced by each: by its entries, or with the
    partitions' ``extent`` (``kafka_extent``) by the offsets it covers, each partition counted
    to its end once the next begins (a total of offsets is reached even with markers)."""
    if extent is None:
        for chunk in chunks:
            progress.advance(len(chunk[2]))
            yield chunk
        return
    reached: dict[int, int] = {}  # offset each partition is read up to
    current: int | None = None

    def reach(partition: int, offset: int) -> None:
        begin = extent.get(partition, (0, 0))[0]
        before = reached.get(partition, begin)
        if offset > before:
            reached[partition] = offset
            progress.advance(offset - before)

    for partition, offsets, values in chunks:
        if current is not None and partition != current:
            reach(current, extent.get(current, (0, 0))[1])
        current = partition
        reach(partition, offsets[-1] + 1 if offsets else extent.get(partition, (0, 0))[1])
        yield partition, offsets, values
    if current is not None:
        reach(current, extent.get(current, (0, 0))[1])


def kafka_log_chunks(bootstrap: str, audit_topic: str, *, chunk_entries: int = CHUNK_ENTRIES,
                     timeout_s: float = 600.0,
                     progress: ProgressBar | None = None) -> Iterator[Chunk]:
    """``kafka_chunks`` of the audit log, advancing ``progress`` (if any) over its offsets."""
    chunks = kafka_chunks(bootstrap, audit_topic, chunk_entries=chunk_entries,
                          timeout_s=timeout_s)
    if progress is None:
        return chunks
    extent = kafka_extent(bootstrap, audit_topic)
    progress.start(sum(end - begin for begin, end in extent.values()))
    return tracked(chunks, progress, extent)


def copy_log_chunks(path: Path, *, chunk_entries: int = CHUNK_ENTRIES,
                    progress: ProgressBar | None = None) -> tuple[str, list[bytes],
                                                                  Iterator[Chunk]]:
    """A copy file's audit topic, checkpoints and ``copy_chunks``, advancing ``progress`` (if
    any) over its entries."""
    audit_topic, checkpoints, entries = copy_index(path)
    chunks = copy_chunks(path, chunk_entries=chunk_entries)
    if progress is None:
        return audit_topic, checkpoints, chunks
    progress.start(entries)
    return audit_topic, checkpoints, tracked(chunks, progress)


def _read_topic(bootstrap: str, topic: str, timeout_s: float) -> dict[int, list[tuple[int, bytes]]]:
    out: dict[int, list[tuple[int, bytes]]] = {}
    for p, offsets, values in kafka_chunks(bootstrap, topic, timeout_s=timeout_s):
        out.setdefault(p, []).extend(zip(offsets, values, strict=True))
    return out


def read_checkpoints(bootstrap: str, checkpoints_topic: str, *,
                     timeout_s: float = 600.0) -> list[bytes]:
    return [v for recs in _read_topic(bootstrap, checkpoints_topic, timeout_s).values()
            for _, v in recs]


def read_log(bootstrap: str, audit_topic: str, checkpoints_topic: str, *,
             timeout_s: float = 600.0) -> AuditCopy:
    """The whole log in memory (``verify_kafka`` and ``export.export_kafka`` stream instead)."""
    partitions = _read_topic(bootstrap, audit_topic, timeout_s)
    return AuditCopy(audit_topic, partitions,
                     read_checkpoints(bootstrap, checkpoints_topic, timeout_s=timeout_s))


# -- copy files --------------------------------------------------------------------------------

def _write_lines(f: TextIO, audit_topic: str, chunks: Iterable[Chunk],
                 checkpoints: Sequence[bytes]) -> int:
    f.write(json.dumps({"format": COPY_FORMAT, "audit_topic": audit_topic}) + "\n")
    entries = 0
    for p, offsets, values in chunks:
        f.writelines(json.dumps({"partition": p, "offset": offset,
                                 "entry": base64.b64encode(value).decode()}) + "\n"
                     for offset, value in zip(offsets, values, strict=True))
        entries += len(values)
    for value in checkpoints:
        f.write(json.dumps({"checkpoint": base64.b64encode(value).decode()}) + "\n")
    return entries


def write_copy(copy: AuditCopy, path: Path) -> None:
    chunks = ((p, [o for o, _ in recs], [v for _, v in recs])
              for p, recs in sorted(copy.partitions.items()))
    with path.open("w", encoding="utf-8") as f:
        _write_lines(f, copy.audit_topic, chunks, copy.checkpoints)


def stream_copy(bootstrap: str, audit_topic: str, checkpoints_topic: str, path: Path, *,
                chunk_entries: int = CHUNK_ENTRIES, timeout_s: float = 600.0,
                progress: ProgressBar | None = None) -> tuple[int, int]:
    """Write the copy file as the log is read (bounded memory); (entries, checkpoints)."""
    checkpoints = read_checkpoints(bootstrap, checkpoints_topic, timeout_s=timeout_s)
    chunks = kafka_log_chunks(bootstrap, audit_topic, chunk_entries=chunk_entries,
                              timeout_s=timeout_s, progress=progress)
    with path.open("w", encoding="utf-8") as f:
        entries = _write_lines(f, audit_topic, chunks, checkpoints)
    return entries, len(checkpoints)


def copy_index(path: Path) -> tuple[str, list[bytes], int]:
    """A copy file's audit topic, checkpoints and number of entries (one pass that decodes
    only the checkpoints' lines)."""
    checkpoints: list[bytes] = []
    entries = 0
    with path.open(encoding="utf-8") as f:
        header = json.loads(f.readline() or "{}")
        if header.get("format") != COPY_FORMAT:
            raise ValueError(f"{path}: not a {COPY_FORMAT} file")
        for n, line in enumerate(f, start=2):
            if '"checkpoint"' not in line:  # base64 and numbers never hold a quote
                entries += 1
                continue
            try:
                row = json.loads(line)
                if "checkpoint" in row:
                    checkpoints.append(base64.b64decode(row["checkpoint"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a copy line ({exc})") from None
    return header["audit_topic"], checkpoints, entries


def copy_checkpoints(path: Path) -> tuple[str, list[bytes]]:
    """A copy file's audit topic and checkpoints."""
    audit_topic, checkpoints, _ = copy_index(path)
    return audit_topic, checkpoints


def copy_chunks(path: Path, *, chunk_entries: int = CHUNK_ENTRIES) -> Iterator[Chunk]:
    """A copy file's entries line by line, at most ``chunk_entries`` of one partition at a time
    (a new chunk whenever the partition changes)."""
    loads, b64decode = json.loads, base64.b64decode
    partition: int | None = None
    offsets: list[int] = []
    values: list[bytes] = []
    with path.open(encoding="utf-8") as f:
        f.readline()
        for n, line in enumerate(f, start=2):
            try:
                row = loads(line)
                if '"checkpoint"' in line and "checkpoint" in row:
                    continue
                p = int(row["partition"])
                if p != partition or len(values) >= chunk_entries:
                    if values and partition is not None:
                        yield partition, offsets, values
                    partition, offsets, values = p, [], []
                offsets.append(int(row["offset"]))
                values.append(b64decode(row["entry"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a copy line ({exc})") from None
    if values and partition is not None:
        yield partition, offsets, values


def read_copy(path: Path) -> AuditCopy:
    """The whole copy file in memory (``verify_copy_file`` and ``export.export_copy_file``
    stream instead)."""
    audit_topic, checkpoints = copy_checkpoints(path)
    copy = AuditCopy(audit_topic, checkpoints=checkpoints)
    for p, offsets, values in copy_chunks(path):
        copy.partitions.setdefault(p, []).extend(zip(offsets, values, strict=True))
    return copy


# -- checking ----------------------------------------------------------------------------------

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


@dataclass
class _Chain:
    """One partition's chain as far as it has been read."""

    wanted: list[int]  # seqs a checkpoint signed, descending: the next one is last
    state: ChainState = field(default_factory=ChainState)
    at_stop: ChainState = field(default_factory=ChainState)  # after the last signed seq
    last_offset: int | None = None
    continued: bool = False  # the chain goes on from a chunk boundary, not a signed seq
    problem: Problem | None = None


class LogChecker:
    """Checks the audit log as it streams by: ``feed`` each partition's entries in order (any
    chunking, partitions one after another or interleaved), then ``report``.

    Holds the checkpoints, one ``ChainState`` per partition and the chain hash at each signed
    seq; never the entries. Names the same first mismatch of each partition as one pass over
    the whole partition would.
    """

    def __init__(self, audit_topic: str, checkpoints: Iterable[bytes],
                 public_key_raw: bytes | None) -> None:
        self.started = time.perf_counter()
        self.audit_topic = audit_topic
        self.public_key_raw = public_key_raw
        self.checkpoints = [codec.AUDIT_CHECKPOINTS.decode(v) for v in checkpoints]
        self._wanted: dict[int, set[int]] = {}
        for cp in self.checkpoints:
            for h in cp["heads"]:
                if h["seq"] >= 0:
                    self._wanted.setdefault(h["partition"], set()).add(h["seq"])
        self._chains: dict[int, _Chain] = {}
        self._at_seq: dict[tuple[int, int], bytes] = {}
        self.entries = 0

    def feed(self, partition: int, offsets: Sequence[int], values: Sequence[bytes]) -> None:
        """The next entries of ``partition`` (none: the partition exists and is empty)."""
        c = self._chains.get(partition)
        if c is None:
            c = self._chains[partition] = _Chain(sorted(self._wanted.get(partition, ()),
                                                        reverse=True))
        self.entries += len(values)
        if c.problem is not None:
            return  # its first mismatch is named; the rest only counts
        n, i = len(values), 0
        while i < n:
            seq = c.state.seq
            stop = min(n, i + c.wanted[-1] + 1 - seq) if c.wanted else n
            run = values if i == 0 and stop == n else values[i:stop]
            result = verify_run(run, c.state, continued=c.continued)
            if result.mismatch is not None:
                m = result.mismatch
                k = i + m.seq - seq  # where the named entry is in this chunk
                offset = offsets[k] if 0 <= k < n else c.last_offset if k == -1 else None
                c.problem = Problem(partition, offset, m, f"{self.audit_topic} "
                                    f"{m.describe(partition)} (Kafka offset {offset})")
                return
            c.state = result.state
            c.last_offset = offsets[stop - 1]
            c.continued = True
            if c.wanted and c.state.seq - 1 == c.wanted[-1]:
                self._at_seq[(partition, c.wanted.pop())] = c.state.head
                c.at_stop = c.state
                c.continued = False
            i = stop

    def report(self) -> LogReport:
        """Every problem: the first mismatch of each partition (by partition), then those of
        the checkpoints."""
        problems = [c.problem for _, c in sorted(self._chains.items()) if c.problem]
        heads = {p: (c.at_stop if c.problem else c.state) for p, c in self._chains.items()}
        if self.checkpoints and self.public_key_raw is None:
            problems.append(Problem(None, None, None, "checkpoints not checked: no audit "
                                    "public key given (--public-key or --audit-key)"))
        broken = {p for p, c in self._chains.items() if c.problem}
        for cp in self.checkpoints:
            if self.public_key_raw is not None \
                    and not checkpoint_signature_ok(cp, self.public_key_raw):
                problems.append(Problem(None, None, None, f"checkpoint at {cp['at']}: the "
                                        f"signature does not verify with key {cp['key_id']}"))
                continue
            for h in cp["heads"]:
                p, seq = h["partition"], h["seq"]
                if seq < 0:
                    continue
                got = self._at_seq.get((p, seq))
                if got is None:
                    if p in broken:
                        continue  # already reported: the chain broke before this entry
                    problems.append(Problem(p, None, None, f"checkpoint at {cp['at']}: "
                                            f"partition {p} entry {seq} is missing from the "
                                            "log"))
                elif got.hex() != h["head"]:
                    problems.append(Problem(p, None, None, f"checkpoint at {cp['at']}: "
                                            f"partition {p} entry {seq} does not match the "
                                            "signed head"))
        return LogReport(self.entries, len(self._chains), len(self.checkpoints), problems,
                         time.perf_counter() - self.started, heads)


def verify_stream(audit_topic: str, checkpoints: Iterable[bytes], chunks: Iterable[Chunk],
                  public_key_raw: bytes | None) -> LogReport:
    checker = LogChecker(audit_topic, checkpoints, public_key_raw)
    for partition, offsets, values in chunks:
        checker.feed(partition, offsets, values)
    return checker.report()


def verify_log(copy: AuditCopy, public_key_raw: bytes | None) -> LogReport:
    """Check every chain and every checkpoint of a log read whole; the first mismatch of each
    partition is named by partition, entry (seq) and Kafka offset."""
    chunks = ((p, [o for o, _ in recs], [v for _, v in recs])
              for p, recs in sorted(copy.partitions.items()))
    return verify_stream(copy.audit_topic, copy.checkpoints, chunks, public_key_raw)


def verify_kafka(bootstrap: str, audit_topic: str, checkpoints_topic: str,
                 public_key_raw: bytes | None, *, chunk_entries: int = CHUNK_ENTRIES,
                 timeout_s: float = 600.0, progress: ProgressBar | None = None) -> LogReport:
    """``verify_log`` of the log in Kafka, streamed: memory bounded by ``chunk_entries``."""
    checkpoints = read_checkpoints(bootstrap, checkpoints_topic, timeout_s=timeout_s)
    return verify_stream(audit_topic, checkpoints,
                         kafka_log_chunks(bootstrap, audit_topic, chunk_entries=chunk_entries,
                                          timeout_s=timeout_s, progress=progress),
                         public_key_raw)


def verify_copy_file(path: Path, public_key_raw: bytes | None, *,
                     chunk_entries: int = CHUNK_ENTRIES,
                     progress: ProgressBar | None = None) -> LogReport:
    """``verify_log`` of a copy file, streamed line by line."""
    audit_topic, checkpoints, chunks = copy_log_chunks(path, chunk_entries=chunk_entries,
                                                       progress=progress)
    return verify_stream(audit_topic, checkpoints, chunks, public_key_raw)
