"""Audit entries and checkpoints through the one codec, and the hub's audit signing key.

``append_run(state, kind, topic, partition, records, logged_at)`` gives the entry bytes for a run
of records of one source partition and the chain state after them (``append`` for one record);
nothing here talks to Kafka, so the chain service and the tests build entries the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lienthong.schemas import codec, registry
from lienthong.schemas.compiled import ZZ, zigzag_varint
from lienthong.services.audit.chain import ZERO, ChainState


@dataclass(frozen=True)
class Source:
    """A source record as the chain service read it from Kafka."""

    kind: str  # event, delivery, receipt, alert, deadletter, operator
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes

    @property
    def timestamp(self) -> int:
        """The Kafka timestamp under the name aiokafka's records give it."""
        return self.timestamp_ms


class SourceRecord(Protocol):
    """What an entry needs of a record of one source partition (an aiokafka record has it)."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


# The entry's bytes are built here field by field instead of through the codec's generic
# writer, once per source record: the chain service spends its CPU on little else. The layout
# is the one ``chain.py`` documents and ``codec.AUDIT_ENTRIES`` writes, byte for byte
# (tests/unit/test_audit_chain.py proves it for any record): V[0:11] is fixed, then ``prev``,
# then 0x40 and ``content_sha256``, then ``content`` and the other fields in schema order.
_OPENING = codec.MAGIC + codec.AUDIT_ENTRIES.fingerprint + b"\x40"  # V[0:11], version 2
_BODY_OPENING = hashlib.sha256(_OPENING)  # the body hash over V[0:11], copied per entry
_OPENING_V1 = codec.MAGIC + registry.versions("audit_entry")[0].fingerprint + b"\x40"
_BODY_OPENING_V1 = hashlib.sha256(_OPENING_V1)
_NO_DOSSIER = b"\x00"  # union branch 0: null
_SMALL = len(ZZ)


def _long(n: int) -> bytes:
    return ZZ[n] if 0 <= n < _SMALL else zigzag_varint(n)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _long(len(raw)) + raw


def logged_at_field(logged_at: datetime) -> bytes:
    """The encoded ``logged_at`` field, made once for every entry of a batch."""
    return _string(logged_at.isoformat())


def _dossier_field(key: bytes | None) -> bytes:
    """The encoded ``dossier`` union of a record's key: its string when the key is UTF-8 text
    (valid UTF-8 is its own encoding: the key's bytes are the string's), else null."""
    if key:
        try:
            key.decode("utf-8")
        except UnicodeDecodeError:
            return _NO_DOSSIER
        n = len(key)
        return b"\x02" + (ZZ[n] if n < _SMALL else zigzag_varint(n)) + key
    return _NO_DOSSIER


def append_run(state: ChainState, kind: str, topic: str, partition: int,
               records: Iterable[SourceRecord], logged_at: bytes, *,
               version: int = 2) -> tuple[list[bytes], ChainState]:
    """The next entries of a chain standing at ``state`` for consecutive records of one source
    partition, and the state after them; ``logged_at`` is :func:`logged_at_field`'s bytes.

    A record without a value (a tombstone) is chained with empty content; its key, when it is
    UTF-8 text, is the entry's ``dossier``. Entries are of version 2 (the dossier digest after
    the content, in the chain hash); ``version=1`` writes the first version, as logs written
    before it hold (tests).
    """
    if version == 1:
        return _append_run_v1(state, kind, topic, partition, records, logged_at)
    source = _string(kind) + _string(topic) + _long(partition)
    seq, head = state.seq, state.head
    sha = hashlib.sha256
    opening, body_opening = _OPENING, _BODY_OPENING
    small, zz = _SMALL, ZZ
    no_digest = b"\x40" + ZERO
    out: list[bytes] = []
    for record in records:
        content = record.value or b""
        key = record.key
        dossier = _dossier_field(key)
        digest = no_digest if dossier is _NO_DOSSIER else b"\x40" + sha(key or b"").digest()
        n, offset, stamp = len(content), record.offset, record.timestamp
        body = b"".join((
            b"\x40", sha(content).digest(), zz[n] if n < small else zigzag_varint(n), content,
            digest, dossier, zz[seq] if seq < small else zigzag_varint(seq), source,
            zz[offset] if 0 <= offset < small else zigzag_varint(offset),
            zz[stamp] if 0 <= stamp < small else zigzag_varint(stamp), logged_at))
        inner = body_opening.copy()
        inner.update(body)
        out.append(opening + head + body)
        head = sha(head + inner.digest() + digest[1:]).digest()
        seq += 1
    return out, ChainState(seq, head)


def _append_run_v1(state: ChainState, kind: str, topic: str, partition: int,
                   records: Iterable[SourceRecord],
                   logged_at: bytes) -> tuple[list[bytes], ChainState]:
    source = _string(kind) + _string(topic) + _long(partition)
    seq, head = state.seq, state.head
    sha = hashlib.sha256
    opening, body_opening = _OPENING_V1, _BODY_OPENING_V1
    small, zz = _SMALL, ZZ
    out: list[bytes] = []
    for record in records:
        content = record.value or b""
        dossier = _dossier_field(record.key)
        n, offset, stamp = len(content), record.offset, record.timestamp
        body = b"".join((
            b"\x40", sha(content).digest(), zz[n] if n < small else zigzag_varint(n), content,
            zz[seq] if seq < small else zigzag_varint(seq), source,
            zz[offset] if 0 <= offset < small else zigzag_varint(offset),
            zz[stamp] if 0 <= stamp < small else zigzag_varint(stamp), dossier, logged_at))
        inner = body_opening.copy()
        inner.update(body)
        out.append(opening + head + body)
        head = sha(head + inner.digest()).digest()
        seq += 1
    return out, ChainState(seq, head)


def append(state: ChainState, source: Source, logged_at: datetime, *,
           version: int = 2) -> tuple[bytes, ChainState]:
    """The next entry of a chain standing at ``state``, and the state after it."""
    [value], after = append_run(state, source.kind, source.topic, source.partition, [source],
                                logged_at_field(logged_at), version=version)
    return value, after


@dataclass(frozen=True)
class AuditKey:
    """The hub's Ed25519 key that signs checkpoints; ``public_hex`` is what inspectors get."""

    key_id: str
    private: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)

    @property
    def public_hex(self) -> str:
        return self.public_raw.hex()


def load_audit_key(path: Path, key_id: str | None = None) -> AuditKey:
    """A PEM (PKCS#8) Ed25519 private key; the key id defaults to the file's stem."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: the audit key must be Ed25519, not {type(key).__name__}")
    return AuditKey(key_id or path.stem, key)


def create_audit_key(path: Path) -> AuditKey:
    """Write a new Ed25519 private key (mode 600); refuses to overwrite one."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as f:
        path.chmod(0o600)
        f.write(pem)
    return AuditKey(path.stem, key)


def decode_checkpoint(value: bytes) -> dict[str, Any]:
    return codec.AUDIT_CHECKPOINTS.decode(value)
