"""``lienthong audit export --dossier CODE``: one dossier's record, verifiable without the hub.

The JSON document (``chain.verify_export`` is its checker, runnable alone as
``python chain.py FILE``) holds:

- the full bytes of every audit entry of the dossier, and the 32-byte body hash of every other
  entry between its first one and the first signed checkpoint after its last one (with, for an
  entry of version 2, its dossier digest: SHA-256 of its dossier code), so the chain links up to
  a signed head without anyone else's data — and, where the whole range is of version 2, shows
  that none of the dossier's entries in it is left out (``chain.completeness``);
- that checkpoint, and the hub's audit public key that signed it;
- ``records``: the dossier's entries decoded for reading (the event, delivery, receipt or alert
  in canonical JSON), each tied to its entry by seq and content hash.

The export streams like ``audit verify`` (``ExportBuilder``): the checkpoints first, then the
log in chunks, keeping only the dossier's entries and, from its first entry on, 65 bytes per
entry (the links' hashes, spooled to a temporary file past 4 MiB); the JSON is
written link by link. Memory is bounded by the chunk and the dossier's own entries, whatever
the log's size or the export's range.

The HTML file is the printable tracking slip (phiếu kiểm soát) of the same record with the
proofs and how to check them.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

from lienthong.schemas import codec
from lienthong.services.audit.chain import (
    EXPORT_FORMAT,
    EXPORT_FORMAT_V2,
    ZERO,
    link_of,
    read_entry,
)
from lienthong.services.audit.verify import (
    CHUNK_ENTRIES,
    AuditCopy,
    Chunk,
    copy_log_chunks,
    kafka_log_chunks,
    read_checkpoints,
)
from lienthong.services.progress import ProgressBar

_DECODERS = {"event": codec.EVENTS, "delivery": codec.DELIVERIES, "receipt": codec.RECEIPTS,
             "alert": codec.ALERTS, "deadletter": codec.DEADLETTERS}


class ExportError(ValueError):
    """No export can be made (unknown dossier, no checkpoint yet…); the message says why."""


def _content_json(kind: str, content: bytes) -> Any:
    if kind == "operator":  # the dashboard's JSON audit line
        try:
            return json.loads(content)
        except ValueError:
            return {"undecodable": "not JSON"}
    decoder = _DECODERS.get(kind)
    if decoder is None:
        return None
    try:
        decoded = decoder.decode(content)
    except codec.CodecError as exc:
        return {"undecodable": str(exc)}
    if kind == "deadletter":
        decoded = {**decoded, "original": base64.b64encode(decoded["original"]).decode(),
                   "key": decoded["key"].decode("utf-8", "replace") if decoded["key"] else None}
    return decoded


class ExportBuilder:
    """Builds one dossier's export as the log streams by, in bounded memory.

    ``public_key`` is ``{"key_id", "ed25519"}`` (hex), or ``{"ed25519"}`` alone for a key
    known only by its public half: the export then names it by the checkpoint's ``key_id``.
    ``feed`` each partition's entries in order, partitions in ascending order (as
    ``verify.kafka_chunks`` and copy files give them), any chunking; stop once ``done`` (the
    partition holding the dossier has ended: the export never needs the partitions after it),
    then ``result``. It holds the checkpoints, the dossier's own entries and records, and the
    link of every entry from the dossier's first one on (its version, body hash and dossier
    digest: 65 bytes), in a spool that stays in memory up to ``spool_bytes`` (64,527 entries
    by default) and goes to a temporary file
    beyond; the entries themselves, and everything before the dossier's first entry, pass.
    The export runs up to the first signed checkpoint covering the dossier's last entry, which
    is known only at the partition's end, so the hashes after that last entry are kept until
    then.
    """

    def __init__(self, audit_topic: str, checkpoints: Iterable[bytes], dossier: str,
                 public_key: dict[str, str], *, spool_bytes: int = 4 << 20) -> None:
        self.audit_topic, self.dossier, self.public_key = audit_topic, dossier, public_key
        self.checkpoints = [codec.AUDIT_CHECKPOINTS.decode(v) for v in checkpoints]
        self._needle = dossier.encode("utf-8")
        self._spool_bytes = spool_bytes
        self._partition: int | None = None  # the partition being read
        self._seq = 0  # its next entry's seq
        self._found: _Found | None = None
        self.done = False

    def feed(self, partition: int, offsets: Sequence[int], values: Sequence[bytes]) -> None:
        """The next entries of ``partition`` (none: the partition exists and is empty)."""
        if self.done:
            return
        if partition != self._partition:
            if self._found is not None:
                self.done = True  # the dossier's partition has ended
                return
            self._partition, self._seq = partition, 0
        found, needle = self._found, self._needle
        hash_from = 0  # where this chunk's entries start to need their body hash
        for i, value in enumerate(values):
            # The dossier's code is in the bytes of each of its entries: a cheap test first.
            if needle in value and read_entry(value)["dossier"] == self.dossier:
                if found is None:
                    # (the chain's start is the zero hash, whatever the first entry says)
                    prev = read_entry(value)["prev"] if self._seq else ZERO.hex()
                    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (the Export closes it)
                        max_size=self._spool_bytes)
                    found = self._found = _Found(partition, self._seq, prev, spool)
                    hash_from = i
                found.add(self._seq, offsets[i], value)
            self._seq += 1
        if found is not None:
            links = []
            for k in range(hash_from, len(values)):
                body, digest = link_of(values[k])
                if digest is None:
                    links.append(b"\x01" + body + ZERO)
                    if found.first_v1 is None:
                        found.first_v1 = self._seq - len(values) + k
                else:
                    links.append(b"\x02" + body + digest)
                    if found.first_v2 is None:
                        found.first_v2 = self._seq - len(values) + k
            found.hashes.write(b"".join(links))
            found.written = self._seq

    def result(self) -> Export:
        """The export (raises ``ExportError`` when the log has none to give)."""
        found = self._found
        if found is None:
            raise ExportError(f"the audit log has no entry about dossier {self.dossier}")
        partition, last = found.partition, found.last
        covering = [cp for cp in self.checkpoints
                    for h in cp["heads"] if h["partition"] == partition and h["seq"] >= last]
        if not covering:
            found.hashes.close()
            raise ExportError(f"no signed checkpoint covers entry {last} of partition "
                              f"{partition} yet; wait for the chain service's next checkpoint "
                              "(or stop it cleanly: it signs one on the way out)")
        cp = min(covering, key=lambda c: next(h["seq"] for h in c["heads"]
                                              if h["partition"] == partition))
        end = next(h["seq"] for h in cp["heads"] if h["partition"] == partition)
        if end >= found.written:
            found.hashes.close()
            raise ExportError(f"the checkpoint at {cp['at']} signs entry {end} of partition "
                              f"{partition}, which has only {found.written} entries")
        # A key given by its public half alone is named as the checkpoint names its signer
        # (the signature is checked against the key itself either way).
        public_key = self.public_key if "key_id" in self.public_key else {
            "key_id": cp["key_id"], **self.public_key}
        v2 = found.first_v2 is not None and found.first_v2 <= end
        document = {"format": EXPORT_FORMAT_V2 if v2 else EXPORT_FORMAT,
                    "dossier": self.dossier,
                    "audit_topic": self.audit_topic, "partition": partition,
                    "segment": {"start_seq": found.first, "start_prev": found.start_prev,
                                "links": _LINKS},
                    "checkpoint": cp, "public_key": public_key, "records": found.records}
        return Export(document, found, end)


@dataclass
class _Found:
    """The dossier's partition from its first entry on."""

    partition: int
    first: int
    start_prev: str
    hashes: IO[bytes]  # from ``first`` on, per entry: its version, body hash, dossier digest
    written: int = 0  # seq after the last entry whose link is in ``hashes``
    last: int = -1
    first_v2: int | None = None  # the first entry of version 2 from ``first`` on
    first_v1: int | None = None  # the first entry of version 1 from ``first`` on
    entries: dict[int, bytes] = field(default_factory=dict)  # the dossier's, by seq
    records: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.written = self.first

    def add(self, seq: int, offset: int, value: bytes) -> None:
        entry = read_entry(value)
        self.entries[seq] = value
        self.last = seq
        self.records.append({
            **{k: entry[k] for k in ("seq", "source_kind", "source_topic", "source_partition",
                                     "source_offset", "dossier", "logged_at",
                                     "content_sha256")},
            "kafka_offset": offset,
            "content": _content_json(entry["source_kind"], entry["content"])})


