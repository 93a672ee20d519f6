"""What a backup holds and whether it is intact: plain Python, no Kafka.

A backup is a directory::

    manifest.json                  what follows, with the SHA-256 of every file
    topics/<topic>.jsonl           one record a line, in (partition, offset) order
    files/catalogue/<name>         the province catalogue
    files/dashboard-users.yaml     operator accounts (password hashes, never passwords)
    files/dashboard-audit.jsonl    the operator audit log
    files/keys/<name>              the agency keys file, only with --include-secrets

Topic names are stored without the hub's ``LIENTHONG_TOPIC_PREFIX``, so a backup restores under
another prefix (a rehearsal next to production). Every topic's start and end offsets are taken
in one request before any record is read, and each partition is read up to that end: the
backup is the hub as it stood at that moment, whatever is written meanwhile.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT = "lienthong-backup/1"
MANIFEST = "manifest.json"


class BackupError(ValueError):
    """A backup that cannot be used as it is (the file and the problem are named)."""


@dataclass(frozen=True)
class TopicCopy:
    """One topic in the backup."""

    topic: str                      # without the hub's prefix, e.g. "dossier.events"
    source_name: str                # as it was named on the source cluster
    partitions: int
    config: dict[str, str]
    start_offsets: dict[int, int]
    end_offsets: dict[int, int]
    records: int
    file: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class FileCopy:
    """One file copied into the backup (``role``: catalogue, users, audit, keys)."""

    role: str
    file: str
    source: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class KeysReference:
    """Where the agency keys file was and its hash; its secrets only when ``included``."""

    path: str
    sha256: str
    included: bool


@dataclass(frozen=True)
class Manifest:
    created_at: str
    topic_prefix: str
    topics: list[TopicCopy]
    files: list[FileCopy] = field(default_factory=list)
    keys: KeysReference | None = None
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for t in data["topics"]:
            t["start_offsets"] = {str(p): o for p, o in t["start_offsets"].items()}
            t["end_offsets"] = {str(p): o for p, o in t["end_offsets"].items()}
        return data

    @classmethod
    def from_json(cls, data: Any, source: str = MANIFEST) -> Manifest:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise BackupError(f"{source}: not a {FORMAT} manifest")
        try:
            topics = [TopicCopy(**{**t, "start_offsets": _offsets(t["start_offsets"]),
                                   "end_offsets": _offsets(t["end_offsets"])})
                      for t in data["topics"]]
            files = [FileCopy(**f) for f in data.get("files", [])]
            keys = KeysReference(**data["keys"]) if data.get("keys") else None
            return cls(created_at=str(data["created_at"]),
                       topic_prefix=str(data.get("topic_prefix", "")), topics=topics,
                       files=files, keys=keys)
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError(f"{source}: {type(exc).__name__}: {exc}") from exc

    def topic(self, name: str) -> TopicCopy | None:
        return next((t for t in self.topics if t.topic == name), None)

    def file(self, role: str) -> FileCopy | None:
        return next((f for f in self.files if f.role == role), None)


def _offsets(raw: Mapping[str, int]) -> dict[int, int]:
    return {int(p): int(o) for p, o in raw.items()}


# -- records ---------------------------------------------------------------------------------

def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text, validate=True)


@dataclass(frozen=True)
class Record:
    """A Kafka record as backed up: its place, timestamp, key, value and headers."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def to_line(self) -> bytes:
        return json.dumps({"p": self.partition, "o": self.offset, "ts": self.timestamp,
                           "k": _b64(self.key), "v": _b64(self.value),
                           "h": [[n, _b64(v)] for n, v in self.headers]},
                          separators=(",", ":")).encode("ascii") + b"\n"

    @classmethod
    def from_line(cls, line: bytes, where: str) -> Record:
        try:
            d = json.loads(line)
            return cls(int(d["p"]), int(d["o"]), int(d["ts"]), _unb64(d["k"]), _unb64(d["v"]),
                       tuple((str(n), _unb64(v) or b"") for n, v in d.get("h", [])))
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"{where}: not a backed-up record ({exc})") from exc


# -- checks ----------------------------------------------------------------------------------

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def problems(manifest: Manifest, root: Path) -> list[str]:
    """Every file of the backup that is missing or whose SHA-256 differs; empty when intact."""
    found: list[str] = []
    entries: list[tuple[str, str, int]] = [(t.file, t.sha256, t.bytes) for t in manifest.topics]
    entries += [(f.file, f.sha256, f.bytes) for f in manifest.files]
    for name, digest, size in entries:
        path = root / name
        if not path.is_file():
            found.append(f"{name}: missing")
        elif path.stat().st_size != size:
            found.append(f"{name}: {path.stat().st_size} bytes, the manifest says {size}")
        elif sha256_of(path) != digest:
            found.append(f"{name}: SHA-256 differs from the manifest (altered or damaged)")
    for t in manifest.topics:
        counted = sum(t.end_offsets.values()) - sum(t.start_offsets.values())
        if t.records > counted:
            found.append(f"{t.file}: {t.records} records, more than its offsets allow "
                         f"({counted})")
    return found


def refusals(manifest: Manifest, target: Mapping[str, tuple[int, int]],
             *, force: bool) -> list[str]:
    """Why a restore into ``target`` (topic -> (partitions, records now held)) must not run.

    Records go back to the partition they came from (a dossier's events stay together and in
    order), so each topic needs the same partition count. A target that already holds records
    is refused unless ``force``: a restore on top of a live hub would mix two histories."""
    found: list[str] = []
    for t in manifest.topics:
        if t.topic not in target:
            found.append(f"{t.topic}: no such topic on the target")
            continue
        partitions, held = target[t.topic]
        if partitions != t.partitions:
            found.append(f"{t.topic}: {partitions} partitions on the target, {t.partitions} "
                         "in the backup (set LIENTHONG_PARTITIONS to match before the topics "
                         "are created)")
        if held and not force:
            found.append(f"{t.topic}: the target already holds {held} records "
                         "(restore into empty topics, or --force)")
    return found


DATED = "%Y%m%dT%H%M%SZ"
"""Names of the dated directories ``lienthong backup --into`` makes (UTC, sortable)."""


def dated_name(when: datetime) -> str:
    return when.astimezone(UTC).strftime(DATED)


def to_prune(names: Iterable[str], keep: int) -> list[str]:
    """Of the dated backup directories ``names``, those beyond the ``keep`` newest. Names that
    are not dated backups are never chosen (an operator's own copy stays)."""
    if keep < 1:
        raise ValueError("keep at least one backup")
    dated = []
    for name in names:
        try:
            datetime.strptime(name, DATED)
        except ValueError:
            continue
        dated.append(name)
    return sorted(dated, reverse=True)[keep:]


def summary(manifest: Manifest) -> Iterable[str]:
    for t in manifest.topics:
        yield f"{t.topic}: {t.records} records in {t.partitions} partitions"
    for f in manifest.files:
        yield f"{f.role}: {f.source} ({f.bytes} bytes)"
    if manifest.keys is not None:
        yield (f"keys file: {manifest.keys.path} sha256 {manifest.keys.sha256[:16]}… "
               f"({'secrets included' if manifest.keys.included else 'reference only'})")
