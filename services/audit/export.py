"""``lienthong audit export --dossier CODE``: one dossier's record, verifiable without the hub.

The JSON document (``chain.verify_export`` is its checker, runnable alone as
``python chain.py FILE``) holds:

- the full bytes of every audit entry of the dossier, and the 32-byte body hash of every other
  entry between its first one and the first signed checkpoint after its last one, so the chain
  links up to a signed head without anyone else's data;
- that checkpoint, and the hub's audit public key that signed it;
- ``records``: the dossier's entries decoded for reading (the event, delivery, receipt or alert
  in canonical JSON), each tied to its entry by seq and content hash.

The HTML file is the printable tracking slip (phiếu kiểm soát) of the same record with the
proofs and how to check them.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from lienthong.schemas import codec
from lienthong.services.audit.chain import EXPORT_FORMAT, ZERO, body_hash, read_entry
from lienthong.services.audit.verify import AuditCopy

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


def build_export(copy: AuditCopy, dossier: str, public_key: dict[str, str]) -> dict[str, Any]:
    """The export document of ``dossier`` from a read of the whole log."""
    checkpoints = [codec.AUDIT_CHECKPOINTS.decode(v) for v in copy.checkpoints]
    for partition, records in sorted(copy.partitions.items()):
        values = [v for _, v in records]
        mine = [i for i, v in enumerate(values) if read_entry(v)["dossier"] == dossier]
        if not mine:
            continue
        first, last = mine[0], mine[-1]
        covering = [cp for cp in checkpoints
                    for h in cp["heads"] if h["partition"] == partition and h["seq"] >= last]
        if not covering:
            raise ExportError(f"no signed checkpoint covers entry {last} of partition "
                              f"{partition} yet; wait for the chain service's next checkpoint "
                              "(or stop it cleanly: it signs one on the way out)")
        cp = min(covering, key=lambda c: next(h["seq"] for h in c["heads"]
                                              if h["partition"] == partition))
        end = next(h["seq"] for h in cp["heads"] if h["partition"] == partition)
        start_prev = read_entry(values[first])["prev"] if first else ZERO.hex()
        links: list[dict[str, str]] = []
        out_records: list[dict[str, Any]] = []
        for i in range(first, end + 1):
            value = values[i]
            entry = read_entry(value)
            if entry["dossier"] == dossier:
                links.append({"entry": base64.b64encode(value).decode()})
                out_records.append({
                    **{k: entry[k] for k in ("seq", "source_kind", "source_topic",
                                             "source_partition", "source_offset", "dossier",
                                             "logged_at", "content_sha256")},
                    "kafka_offset": records[i][0],
                    "content": _content_json(entry["source_kind"], entry["content"])})
            else:
                links.append({"body_sha256": body_hash(value).hex()})
        return {"format": EXPORT_FORMAT, "dossier": dossier, "audit_topic": copy.audit_topic,
                "partition": partition,
                "segment": {"start_seq": first, "start_prev": start_prev, "links": links},
                "checkpoint": cp, "public_key": public_key, "records": out_records}
    raise ExportError(f"the audit log has no entry about dossier {dossier}")


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


def render_html(export: dict[str, Any]) -> str:
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
<p class="noprint">Kiểm tra độc lập (check without the hub): <code>python chain.py
{e(export['dossier'])}.json</code> — tệp <code>chain.py</code> chỉ cần Python 3.11 và thư viện
<code>cryptography</code>; so khóa công khai với khóa do đơn vị vận hành công bố.</p>
</body></html>
"""


def write_export(export: dict[str, Any], json_path: Any, html_path: Any) -> None:
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(export, f, ensure_ascii=False, indent=1)
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(render_html(export))
