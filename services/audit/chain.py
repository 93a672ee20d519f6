"""The hash chain of the audit log (nhật ký kiểm tra): hashing, verification, checkpoints.

Pure and self-contained: the standard library, and ``cryptography`` for Ed25519 signatures,
nothing else — not even the rest of lienthong — so an inspector can copy this one file and check
an export without the hub::

    python chain.py dossier-export.json            # or: python -m lienthong.services.audit.chain

An audit entry is an Avro single-object record (``schemas/avro/v1/audit_entry.avsc``) whose
first three fields are ``prev`` (32 bytes), ``content_sha256`` (32 bytes) and ``content`` (the
source record's bytes). In the single-object bytes ``V`` that puts them at fixed places::

    V[0:10]   C3 01 + schema fingerprint
    V[10]     0x40 (Avro length 32)      V[11:43]  prev
    V[43]     0x40                       V[44:76]  content_sha256
    V[76:]    varint length L, then L bytes of content, then the other fields

The chain hash of entry ``i`` of a partition is::

    h(i) = SHA-256( h(i-1) || SHA-256(V(i) without V[11:43]) )      h(-1) = 32 zero bytes

and entry ``i`` stores ``h(i-1)`` as its ``prev``. Leaving ``prev`` out of the inner hash means
an entry can be proven by its 32-byte *body hash* alone: an export of one dossier carries the
full bytes of that dossier's entries and only the body hashes of the other dossiers' entries in
between, so no one else's data leaves the hub and the chain still links up to a signed head.

**Version 2** (``schemas/avro/v2/audit_entry.avsc``, the fingerprint at ``V[2:10]`` says which
version an entry is; a chain may hold v1 entries, then v2 ones) adds ``dossier_sha256`` right
after ``content`` — SHA-256 of the dossier code, or 32 zero bytes for an entry about no dossier
— followed by ``dossier``, and its chain hash covers that digest beside the body hash::

    h(i) = SHA-256( h(i-1) || SHA-256(V(i) without V[11:43]) || dossier_sha256(i) )

So an export shows, for every other entry of its range, the body hash *and* the dossier digest,
and an inspector can check that every entry of the range whose digest is SHA-256(CODE) is one
of the full entries given: the export is complete for that range (:func:`completeness`). The
digest of a known code is public: anyone holding an export can test it against codes they
guess (dossier codes follow a pattern), so it tells whether a guessed dossier had entries in
the range, and how many — never their contents.

A checkpoint signs the head ``h`` and ``seq`` of every partition at one time with the hub's
Ed25519 audit key (:func:`checkpoint_text` is what is signed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ZERO = bytes(32)
HEADER = 10
_LEN32 = 0x40  # zig-zag varint of 32
_PREV = slice(11, 43)
_CONTENT_SHA = slice(44, 76)
EXPORT_FORMAT = "lienthong-audit-export-v1"  # every entry of the range is of version 1
EXPORT_FORMAT_V2 = "lienthong-audit-export-v2"  # some are of version 2: their links carry digests
# Schema fingerprints (CRC-64-AVRO, little-endian) of the two entry versions, as in V[2:10];
# tests/unit/test_audit_completeness.py checks them against schemas/registry.py.
V1 = bytes.fromhex("0d028171e633b5e3")
V2 = bytes.fromhex("61027f31cd3bfe90")
_sha256 = hashlib.sha256


class ChainError(ValueError):
    """An entry whose bytes do not have the audit entry's fixed layout."""


@dataclass(frozen=True)
class Mismatch:
    """The first entry of a chain that does not match, and why."""

    seq: int  # position in the partition's chain
    reason: str  # prev_mismatch | content_mismatch | malformed_entry | head_mismatch | …
    detail: str

    def describe(self, partition: int | None = None) -> str:
        where = f"partition {partition}, " if partition is not None else ""
        return f"{where}entry {self.seq}: {self.reason}: {self.detail}"


