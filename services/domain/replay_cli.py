"""``lienthong replay --catalog FILE EVENTS.jsonl [--now T]`` (DESIGN section 9).

Prints one JSON report on stdout (or a table with ``--format table``). Rejected lines go to
stderr with their line number and reason; the exit status is 1 if any line was rejected, 2 for
a usage error (unreadable catalogue or events, a bad ``--now``, a ``--now`` earlier than an
event).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

import orjson

from .catalogue import CatalogueError, load_catalogue
from .replay import NowBeforeEvent, Replay, collector_paused


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", "--catalogue", dest="catalog", required=True,
                        metavar="FILE", help="the province catalogue (YAML or JSON)")
    parser.add_argument("events", metavar="EVENTS.jsonl",
                        help="events in canonical JSON, one per line ('-' for stdin)")
    parser.add_argument("--now", metavar="T",
                        help="the instant to judge at, ISO-8601 (default: the latest event; "
                             "without an offset, the province's local time)")
    parser.add_argument("--format", choices=("json", "table"), default="json",
                        help="json (default, the report of DESIGN section 9) or a table")


def _usage(message: str) -> int:
    print(f"lienthong replay: error: {message}", file=sys.stderr)
    return 2


def _has_corrections(path: str) -> bool:
    """Whether the file holds a void or a correction (then earlier events are kept)."""
    with open(path, "rb") as f:
        tail = b""
        while chunk := f.read(1 << 20):
            block = tail + chunk
            if b'"voided_event_id"' in block or b'"corrects_event_id"' in block:
                return True
            tail = block[-20:]
    return False


def run(args: argparse.Namespace) -> int:
    with collector_paused():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        catalogue = load_catalogue(args.catalog)
    except CatalogueError as exc:
        return _usage(f"catalogue {args.catalog} is not valid:\n{exc}")
    except OSError as exc:
        return _usage(f"cannot read catalogue {args.catalog}: {exc}")
    now: datetime | None = None
    if args.now is not None:
        try:
            now = datetime.fromisoformat(args.now)
        except ValueError:
            return _usage(f"--now {args.now!r} is not an ISO-8601 instant")
        if now.tzinfo is None:
            now = now.replace(tzinfo=catalogue.calendar.tz)
    try:
        if args.events == "-":
            replay = Replay(catalogue, keep_history=True)
            replay.feed(sys.stdin.buffer, now)
        else:
            replay = Replay(catalogue, keep_history=_has_corrections(args.events))
            with open(args.events, "rb") as lines:
                replay.feed(lines, now)
    except NowBeforeEvent as exc:
        return _usage(str(exc))
    except OSError as exc:
        return _usage(f"cannot read events {args.events}: {exc}")
    when = replay.finish(now)
    for line in replay.rejected:
        print(line, file=sys.stderr)
    result = replay.report(when)
    if args.format == "table":
        sys.stdout.write(table(result))
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
    return 1 if replay.rejected else 0


def table(result: dict[str, Any]) -> str:
    """A human-readable rendering of the report: one line per dossier and step, then alerts."""
    def short(t: str | None) -> str:
        return f"{'-' if t is None else t[:16].replace('T', ' '):<16}"

    out = [f"{'dossier / step agency':<34} {'received/started':<16}  {'due':<16}  "
           f"{'ended':<16}  outcome"]
    for d in result["dossiers"]:
        late = f"  late: {', '.join(d['late_agencies'])}" if d["late_agencies"] else ""
        out.append(f"{d['dossier']:<34} {short(d['received_at'])}  {short(d['due_at'])}  "
                   f"{short(d['ended_at'])}  {d['outcome']}  [{d['procedure']}]{late}")
        for s in d["steps"]:
            out.append(f"  {s['agency']:<32} {short(s['started_at'])}  {short(s['due_at'])}  "
                       f"{short(s['ended_at'])}  {s['outcome']}")
    out.append("")
    out.append(f"{'alert':<22} {'scope':<8} {'dossier':<34} {'agency':<14} due")
    for a in result["alerts"]:
        out.append(f"{a['kind']:<22} {a['scope']:<8} {a['dossier']:<34} {a['agency']:<14} "
                   f"{short(a['due_at'])}")
    return "\n".join(out) + "\n"
