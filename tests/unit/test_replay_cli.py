"""``lienthong replay`` over a small JSONL file (tests/data/replay-small.jsonl).

The file holds three dossiers of the sample province and four bad lines: line 5 is not JSON,
line 6 is a hand-off by an agency that does not hold the dossier, line 7 repeats an event id
(skipped silently), line 14 is for a dossier never received, line 15 has no UTC offset.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lienthong.services.cli import main

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = str(ROOT / "examples" / "province-h99.yaml")
EVENTS = str(ROOT / "tests" / "data" / "replay-small.jsonl")
A = "000.00.15.H99-20260105-0000001"
B = "000.00.15.H99-20260105-0000002"
C = "000.00.16.H99-20260106-0000001"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["replay", "--catalog", CATALOGUE, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_replay_prints_one_report_and_lists_rejected_lines(capsys) -> None:
    code, out, err = run(capsys, EVENTS)
    assert code == 1
    report = json.loads(out)
    assert list(report) == ["dossiers", "alerts"]
    assert [d["dossier"] for d in report["dossiers"]] == [A, B, C]
    lines = err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["line 5", "line 6", "line 14", "line 15"]
    assert "invalid_json" in lines[0] and "not_holder" in lines[1]
    assert "unknown_dossier" in lines[2] and "invalid_event: at" in lines[3]


def test_report_rows_have_the_design_keys_and_instant_format(capsys) -> None:
    _, out, _ = run(capsys, EVENTS)
    report = json.loads(out)
    first = report["dossiers"][0]
    assert list(first) == ["dossier", "procedure", "received_at", "due_at", "ended_at",
                           "outcome", "late_agencies", "steps"]
    assert list(first["steps"][0]) == ["agency", "started_at", "due_at", "ended_at", "outcome"]
    assert list(report["alerts"][0]) == ["kind", "scope", "dossier", "agency", "due_at"]
    # 5 working days from Mon 5 Jan 08:00 -> Mon 12 Jan 08:00; ended Thu 8 Jan: early.
    assert first["due_at"] == "2026-01-12T08:00:00+07:00"
    assert first["outcome"] == "early"
    # Same-day copy received Tue 15:05, after the 15:00 cut-off: Wed 07:30 + 2 h = 09:30;
    # result Wed 16:00 -> late, blamed on the commune.
    third = report["dossiers"][2]
    assert third["due_at"] == "2026-01-07T09:30:00+07:00"
    assert (third["outcome"], third["late_agencies"]) == ("late", ["000.00.16.H99"])


def test_alerts_are_sorted_by_due_then_dossier_kind_scope_agency(capsys) -> None:
    _, out, _ = run(capsys, EVENTS)
    alerts = json.loads(out)["alerts"]
    keys = [(a["due_at"] is not None, a["due_at"] or "", a["dossier"], a["kind"], a["scope"],
             a["agency"]) for a in alerts]
    assert keys == sorted(keys)
    assert ("overdue", "step", B, "000.02.10.H99", "2026-01-07T11:00:00+07:00") in [
        (a["kind"], a["scope"], a["dossier"], a["agency"], a["due_at"]) for a in alerts]


def test_now_defaults_to_the_latest_event_and_a_later_now_sees_more(capsys) -> None:
    _, out, _ = run(capsys, EVENTS)
    default = json.loads(out)
    b = default["dossiers"][1]
    assert b["outcome"] == "open"  # its due, Mon 12 Jan 09:00, is after the latest event
    _, out, _ = run(capsys, EVENTS, "--now", "2026-01-12T09:01:00+07:00")
    later = json.loads(out)
    b = later["dossiers"][1]
    assert b["outcome"] == "overdue" and b["late_agencies"] == ["000.02.10.H99"]
    assert len(later["alerts"]) > len(default["alerts"])


def test_a_now_earlier_than_an_event_is_a_usage_error(capsys) -> None:
    code, out, err = run(capsys, EVENTS, "--now", "2026-01-06T00:00:00+07:00")
    assert code == 2 and out == ""
    assert "--now" in err and "earlier" in err


def test_a_clean_file_exits_zero_and_the_table_format_is_readable(capsys, tmp_path) -> None:
    clean = tmp_path / "clean.jsonl"
    good = [line for i, line in enumerate(Path(EVENTS).read_text().splitlines(), 1)
            if i not in (5, 6, 14, 15)]
    clean.write_text("\n".join(good) + "\n")
    code, out, err = run(capsys, str(clean))
    assert code == 0 and err == ""
    code, out, _ = run(capsys, str(clean), "--format", "table")
    assert code == 0 and A in out and "overdue" in out


def test_an_unreadable_catalogue_is_a_usage_error(capsys, tmp_path) -> None:
    code = main(["replay", "--catalog", str(tmp_path / "missing.yaml"), EVENTS])
    assert code == 2
    assert "catalogue" in capsys.readouterr().err
