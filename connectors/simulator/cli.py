"""``lienthong simulate``: the sample province's agency systems as real HTTP clients.

    lienthong simulate --write-keys var/keys.json            # one key per catalogue agency
    lienthong simulate --jsonl day.jsonl --dossiers 500      # plan only, for lienthong replay
    lienthong simulate --keys-file var/keys.json --gateway http://127.0.0.1:8400 \\
        --dossiers 300 --rate 50 --duration 120 --start 2026-11-25T07:30:00+07:00 --speed 600

With ``--speed`` the events' ``at`` advance in accelerated time from ``--start`` (default: now)
and each event is sent when that clock reaches it; run the worker with the matching clock
(``LIENTHONG_CLOCK=scaled:START:SPEED``, started at the same moment). Without ``--speed`` the
plan is sent in order at ``--rate``; its ``--start`` defaults to 45 days ago so events are in
the past, and events later than the wall clock are not sent. The run stops by itself when the
plan is sent or ``--duration`` seconds passed, and prints a summary as JSON.

A province day that unfolds now (what ``lienthong up`` runs): with ``--backlog-days N`` the
receipts begin N working days before ``--start``; the dossiers finished by then are left out,
the events up to ``--start`` of the others (the backlog the agency systems push when the hub is
connected) are sent first and at once, and the rest when the clock reaches them. ``--send
backlog`` or ``--send live`` sends one part only (``up`` loads the backlog before the worker
starts, so no deadline is judged on half a dossier's history). When ``LIENTHONG_CLOCK`` is a
scaled clock and ``--speed`` is not given, that shared clock is used and its origin is the
default ``--start``.

    LIENTHONG_CLOCK=scaled:2026-12-03T07:30:00+07:00:60@1796258400 \
        lienthong simulate --keys-file var/keys.json --backlog-days 8 --per-hour 30 --send live
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lienthong.connectors.http import KeysFileError, load_keyring
from lienthong.connectors.simulator.day import (
    DEFAULT_LIVE_DAYS,
    planned_dossiers,
    split_at,
    working_days_before,
)
from lienthong.connectors.simulator.generate import plan
from lienthong.connectors.simulator.play import Player, write_keys
from lienthong.services.clock import ScaledClock, clock_from_spec
from lienthong.services.domain.catalogue import CatalogueError, load_catalogue
from lienthong.services.settings import Settings

PAST_START = timedelta(days=45)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = Settings.from_env()
    parser.add_argument("--catalog", default=str(s.catalog_path),
                        help="province catalogue (LIENTHONG_CATALOG)")
    parser.add_argument("--write-keys", type=Path, metavar="FILE",
                        help="write a keys file with a fresh key for every catalogue agency "
                             "(and LIENTHONG, the hub) and exit")
    parser.add_argument("--jsonl", type=Path, metavar="FILE",
                        help="write the planned events as canonical JSON lines and exit")
    parser.add_argument("--gateway", default=f"http://{s.host}:{s.gateway_port}",
                        help="gateway base URL")
    parser.add_argument("--keys-file", type=Path, default=s.keys_file,
                        help="per-agency keys (LIENTHONG_KEYS_FILE)")
    parser.add_argument("--dossiers", type=int, default=None,
                        help="dossiers to plan (100; with --backlog-days: enough for the "
                        f"backlog days and {DEFAULT_LIVE_DAYS} working days from --start)")
    parser.add_argument("--per-hour", type=float, default=60.0,
                        help="dossiers received per working hour across the province (60)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="at most this many events per second (20; 0: no limit)")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds")
    parser.add_argument("--start", default=None,
                        help="first receipt instant, ISO-8601 with offset")
    parser.add_argument("--speed", type=float, default=None,
                        help="accelerated time: simulated seconds per real second")
    parser.add_argument("--backlog-days", type=int, default=0,
                        help="receipts begin this many working days before --start; dossiers "
                        "still open at --start are the backlog, sent first (0)")
    parser.add_argument("--send", choices=("all", "backlog", "live"), default="all",
                        help="with --backlog-days: send the backlog, the events after --start, "
                        "or both in a row (all)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="requests in flight at most (32)")


def _fail(message: str) -> int:
    print(f"lienthong simulate: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    try:
        catalogue = load_catalogue(args.catalog)
    except (CatalogueError, OSError) as exc:
        return _fail(str(exc))
    if args.write_keys is not None:
        codes = write_keys(catalogue, args.write_keys)
        print(f"wrote keys for {len(codes)} agencies to {args.write_keys}")
        return 0
    tz = catalogue.calendar.tz
    shared = None
    if not args.speed:
        try:
            shared = clock_from_spec(Settings.from_env().clock)
        except ValueError as exc:
            return _fail(f"LIENTHONG_CLOCK: {exc}")
        if not isinstance(shared, ScaledClock):
            shared = None
    if args.start is not None:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            return _fail(f"--start {args.start!r} is not an ISO-8601 instant")
        if start.tzinfo is None:
            start = start.replace(tzinfo=tz)
    elif shared is not None:
        start = shared.origin
    else:
        now = datetime.now(UTC).astimezone(tz).replace(microsecond=0)
        start = now if args.speed or args.jsonl or args.backlog_days else now - PAST_START
    if args.backlog_days < 0:
        return _fail("--backlog-days must not be negative")
    dossiers = args.dossiers
    first = start
    if args.backlog_days:
        first = working_days_before(catalogue.calendar, start, args.backlog_days)
        if dossiers is None:
            dossiers = planned_dossiers(args.per_hour, catalogue.calendar,
                                        backlog_days=args.backlog_days,
                                        live_days=DEFAULT_LIVE_DAYS)
    dossiers = 100 if dossiers is None else dossiers
    events = plan(catalogue, seed=args.seed, dossiers=dossiers, start=first,
                  per_working_hour=args.per_hour)
    if args.backlog_days:
        day = split_at(events, start)
        print(f"simulate: {day.open_at_start()} dossiers open at {start.isoformat()} "
              f"({len(day.backlog)} events of backlog; {day.finished_before} finished before "
              f"and left out); {len(day.live)} events after it", file=sys.stderr)
        events = {"backlog": day.backlog, "live": day.live,
                  "all": day.backlog + day.live}[args.send]
    if args.jsonl is not None:
        with open(args.jsonl, "w", encoding="utf-8") as out:
            for e in events:
                out.write(json.dumps(e, ensure_ascii=False) + "\n")
        print(f"wrote {len(events)} events of {dossiers} dossiers to {args.jsonl} "
              f"({events[0]['at'] if events else '-'} .. {events[-1]['at'] if events else '-'})")
        return 0
    if args.keys_file is None:
        return _fail("no keys file; pass --keys-file (make one with --write-keys FILE)")
    try:
        keys = load_keyring(args.keys_file)
    except KeysFileError as exc:
        return _fail(str(exc))
    clock = shared
    not_after = None
    if shared is not None:
        print(f"simulated time: the shared clock LIENTHONG_CLOCK, {shared.speed:g}x from "
              f"{shared.origin.isoformat()}", file=sys.stderr)
    elif args.speed:
        clock = ScaledClock.starting_now(start, args.speed)
        print(f"simulated time from {start.isoformat()} at {args.speed:g}x; worker clock: "
              f"LIENTHONG_CLOCK=scaled:{start.isoformat()}:{args.speed:g}", file=sys.stderr)
    elif args.backlog_days:
        clock = ScaledClock.starting_now(start, 1.0)  # the live part in real time
    else:
        def not_after() -> datetime:
            return datetime.now(UTC) + timedelta(minutes=4)
    player = Player(args.gateway, keys, rate=args.rate, duration=args.duration, clock=clock,
                    not_after=not_after, concurrency=args.concurrency)
    progress = asyncio.run(player.play(events))
    print(json.dumps(progress.to_json(), ensure_ascii=False))
    return 0 if progress.errors == 0 and progress.rejected == 0 else 1
