"""``lienthong portal``: reconcile the hub's dossier statuses with the national portal's.

    lienthong portal --portal http://127.0.0.1:9800/dvcqg --every 60

Each round reads ``dossier.status``, asks the portal for the same dossiers and raises one
``portal_drift`` alert per drift episode (confirmed over ``--confirm`` rounds). ``--once``
runs a single round and prints the drifting dossiers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys

from lienthong.connectors.national_portal.reconcile import (
    DriftTracker,
    PortalClient,
    Reconciler,
)
from lienthong.services.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = Settings.from_env()
    parser.add_argument("--portal", required=True,
                        help="portal API base URL, e.g. http://127.0.0.1:9800/dvcqg")
    parser.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                        help="Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between rounds (60)")
    parser.add_argument("--confirm", type=int, default=2,
                        help="rounds a disagreement must last to count as drift (2)")
    parser.add_argument("--once", action="store_true", help="one round, print, exit")


async def _main(args: argparse.Namespace) -> int:
    from lienthong.schemas import topics

    names = topics.names(Settings.from_env())
    portal = PortalClient(args.portal)
    rec = Reconciler(args.bootstrap, portal, status_topic=names.status,
                     alerts_topic=names.alerts, tracker=DriftTracker(confirm=args.confirm))
    try:
        if args.once:
            alert = await rec.round()
            print(json.dumps({"drifting": [d.describe() for d in rec.last_drifts],
                              "alert": alert}, ensure_ascii=False, indent=1))
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await rec.run(args.every, stop)
        return 0
    finally:
        rec.close()
        await portal.aclose()


def run(args: argparse.Namespace) -> int:
    if not args.bootstrap:
        print("lienthong portal: no Kafka; set KAFKA_BOOTSTRAP_SERVERS or --bootstrap",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    return asyncio.run(_main(args))