_LINKS = "\x00links\x00"  # where the links go in the document, written one by one
_READ_HASHES = 4096
_LINK = 65  # a spooled link: version (1 or 2), body hash, dossier digest (zero for version 1)


class Export:
    """A dossier export: ``document`` is the JSON document but for ``segment.links``, which
    ``links()`` gives one by one (from the spool: the range may hold millions of entries) and
    ``write_json`` writes as it reads; ``as_json()`` is the whole document (small exports,
    tests). Close it (or use ``with``) to drop the spool."""

    def __init__(self, document: dict[str, Any], found: _Found, end: int) -> None:
        self.document, self._found, self._end = document, found, end

    def __enter__(self) -> Export:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._found.hashes.close()

    @property
    def records(self) -> list[dict[str, Any]]:
        return self._found.records

    @property
    def complete(self) -> bool:
        """Whether the export proves that none of the dossier's entries in its range is left
        out (``chain.completeness``): no entry of the range is of version 1."""
        first_v1 = self._found.first_v1
        return first_v1 is None or first_v1 > self._end

    def links(self) -> Iterator[dict[str, str]]:
        found = self._found
        hashes = found.hashes
        hashes.seek(0)
        seq = found.first
        while seq <= self._end:
            block = hashes.read(_LINK * min(_READ_HASHES, self._end + 1 - seq))
            for k in range(0, len(block), _LINK):
                value = found.entries.get(seq)
                if value is not None:
                    yield {"entry": base64.b64encode(value).decode()}
                elif block[k] == 1:
                    yield {"body_sha256": block[k + 1:k + 33].hex()}
                else:
                    yield {"body_sha256": block[k + 1:k + 33].hex(),
                           "dossier_sha256": block[k + 33:k + 65].hex()}
                seq += 1

    def as_json(self) -> dict[str, Any]:
        return {**self.document, "segment": {**self.document["segment"],
                                             "links": list(self.links())}}

    def write_json(self, f: TextIO) -> None:
        """The bytes ``json.dump(self.as_json(), f, ensure_ascii=False, indent=1)`` writes,
        without holding the links: each link is at depth 3 of the document, and its JSON
        (strings only, so no newline of its own) is indented by re-indenting its lines."""
        text = json.dumps(self.document, ensure_ascii=False, indent=1)
        before, after = text.split(json.dumps(_LINKS), 1)
        f.write(before + "[")
        sep = "\n   "
        for link in self.links():
            f.write(sep + json.dumps(link, ensure_ascii=False, indent=1).replace("\n", "\n   "))
            sep = ",\n   "
        f.write("\n  ]" + after)


