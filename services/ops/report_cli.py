"""``lienthong report``: the agency scoreboard and Decision 766 indicator table for a period, as
CSV or Excel, from the hub's ``dossier.status`` topic (or a JSON-lines file of snapshots).

    lienthong report --from 2026-12-01 --to 2026-12-31 --format xlsx --out thang12.xlsx
    lienthong report --from 2026-12-01 --to 2026-12-31 --format csv --table indicators \\
        --out chi-so-766.csv
    lienthong report --snapshots status.jsonl --from 2026-12-01 --to 2026-12-31 ...

The compacted status topic is read from the beginning to its end (no consumer group), so the
report counts the latest snapshot of every dossier, as the dashboard does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from datetime import date, datetime
from pathlib import Path

from lienthong.services.cli import load_catalogue_or_stop
from lienthong.services.clock import clock_from_spec
from lienthong.services.ops.board import OpsBoard, Period, SnapshotError
from lienthong.services.settings import Settings


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = Settings.from_env()
    parser.description = ("Export the agency scoreboard and the Decision 766 indicator table "
                          "for a period as CSV or Excel (.xlsx).")
    parser.add_argument("--from", dest="first", type=_day, required=True,
                        help="first day of the period (YYYY-MM-DD, province local time)")
    parser.add_argument("--to", dest="last", type=_day, required=True,
                        help="last day of the period, included")
    parser.add_argument("--format", choices=("csv", "xlsx"), default="xlsx",
                        help="csv (one table) or xlsx (default; one worksheet per table)")
    parser.add_argument("--table", choices=("scoreboard", "indicators", "all"), default=None,
                        help="which table (default: scoreboard for csv, all for xlsx)")
    parser.add_argument("--out", type=Path, required=True,
                        help="file to write ('-' for standard output)")
    parser.add_argument("--basis", choices=("dossier", "step"), default="dossier",
                        help="scoreboard by receiving agency (dossier) or by step holder")
    parser.add_argument("--agency", default=None,
                        help="limit to this agency and the agencies below it")
    parser.add_argument("--lang", choices=("vi", "en"), default="vi",
                        help="column headers' language (default vi)")
    parser.add_argument("--now", default=None,
                        help="judge open dossiers at this ISO-8601 instant (default: now "
                        "on the hub's clock, LIENTHONG_CLOCK)")
    parser.add_argument("--catalog", type=Path, default=s.catalog_path,
                        help=f"province catalogue (default {s.catalog_path})")
    parser.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--snapshots", type=Path, default=None,
                        help="read snapshots from this JSON-lines file instead of Kafka")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds allowed to read the status topic to its end")


async def _read_topic(bootstrap: str, board: OpsBoard, timeout: float) -> None:
    from lienthong.schemas import topics
    from lienthong.services.ops.feed import FeedTopics, StatusFeed

    status = topics.names(Settings.from_env()).status
    feed = StatusFeed(bootstrap, board, FeedTopics(status), notify=lambda change: None)
    task = asyncio.create_task(feed.run())
    ready = asyncio.create_task(feed.ready.wait())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # the feed failed: raise its error
        if ready not in done:
            raise TimeoutError(f"{status} not read to its end within {timeout:.0f} s")
    finally:
        for t in (task, ready):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


def run(args: argparse.Namespace) -> int:
    from lienthong.services.ops.reports import indicators_table, render, scoreboard_table

    prog = "lienthong report"
    if args.last < args.first:
        print(f"{prog}: --to ({args.last}) is before --from ({args.first})", file=sys.stderr)
        return 2
    catalogue = load_catalogue_or_stop(args.catalog)
    tz = catalogue.calendar.tz
    try:  # default: the hub's clock (LIENTHONG_CLOCK), so a demo's report judges demo time
        now = (datetime.fromisoformat(args.now) if args.now
               else clock_from_spec(Settings.from_env().clock).now().astimezone(tz))
    except ValueError as exc:
        print(f"{prog}: --now or LIENTHONG_CLOCK: {exc}", file=sys.stderr)
        return 2
    if now.tzinfo is None:
        now = now.replace(tzinfo=tz)
    if args.agency and catalogue.agency(args.agency) is None:
        print(f"{prog}: --agency: {args.agency!r} is not in the catalogue", file=sys.stderr)
        return 2
    board = OpsBoard(catalogue)
    scope = board.subtree(args.agency) if args.agency else None
    skipped = 0
    if args.snapshots is not None:
        try:
            lines = args.snapshots.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 2
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                board.apply_snapshot(json.loads(line))
            except (ValueError, SnapshotError) as exc:
                skipped += 1
                print(f"{args.snapshots}:{n}: {exc}", file=sys.stderr)
    elif args.bootstrap:
        try:
            asyncio.run(_read_topic(args.bootstrap, board, args.timeout))
        except (RuntimeError, TimeoutError, OSError) as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 1
    else:
        print(f"{prog}: no Kafka address; pass --bootstrap (or set KAFKA_BOOTSTRAP_SERVERS) "
              "or --snapshots FILE", file=sys.stderr)
        return 2
    period = Period(args.first, args.last)
    table = args.table or ("scoreboard" if args.format == "csv" else "all")
    if args.format == "csv" and table == "all":
        print(f"{prog}: a CSV file holds one table: --table scoreboard or indicators",
              file=sys.stderr)
        return 2
    tables = []
    if table in ("scoreboard", "all"):
        tables.append(scoreboard_table(
            board.scoreboard(period, now, basis=args.basis, scope=scope),
            province=catalogue.province_name, lang=args.lang))
    if table in ("indicators", "all"):
        tables.append(indicators_table(board, period, now, scope=scope, lang=args.lang))
    body = render(tables, args.format)
    if str(args.out) == "-":
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    else:
        args.out.write_bytes(body)
        print(f"{prog}: {len(board)} dossiers, {period.first} to {period.last}: wrote "
              f"{args.out} ({len(body)} bytes)", file=sys.stderr)
    return 1 if skipped else 0
