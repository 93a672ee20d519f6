"""``audit export`` streams the log in chunks and builds, byte for byte, the export that one
pass over the whole log built."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from lienthong.schemas import codec
from lienthong.services.audit import chain
from lienthong.services.audit.chain import (
    EXPORT_FORMAT,
    EXPORT_FORMAT_V2,
    ZERO,
    ChainState,
    body_hash,
    read_entry,
)
from lienthong.services.audit.entries import Source, append
from lienthong.services.audit.export import (
    ExportBuilder,
    ExportError,
    export_copy_file,
    export_stream,
)
from lienthong.services.audit.export import (
    _content_json as content_json,
)
from lienthong.services.audit.verify import AuditCopy, write_copy

AT = datetime(2026, 11, 25, 2, 15, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
PUBLIC = {"key_id": "hub-2026", "ed25519": KEY.public_key().public_bytes_raw().hex()}
DOSSIERS = ["000.00.15.H99-20261125-0000005", "000.00.15.H99-20261125-0000050",
            "G09.20-20260609-0092637"]


def reference(copy: AuditCopy, dossier: str, public_key: dict[str, str]) -> dict[str, Any]:
    """The export as it was built when the whole log was held (the oracle) — with, since
    version 2, the dossier digest beside the body hash of a version-2 entry, and the v2 format
    when the range holds one."""
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
                    "content": content_json(entry["source_kind"], entry["content"])})
            elif entry["dossier_sha256"]:  # version 2
                links.append({"body_sha256": body_hash(value).hex(),
                              "dossier_sha256": entry["dossier_sha256"]})
            else:
                links.append({"body_sha256": body_hash(value).hex()})
        v2 = any(read_entry(values[i])["dossier_sha256"] for i in range(first, end + 1))
        return {"format": EXPORT_FORMAT_V2 if v2 else EXPORT_FORMAT, "dossier": dossier,
                "audit_topic": copy.audit_topic,
                "partition": partition,
                "segment": {"start_seq": first, "start_prev": start_prev, "links": links},
                "checkpoint": cp, "public_key": public_key, "records": out_records}
    raise ExportError(f"the audit log has no entry about dossier {dossier}")


def build(partition: int, dossiers: list[int | None], v2_from: int | None = None) -> list[bytes]:
    """A chain of operator lines (JSON with Vietnamese text) about ``DOSSIERS[d]`` (None: no
    dossier), of version 1 up to entry ``v2_from`` and of version 2 from it on (None: all of
    version 1, as logs were before version 2)."""
    state, out = ChainState(), []
    for i, d in enumerate(dossiers):
        version = 2 if v2_from is not None and i >= v2_from else 1
        content = json.dumps({"action": "xem hồ sơ", "user": "cán bộ", "i": i},
                             ensure_ascii=False).encode()
        value, state = append(state, Source("operator", "operator.actions", partition, i,
                                            1_700_000_000_000,
                                            DOSSIERS[d].encode() if d is not None else None,
                                            content), AT, version=version)
        out.append(value)
    return out


def log(chains: dict[int, list[bytes]], signed: list[dict[int, int]]) -> AuditCopy:
    """``chains`` at offsets 3, 5, 7… (markers between), with a checkpoint per ``signed``."""
    checkpoints = [codec.AUDIT_CHECKPOINTS.encode(chain.sign_checkpoint(
        KEY, "hub-2026", "audit.log", f"2026-11-25T0{k}:00:00+00:00",
        {p: chain.heads_of({p: chains[p][:upto.get(p, -1) + 1]})[p] for p in chains}))
        for k, upto in enumerate(signed)]
    return AuditCopy("audit.log", {p: [(3 + 2 * i, v) for i, v in enumerate(values)]
                                   for p, values in chains.items()}, checkpoints)


def streamed(copy: AuditCopy, dossier: str, size: int, **kw: Any) -> ExportBuilder:
    builder = ExportBuilder(copy.audit_topic, copy.checkpoints, dossier, PUBLIC, **kw)
    for p, records in sorted(copy.partitions.items()):
        for i in range(0, max(1, len(records)), size):
            part = records[i:i + size]
            builder.feed(p, [o for o, _ in part], [v for _, v in part])
    return builder


def outcome(make: Any) -> Any:
    try:
        return make()
    except ExportError as exc:
        return str(exc)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=st.integers(1, 40), spool=st.sampled_from([64, 4 << 20]))
def test_any_chunk_size_builds_the_export_one_pass_over_the_whole_log_built(
        data: st.DataObject, size: int, spool: int) -> None:
    # Version 1 logs give the file the whole-log read gave, byte for byte; a chain may turn to
    # version 2 at any entry (or at none: v2_from None).
    dossier_of = st.one_of(st.none(), st.integers(0, len(DOSSIERS) - 1))
    chains = {p: build(p, data.draw(st.lists(dossier_of, max_size=30), label=f"partition {p}"),
                       data.draw(st.one_of(st.none(), st.integers(0, 31)), label=f"v2 of {p}"))
              for p in range(3)}
    signed = data.draw(st.lists(st.fixed_dictionaries(
        {}, optional={p: st.integers(-1, 31) for p in range(3)}), max_size=3), label="signed")
    if data.draw(st.sampled_from([True, True, True, False]), label="signed at the end"):
        signed.append({p: len(values) - 1 for p, values in chains.items()})
    copy = log(chains, signed)
    dossier = data.draw(st.sampled_from(DOSSIERS), label="dossier")
    want = outcome(lambda: reference(copy, dossier, PUBLIC))

    def got() -> Any:
        with streamed(copy, dossier, size, spool_bytes=spool).result() as export:
            out = io.StringIO()
            export.write_json(out)
            return export.as_json(), out.getvalue()

    result = outcome(got)
    if isinstance(want, str):  # no entry of the dossier, or no checkpoint covers its last one
        assert result == want
        return
    document, text = result
    assert document == want
    assert text == json.dumps(want, ensure_ascii=False, indent=1)  # the bytes CODE.json gets
    assert chain.verify_export(json.loads(text)) == []


def test_an_export_from_a_copy_file_in_chunks_of_250_is_the_same_file(tmp_path: Path) -> None:
    # Dossier 0 every 97th entry of partition 1 (2,000 entries), others around it; partition 0
    # is read and passed, partition 2 is never read.
    chains = {0: build(0, [1, 2] * 300),
              1: build(1, [0 if i % 97 == 5 else i % 3 or None for i in range(2_000)]),
              2: build(2, [0] * 10)}
    copy = log(chains, [{0: 599, 1: 999}, {0: 599, 1: 1_999, 2: 9}])
    path = tmp_path / "copy.jsonl"
    write_copy(copy, path)
    want = reference(copy, DOSSIERS[0], PUBLIC)
    assert want["partition"] == 1 and len(want["segment"]["links"]) == 2_000 - 5
    with export_copy_file(path, DOSSIERS[0], PUBLIC, chunk_entries=250) as export:
        out = io.StringIO()
        export.write_json(out)
    assert out.getvalue() == json.dumps(want, ensure_ascii=False, indent=1)


def test_the_builder_stops_once_the_dossiers_partition_has_ended() -> None:
    chains = {0: build(0, [0, None, 0]), 1: build(1, [0])}
    copy = log(chains, [{0: 2, 1: 0}])
    seen: list[int] = []

    def chunks() -> Any:
        for p, records in sorted(copy.partitions.items()):
            seen.append(p)
            yield p, [o for o, _ in records], [v for _, v in records]

    with export_stream("audit.log", copy.checkpoints, chunks(), DOSSIERS[0], PUBLIC) as export:
        assert export.document["partition"] == 0 and len(export.records) == 2
    assert seen == [0, 1]  # partition 1's first chunk says partition 0 is over; no more read


def test_an_export_without_a_covering_checkpoint_says_to_wait_for_one() -> None:
    copy = log({0: build(0, [0, 0, 1])}, [{0: 0}])
    with pytest.raises(ExportError, match="no signed checkpoint covers entry 1 of partition 0"):
        streamed(copy, DOSSIERS[0], 2).result()
    with pytest.raises(ExportError, match="no entry about dossier"):
        streamed(copy, DOSSIERS[2], 2).result()
