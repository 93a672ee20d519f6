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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lienthong.connectors.http import KeysFileError, load_keyring
from lienthong.connectors.simulator.generate import plan
from lienthong.connectors.simulator.play import Player, write_keys
from lienthong.services.clock import ScaledClock
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
    parser.add_argument("--dossiers", type=int, default=100, help="dossiers to plan (100)")
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
    if args.start is not None:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            return _fail(f"--start {args.start!r} is not an ISO-8601 instant")
        if start.tzinfo is None:
            start = start.replace(tzinfo=tz)
    else:
        now = datetime.now(UTC).astimezone(tz).replace(microsecond=0)
        start = now if args.speed or args.jsonl else now - PAST_START
    events = plan(catalogue, seed=args.seed, dossiers=args.dossiers, start=start,
                  per_working_hour=args.per_hour)
    if args.jsonl is not None:
        with open(args.jsonl, "w", encoding="utf-8") as out:
            for e in events:
                out.write(json.dumps(e, ensure_ascii=False) + "\n")
        print(f"wrote {len(events)} events of {args.dossiers} dossiers to {args.jsonl} "
              f"({events[0]['at'] if events else '-'} .. {events[-1]['at'] if events else '-'})")
        return 0
    if args.keys_file is None:
        return _fail("no keys file; pass --keys-file (make one with --write-keys FILE)")
    try:
        keys = load_keyring(args.keys_file)
    except KeysFileError as exc:
        return _fail(str(exc))
    clock = None
    not_after = None
    if args.speed:
        clock = ScaledClock.starting_now(start, args.speed)
        print(f"simulated time from {start.isoformat()} at {args.speed:g}x; worker clock: "
              f"LIENTHONG_CLOCK=scaled:{start.isoformat()}:{args.speed:g}", file=sys.stderr)
    else:
        def not_after() -> datetime:
            return datetime.now(UTC) + timedelta(minutes=4)
    player = Player(args.gateway, keys, rate=args.rate, duration=args.duration, clock=clock,
                    not_after=not_after, concurrency=args.concurrency)
    progress = asyncio.run(player.play(events))
    print(json.dumps(progress.to_json(), ensure_ascii=False))
    return 0 if progress.errors == 0 and progress.rejected == 0 else 1
