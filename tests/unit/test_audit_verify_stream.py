"""``audit verify`` streams the log in chunks and names exactly what one pass over it names."""

from __future__ import annotations

import argparse
import base64
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
from lienthong.services.audit import cli as audit_cli
from lienthong.services.audit.chain import ChainState, Mismatch, checkpoint_signature_ok
from lienthong.services.audit.entries import Source, append
from lienthong.services.audit.verify import (
    AuditCopy,
    LogChecker,
    copy_chunks,
    verify_copy_file,
    verify_log,
    write_copy,
)

AT = datetime(2026, 11, 25, 2, 15, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key().public_bytes_raw()


def build(partition: int, n: int, size: int = 40) -> list[bytes]:
    state, out = ChainState(), []
    for i in range(n):
        content = f"event {partition}/{i} ".encode() * (1 + size // 12)
        value, state = append(state, Source("event", "dossier.events", partition, i,
                                            1_700_000_000_000, b"G09.20-20260609-0092637",
                                            content), AT)
        out.append(value)
    return out


def offsets(n: int) -> list[int]:
    return [3 + 2 * i for i in range(n)]  # transaction markers between records, as in Kafka


def checkpoint(chains: dict[int, list[bytes]], at: str, upto: dict[int, int]) -> bytes:
    states = {p: chain.heads_of({p: values[:upto[p] + 1]})[p] for p, values in chains.items()}
    return codec.AUDIT_CHECKPOINTS.encode(
        chain.sign_checkpoint(KEY, "k1", "audit.log", at, states))


def reference(copy: AuditCopy, public_key_raw: bytes | None) -> dict[str, Any]:
    """The check as it was when the whole log was held: each partition in one list, split only
    at the seqs the checkpoints signed (the problems and heads it gives are the oracle)."""
    checkpoints = [codec.AUDIT_CHECKPOINTS.decode(v) for v in copy.checkpoints]
    wanted: dict[int, set[int]] = {}
    for cp in checkpoints:
        for h in cp["heads"]:
            if h["seq"] >= 0:
                wanted.setdefault(h["partition"], set()).add(h["seq"])
    problems: list[str] = []
    broken: set[int] = set()
    heads: dict[int, ChainState] = {}
    at_seq: dict[tuple[int, int], bytes] = {}
    for p, records in sorted(copy.partitions.items()):
        values = [v for _, v in records]
        state = ChainState()
        stops = [*sorted(s + 1 for s in wanted.get(p, ()) if s < len(values)), len(values)]
        done = 0
        for stop in stops:
            if stop <= done:
                continue
            result = chain.verify_run(values[done:stop], state)
            if result.mismatch is not None:
                m = result.mismatch
                offset = records[m.seq][0] if 0 <= m.seq < len(records) else None
                problems.append(f"{copy.audit_topic} {m.describe(p)} (Kafka offset {offset})")
                broken.add(p)
                break
            state = result.state
            done = stop
            at_seq[(p, stop - 1)] = state.head
        heads[p] = state
    if checkpoints and public_key_raw is None:
        problems.append("checkpoints not checked: no audit public key given (--public-key or "
                        "--audit-key)")
    for cp in checkpoints:
        if public_key_raw is not None and not checkpoint_signature_ok(cp, public_key_raw):
            problems.append(f"checkpoint at {cp['at']}: the signature does not verify with key "
                            f"{cp['key_id']}")
            continue
        for h in cp["heads"]:
            p, seq = h["partition"], h["seq"]
            got = at_seq.get((p, seq))
            if seq < 0 or (got is None and p in broken):
                continue
            if got is None:
                problems.append(f"checkpoint at {cp['at']}: partition {p} entry {seq} is "
                                "missing from the log")
            elif got.hex() != h["head"]:
                problems.append(f"checkpoint at {cp['at']}: partition {p} entry {seq} does "
                                "not match the signed head")
    return {"problems": problems,
            "heads": {str(p): {"seq": s.seq - 1, "head": s.head.hex()}
                      for p, s in sorted(heads.items())}}


def chunked(copy: AuditCopy, size: int, public_key_raw: bytes | None) -> dict[str, Any]:
    checker = LogChecker(copy.audit_topic, copy.checkpoints, public_key_raw)
    for p, records in sorted(copy.partitions.items()):
        for i in range(0, len(records), size):
            part = records[i:i + size]
            checker.feed(p, [o for o, _ in part], [v for _, v in part])
    report = checker.report().as_json()
    assert report["entries"] == copy.entries
    return {"problems": report["problems"], "heads": report["heads"]}


def tamper(values: list[bytes], how: str, i: int, at: int) -> list[bytes]:
    out = list(values)
    if how == "flip":
        b = bytearray(out[i])
        b[at % len(b)] ^= 0x01
        out[i] = bytes(b)
    elif how == "remove":
        del out[i]
    elif how == "swap" and i + 1 < len(out):
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


LOGS = {p: build(p, 40) for p in range(2)}


@settings(max_examples=150, deadline=None)
@given(how=st.sampled_from(["none", "flip", "remove", "swap"]), partition=st.integers(0, 1),
       entry=st.integers(0, 39), byte=st.integers(0, 400), size=st.integers(1, 45),
       signed=st.lists(st.integers(-1, 45), min_size=0, max_size=3))
def test_any_chunk_size_names_the_same_problems_and_heads_as_one_pass(
        how: str, partition: int, entry: int, byte: int, size: int, signed: list[int]) -> None:
    # Checkpoints signing seqs past the log's end name entries "missing from the log".
    cps = [codec.AUDIT_CHECKPOINTS.encode(chain.sign_checkpoint(
        KEY, "k1", "audit.log", f"2026-11-25T0{k}:00:00+00:00",
        {p: ChainState(s + 1, chain.heads_of({p: LOGS[p][:s + 1]})[p].head)
         for p in LOGS})) for k, s in enumerate(signed)]
    chains = {p: tamper(v, how, entry, byte) if p == partition else v for p, v in LOGS.items()}
    copy = AuditCopy("audit.log", {p: list(zip(offsets(len(v)), v, strict=True))
                                   for p, v in chains.items()}, cps)
    assert chunked(copy, size, PUB) == reference(copy, PUB)
    assert chunked(copy, size, None) == reference(copy, None)


def test_a_copy_bigger_than_the_chunk_verifies_and_a_tampered_entry_in_a_later_chunk_is_named(
        tmp_path: Path) -> None:
    chains = {0: build(0, 2_500), 1: build(1, 1_200)}
    cps = [checkpoint(chains, "2026-11-25T03:00:00+00:00", {0: 999, 1: 1_199}),
           checkpoint(chains, "2026-11-25T04:00:00+00:00", {0: 2_499, 1: 1_199})]
    good = AuditCopy("audit.log", {p: list(zip(offsets(len(v)), v, strict=True))
                                   for p, v in chains.items()}, cps)
    path = tmp_path / "copy.jsonl"
    write_copy(good, path)
    # 2,500 + 1,200 entries in chunks of 500: eight chunks of partition 0 and 1.
    assert [(p, len(v)) for p, _, v in copy_chunks(path, chunk_entries=500)] == \
        [(0, 500)] * 5 + [(1, 500), (1, 500), (1, 200)]
    report = verify_copy_file(path, PUB, chunk_entries=500)
    assert report.ok, report.problems
    assert (report.entries, report.partitions, report.checkpoints) == (3_700, 2, 2)
    assert report.heads == chain.heads_of(chains)
    assert report.as_json()["heads"] == verify_log(good, PUB).as_json()["heads"]

    # Entry 1,700 of partition 0 (the fourth chunk): its content changed, one byte.
    lines = path.read_text().splitlines()
    row = json.loads(lines[1 + 1_700])
    value = bytearray(base64.b64decode(row["entry"]))
    value[80] ^= 0x20  # inside the content (it starts at byte 77 or 78)
    lines[1 + 1_700] = json.dumps({**row, "entry": base64.b64encode(value).decode()})
    path.write_text("\n".join(lines) + "\n")
    report = verify_copy_file(path, PUB, chunk_entries=500)
    assert not report.ok
    [problem] = report.problems  # the checkpoints past entry 1,700 are not named again
    assert problem.offset == 3 + 2 * 1_700
    assert problem.mismatch == Mismatch(1_700, "content_mismatch", "SHA-256 of the recorded "
                                        "content differs from its content_sha256")
    assert str(problem) == ("audit.log partition 0, entry 1700: content_mismatch: SHA-256 of "
                            "the recorded content differs from its content_sha256 (Kafka "
                            "offset 3403)")
    # The head reported is the last signed one passed (entry 999), as in one pass.
    assert report.heads[0] == chain.heads_of({0: chains[0][:1_000]})[0]
    assert report.heads[1] == chain.heads_of(chains)[1]


def test_an_entry_altered_at_the_end_of_a_chunk_is_named_by_the_next_chunk(
        tmp_path: Path) -> None:
    values = build(0, 1_000)
    altered = bytearray(values[499])  # the last entry of the first chunk of 500
    altered[-3] ^= 0x01  # in logged_at: not in the content hash, so entry 500's prev sees it
    values[499] = bytes(altered)
    path = tmp_path / "copy.jsonl"
    write_copy(AuditCopy("audit.log", {0: list(zip(offsets(1_000), values, strict=True))}),
               path)
    [problem] = verify_copy_file(path, None, chunk_entries=500).problems
    assert (problem.offset, problem.mismatch and problem.mismatch.seq) == (3 + 2 * 499, 499)
    assert problem.mismatch is not None and problem.mismatch.reason == "next_prev_mismatch"
    assert str(problem).startswith("audit.log partition 0, entry 499: next_prev_mismatch: "
                                   "entry 500 records a previous hash")


def test_audit_verify_copy_exits_1_naming_the_entry_and_its_help_says_memory_is_bounded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = build(0, 300)
    values[250] = values[250][:-1] + bytes([values[250][-1] ^ 1])
    path = tmp_path / "copy.jsonl"
    write_copy(AuditCopy("audit.log", {0: list(zip(offsets(300), values, strict=True))}), path)
    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser)
    code = audit_cli.run(parser.parse_args(["verify", "--copy", str(path), "--public-key",
                                            PUB.hex()]))
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["entries"] == 300 and not out["ok"]
    assert out["problems"] == ["audit.log partition 0, entry 250: next_prev_mismatch: entry 251 "
                               f"records a previous hash {values[251][11:19].hex()}… that is not "
                               f"this entry's chain hash "
                               f"{chain.heads_of({0: values[:251]})[0].head.hex()[:16]}…: this "
                               "entry was altered, or an entry was removed, inserted or moved "
                               "after it (Kafka offset 503)"]
    with pytest.raises(SystemExit):
        parser.parse_args(["verify", "--help"])
    assert "Memory is bounded" in " ".join(capsys.readouterr().out.split())


def test_the_chunk_size_the_help_names_is_the_one_verify_reads_with() -> None:
    from lienthong.services.audit import verify

    assert audit_cli.CHUNK_ENTRIES == verify.CHUNK_ENTRIES
