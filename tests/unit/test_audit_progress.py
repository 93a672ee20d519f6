"""Progress of long audit reads: a bar redrawn on a terminal with rate and ETA, over Kafka
offsets or copy-file entries, and a closing summary line on a terminal or not."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from lienthong.services.audit import cli as audit_cli
from lienthong.services.audit.verify import AuditCopy, Chunk, tracked, write_copy
from lienthong.services.progress import ProgressBar, clock_text
from tests.unit.test_audit_verify_stream import PUB, build, offsets


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_clock_text_shows_minutes_and_seconds_and_hours_when_there_are_some() -> None:
    assert [clock_text(s) for s in (0, 7.4, 65, 725, 3723, -3)] == \
        ["0:00", "0:07", "1:05", "12:05", "1:02:03", "0:00"]


def test_the_line_shows_share_counts_rate_and_time_left(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    now = [1000.0]
    monkeypatch.setattr("lienthong.services.progress.time.monotonic", lambda: now[0])
    bar = ProgressBar("audit verify", 0, out=io.StringIO(), width=10, tty_only=True)
    bar.start(200_000)
    now[0] += 4.0
    bar.advance(50_000)
    # 50,000 in 4 s is 12,500/s; 150,000 to go at that rate is 12 s
    assert bar.line() == ("audit verify             [##........]  25.0% 50,000/200,000 "
                          "(12,500/s) ETA 0:12")
    bar.advance(150_000)
    assert bar.line().endswith("100.0% 200,000/200,000 (50,000/s)")  # done: no ETA


def test_tty_only_draws_on_a_terminal_and_only_the_summary_elsewhere() -> None:
    log = io.StringIO()
    with ProgressBar("audit copy", 0, out=log, tty_only=True, every=0) as bar:
        bar.start(10)
        bar.advance(10)
        bar.summary = "audit copy: 10 entries written"
    assert log.getvalue() == "audit copy: 10 entries written\n"

    term = Terminal()
    with ProgressBar("audit copy", 0, out=term, tty_only=True) as bar:
        bar.start(10)
        bar.advance(10)
        bar.summary = "audit copy: 10 entries written"
    text = term.getvalue()
    assert text.startswith("\r") and "100.0% 10/10" in text
    assert "0/0" not in text  # nothing drawn before the total is known
    assert text.endswith("\x1b[K\naudit copy: 10 entries written\n")


def test_progress_over_kafka_counts_offsets_to_each_partitions_end() -> None:
    # Partition 0 spans offsets 0–10 (records at 1, 3, 5, 7, 9: markers between), partition 1
    # is empty at 4–4, partition 2 spans 0–3; 14 offsets in all.
    extent = {0: (0, 11), 1: (4, 4), 2: (0, 3)}
    chunks: list[Chunk] = [(0, [1, 3], [b"a", b"b"]), (0, [5, 7, 9], [b"c", b"d", b"e"]),
                           (1, [], []), (2, [0, 1, 2], [b"f", b"g", b"h"])]
    bar = ProgressBar("audit verify", 14, out=io.StringIO(), tty_only=True)
    seen = []
    for chunk in tracked(chunks, bar, extent):
        seen.append(bar.done)
        assert chunk in chunks
    assert seen == [4, 10, 11, 14]  # 1+3 → 4; to 10; partition 0's end (11); 11 + 3
    assert bar.done == bar.total

    by_entries = ProgressBar("audit verify", 11, out=io.StringIO(), tty_only=True)
    assert len(list(tracked(chunks, by_entries))) == 4 and by_entries.done == 8


def test_audit_verify_copy_ends_with_a_summary_line_on_stderr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "copy.jsonl"
    write_copy(AuditCopy("audit.log", {0: list(zip(offsets(300), build(0, 300), strict=True))}),
               path)
    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser)
    code = audit_cli.run(parser.parse_args(["verify", "--copy", str(path), "--public-key",
                                            PUB.hex()]))
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["entries"] == 300
    [summary] = captured.err.splitlines()  # not a terminal: no bar, the summary alone
    assert summary.startswith("audit verify: 300 entries of 1 partition and 0 checkpoints "
                              "checked: ok in ") and summary.endswith(" entries/s")
