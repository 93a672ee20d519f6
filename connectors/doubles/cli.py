"""``lienthong doubles``: serve the agency systems, VNPost and the national portal of a
catalogue on one port, for demos and tests.

    lienthong doubles --port 9800 --catalog examples/province-h99.yaml \\
        --write-catalog var/province-doubles.json

``--write-catalog`` writes the catalogue with every endpoint pointing at this server
(``http://HOST:PORT/agencies/{code}/inbox``, ``/vnpost/inbox``, ``/dvcqg/api/status-sync``),
ready for ``lienthong delivery --catalog``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from lienthong.connectors.doubles.server import Doubles, point_catalogue_at, running
from lienthong.connectors.http import KeysFileError, load_keyring
from lienthong.connectors.http.serving import stop_on_signals
from lienthong.services.domain.catalogue import CatalogueError, load_catalogue
from lienthong.services.settings import Settings

DEFAULT_PORT = 9800


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = Settings.from_env()
    parser.add_argument("--host", default=s.host, help=f"address to bind ({s.host})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port; 0 picks a free one ({DEFAULT_PORT})")
    parser.add_argument("--catalog", default=str(s.catalog_path),
                        help="catalogue whose agencies get an inbox (LIENTHONG_CATALOG)")
    parser.add_argument("--write-catalog", type=Path, default=None, metavar="FILE",
                        help="write the catalogue (JSON) with endpoints on this server")
    parser.add_argument("--vnpost-webhook", default=None, metavar="URL",
                        help="where VNPost tracking webhooks go (the postal webhook receiver)")
    parser.add_argument("--keys-file", type=Path, default=s.keys_file,
                        help="keys file holding VNPOST's key to sign webhooks with")
    parser.add_argument("--vnpost-auto", type=float, default=0.0, metavar="SECONDS",
                        help="move every shipment by itself, one status per SECONDS (0: off)")
    parser.add_argument("--fail", action="append", default=[], metavar="CODE:SECONDS",
                        help="make an agency answer 503 for SECONDS from start (repeatable)")
    parser.add_argument("--slow", action="append", default=[], metavar="CODE:SECONDS",
                        help="make an agency answer after SECONDS (repeatable)")


def _faults(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for option, key in ((args.fail, "fail_seconds"), (args.slow, "slow_seconds")):
        for item in option:
            code, _, seconds = item.rpartition(":")
            out.setdefault(code, {})[key] = float(seconds)
    return out


async def serve(args: argparse.Namespace, stop: asyncio.Event | None = None) -> int:
    try:
        catalogue = load_catalogue(args.catalog)
    except (CatalogueError, OSError) as exc:
        print(f"lienthong doubles: {exc}", file=sys.stderr)
        return 2
    key: str | None = None
    if args.keys_file is not None and args.vnpost_webhook:
        try:
            live = load_keyring(args.keys_file).live_keys("VNPOST")
        except KeysFileError as exc:
            print(f"lienthong doubles: {exc}", file=sys.stderr)
            return 2
        key = live[0].secret.decode() if live else None
    try:
        faults = _faults(args)
    except ValueError:
        print("lienthong doubles: --fail/--slow take CODE:SECONDS", file=sys.stderr)
        return 2
    doubles = Doubles(catalogue.agencies, vnpost_webhook_url=args.vnpost_webhook,
                      vnpost_key=key, vnpost_auto_track_seconds=args.vnpost_auto,
                      faults=faults)
    async with running(doubles, args.host, args.port) as base:
        if args.write_catalog is not None:
            moved = point_catalogue_at(catalogue, base)
            args.write_catalog.parent.mkdir(parents=True, exist_ok=True)
            args.write_catalog.write_text(
                json.dumps(moved.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"lienthong doubles listening on {base}: {len(doubles.agencies.inboxes)} agency "
              f"inboxes at {base}/agencies/{{code}}/inbox, VNPost {base}/vnpost/inbox, "
              f"DVCQG {base}/dvcqg/api/status-sync; stats {base}/stats"
              + (f"; catalogue written to {args.write_catalog}" if args.write_catalog else ""),
              flush=True)
        stop = stop or asyncio.Event()
        stop_on_signals(stop)
        await stop.wait()
        totals = doubles.stats()["totals"]
    print(f"lienthong doubles stopped: {json.dumps(totals)}", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return asyncio.run(serve(args))
