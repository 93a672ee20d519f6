"""Report exports from hand-made ``dossier.status`` snapshots: the CSV opens with ``csv``, the
workbook with ``openpyxl``, and both hold the numbers the scoreboard counts.

Calendar of the sample province: 1-4 December 2026 are Tuesday-Friday.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.ops.board import OpsBoard, Period
from lienthong.services.ops.reports import (
    indicators_table,
    render,
    scoreboard_table,
    to_csv,
    to_xlsx,
)

CATALOGUE = load_catalogue(Path(__file__).parents[2] / "examples" / "province-h99.yaml")
COMMUNE = "000.00.15.H99"
POLICE = "000.02.10.H99"
DECEMBER = Period(date(2026, 12, 1), date(2026, 12, 31))
NOW = datetime.fromisoformat("2026-12-03T08:00:00+07:00")


def iso(text: str) -> str:
    return text + "+07:00"


def snapshot(code: str, *, due: str = "2026-12-08T08:00", state: str = "processing",
             outcome: str = "open", agency: str = COMMUNE, ended: str | None = None,
             **extra: Any) -> dict[str, Any]:
    received = "2026-12-01T08:00"
    data: dict[str, Any] = {
        "dossier": code, "procedure": "1.001193", "procedure_name": "Liên thông khai sinh",
        "receiving_agency": agency, "receiving_level": None, "channel": "desk",
        "applicant": {"name": "Nguyễn Văn A", "id_number": "001099012345"},
        "holder": agency, "state": state, "received_at": iso(received), "due_at": iso(due),
        "ended_at": None if ended is None else iso(ended), "outcome": outcome,
        "late_agencies": [], "repeat_supplement": False,
        "steps": [{"agency": agency, "started_at": iso(received), "due_at": iso(due),
                   "ended_at": None if ended is None else iso(ended), "outcome": outcome}],
        "pauses": [], "apologies": [], "postal": [], "portal_status": 4, "timeline": [],
        "updated_at": iso(received)}
    data.update(extra)
    return data


def ended(code: str, outcome: str, **kw: Any) -> dict[str, Any]:
    return snapshot(code, state="ended", outcome=outcome, due="2026-12-03T09:00",
                    ended="2026-12-02T10:00", portal_status=9, **kw)


@pytest.fixture
def ops() -> OpsBoard:
    b = OpsBoard(CATALOGUE)
    for s in (ended("E1", "early"), ended("E2", "early"), ended("O1", "on_time"),
              ended("L1", "late"),
              snapshot("W1", state="withdrawn", ended="2026-12-02T10:00", portal_status=7),
              snapshot("OV", due="2026-12-02T09:00"),           # open, past due at NOW
              snapshot("OP", portal_status=None),               # open, never synced
              ended("P1", "early", agency=POLICE), ended("P2", "late", agency=POLICE)):
        b.apply_snapshot(s)
    return b


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "a byte-order mark makes Excel read UTF-8"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def test_scoreboard_csv_has_vietnamese_headers_and_the_counts_per_agency(ops: OpsBoard) -> None:
    table = scoreboard_table(ops.scoreboard(DECEMBER, NOW), province="Tỉnh Mẫu")
    rows = read_csv(to_csv(table))
    assert rows[0] == ["STT", "Mã cơ quan", "Cơ quan", "Cấp", "Tiếp nhận", "Đã giải quyết",
                       "Trước hạn", "Đúng hạn", "Quá hạn", "Tỷ lệ trước hạn và đúng hạn (%)",
                       "Đang quá hạn", "Rút hồ sơ", "Dừng xử lý", "Đang giải quyết"]
    by_code = {r[1]: r for r in rows[1:] if r[1]}
    # Commune: 7 received; ended 2 early + 1 on time + 1 late; OV overdue; W1 withdrawn;
    # OV and OP open. Rate (2 + 1) / (4 ended + 1 overdue) = 60 %.
    assert by_code[COMMUNE][2] == "Ủy ban nhân dân xã Hòa Bình"
    assert by_code[COMMUNE][3] == "Cấp xã"
    assert by_code[COMMUNE][4:] == ["7", "4", "2", "1", "1", "60.00", "1", "1", "0", "2"]
    # Police: 1 early, 1 late: 50 %.
    assert by_code[POLICE][4:10] == ["2", "2", "1", "0", "1", "50.00"]
    total = rows[-1]
    assert total[2] == "Tổng cộng"
    # (3 + 1) / (6 ended + 1 overdue) = 57.14 %
    assert total[4:10] == ["9", "6", "3", "1", "2", "57.14"]
    level_lines = [r[2] for r in rows[1:-1] if not r[0]]
    assert level_lines == ["Cấp xã", "Ngành dọc"]


def test_scoreboard_workbook_holds_numbers_and_rates_as_fractions(ops: OpsBoard) -> None:
    table = scoreboard_table(ops.scoreboard(DECEMBER, NOW), province="Tỉnh Mẫu")
    wb = openpyxl.load_workbook(io.BytesIO(to_xlsx(table)))
    assert wb.sheetnames == ["Kết quả giải quyết"]
    ws = wb["Kết quả giải quyết"]
    assert ws["A1"].value.startswith("Tỉnh Mẫu: Kết quả giải quyết theo cơ quan từ ngày "
                                     "01/12/2026 đến ngày 31/12/2026")
    headers = [c.value for c in ws[3]]
    assert headers[9] == "Tỷ lệ trước hạn và đúng hạn (%)"
    rows = {r[1]: r for r in ws.iter_rows(min_row=4, values_only=True) if r[1]}
    assert rows[COMMUNE][4:9] == (7, 4, 2, 1, 1)
    assert rows[COMMUNE][9] == pytest.approx(0.6)
    rate_cell = next(r for r in ws.iter_rows(min_row=4) if r[1].value == COMMUNE)[9]
    assert rate_cell.number_format == "0.00%"
    last = list(ws.iter_rows(min_row=4, values_only=True))[-1]
    assert last[2] == "Tổng cộng" and last[9] == pytest.approx(4 / 7)


def test_a_rate_with_nothing_judged_is_an_empty_cell(ops: OpsBoard) -> None:
    empty = Period(date(2027, 1, 1), date(2027, 1, 31))
    table = scoreboard_table(ops.scoreboard(empty, NOW))
    total = read_csv(to_csv(table))[-1]
    assert total[9] == ""
    ws = openpyxl.load_workbook(io.BytesIO(to_xlsx(table))).active
    assert list(ws.iter_rows(min_row=4, values_only=True))[-1][9] is None


def test_decision_766_table_counts_portal_sync_per_receiving_agency(ops: OpsBoard) -> None:
    table = indicators_table(ops, DECEMBER, NOW)
    rows = read_csv(to_csv(table))
    assert rows[0] == ["STT", "Mã cơ quan", "Cơ quan", "Số hồ sơ đánh giá",
                       "Trước hạn và đúng hạn", "Tỷ lệ hồ sơ giải quyết trước hạn, đúng hạn",
                       "Tiếp nhận", "Đồng bộ đúng trạng thái DVCQG",
                       "Tỷ lệ hồ sơ đồng bộ trạng thái lên Cổng DVCQG"]
    by_code = {r[1]: r for r in rows[1:] if r[1]}
    # Commune: 7 received; in step: E1 E2 O1 L1 (9 = processed), W1 (7), OV (4) = 6 of 7.
    assert by_code[COMMUNE][3:] == ["5", "3", "60.00", "7", "6", "85.71"]
    assert by_code[POLICE][3:] == ["2", "1", "50.00", "2", "2", "100.00"]
    assert rows[-1][2:] == ["Tổng cộng", "7", "4", "57.14", "9", "8", "88.89"]
    wb = openpyxl.load_workbook(io.BytesIO(to_xlsx(table)))
    ws = wb["Chỉ số QĐ 766"]
    last = list(ws.iter_rows(min_row=4, values_only=True))[-1]
    assert last[3:] == (7, 4, pytest.approx(4 / 7), 9, 8, pytest.approx(8 / 9))


def test_one_workbook_holds_both_tables_and_english_headers_on_request(ops: OpsBoard) -> None:
    tables = [scoreboard_table(ops.scoreboard(DECEMBER, NOW), lang="en"),
              indicators_table(ops, DECEMBER, NOW, lang="en")]
    wb = openpyxl.load_workbook(io.BytesIO(render(tables, "xlsx")))
    assert wb.sheetnames == ["Scoreboard", "Decision 766"]
    assert [c.value for c in wb["Scoreboard"][3]][4] == "Received"
    with pytest.raises(ValueError, match="format"):
        render(tables, "pdf")


def test_a_scoped_scoreboard_table_lists_only_the_scope(ops: OpsBoard) -> None:
    table = scoreboard_table(ops.scoreboard(DECEMBER, NOW, scope=frozenset({POLICE})))
    codes = [r[1] for r in table.rows if r[1]]
    assert codes == [POLICE]
    assert table.column("Tiếp nhận")[-1] == 2


# -- lienthong report ------------------------------------------------------------------------

def test_report_command_writes_a_workbook_from_a_snapshots_file(
        ops: OpsBoard, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from lienthong.services.cli import main
    lines = [json.dumps(ended("E1", "early")), json.dumps(ended("L1", "late")),
             json.dumps(snapshot("OV", due="2026-12-02T09:00"))]
    src = tmp_path / "status.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "thang12.xlsx"
    assert main(["report", "--snapshots", str(src), "--from", "2026-12-01", "--to",
                 "2026-12-31", "--format", "xlsx", "--out", str(out),
                 "--now", NOW.isoformat()]) == 0
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Kết quả giải quyết", "Chỉ số QĐ 766"]
    total = list(wb["Kết quả giải quyết"].iter_rows(min_row=4, values_only=True))[-1]
    # 3 received; 1 early, 1 late ended; OV overdue: 1 / 3.
    assert total[4:11] == (3, 2, 1, 0, 1, pytest.approx(1 / 3), 1)
    csv_out = tmp_path / "chi-so.csv"
    assert main(["report", "--snapshots", str(src), "--from", "2026-12-01", "--to",
                 "2026-12-31", "--format", "csv", "--table", "indicators",
                 "--out", str(csv_out), "--now", NOW.isoformat()]) == 0
    rows = read_csv(csv_out.read_bytes())
    assert rows[0][3] == "Số hồ sơ đánh giá" and rows[-1][3] == "3"


def test_report_command_refuses_a_backwards_period_and_a_csv_of_two_tables(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lienthong.services.cli import main
    src = tmp_path / "empty.jsonl"
    src.write_text("", encoding="utf-8")
    out = tmp_path / "x.csv"
    assert main(["report", "--snapshots", str(src), "--from", "2026-12-31", "--to",
                 "2026-12-01", "--format", "csv", "--out", str(out)]) == 2
    assert "before" in capsys.readouterr().err
    assert main(["report", "--snapshots", str(src), "--from", "2026-12-01", "--to",
                 "2026-12-31", "--format", "csv", "--table", "all", "--out", str(out)]) == 2
    assert not out.exists()


def test_report_command_names_a_bad_snapshot_line_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from lienthong.services.cli import main
    src = tmp_path / "status.jsonl"
    src.write_text(json.dumps(ended("E1", "early")) + "\n{broken\n", encoding="utf-8")
    out = tmp_path / "r.csv"
    assert main(["report", "--snapshots", str(src), "--from", "2026-12-01", "--to",
                 "2026-12-31", "--format", "csv", "--out", str(out)]) == 1
    assert "status.jsonl:2" in capsys.readouterr().err
    assert read_csv(out.read_bytes())[-1][4] == "1"
