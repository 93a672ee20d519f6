"""Report exports (báo cáo): the agency scoreboard and the Decision 766/QĐ-TTg indicator table
for a period, as CSV and Excel (.xlsx) files, as provincial reports exchange them.

Pure over the read model: ``scoreboard_table`` and ``indicators_table`` turn the answers of
``OpsBoard`` into a ``Table`` (headers and typed cells); ``to_csv`` and ``to_xlsx`` write one.
The dashboard's download links and ``lienthong report`` both call these, so a file downloaded
from the page and one written by the command hold the same numbers.

CSV is for machines: UTF-8 with a byte-order mark (so Excel shows Vietnamese diacritics), a
comma separator, rates as percentages with a decimal point (``99.71``), an empty cell where
nothing was judged. The workbook is for people: a title line naming the province and period,
rates stored as fractions with a percentage format, frozen header row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from lienthong.services.ops.board import OpsBoard, Period, Scoreboard, Tally
from lienthong.services.ops.i18n import t

Cell = str | int | float | None
"""A cell: text, a count, a rate (a fraction 0..1, in a ``rate_columns`` column) or empty."""

FORMATS = ("csv", "xlsx")
TABLES = ("scoreboard", "indicators")
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Table:
    """One report table: what a CSV file or one worksheet holds."""

    name: str                       # worksheet name (at most 31 characters)
    title: str                      # the title line of the worksheet
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    rate_columns: frozenset[int]    # indexes of columns holding fractions 0..1

    def column(self, header: str) -> list[Cell]:
        i = self.headers.index(header)
        return [row[i] for row in self.rows]


def period_label(period: Period, lang: str = "vi") -> str:
    """"từ ngày 01/12/2026 đến ngày 31/12/2026" (vi) or "1 Dec 2026 – 31 Dec 2026" (en)."""
    if lang == "vi":
        return f"từ ngày {period.first:%d/%m/%Y} đến ngày {period.last:%d/%m/%Y}"
    return f"{period.first:%Y-%m-%d} – {period.last:%Y-%m-%d}"


def _tally_cells(tl: Tally) -> tuple[Cell, ...]:
    return (tl.received, tl.ended, tl.early, tl.on_time, tl.late, tl.on_time_rate,
            tl.overdue, tl.withdrawn, tl.stopped, tl.open)


def scoreboard_table(board: Scoreboard, *, province: str = "", lang: str = "vi") -> Table:
    """The scoreboard as provincial reports lay it out: a subtotal line per level followed by
    its agencies, then the province total.

    Columns: No., agency code, agency, level, received, ended, early, on time, late,
    early-and-on-time rate, overdue now, withdrawn, stopped, in progress.
    """
    w = lambda key: t(key, lang)  # noqa: E731 - a local shorthand keeps the header list legible
    headers = (w("report.no"), w("report.agency_code"), w("agency"), w("level"),
               w("received"), w("ended"), w("early"), w("on_time"), w("late"),
               w("report.rate"), w("overdue_now"), w("withdrawn"), w("stopped"),
               w("open"))
    rows: list[tuple[Cell, ...]] = []
    n = 0
    for level, tally in board.levels:
        rows.append(("", "", w(f"level.{level}"), w(f"level.{level}"), *_tally_cells(tally)))
        for r in board.rows:
            if r.level == level:
                n += 1
                rows.append((n, r.agency, r.name, w(f"level.{r.level}"),
                             *_tally_cells(r.tally)))
    rows.append(("", "", w("total"), "", *_tally_cells(board.total)))
    basis = w(f"basis.{board.basis}")
    title = f"{w('scoreboard')} {period_label(board.period, lang)}"
    if province:
        title = f"{province}: {title}"
    return Table(w("report.sheet.scoreboard"), f"{title} ({w('basis')}: {basis})",
                 headers, tuple(rows), frozenset({9}))


def indicators_table(ops: OpsBoard, period: Period, now: datetime, *,
                     scope: frozenset[str] | None = None, lang: str = "vi") -> Table:
    """Decision 766 indicators per receiving agency and for the whole scope (always counted by
    dossier: the decision judges dossiers, not steps).

    Columns: No., agency code, agency, dossiers judged (ended early/on time/late plus overdue
    now), of which early or on time, their rate, dossiers received, of which with the
    national portal's status in step with the hub's, that share.
    """
    w = lambda key: t(key, lang)  # noqa: E731
    headers = (w("report.no"), w("report.agency_code"), w("agency"), w("report.judged"),
               w("report.early_on_time"), w("ind.rate"), w("received"),
               w("report.portal_synced"), w("ind.portal"))
    board = ops.scoreboard(period, now, scope=scope)
    rows: list[tuple[Cell, ...]] = []
    for n, r in enumerate(board.rows, start=1):
        ind = ops.indicators(period, now, scope=frozenset({r.agency}))
        rows.append((n, r.agency, r.name, r.tally.judged, r.tally.early + r.tally.on_time,
                     r.tally.on_time_rate, ind.received, ind.portal_synced,
                     ind.portal_synced_rate))
    total = ops.indicators(period, now, scope=scope)
    rows.append(("", "", w("total"), board.total.judged,
                 board.total.early + board.total.on_time, board.total.on_time_rate,
                 total.received, total.portal_synced, total.portal_synced_rate))
    title = f"{w('ind.766')} {period_label(period, lang)}"
    province = ops.catalogue.province_name
    return Table(w("report.sheet.indicators"), f"{province}: {title}", headers, tuple(rows),
                 frozenset({5, 8}))


# -- writers ---------------------------------------------------------------------------------

def _csv_cell(value: Cell, is_rate: bool) -> str:
    if value is None:
        return ""
    if is_rate and isinstance(value, int | float):
        return f"{value * 100:.2f}"
    return str(value)


def to_csv(table: Table) -> bytes:
    """The header row and the data rows, UTF-8 with a byte-order mark, CRLF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(table.headers)
    for row in table.rows:
        writer.writerow([_csv_cell(v, i in table.rate_columns) for i, v in enumerate(row)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _sheet_name(name: str, taken: set[str]) -> str:
    cleaned = "".join("-" if c in "[]:*?/\\" else c for c in name)[:31] or "Sheet"
    candidate, k = cleaned, 2
    while candidate in taken:
        suffix = f" ({k})"
        candidate, k = cleaned[:31 - len(suffix)] + suffix, k + 1
    taken.add(candidate)
    return candidate


def to_xlsx(tables: Sequence[Table] | Table) -> bytes:
    """A workbook with one worksheet per table: title in A1, headers in row 3, data below."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    items: Iterable[Table] = (tables,) if isinstance(tables, Table) else tables
    wb = Workbook()
    wb.remove(wb.active)  # type: ignore[arg-type]
    taken: set[str] = set()
    bold = Font(bold=True)
    head_fill = PatternFill("solid", fgColor="DDE7F0")
    for table in items:
        ws = wb.create_sheet(_sheet_name(table.name, taken))
        ws.cell(row=1, column=1, value=table.title).font = Font(bold=True, size=13)
        for j, header in enumerate(table.headers, start=1):
            c = ws.cell(row=3, column=j, value=header)
            c.font, c.fill = bold, head_fill
            c.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
        for i, row in enumerate(table.rows, start=4):
            subtotal = row[0] == ""
            for j, value in enumerate(row, start=1):
                c = ws.cell(row=i, column=j, value=value)
                if j - 1 in table.rate_columns:
                    c.number_format = "0.00%"
                if subtotal:
                    c.font = bold
        for j, header in enumerate(table.headers, start=1):
            longest = max([len(header) // 2, *(len(str(r[j - 1] or "")) for r in table.rows)])
            ws.column_dimensions[get_column_letter(j)].width = min(60, max(8, longest + 2))
        ws.freeze_panes = "A4"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def render(tables: Sequence[Table], fmt: str) -> bytes:
    """``csv``: the first table only (a CSV file holds one table); ``xlsx``: all of them."""
    if fmt == "csv":
        return to_csv(tables[0])
    if fmt == "xlsx":
        return to_xlsx(tables)
    raise ValueError(f"format: one of {', '.join(FORMATS)} (got {fmt!r})")