@dataclass(frozen=True)
class ChainState:
    """Where a partition's chain stands: the next entry gets ``seq`` and ``prev`` = ``head``."""

    seq: int = 0
    head: bytes = ZERO


@dataclass(frozen=True)
class Verified:
    """Result of checking a run of entries: the state after the last good one."""

    state: ChainState
    checked: int
    mismatch: Mismatch | None

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def body_hash(value: bytes) -> bytes:
    """SHA-256 of an entry's bytes without its ``prev`` field."""
    return _sha256(value[:11] + value[43:]).digest()


def chain_hash(prev: bytes, body_digest: bytes, dossier_digest: bytes | None = None) -> bytes:
    """``h(i)`` from ``h(i-1)``, the entry's body hash and (version 2) its dossier digest."""
    if dossier_digest is None:
        return _sha256(prev + body_digest).digest()
    return _sha256(prev + body_digest + dossier_digest).digest()


def dossier_digest(code: str | None) -> bytes:
    """What a version-2 entry about dossier ``code`` (None: about no dossier) records."""
    return ZERO if not code else _sha256(code.encode("utf-8")).digest()


def entry_version(value: bytes) -> int:
    """1 or 2, from the schema fingerprint at ``V[2:10]`` (raises ``ChainError`` otherwise)."""
    fingerprint = value[2:10]
    if fingerprint == V2:
        return 2
    if fingerprint == V1:
        return 1
    raise ChainError("not an audit entry of a known version (schema fingerprint "
                     f"{fingerprint.hex()})")


def link_of(value: bytes) -> tuple[bytes, bytes | None]:
    """What the chain hash of an entry takes besides ``prev``: its body hash, and for version
    2 its recorded dossier digest (None for version 1)."""
    check_layout(value)
    if entry_version(value) == 1:
        return body_hash(value), None
    n, p = _varint(value, 76)
    q = p + (n >> 1)
    if n & 1 or q + 33 > len(value) or value[q] != _LEN32:
        raise ChainError("no 32-byte dossier digest after the content")
    return body_hash(value), value[q + 1:q + 33]


def step(prev: bytes, value: bytes) -> bytes:
    """The chain hash after an entry whose ``prev`` is ``prev``, whatever its version."""
    body, digest = link_of(value)
    return chain_hash(prev, body, digest)


def content_of(value: bytes) -> bytes:
    """The source record's bytes inside an entry (raises ``ChainError`` if malformed)."""
    n, p = _varint(value, 76)
    length = (n >> 1) ^ -(n & 1)
    if length < 0 or p + length > len(value):
        raise ChainError("content length runs past the entry")
    return value[p:p + length]


def check_layout(value: bytes) -> None:
    if len(value) < 77 or value[0] != 0xC3 or value[1] != 0x01 or value[10] != _LEN32 \
            or value[43] != _LEN32:
        raise ChainError("not an audit entry (32-byte prev and content hash expected at fixed "
                         "positions)")