def export_stream(audit_topic: str, checkpoints: Iterable[bytes], chunks: Iterable[Chunk],
                  dossier: str, public_key: dict[str, str]) -> Export:
    """The export of ``dossier`` from the log as it streams by (stops reading once done)."""
    builder = ExportBuilder(audit_topic, checkpoints, dossier, public_key)
    for partition, offsets, values in chunks:
        builder.feed(partition, offsets, values)
        if builder.done:
            break
    return builder.result()


def export_kafka(bootstrap: str, audit_topic: str, checkpoints_topic: str, dossier: str,
                 public_key: dict[str, str], *, chunk_entries: int = CHUNK_ENTRIES,
                 timeout_s: float = 600.0, progress: ProgressBar | None = None) -> Export:
    """The export of ``dossier`` from the log in Kafka, streamed."""
    checkpoints = read_checkpoints(bootstrap, checkpoints_topic, timeout_s=timeout_s)
    return export_stream(audit_topic, checkpoints,
                         kafka_log_chunks(bootstrap, audit_topic, chunk_entries=chunk_entries,
                                          timeout_s=timeout_s, progress=progress),
                         dossier, public_key)


def export_copy_file(path: Path, dossier: str, public_key: dict[str, str], *,
                     chunk_entries: int = CHUNK_ENTRIES,
                     progress: ProgressBar | None = None) -> Export:
    """The export of ``dossier`` from a copy file, streamed line by line."""
    audit_topic, checkpoints, chunks = copy_log_chunks(path, chunk_entries=chunk_entries,
                                                       progress=progress)
    return export_stream(audit_topic, checkpoints, chunks, dossier, public_key)


def build_export(copy: AuditCopy, dossier: str, public_key: dict[str, str]) -> dict[str, Any]:
    """The export document of ``dossier`` from a log read whole."""
    chunks = ((p, [o for o, _ in recs], [v for _, v in recs])
              for p, recs in sorted(copy.partitions.items()))
    with export_stream(copy.audit_topic, copy.checkpoints, chunks, dossier,
                       public_key) as export:
        return export.as_json()


