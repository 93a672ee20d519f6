"""What a backup holds and when it may be restored (``services/backup/manifest``), and the
console progress bar."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lienthong.services.backup.manifest import (
    BackupError,
    FileCopy,
    Manifest,
    Record,
    TopicCopy,
    dated_name,
    problems,
    refusals,
    sha256_of,
    to_prune,
)
from lienthong.services.cli import main
from lienthong.services.progress import ProgressBar


def topic(name: str = "dossier.events", partitions: int = 2, records: int = 3,
          file: str = "topics/dossier.events.jsonl", sha: str = "", size: int = 0) -> TopicCopy:
    return TopicCopy(topic=name, source_name="h1." + name, partitions=partitions,
                     config={"retention.ms": "-1"}, start_offsets={0: 0, 1: 0},
                     end_offsets={0: 2, 1: 1}, records=records, file=file, sha256=sha,
                     bytes=size)


@given(st.integers(0, 63), st.integers(0, 2**40), st.integers(0, 2**41),
       st.one_of(st.none(), st.binary(max_size=64)), st.one_of(st.none(), st.binary()),
       st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8)), max_size=3))
def test_a_record_survives_its_line_exactly(partition: int, offset: int, ts: int,
                                            key: bytes | None, value: bytes | None,
                                            headers: list[tuple[str, bytes]]) -> None:
    r = Record(partition, offset, ts, key, value, tuple(headers))
    line = r.to_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert Record.from_line(line, "x") == r


def test_a_broken_line_is_named() -> None:
    with pytest.raises(BackupError, match=r"topics/a\.jsonl:7"):
        Record.from_line(b'{"p": 0}', "topics/a.jsonl:7")


def test_the_manifest_round_trips_through_json() -> None:
    m = Manifest("2026-12-03T01:30:00+00:00", "h1.", [topic()],
                 [FileCopy("users", "files/dashboard-users.yaml", "/etc/u.yaml", "ab", 3)])
    again = Manifest.from_json(json.loads(json.dumps(m.to_json())))
    assert again == m
    with pytest.raises(BackupError, match="not a lienthong-backup/1"):
        Manifest.from_json({"format": "other"})


def test_a_changed_missing_or_truncated_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "topics").mkdir()
    f = tmp_path / "topics" / "dossier.events.jsonl"
    f.write_bytes(b"abc\n")
    m = Manifest("t", "", [topic(sha=sha256_of(f), size=4)])
    assert problems(m, tmp_path) == []
    f.write_bytes(b"abd\n")
    assert problems(m, tmp_path) == [
        "topics/dossier.events.jsonl: SHA-256 differs from the manifest (altered or damaged)"]
    f.write_bytes(b"ab\n")
    assert "3 bytes, the manifest says 4" in problems(m, tmp_path)[0]
    f.unlink()
    assert problems(m, tmp_path) == ["topics/dossier.events.jsonl: missing"]


def test_more_records_than_offsets_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"")
    m = Manifest("t", "", [topic(records=4, file="x", sha=sha256_of(tmp_path / "x"))])
    assert problems(m, tmp_path) == ["x: 4 records, more than its offsets allow (3)"]


def test_a_target_that_holds_records_or_differs_in_partitions_is_refused() -> None:
    m = Manifest("t", "", [topic(), topic("alerts")])
    assert refusals(m, {"dossier.events": (2, 0), "alerts": (2, 0)}, force=False) == []
    found = refusals(m, {"dossier.events": (2, 5), "alerts": (4, 0)}, force=False)
    assert found[0].startswith("dossier.events: the target already holds 5 records")
    assert found[1].startswith("alerts: 4 partitions on the target, 2 in the backup")
    # --force lets records be added on top, never onto other partitions.
    assert refusals(m, {"dossier.events": (2, 5), "alerts": (2, 0)}, force=True) == []
    assert refusals(m, {"dossier.events": (2, 0)}, force=True) == [
        "alerts: no such topic on the target"]


def test_only_dated_backups_beyond_the_newest_are_pruned() -> None:
    names = ["20261201T013000Z", "20261203T013000Z", "20261202T013000Z", "before-upgrade",
             "20261130T013000Z"]
    assert to_prune(names, 2) == ["20261201T013000Z", "20261130T013000Z"]
    assert to_prune(names, 10) == []
    with pytest.raises(ValueError):
        to_prune(names, 0)
    assert dated_name(datetime(2026, 12, 3, 1, 30, tzinfo=UTC)) == "20261203T013000Z"


def test_the_progress_bar_shows_share_and_counts() -> None:
    out = io.StringIO()
    with ProgressBar("dossier.events", 200, out=out, every=0) as bar:
        bar.advance(50)
        bar.advance(150)
    lines = out.getvalue().splitlines()
    assert "  0.0% 0/200" in lines[0]
    assert " 25.0% 50/200" in lines[1]
    assert lines[-1].startswith("dossier.events") and "100.0% 200/200" in lines[-1]
    assert "[" + "#" * 30 + "]" in lines[-1]


def test_restore_verify_only_checks_hashes_without_kafka(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    (tmp_path / "topics").mkdir()
    f = tmp_path / "topics" / "dossier.events.jsonl"
    f.write_bytes(Record(0, 0, 1, b"k", b"v").to_line())
    m = Manifest("t", "", [topic(records=1, sha=sha256_of(f), size=f.stat().st_size)])
    (tmp_path / "manifest.json").write_text(json.dumps(m.to_json()))
    assert main(["restore", str(tmp_path), "--verify-only"]) == 0
    assert json.loads(capsys.readouterr().out) == {"backup": str(tmp_path), "intact": True}
    f.write_bytes(f.read_bytes().replace(b'"v"', b'"w"'))
    assert main(["restore", str(tmp_path), "--verify-only"]) == 1
    assert "SHA-256 differs" in capsys.readouterr().err
    # The manifest itself is checked against its own hash file.
    (tmp_path / "manifest.json.sha256").write_text(f"{'0' * 64}  manifest.json\n")
    assert main(["restore", str(tmp_path), "--verify-only"]) == 1
    assert "manifest.json: SHA-256 differs from manifest.json.sha256" in capsys.readouterr().err


def test_backup_needs_a_place_and_keep_needs_into(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["backup", "--bootstrap", "x:1"])
    assert main(["backup", "--out", str(tmp_path), "--keep", "3", "--bootstrap", "x:1"]) == 2


def test_a_backup_copies_every_hub_topic_the_receipt_watch_included() -> None:
    from lienthong.schemas import topics
    from lienthong.services.backup.archive import _hub_topics
    from lienthong.services.settings import Settings

    settings = Settings(topic_prefix="h1.")
    copied = [plain for plain, _ in _hub_topics(settings)]
    assert sorted("h1." + plain for plain in copied) == sorted(topics.names(settings).all())
    assert topics.RECEIPTS_EXPECTED in copied
