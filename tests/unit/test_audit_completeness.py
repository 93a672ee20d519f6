"""Audit entries of version 2: the chain hash covers each entry's dossier digest, so an export
shows that none of its dossier's entries in its range is left out; version 1 still verifies."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lienthong.schemas import codec, registry
from lienthong.services.audit import chain
from lienthong.services.audit.chain import ChainState, verify_run
from lienthong.services.audit.entries import Source, append
from lienthong.services.audit.export import ExportBuilder
from lienthong.services.audit.service import state_after
from lienthong.services.audit.verify import LogChecker
from tests.unit.test_audit_chain import dossier_of, instants, sources, states
from tests.unit.test_audit_export_stream import DOSSIERS, PUBLIC, build, log

CODE = DOSSIERS[0]


def export_of(chains: dict[int, list[bytes]], dossier: str = CODE) -> dict[str, Any]:
    copy = log(chains, [{p: len(v) - 1 for p, v in chains.items()}])
    builder = ExportBuilder(copy.audit_topic, copy.checkpoints, dossier, PUBLIC)
    for p, records in sorted(copy.partitions.items()):
        builder.feed(p, [o for o, _ in records], [v for _, v in records])
    with builder.result() as export:
        document = export.as_json()
        # what the command says and the slip prints is what chain.py proves
        assert export.complete == chain.completeness(document).proven
        return document


def test_the_fingerprints_chain_py_knows_are_those_of_the_two_schemas() -> None:
    v1, v2 = registry.versions("audit_entry")
    assert (v1.fingerprint, v2.fingerprint) == (chain.V1, chain.V2)
    assert codec.AUDIT_ENTRIES.fingerprint == chain.V2  # what the chain service writes


def test_a_version_2_entry_records_the_digest_of_its_dossier_code_after_its_content() -> None:
    [about, none] = build(0, [0, None], v2_from=0)
    assert chain.entry_version(about) == 2
    assert chain.read_entry(about)["dossier_sha256"] == hashlib.sha256(CODE.encode()).hexdigest()
    assert chain.read_entry(none)["dossier_sha256"] == "00" * 32
    assert codec.AUDIT_ENTRIES.decode(about)["dossier"] == CODE
    [old] = build(0, [0])
    assert chain.entry_version(old) == 1 and chain.read_entry(old)["dossier_sha256"] == ""
    assert codec.AUDIT_ENTRIES.decode(old)["dossier_sha256"] == b""  # read with the default


@given(st.lists(st.one_of(st.none(), st.integers(0, 2)), min_size=1, max_size=25),
       st.one_of(st.none(), st.integers(0, 25)), st.integers(1, 7))
def test_a_chain_turning_from_version_1_to_2_verifies_streamed_and_resumes(
        dossiers: list[int | None], v2_from: int | None, size: int) -> None:
    values = build(0, dossiers, v2_from)
    whole = verify_run(values)
    assert whole.ok and whole.state == chain.heads_of({0: values})[0]
    checker = LogChecker("audit.log", log({0: values}, [{0: len(values) - 1}]).checkpoints,
                         bytes.fromhex(PUBLIC["ed25519"]))
    for i in range(0, len(values), size):
        checker.feed(0, range(i, i + len(values[i:i + size])), values[i:i + size])
    assert checker.report().ok
    # the chain service resumes after the last entry, whichever version it is
    assert state_after(values[-1]) == whole.state


def test_a_changed_dossier_or_digest_of_a_version_2_entry_is_named_by_that_entry() -> None:
    values = build(0, [1, 0, 2], v2_from=0)
    entry = bytearray(values[1])
    at = entry.index(CODE.encode())
    entry[at + 3] ^= 0x01  # the dossier code, no longer what the digest says
    result = verify_run([values[0], bytes(entry), values[2]])
    assert result.mismatch == chain.Mismatch(
        1, "dossier_mismatch", "SHA-256 of the recorded dossier differs from its dossier_sha256")
    entry = bytearray(values[1])
    entry[at - 5] ^= 0x01  # inside the digest, just before the dossier union and its length
    assert verify_run([values[0], bytes(entry), values[2]]).mismatch.reason == "dossier_mismatch"


chains_v2 = st.lists(st.one_of(st.none(), st.integers(0, 2)), min_size=1, max_size=30).filter(
    lambda ds: 0 in ds)


@settings(max_examples=150, deadline=None)
@given(chains_v2, st.data())
def test_leaving_out_any_one_of_the_dossiers_entries_from_a_version_2_export_is_detected(
        dossiers: list[int | None], data: st.DataObject) -> None:
    export = export_of({0: build(0, dossiers, v2_from=0)})
    assert export["format"] == chain.EXPORT_FORMAT_V2
    assert chain.verify_export(export) == []
    assert chain.completeness(export).proven
    links = export["segment"]["links"]
    full = [i for i, link in enumerate(links) if "entry" in link]
    k = data.draw(st.sampled_from(full), label="left out")
    value = base64.b64decode(links[k]["entry"])
    body, digest = chain.link_of(value)
    assert digest is not None
    seq = export["segment"]["start_seq"] + k
    how = data.draw(st.sampled_from(["as a hash", "dropped"]), label="how")
    if how == "as a hash":  # the chain still links: only the digest gives it away
        links[k] = {"body_sha256": body.hex(), "dossier_sha256": digest.hex()}
    else:
        del links[k]
    export["records"] = [r for r in export["records"] if r["seq"] != seq]
    problems = chain.verify_export(export)
    assert problems, export
    if how == "as a hash":
        assert problems == [f"partition 0, entry {seq}: it is about {CODE} (its dossier digest "
                            "says so), but the export gives only its hash: an entry of the "
                            "dossier is left out"]


def test_a_version_1_export_verifies_without_proving_completeness() -> None:
    export = export_of({0: build(0, [1, 0, 2, 0, 1])})
    assert export["format"] == chain.EXPORT_FORMAT
    assert chain.verify_export(export) == []
    assert chain.completeness(export) == chain.Completeness(
        False, "not proven: 4 entries of partition 0 entries 1–4 (the first 1, the last 4) "
               "are of version 1, which records no dossier digest")
    # A v1 entry left out as a bare hash still links: exactly what version 1 cannot show.
    links = export["segment"]["links"]
    links[2] = {"body_sha256": chain.body_hash(base64.b64decode(links[2]["entry"])).hex()}
    export["records"] = export["records"][:1]
    assert chain.verify_export(export) == []


def test_an_export_across_the_upgrade_proves_completeness_only_from_the_whole_range() -> None:
    export = export_of({0: build(0, [1, 0, 2, 0, 1, 0], v2_from=3)})
    assert export["format"] == chain.EXPORT_FORMAT_V2
    assert chain.verify_export(export) == []
    assert not chain.completeness(export).proven
    assert "2 entries of partition 0 entries 1–5 (the first 1, the last 2)" in \
        chain.completeness(export).detail
    later = export_of({0: build(0, [1, 0, 2, 0, 1, 0], v2_from=1)})
    assert chain.completeness(later).detail == (
        f"proven for partition 0 entries 1–5: every entry carries its dossier digest, and "
        f"each of the 3 about {CODE} is given in full (entries before 1 and after the signed "
        "head are not covered)")


V1_CODEC = codec.Codec("audit_entry", reader_version=1)


@settings(max_examples=100)
@given(states, sources, instants)
def test_an_entry_of_version_1_is_still_the_bytes_the_first_schema_gives(
        state: ChainState, source: Source, at: datetime) -> None:
    value, after = append(state, source, at, version=1)
    dossier = dossier_of(source)
    assert value == V1_CODEC.encode({
        "prev": state.head, "content_sha256": hashlib.sha256(source.value).digest(),
        "content": source.value, "seq": state.seq, "source_kind": source.kind,
        "source_topic": source.topic, "source_partition": source.partition,
        "source_offset": source.offset, "source_timestamp_ms": source.timestamp_ms,
        "dossier": dossier, "logged_at": at.isoformat()}, validate=False)
    assert after == ChainState(state.seq + 1,
                               chain.chain_hash(state.head, chain.body_hash(value)))