_LABELS = {"operator": "Thao tác của cán bộ", "event": "Sự kiện hồ sơ",
           "delivery": "Chuyển giao", "receipt": "Biên nhận đã ký",
           "alert": "Cảnh báo", "deadletter": "Bị từ chối / lỗi"}


def _summary(record: dict[str, Any]) -> str:
    c = record.get("content") or {}
    kind = record["source_kind"]
    if kind == "event":
        extra = f" → {c.get('to_agency')}" if c.get("to_agency") else ""
        return f"{c.get('type')} · {c.get('agency')}{extra} · {c.get('at')}"
    if kind == "delivery":
        return f"{c.get('kind')} → {c.get('destination')} · {c.get('delivery_id')}"
    if kind == "receipt":
        return (f"{c.get('receiver')} đã nhận lúc {c.get('received_at')} · khóa "
                f"{c.get('key_id')} · chữ ký {str(c.get('signature'))[:16]}…")
    if kind == "alert":
        return f"{c.get('kind')} {c.get('cause') or ''} · {c.get('agency')} · {c.get('detail')}"
    if kind == "operator":
        return f"{c.get('action')} · {c.get('user')}"
    return f"{c.get('reason')} · {c.get('detail')}"


_COMPLETE = ("Tính đầy đủ (completeness): mọi bản ghi trong đoạn chuỗi đều mang mã băm của số "
             "hồ sơ, nên không bản ghi nào của hồ sơ này trong đoạn bị bỏ sót (no entry of this "
             "dossier in the range is left out).")
_NOT_PROVEN = ("Tính đầy đủ (completeness): chưa chứng minh được — đoạn chuỗi có bản ghi phiên "
               "bản 1, không mang mã băm số hồ sơ (not proven: the range holds version-1 "
               "entries, which carry no dossier digest).")


def render_html(export: dict[str, Any], *, complete: bool = False) -> str:
    """The printable tracking slip with the proofs (Vietnamese, English in brackets)."""
    e = html.escape
    cp = export["checkpoint"]
    rows = "\n".join(
        f"<tr><td>{r['seq']}</td><td>{e(_LABELS.get(r['source_kind'], r['source_kind']))}"
        f"</td><td>{e(_summary(r))}</td><td>{e(r['source_topic'])}/{r['source_partition']}"
        f"@{r['source_offset']}</td><td><code>{e(r['content_sha256'][:16])}…</code></td></tr>"
        for r in export["records"])
    head = next(h for h in cp["heads"] if h["partition"] == export["partition"])
    return f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8">
<title>Phiếu kiểm soát {e(export['dossier'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #999;padding:4px;font-size:12px;vertical-align:top}}
code{{font-size:11px}}@media print{{.noprint{{display:none}}}}</style></head><body>
<h1>Phiếu kiểm soát quá trình giải quyết hồ sơ <small>(tracking slip with proofs)</small></h1>
<p>Hồ sơ (dossier): <b>{e(export['dossier'])}</b> · {len(export['records'])} bản ghi
(records) · nhật ký {e(export['audit_topic'])}, phân vùng (partition) {export['partition']}</p>
<table><thead><tr><th>STT chuỗi (seq)</th><th>Loại (kind)</th><th>Nội dung (what)</th>
<th>Nguồn (source)</th><th>SHA-256 nội dung</th></tr></thead><tbody>
{rows}
</tbody></table>
<h2>Bằng chứng (proofs)</h2>
<p>Điểm kiểm tra đã ký (signed checkpoint) lúc {e(cp['at'])}: bản ghi {head['seq']},
mã băm đầu chuỗi (head) <code>{e(head['head'])}</code></p>
<p>Khóa công khai Ed25519 của hệ thống (hub public key) {e(export['public_key']['key_id'])}:
<code>{e(export['public_key']['ed25519'])}</code><br>Chữ ký (signature):
<code>{e(cp['signature'])}</code></p>
<p>{_COMPLETE if complete else _NOT_PROVEN}</p>
<p class="noprint">Kiểm tra độc lập (check without the hub): <code>python chain.py
{e(export['dossier'])}.json</code> — tệp <code>chain.py</code> chỉ cần Python 3.11 và thư viện
<code>cryptography</code>; so khóa công khai với khóa do đơn vị vận hành công bố.</p>
</body></html>
"""


def write_export(export: Export, json_path: Any, html_path: Any) -> None:
    """``CODE.json`` (written as the links are read) and ``CODE.html``."""
    with open(json_path, "w", encoding="utf-8") as f:
        export.write_json(f)
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(render_html(export.document, complete=export.complete))