def verify_run(values: Iterable[bytes], start: ChainState = ChainState(), *,
               check_content: bool = True, continued: bool = False) -> Verified:
    """Check entries in partition order from ``start``; stop at the first that does not match.

    For each entry: the fixed layout and a known version; ``prev`` equals the chain hash so
    far; with ``check_content``, SHA-256 of ``content`` equals ``content_sha256`` and, for
    version 2, ``dossier_sha256`` is that of ``dossier``. A removed, inserted or reordered
    entry breaks ``prev`` at the first entry after the change; an altered byte breaks the
    content hash (in ``content`` or ``content_sha256``), the dossier digest's (in those two
    fields of a version-2 entry: ``dossier_mismatch``), the entry's own ``prev`` (in ``prev``)
    or the next entry's ``prev`` (anywhere else; named as the altered entry, ``seq - 1`` of the
    entry that sees it). ``continued`` says ``values`` go on a run already checked
    up to ``start`` (a long chain read in chunks), so a wrong ``prev`` at the first of them is
    named as the entry before it, exactly as in one run.
    """
    head, seq = start.head, start.seq
    checked = 0
    sha = _sha256
    v1, v2 = V1, V2
    for value in values:
        if len(value) < 77 or value[10] != _LEN32 or value[43] != _LEN32 \
                or value[:2] != b"\xc3\x01":
            return Verified(ChainState(seq, head), checked,
                            Mismatch(seq, "malformed_entry", "not an audit entry's layout"))
        fingerprint = value[2:10]
        if fingerprint == v2:
            second = True
        elif fingerprint == v1:
            second = False
        else:
            return Verified(ChainState(seq, head), checked, Mismatch(
                seq, "malformed_entry", f"unknown entry version (schema fingerprint "
                f"{fingerprint.hex()})"))
        if value[11:43] != head:
            if checked or continued:
                return Verified(ChainState(seq, head), checked, Mismatch(
                    seq - 1, "next_prev_mismatch",
                    f"entry {seq} records a previous hash {value[11:43].hex()[:16]}… that is "
                    f"not this entry's chain hash {head.hex()[:16]}…: this entry was altered, "
                    f"or an entry was removed, inserted or moved after it"))
            return Verified(ChainState(seq, head), checked, Mismatch(
                seq, "prev_mismatch",
                f"its previous hash {value[11:43].hex()[:16]}… is not the chain hash "
                f"{head.hex()[:16]}… before it"))
        if check_content or second:
            # The content's Avro length is one or two varint bytes for any record under 8 KiB;
            # inlined, as this loop is what ``lienthong audit verify`` spends its time in.
            n = value[76]
            if n < 0x80:
                p, length = 77, n >> 1
            elif value[77] < 0x80:
                p, length = 78, ((n & 0x7F) | (value[77] << 7)) >> 1
            else:
                try:
                    n, p = _varint(value, 76)
                except (ChainError, IndexError):
                    n, p = 1, 0  # reported just below
                length = n >> 1
            if n & 1 or p + length > len(value):
                return Verified(ChainState(seq, head), checked,
                                Mismatch(seq, "malformed_entry", "content length is corrupt"))
            if check_content and sha(value[p:p + length]).digest() != value[44:76]:
                return Verified(ChainState(seq, head), checked, Mismatch(
                    seq, "content_mismatch",
                    "SHA-256 of the recorded content differs from its content_sha256"))
        inner = sha(value[:11])
        inner.update(value[43:])
        if second:
            q = p + length
            digest = value[q + 1:q + 33]
            if len(digest) != 32 or value[q] != _LEN32:
                return Verified(ChainState(seq, head), checked, Mismatch(
                    seq, "malformed_entry", "no 32-byte dossier digest after the content"))
            if check_content:
                # A dossier code under 64 bytes has a one-byte length (inlined for speed).
                d = q + 33
                n = value[d + 1] if d + 1 < len(value) else 0x80
                if value[d:d + 1] == b"\x02" and 0 < n < 0x80 and not n & 1 \
                        and d + 2 + (n >> 1) <= len(value):
                    same = sha(value[d + 2:d + 2 + (n >> 1)]).digest() == digest
                else:
                    same = _dossier_matches(value, d, digest)
            if check_content and not same:
                return Verified(ChainState(seq, head), checked, Mismatch(
                    seq, "dossier_mismatch",
                    "SHA-256 of the recorded dossier differs from its dossier_sha256"))
            head = sha(head + inner.digest() + digest).digest()
        else:
            head = sha(head + inner.digest()).digest()
        seq += 1
        checked += 1
    return Verified(ChainState(seq, head), checked, None)


