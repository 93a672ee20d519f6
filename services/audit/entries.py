"""Audit entries and checkpoints through the one codec, and the hub's audit signing key.

``append(state, source)`` gives the entry bytes for one source record and the chain state after
it; nothing here talks to Kafka, so the chain service and the tests build entries the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lienthong.schemas import codec
from lienthong.services.audit.chain import ChainState, body_hash, chain_hash


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


def append(state: ChainState, source: Source, logged_at: datetime) -> tuple[bytes, ChainState]:
    """The next entry of a chain standing at ``state``, and the state after it."""
    dossier: str | None = None
    if source.key:
        try:
            dossier = source.key.decode("utf-8") or None
        except UnicodeDecodeError:
            dossier = None
    value = codec.AUDIT_ENTRIES.encode({
        "prev": state.head, "content_sha256": hashlib.sha256(source.value).digest(),
        "content": source.value, "seq": state.seq, "source_kind": source.kind,
        "source_topic": source.topic, "source_partition": source.partition,
        "source_offset": source.offset, "source_timestamp_ms": source.timestamp_ms,
        "dossier": dossier, "logged_at": logged_at.isoformat(),
    }, validate=False)
    return value, ChainState(state.seq + 1, chain_hash(state.head, body_hash(value)))


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
