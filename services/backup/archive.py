"""The Kafka and file-system side of backup and restore (the decisions are in ``manifest``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from lienthong.schemas import topics
from lienthong.services.backup.manifest import (
    MANIFEST,
    BackupError,
    FileCopy,
    KeysReference,
    Manifest,
    Record,
    TopicCopy,
    problems,
    refusals,
    sha256_of,
)
from lienthong.services.progress import ProgressBar
from lienthong.services.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalFiles:
    """The hub's files outside Kafka that a backup carries (None: not part of this hub)."""

    catalogue: Path | None = None
    users: Path | None = None
    audit: Path | None = None
    keys: Path | None = None


def _hub_topics(settings: Settings) -> list[tuple[str, topics.TopicSpec]]:
    """(name without prefix, spec on the cluster) for every hub topic."""
    prefix = settings.topic_prefix
    return [(spec.name[len(prefix):], spec) for spec in topics.specs(settings)]


def _consumer(bootstrap: str, timeout: float) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                         client_id="lienthong-backup", request_timeout_ms=int(timeout * 1000),
                         max_partition_fetch_bytes=8 * 1024 * 1024)


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def backup(bootstrap: str, settings: Settings, out: Path, files: LocalFiles, *,
           include_secrets: bool = False, timeout: float = 30.0,
           console: TextIO | None = None) -> Manifest:
    """Write a backup of the hub into ``out`` (which must not exist or be empty)."""
    from kafka import TopicPartition

    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out}: not empty; a backup goes into a new directory")
    (out / "topics").mkdir(parents=True, exist_ok=True)
    consumer = _consumer(bootstrap, timeout)
    try:
        hub = _hub_topics(settings)
        parts: dict[str, list[Any]] = {}
        for _, spec in hub:
            found = consumer.partitions_for_topic(spec.name)
            if not found:
                raise BackupError(f"topic {spec.name} does not exist on {bootstrap} (is "
                                  "LIENTHONG_TOPIC_PREFIX the hub's?)")
            parts[spec.name] = [TopicPartition(spec.name, p) for p in sorted(found)]
        every = [tp for tps in parts.values() for tp in tps]
        # One moment for the whole hub: every end offset before any record is read.
        ends = consumer.end_offsets(every)
        starts = consumer.beginning_offsets(every)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        copies: list[TopicCopy] = []
        for plain, spec in hub:
            tps = parts[spec.name]
            start = {tp.partition: starts[tp] for tp in tps}
            end = {tp.partition: ends[tp] for tp in tps}
            name = f"topics/{plain}.jsonl"
            count = _read_topic(consumer, tps, start, end, out / name, plain, console,
                                timeout)
            copies.append(TopicCopy(
                topic=plain, source_name=spec.name, partitions=len(tps),
                config=dict(spec.config), start_offsets=start, end_offsets=end,
                records=count, file=name, sha256=sha256_of(out / name),
                bytes=(out / name).stat().st_size))
    finally:
        consumer.close()
    copied = _copy_files(out, files, include_secrets)
    keys = None
    if files.keys is not None:
        keys = KeysReference(str(files.keys.resolve()), sha256_of(files.keys),
                             include_secrets)
    manifest = Manifest(created_at=created, topic_prefix=settings.topic_prefix,
                        topics=copies, files=copied, keys=keys)
    body = json.dumps(manifest.to_json(), indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    _write_durably(out / MANIFEST, body)
    _write_durably(out / (MANIFEST + ".sha256"),
                   f"{sha256_of(out / MANIFEST)}  {MANIFEST}\n".encode("ascii"))
    return manifest


def _read_topic(consumer: Any, tps: list[Any], start: dict[int, int], end: dict[int, int],
                path: Path, label: str, console: TextIO | None, timeout: float) -> int:
    total = sum(end[p] - start[p] for p in end)
    count = 0
    with path.open("wb") as f, ProgressBar(label, total, out=console) as bar:
        for tp in tps:
            if end[tp.partition] <= start[tp.partition]:
                continue
            consumer.assign([tp])
            consumer.seek(tp, start[tp.partition])
            stalled_since = time.monotonic()
            while consumer.position(tp) < end[tp.partition]:
                before = consumer.position(tp)
                for batch in consumer.poll(timeout_ms=1000, max_records=5000).values():
                    for r in batch:
                        if r.offset >= end[tp.partition]:
                            break
                        f.write(Record(r.partition, r.offset, r.timestamp, r.key, r.value,
                                       tuple(r.headers or ())).to_line())
                        count += 1
                # Compaction leaves gaps in offsets: the bar counts offsets passed.
                bar.advance(min(consumer.position(tp), end[tp.partition]) - before)
                if consumer.position(tp) > before:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > timeout:
                    raise BackupError(f"{tp.topic}/{tp.partition}: no record for {timeout:.0f} "
                                      f"s at offset {before} (end {end[tp.partition]})")
        f.flush()
        os.fsync(f.fileno())
    return count


def _copy_files(out: Path, files: LocalFiles, include_secrets: bool) -> list[FileCopy]:
    wanted: list[tuple[str, Path | None, str]] = [
        ("catalogue", files.catalogue,
         f"files/catalogue/{files.catalogue.name}" if files.catalogue else ""),
        ("users", files.users, "files/dashboard-users.yaml"),
        ("audit", files.audit, "files/dashboard-audit.jsonl"),
    ]
    if include_secrets and files.keys is not None:
        wanted.append(("keys", files.keys, f"files/keys/{files.keys.name}"))
    copied: list[FileCopy] = []
    for role, source, name in wanted:
        if source is None:
            continue
        if not source.is_file():
            if role == "audit":  # a hub whose dashboard never signed anyone in
                continue
            raise BackupError(f"{role} file {source} does not exist")
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        if role in ("users", "keys"):
            target.chmod(0o600)
        copied.append(FileCopy(role, name, str(source.resolve()), sha256_of(target),
                               target.stat().st_size))
    return copied


def load_manifest(root: Path) -> Manifest:
    """The backup's manifest, checked against ``manifest.json.sha256`` when that is there."""
    try:
        data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{root / MANIFEST}: cannot read ({exc})") from exc
    stamp = root / (MANIFEST + ".sha256")
    if stamp.is_file() and stamp.read_text(encoding="ascii").split()[:1] != [
            sha256_of(root / MANIFEST)]:
        raise BackupError(f"{root / MANIFEST}: SHA-256 differs from {stamp.name} (altered "
                          "or damaged)")
    return Manifest.from_json(data, str(root / MANIFEST))


def _target_state(bootstrap: str, names: dict[str, str], timeout: float
                  ) -> dict[str, tuple[int, int]]:
    from kafka import TopicPartition

    consumer = _consumer(bootstrap, timeout)
    try:
        state: dict[str, tuple[int, int]] = {}
        for plain, name in names.items():
            found = consumer.partitions_for_topic(name) or set()
            tps = [TopicPartition(name, p) for p in sorted(found)]
            if not tps:
                continue
            ends, starts = consumer.end_offsets(tps), consumer.beginning_offsets(tps)
            state[plain] = (len(tps), sum(ends[tp] - starts[tp] for tp in tps))
        return state
    finally:
        consumer.close()


def restore(root: Path, bootstrap: str, settings: Settings, *, force: bool = False,
            topic_filter: Callable[[str], bool] = lambda name: True,
            targets: LocalFiles | None = None, timeout: float = 30.0,
            console: TextIO | None = None) -> dict[str, int]:
    """Restore a verified backup into the hub named by ``settings`` (its prefix and partition
    count); returns records written per topic. Refuses (``BackupError``) before writing
    anything if a file's hash differs or a target topic is not empty (unless ``force``)."""
    manifest = load_manifest(root)
    damaged = problems(manifest, root)
    if damaged:
        raise BackupError("the backup is damaged; nothing restored:\n  " + "\n  ".join(damaged))
    chosen = [t for t in manifest.topics if topic_filter(t.topic)]
    topics.ensure_topics(bootstrap, settings, timeout_s=timeout)
    names = {plain: spec.name for plain, spec in _hub_topics(settings)}
    unknown = [t.topic for t in chosen if t.topic not in names]
    if unknown:
        raise BackupError(f"topics unknown to this version of the hub: {', '.join(unknown)}")
    subset = Manifest(manifest.created_at, manifest.topic_prefix, chosen)
    refused = refusals(subset, _target_state(bootstrap, names, timeout), force=force)
    refused += _file_refusals(manifest, targets or LocalFiles(), force)
    if refused:
        raise BackupError("restore refused; nothing written:\n  " + "\n  ".join(refused))
    written = {t.topic: _write_topic(root, t, names[t.topic], bootstrap, timeout, console)
               for t in chosen}
    _restore_files(root, manifest, targets or LocalFiles())
    return written


def _file_refusals(manifest: Manifest, targets: LocalFiles, force: bool) -> list[str]:
    found = []
    for role, target in (("catalogue", targets.catalogue), ("users", targets.users),
                         ("audit", targets.audit), ("keys", targets.keys)):
        if target is None or manifest.file(role) is None:
            continue
        if target.exists() and target.stat().st_size > 0 and not force:
            if role in ("catalogue", "keys") and sha256_of(target) == manifest.file(
                    role).sha256:  # type: ignore[union-attr]
                continue  # the same file is already in place
            found.append(f"{role}: {target} exists (restore to a new path, or --force)")
    return found


def _restore_files(root: Path, manifest: Manifest, targets: LocalFiles) -> None:
    for role, target in (("catalogue", targets.catalogue), ("users", targets.users),
                         ("audit", targets.audit), ("keys", targets.keys)):
        copy = manifest.file(role)
        if target is None or copy is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".restoring")
        shutil.copyfile(root / copy.file, tmp)
        if role in ("users", "keys", "audit"):
            tmp.chmod(0o600)
        os.replace(tmp, target)


def _write_topic(root: Path, copy: TopicCopy, name: str, bootstrap: str, timeout: float,
                 console: TextIO | None) -> int:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="lienthong-restore",
                             acks="all", enable_idempotence=True, linger_ms=20,
                             request_timeout_ms=int(timeout * 1000))
    written = 0
    try:
        with (root / copy.file).open("rb") as f, ProgressBar(copy.topic, copy.records,
                                                               out=console) as bar:
            for n, line in enumerate(f, 1):
                r = Record.from_line(line, f"{copy.file}:{n}")
                producer.send(name, key=r.key, value=r.value, partition=r.partition,
                              timestamp_ms=r.timestamp, headers=list(r.headers))
                written += 1
                if written % 1000 == 0:
                    producer.flush(timeout)
                    bar.advance(1000)
            producer.flush(timeout)
            bar.advance(written % 1000)
    finally:
        producer.close(timeout)
    if written != copy.records:
        raise BackupError(f"{copy.file}: {written} records read, the manifest says "
                          f"{copy.records}")
    return written