def _dossier_matches(value: bytes, at: int, digest: bytes) -> bool:
    """Whether the ``dossier`` field at ``value[at:]`` (an Avro union: 0 null, 2 a string) is
    what ``digest`` says: 32 zero bytes for none, else SHA-256 of its UTF-8 bytes."""
    if at >= len(value):
        return False
    if value[at] == 0:
        return digest == ZERO
    if value[at] != 2:
        return False
    try:
        n, p = _varint(value, at + 1)
    except (ChainError, IndexError):
        return False
    length = n >> 1
    if n & 1 or length == 0 or p + length > len(value):
        return False
    return _sha256(value[p:p + length]).digest() == digest


def heads_of(values_by_partition: Mapping[int, Sequence[bytes]]) -> dict[int, ChainState]:
    """The chain state after every entry of each partition (no checking)."""
    out: dict[int, ChainState] = {}
    for partition, values in values_by_partition.items():
        head = ZERO
        for value in values:
            head = step(head, value)
        out[partition] = ChainState(len(values), head)
    return out


# -- checkpoints -------------------------------------------------------------------------------

def checkpoint_text(audit_topic: str, at: str, heads: Sequence[Mapping[str, Any]]) -> bytes:
    """The exact bytes a checkpoint's Ed25519 signature covers."""
    lines = ["lienthong-audit-checkpoint-v1", audit_topic, at]
    lines += [f"{int(h['partition'])} {int(h['seq'])} {h['head']}"
              for h in sorted(heads, key=lambda h: int(h["partition"]))]
    return ("\n".join(lines) + "\n").encode("utf-8")


def sign_checkpoint(private_key: Any, key_id: str, audit_topic: str, at: str,
                    states: Mapping[int, ChainState]) -> dict[str, Any]:
    """A checkpoint record (canonical form of ``codec.AUDIT_CHECKPOINTS``): ``seq`` of a head is
    that of the partition's last entry (-1 for an empty partition)."""
    heads = [{"partition": p, "seq": s.seq - 1, "head": s.head.hex()}
             for p, s in sorted(states.items())]
    signature = private_key.sign(checkpoint_text(audit_topic, at, heads))
    return {"audit_topic": audit_topic, "at": at, "heads": heads, "key_id": key_id,
            "signature": signature.hex()}


