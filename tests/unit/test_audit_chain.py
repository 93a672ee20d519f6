"""The audit log's hash chain: any change to the entries is found, and named."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from lienthong.schemas import codec
from lienthong.services.audit import chain
from lienthong.services.audit.chain import ChainState, verify_run
from lienthong.services.audit.entries import Source, append, append_run, logged_at_field

AT = datetime(2026, 11, 25, 2, 15, tzinfo=UTC)
DOSSIERS = ["000.00.15.H99-261125-0007", "G09.20-20260609-0092637", "000.00.16.H99-261125-0001"]


def build(contents: list[bytes], dossiers: list[str] | None = None) -> list[bytes]:
    state, out = ChainState(), []
    for i, content in enumerate(contents):
        key = (dossiers[i] if dossiers else DOSSIERS[i % len(DOSSIERS)]).encode()
        value, state = append(state, Source("event", "dossier.events", 0, i, 1_700_000_000_000,
                                            key, content), AT)
        out.append(value)
    return out


chains = st.lists(st.binary(min_size=0, max_size=300), min_size=2, max_size=30)


def test_an_entry_is_an_avro_record_of_the_one_codec_with_its_hashes_at_fixed_places() -> None:
    [first, second] = build([b"event one", b"event two"])
    record = codec.AUDIT_ENTRIES.decode(second)
    # version 2: the chain hash covers the first entry's body hash and its dossier's digest
    assert record["prev"] == second[11:43] == chain.chain_hash(
        chain.ZERO, chain.body_hash(first), hashlib.sha256(DOSSIERS[0].encode()).digest())
    assert record["dossier_sha256"] == hashlib.sha256(DOSSIERS[1].encode()).digest()
    assert record["content_sha256"] == hashlib.sha256(b"event two").digest()
    assert chain.content_of(second) == record["content"] == b"event two"
    assert chain.read_entry(second) == {**record, "prev": record["prev"].hex(),
                                        "content_sha256": record["content_sha256"].hex(),
                                        "dossier_sha256": record["dossier_sha256"].hex()}


@given(chains)
def test_an_untouched_chain_verifies_to_the_head_it_was_built_with(contents: list[bytes]) -> None:
    values = build(contents)
    result = verify_run(values)
    assert result.ok and result.checked == len(values)
    assert result.state == chain.heads_of({0: values})[0]


@settings(max_examples=200)
@given(chains, st.data())
def test_a_flipped_byte_anywhere_is_detected_at_that_entry(contents: list[bytes],
                                                           data: st.DataObject) -> None:
    values = build(contents)
    i = data.draw(st.integers(0, len(values) - 2), label="entry")  # not the last: see below
    pos = data.draw(st.integers(0, len(values[i]) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    altered = bytearray(values[i])
    altered[pos] ^= 1 << bit
    tampered = [*values[:i], bytes(altered), *values[i + 1:]]
    result = verify_run(tampered)
    assert result.mismatch is not None
    # Named as the altered entry, or as the one before it when the altered byte was its prev.
    assert result.mismatch.seq in (i, i - 1), result.mismatch
    assert result.checked <= i + 1  # the entry after an altered one is what shows it


@given(chains)
def test_the_last_entry_altered_is_caught_by_the_signed_head(contents: list[bytes]) -> None:
    values = build(contents)
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    checkpoint = chain.sign_checkpoint(key, "k1", "audit.log", AT.isoformat(),
                                       chain.heads_of({0: values}))
    assert chain.check_checkpoint(checkpoint, {0: values}, pub) == []
    last = bytearray(values[-1])
    last[-1] ^= 0x01  # a byte of logged_at: the chain alone cannot see it
    assert verify_run([*values[:-1], bytes(last)]).ok
    problems = chain.check_checkpoint(checkpoint, {0: [*values[:-1], bytes(last)]}, pub)
    assert problems and f"entry {len(values) - 1}" in problems[0]


@given(chains, st.data())
def test_a_removed_entry_is_detected(contents: list[bytes], data: st.DataObject) -> None:
    values = build(contents)
    i = data.draw(st.integers(0, len(values) - 2))
    result = verify_run(values[:i] + values[i + 1:])
    assert result.mismatch is not None and result.mismatch.seq in (i, i - 1)


@given(chains, st.data())
def test_two_entries_swapped_are_detected(contents: list[bytes], data: st.DataObject) -> None:
    values = build(contents)
    i = data.draw(st.integers(0, len(values) - 2))
    j = data.draw(st.integers(i + 1, len(values) - 1))
    swapped = list(values)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    result = verify_run(swapped)
    assert result.mismatch is not None and result.mismatch.seq in (i, i - 1)


def test_changed_content_is_named_by_its_own_entry_with_the_reason() -> None:
    values = build([b"alpha", b"bravo", b"charlie"])
    altered = bytearray(values[1])
    altered[78] ^= 0x20  # inside the content "bravo" (76: length, 77: first byte)
    result = verify_run([values[0], bytes(altered), values[2]])
    assert result.mismatch == chain.Mismatch(
        1, "content_mismatch", "SHA-256 of the recorded content differs from its "
        "content_sha256")


def test_a_checkpoint_signed_by_another_key_or_edited_does_not_verify() -> None:
    values = build([b"a", b"b"])
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    checkpoint = chain.sign_checkpoint(key, "k1", "audit.log", AT.isoformat(),
                                       chain.heads_of({0: values}))
    assert chain.checkpoint_signature_ok(checkpoint, key.public_key().public_bytes_raw())
    assert not chain.checkpoint_signature_ok(checkpoint, other.public_key().public_bytes_raw())
    moved = {**checkpoint, "heads": [{**checkpoint["heads"][0], "seq": 0}]}
    assert not chain.checkpoint_signature_ok(moved, key.public_key().public_bytes_raw())


def _export(values: list[bytes], dossier: str, key: Ed25519PrivateKey) -> dict[str, object]:
    checkpoint = chain.sign_checkpoint(key, "hub-2026", "audit.log", AT.isoformat(),
                                       chain.heads_of({0: values}))
    links, records = [], []
    for value in values:
        entry = chain.read_entry(value)
        if entry["dossier"] == dossier:
            links.append({"entry": base64.b64encode(value).decode()})
            records.append({k: entry[k] for k in ("seq", "source_kind", "source_topic",
                                                  "source_partition", "source_offset",
                                                  "dossier", "logged_at", "content_sha256")})
        else:
            links.append({"body_sha256": chain.body_hash(value).hex(),
                          "dossier_sha256": chain.dossier_digest(entry["dossier"]).hex()})
    return {"format": chain.EXPORT_FORMAT_V2, "dossier": dossier, "audit_topic": "audit.log",
            "partition": 0, "segment": {"start_seq": 0, "start_prev": chain.ZERO.hex(),
                                        "links": links},
            "checkpoint": checkpoint, "records": records,
            "public_key": {"key_id": "hub-2026",
                           "ed25519": key.public_key().public_bytes_raw().hex()}}


def test_a_dossier_export_verifies_without_the_other_dossiers_data() -> None:
    values = build([f"record {i}".encode() for i in range(9)])
    key = Ed25519PrivateKey.generate()
    export = _export(values, DOSSIERS[1], key)
    assert chain.verify_export(export) == []
    text = repr(export)
    assert base64.b64encode(values[0]).decode() not in text  # another dossier's entry
    assert len(export["records"]) == 3  # type: ignore[arg-type]


def test_an_export_with_one_altered_record_names_it() -> None:
    values = build([f"record {i}".encode() for i in range(9)])
    export = _export(values, DOSSIERS[1], Ed25519PrivateKey.generate())
    links = export["segment"]["links"]  # type: ignore[index]
    raw = bytearray(base64.b64decode(links[4]["entry"]))
    raw[78] ^= 0x01
    links[4] = {"entry": base64.b64encode(bytes(raw)).decode()}
    problems = chain.verify_export(export)
    assert problems == ["partition 0, entry 4: content_mismatch: SHA-256 of the recorded "
                        "content differs from its content_sha256"]


def test_an_export_whose_record_list_lies_is_refused() -> None:
    values = build([f"record {i}".encode() for i in range(6)])
    export = _export(values, DOSSIERS[0], Ed25519PrivateKey.generate())
    export["records"][1]["source_offset"] = 99  # type: ignore[index]
    [problem] = chain.verify_export(export)
    assert "source_offset=99" in problem and "entry 3" in problem


def test_the_standalone_verifier_exits_0_for_a_good_export_and_1_for_a_bad_one(
        tmp_path: object) -> None:
    import json
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    values = build([f"record {i}".encode() for i in range(4)])
    export = _export(values, DOSSIERS[0], Ed25519PrivateKey.generate())
    good = tmp_path / "good.json"
    good.write_text(json.dumps(export))
    assert chain.main([str(good)]) == 0
    export["checkpoint"]["at"] = "2027-01-01T00:00:00+00:00"  # type: ignore[index]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(export))
    assert chain.main([str(bad)]) == 1


def test_entries_with_large_contents_verify_and_their_changes_are_found() -> None:
    # 20,000 bytes need a three-byte Avro length, 9,000 two: both paths of the checker.
    values = build([b"x" * 20_000, b"y" * 100, b"z" * 9_000])
    assert verify_run(values).ok
    for i in (0, 2):
        altered = bytearray(values[i])
        altered[200] ^= 0x01
        result = verify_run([*values[:i], bytes(altered), *values[i + 1:]])
        assert result.mismatch is not None
        assert (result.mismatch.seq, result.mismatch.reason) == (i, "content_mismatch")


# -- the entry writer: the codec's bytes, built directly ----------------------------------------

def dossier_of(source: Source) -> str | None:
    if source.key:
        try:
            return source.key.decode("utf-8") or None
        except UnicodeDecodeError:
            return None
    return None


def digest_of(source: Source) -> bytes:
    """The dossier digest of a version-2 entry: SHA-256 of the code, 32 zero bytes for none."""
    dossier = dossier_of(source)
    return hashlib.sha256(dossier.encode()).digest() if dossier else bytes(32)


def codec_entry(state: ChainState, source: Source, logged_at: datetime) -> bytes:
    """An entry as the one codec writes it from its canonical record (the format's reference)."""
    dossier = dossier_of(source)
    return codec.AUDIT_ENTRIES.encode({
        "prev": state.head, "content_sha256": hashlib.sha256(source.value).digest(),
        "content": source.value, "dossier_sha256": digest_of(source), "seq": state.seq,
        "source_kind": source.kind,
        "source_topic": source.topic, "source_partition": source.partition,
        "source_offset": source.offset, "source_timestamp_ms": source.timestamp_ms,
        "dossier": dossier, "logged_at": logged_at.isoformat(),
    }, validate=False)


_LONGS = st.one_of(st.integers(0, 5000), st.integers(0, 2**63 - 1))
keys = st.one_of(st.none(), st.binary(max_size=40),
                 st.text(max_size=30).map(lambda t: t.encode("utf-8")),
                 st.sampled_from([d.encode() for d in DOSSIERS]))
sources = st.builds(
    Source, kind=st.sampled_from(["event", "delivery", "receipt", "alert", "deadletter",
                                  "operator"]),
    topic=st.text(min_size=1, max_size=60), partition=st.integers(0, 2**31 - 1),
    offset=_LONGS, timestamp_ms=st.one_of(st.just(-1), _LONGS), key=keys,
    value=st.one_of(st.binary(max_size=300), st.binary(min_size=2040, max_size=9000)))
instants = st.datetimes(timezones=st.timezones())
# a chain whose next 20 entries (the longest run drawn) still have a seq that is an Avro long
states = st.builds(ChainState, seq=st.one_of(st.integers(0, 5000), st.integers(0, 2**63 - 21)),
                   head=st.binary(min_size=32, max_size=32))


@settings(max_examples=300)
@given(states, sources, instants)
def test_an_entry_built_directly_is_byte_for_byte_the_codecs_entry(
        state: ChainState, source: Source, at: datetime) -> None:
    value, after = append(state, source, at)
    assert value == codec_entry(state, source, at)
    assert after == ChainState(state.seq + 1,
                               chain.chain_hash(state.head, chain.body_hash(value),
                                                digest_of(source)))
    assert codec.AUDIT_ENTRIES.decode(value)["source_offset"] == source.offset


@given(states, st.lists(sources, min_size=1, max_size=20), instants)
def test_a_run_of_one_partitions_records_chains_like_one_entry_after_another(
        state: ChainState, records: list[Source], at: datetime) -> None:
    # The service appends what one source partition gave in one call; the records share the
    # first one's kind, topic and partition.
    first = records[0]
    run = [Source(first.kind, first.topic, first.partition, r.offset, r.timestamp_ms, r.key,
                  r.value) for r in records]
    values, after = append_run(state, first.kind, first.topic, first.partition, run,
                               logged_at_field(at))
    expected, s = [], state
    for r in run:
        expected.append(codec_entry(s, r, at))
        s = ChainState(s.seq + 1, chain.chain_hash(s.head, chain.body_hash(expected[-1]),
                                                   digest_of(r)))
    assert values == expected and after == s
    assert verify_run(values, state).state == after


def test_a_tombstone_is_chained_with_empty_content() -> None:
    @dataclass
    class Tombstone:
        offset: int = 7
        timestamp: int = 1_700_000_000_000
        key: bytes | None = DOSSIERS[0].encode()
        value: bytes | None = None

    [value], _ = append_run(ChainState(), "event", "dossier.events", 0, [Tombstone()],
                            logged_at_field(AT))
    record = codec.AUDIT_ENTRIES.decode(value)
    assert record["content"] == b"" and record["dossier"] == DOSSIERS[0]
    assert record["content_sha256"] == hashlib.sha256(b"").digest()
