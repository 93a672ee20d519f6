"""Every version of every Avro schema of the contract, with its fingerprint.

The ``*.avsc`` files live in ``avro/v{N}/``. A kind's versions are listed oldest first; the last
one is what this release writes, and every listed version stays readable forever (FULL_TRANSITIVE
compatibility, checked by ``tests/unit/test_schema_compat.py``). To evolve a schema: copy its
latest file into a new ``avro/v{N+1}/`` folder, add only optional fields with defaults, and append
the path here. Never edit a released file: its fingerprint is on the wire.

Fingerprints are CRC-64-AVRO (Rabin) of the Parsing Canonical Form, as Avro single-object
encoding puts them on the wire: 8 bytes, little-endian.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

AVRO_DIR = Path(__file__).resolve().parent / "avro"

#: kind -> schema files, oldest first. The last one is written; all are read.
VERSIONS: dict[str, tuple[str, ...]] = {
    "event": ("v1/dossier_event.avsc", "v2/dossier_event.avsc", "v3/dossier_event.avsc"),
    "delivery": ("v1/delivery.avsc",),
    "alert": ("v1/alert.avsc", "v2/alert.avsc"),
    "deadletter": ("v1/deadletter.avsc",),
    "receipt": ("v1/receipt.avsc",),
    "receipt_expected": ("v1/receipt_expected.avsc",),
    "audit_entry": ("v1/audit_entry.avsc", "v2/audit_entry.avsc"),
    "audit_checkpoint": ("v1/audit_checkpoint.avsc",),
}

_EMPTY = 0xC15D213AA4D7A795  # CRC-64-AVRO seed, from the Avro specification


def _rabin_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _rabin_table()


def rabin_fingerprint(data: bytes) -> int:
    """CRC-64-AVRO of ``data`` (the Avro specification's 64-bit Rabin fingerprint)."""
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


@dataclass(frozen=True)
class SchemaVersion:
    """One released schema of a ``kind`` (event, delivery, alert, deadletter), ``version`` 1, 2…"""

    kind: str
    version: int
    path: Path
    schema: dict[str, Any] = field(repr=False)
    canonical: str = field(repr=False)
    fingerprint: bytes  # 8 bytes, little-endian, as in single-object encoding

    @property
    def parsed(self) -> Any:
        """fastavro's parsed form (parsed once, shared)."""
        return _parsed(self.kind, self.version)


def _load(kind: str, version: int, rel: str) -> SchemaVersion:
    path = AVRO_DIR / rel
    schema = json.loads(path.read_text(encoding="utf-8"))
    canonical = to_parsing_canonical_form(schema)
    fp = rabin_fingerprint(canonical.encode("utf-8")).to_bytes(8, "little")
    return SchemaVersion(kind, version, path, schema, canonical, fp)


@cache
def versions(kind: str) -> tuple[SchemaVersion, ...]:
    """All versions of one kind, oldest first."""
    if kind not in VERSIONS:
        raise KeyError(f"unknown record kind {kind!r}; known: {', '.join(VERSIONS)}")
    return tuple(_load(kind, i + 1, rel) for i, rel in enumerate(VERSIONS[kind]))


def latest(kind: str) -> SchemaVersion:
    """The version this release writes."""
    return versions(kind)[-1]


@cache
def by_fingerprint() -> dict[bytes, SchemaVersion]:
    """Every known schema version of every kind, by wire fingerprint."""
    out: dict[bytes, SchemaVersion] = {}
    for kind in VERSIONS:
        for v in versions(kind):
            other = out.setdefault(v.fingerprint, v)
            if other is not v:
                raise RuntimeError(f"{v.path} and {other.path} have the same fingerprint")
    return out


@cache
def _parsed(kind: str, version: int) -> Any:
    return parse_schema(versions(kind)[version - 1].schema)