def checkpoint_signature_ok(checkpoint: Mapping[str, Any], public_key_raw: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(public_key_raw)
        key.verify(bytes.fromhex(checkpoint["signature"]),
                   checkpoint_text(checkpoint["audit_topic"], checkpoint["at"],
                                   checkpoint["heads"]))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False
    return True


def check_checkpoint(checkpoint: Mapping[str, Any], chains: Mapping[int, Sequence[bytes]],
                     public_key_raw: bytes) -> list[str]:
    """Problems of one checkpoint against the full chains it covers (empty when it holds)."""
    if not checkpoint_signature_ok(checkpoint, public_key_raw):
        return [f"checkpoint at {checkpoint.get('at')}: the signature does not verify with "
                f"key {checkpoint.get('key_id')}"]
    problems = []
    for h in checkpoint["heads"]:
        p, seq = int(h["partition"]), int(h["seq"])
        values = chains.get(p, ())
        if seq >= len(values):
            problems.append(f"checkpoint at {checkpoint['at']}: partition {p} has "
                            f"{len(values)} entries, the checkpoint signed entry {seq}")
            continue
        head = ZERO
        try:
            for value in values[:seq + 1]:
                head = step(head, value)
        except ChainError as exc:
            problems.append(f"checkpoint at {checkpoint['at']}: partition {p}: {exc}")
            continue
        if head.hex() != h["head"]:
            problems.append(f"checkpoint at {checkpoint['at']}: partition {p} entry {seq} "
                            f"has chain hash {head.hex()[:16]}…, the checkpoint signed "
                            f"{h['head'][:16]}…")
    return problems


# -- reading an entry without the hub ----------------------------------------------------------

def _varint(b: bytes, p: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        byte = b[p]
        p += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, p
        shift += 7
        if shift > 63:
            raise ChainError("varint too long")


def read_entry(value: bytes) -> dict[str, Any]:
    """Decode an audit entry (schema v1 or v2) with no Avro library: the fields an inspector
    reads; ``dossier_sha256`` is hex, empty for a version-1 entry."""
    check_layout(value)
    second = entry_version(value) == 2
    p = HEADER

    def long() -> int:
        nonlocal p
        n, p = _varint(value, p)
        return (n >> 1) ^ -(n & 1)

    def raw() -> bytes:
        nonlocal p
        n = long()
        if n < 0 or p + n > len(value):
            raise ChainError("length runs past the entry")
        out = value[p:p + n]
        p += n
        return out

    def dossier() -> str | None:
        return raw().decode() if long() == 1 else None

    prev, content_sha, content = raw(), raw(), raw()
    digest, code = (raw(), dossier()) if second else (b"", None)
    seq = long()
    kind, topic = raw().decode(), raw().decode()
    partition, offset, timestamp = long(), long(), long()
    if not second:
        code = dossier()
    logged_at = raw().decode()
    if p != len(value):
        raise ChainError("bytes after the last field")
    return {"prev": prev.hex(), "content_sha256": content_sha.hex(), "content": content,
            "dossier_sha256": digest.hex(), "seq": seq, "source_kind": kind,
            "source_topic": topic, "source_partition": partition, "source_offset": offset,
            "source_timestamp_ms": timestamp, "dossier": code, "logged_at": logged_at}


# -- exports -----------------------------------------------------------------------------------

def verify_export(export: Mapping[str, Any]) -> list[str]:
    """Every problem of a dossier export (empty when it proves what it says).

    The export's ``segment`` runs from ``start_seq`` (after ``start_prev``) to the signed
    ``checkpoint`` head of its partition: ``links`` are, in order, either ``{"entry": base64}``
    (an entry of this dossier, full bytes) or ``{"body_sha256": hex}`` (someone else's entry),
    with ``"dossier_sha256": hex`` beside it for an entry of version 2 — which must not be
    SHA-256 of this dossier's code: that entry's bytes would have been left out.
    ``records`` are the dossier's entries as the hub read them; each must be one of the full
    entries, byte for byte in meaning. Whether the export is also complete is
    :func:`completeness`.
    """
    problems: list[str] = []
    if export.get("format") not in (EXPORT_FORMAT, EXPORT_FORMAT_V2):
        return [f"not a {EXPORT_FORMAT} or {EXPORT_FORMAT_V2} document"]
    seg = export["segment"]
    partition = int(export["partition"])
    head = bytes.fromhex(seg["start_prev"])
    seq = int(seg["start_seq"])
    mine = dossier_digest(export["dossier"])
    full: dict[int, dict[str, Any]] = {}
    for link in seg["links"]:
        if "entry" in link:
            value = base64.b64decode(link["entry"])
            result = verify_run([value], ChainState(seq, head))
            if result.mismatch is not None:
                problems.append(result.mismatch.describe(partition))
                return problems
            entry = read_entry(value)
            if entry["seq"] != seq:
                problems.append(f"partition {partition}, entry {seq}: it says it is entry "
                                f"{entry['seq']}")
            if entry["dossier"] != export["dossier"]:
                problems.append(f"partition {partition}, entry {seq}: it is about "
                                f"{entry['dossier']}, not {export['dossier']}")
            full[seq] = entry
            head = result.state.head
        elif "dossier_sha256" in link:
            digest = bytes.fromhex(link["dossier_sha256"])
            if digest == mine:
                problems.append(f"partition {partition}, entry {seq}: it is about "
                                f"{export['dossier']} (its dossier digest says so), but the "
                                "export gives only its hash: an entry of the dossier is left "
                                "out")
            head = chain_hash(head, bytes.fromhex(link["body_sha256"]), digest)
        else:
            head = chain_hash(head, bytes.fromhex(link["body_sha256"]))
        seq += 1
    checkpoint = export["checkpoint"]
    key = export["public_key"]
    if key.get("key_id") != checkpoint.get("key_id"):
        problems.append("the checkpoint is signed with another key than the export's")
    if not checkpoint_signature_ok(checkpoint, bytes.fromhex(key["ed25519"])):
        problems.append(f"checkpoint at {checkpoint.get('at')}: the signature does not "
                        f"verify with key {key.get('key_id')}")
    signed = next((h for h in checkpoint["heads"] if int(h["partition"]) == partition), None)
    if signed is None:
        problems.append(f"the checkpoint has no head for partition {partition}")
    elif int(signed["seq"]) != seq - 1 or signed["head"] != head.hex():
        problems.append(f"partition {partition}: the chain ends at entry {seq - 1} with hash "
                        f"{head.hex()[:16]}…, the checkpoint signed entry {signed['seq']} "
                        f"with {signed['head'][:16]}…")
    for record in export.get("records", []):
        chained = full.get(int(record["seq"]))
        if chained is None:
            problems.append(f"record of entry {record['seq']} has no entry bytes in the chain")
            continue
        for name in ("source_kind", "source_topic", "source_partition", "source_offset",
                     "dossier", "logged_at", "content_sha256"):
            if record.get(name) != chained[name]:
                problems.append(f"partition {partition}, entry {record['seq']}: the record "
                                f"says {name}={record.get(name)!r}, the entry "
                                f"{chained[name]!r}")
                break
    return problems


@dataclass(frozen=True)
class Completeness:
    """Whether an export shows that none of its dossier's entries in its range is left out."""

    proven: bool
    detail: str


def completeness(export: Mapping[str, Any]) -> Completeness:
    """Completeness of an export that :func:`verify_export` accepts: proven when every entry of
    its range is of version 2 (each link carries the entry's dossier digest, which
    ``verify_export`` checks is not this dossier's for any entry given only by hash). It says
    nothing of the entries before ``start_seq`` or after the signed head."""
    seg = export["segment"]
    start = int(seg["start_seq"])
    end = start + len(seg["links"]) - 1
    older = [start + i for i, link in enumerate(seg["links"])
             if ("entry" in link and entry_version(base64.b64decode(link["entry"])) == 1)
             or ("body_sha256" in link and "dossier_sha256" not in link)]
    where = f"partition {export['partition']} entries {start}–{end}"
    if older:
        return Completeness(False, f"not proven: {len(older)} entries of {where} (the first "
                                   f"{older[0]}, the last {older[-1]}) are of version 1, "
                                   "which records no dossier digest")
    return Completeness(True, f"proven for {where}: every entry carries its dossier digest, "
                              f"and each of the {sum('entry' in link for link in seg['links'])} "
                              f"about {export['dossier']} is given in full (entries before "
                              f"{start} and after the signed head are not covered)")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python chain.py EXPORT.json\n\nChecks a lienthong dossier export: every "
              "entry's hash chain up to the signed checkpoint, the checkpoint's Ed25519 "
              "signature, that each listed record is one of the chained entries, and (entries of "
              "version 2) that none of the dossier's entries in the range is left out.\nExit "
              "status 0 when it verifies, 1 when it does not.")
        return 2 if not args else 0
    with open(args[0], encoding="utf-8") as f:
        export = json.load(f)
    problems = verify_export(export)
    if problems:
        for problem in problems:
            print(f"FAIL {problem}")
        return 1
    print(f"OK dossier {export['dossier']}: {len(export.get('records', []))} records, chain of "
          f"partition {export['partition']} entries {export['segment']['start_seq']}–"
          f"{int(export['segment']['start_seq']) + len(export['segment']['links']) - 1} "
          f"matches the checkpoint signed at {export['checkpoint']['at']} by key "
          f"{export['public_key']['key_id']}")
    print(f"completeness {completeness(export).detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
