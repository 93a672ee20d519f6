"""``lienthong pull``: poll one agency system's change feed into ``dossier.events``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from lienthong.connectors.gateway.publisher import KafkaSink
from lienthong.connectors.http import (
    KeysFileError,
    RequestSigner,
    RetryPolicy,
    load_keyring,
    make_client,
)
from lienthong.connectors.pull.connector import PullConnector
from lienthong.connectors.pull.cursor import CursorError, CursorFile
from lienthong.services.settings import Settings

HUB_AGENCY = "LIENTHONG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Poll an agency system's 'changes since cursor' feed (GET URL/agencies/AGENCY/changes"
        "?cursor=C&limit=N) and publish each change as an event to dossier.events. The cursor "
        "is saved only after Kafka acknowledged the page, so a restart re-polls rather than "
        "skips; changes that are not valid events go to deadletter and the feed moves on.")
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    s = Settings.from_env()
    parser.add_argument("--agency", required=True, help="the agency whose system is polled")
    parser.add_argument("--url", required=True,
                        help="the agency system's base URL (the feed is under /agencies/AGENCY)")
    parser.add_argument("--system", default=None,
                        help="name of the source system in derived event ids (default: AGENCY)")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="seconds between polls once caught up")
    parser.add_argument("--batch-size", type=int, default=100, help="changes asked per poll")
    parser.add_argument("--cursor-dir", type=Path, default=s.data_dir / "pull-cursors",
                        help="where each agency's cursor file is kept (LIENTHONG_DATA_DIR)")
    parser.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--topic", default=None,
                        help="topic for events (default: dossier.events after the prefix)")
    parser.add_argument("--deadletter-topic", default=None,
                        help="topic for invalid changes (default: deadletter after the prefix)")
    parser.add_argument("--kafka-timeout", type=float, default=5.0,
                        help="seconds Kafka may take to acknowledge before the page is re-polled")
    parser.add_argument("--http-timeout", type=float, default=10.0,
                        help="seconds for one feed request")
    parser.add_argument("--keys-file", type=Path, default=s.keys_file,
                        help="sign feed requests with the hub's key from this file "
                             "(env LIENTHONG_KEYS_FILE; unsigned without one)")
    parser.add_argument("--hub-agency", default=HUB_AGENCY,
                        help="the code the hub signs its requests as (X-Agency)")
    parser.add_argument("--once", action="store_true",
                        help="poll until caught up, then exit (for cron or a backfill)")


def _signer(args: argparse.Namespace) -> RequestSigner | None:
    if args.keys_file is None:
        return None
    live = load_keyring(args.keys_file).live_keys(args.hub_agency)
    if not live:
        raise KeysFileError(f"{args.keys_file} holds no live key for {args.hub_agency}")
    return RequestSigner(args.hub_agency, live[0].secret, live[0].key_id)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    if not args.bootstrap:
        print("lienthong pull: no Kafka; set KAFKA_BOOTSTRAP_SERVERS or --bootstrap",
              file=sys.stderr)
        return 2
    from lienthong.schemas import topics

    names = topics.names(Settings.from_env())
    try:
        signer = _signer(args)
        cursor = CursorFile(args.cursor_dir, args.agency)
        client = make_client(retry=RetryPolicy(attempts=3, base_delay=0.2, max_delay=2.0),
                             signer=signer, timeout=args.http_timeout,
                             headers={"User-Agent": "lienthong-pull"})
        sink = KafkaSink(args.bootstrap, args.topic or names.events,
                         timeout=args.kafka_timeout, client_id=f"lienthong-pull-{args.agency}")
        connector = PullConnector(
            agency=args.agency, base_url=args.url, sink=sink, cursor=cursor, client=client,
            deadletter_topic=args.deadletter_topic or names.deadletter,
            batch_size=args.batch_size, system=args.system)
    except (KeysFileError, CursorError, OSError, ValueError) as exc:
        print(f"lienthong pull: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    print(f"lienthong pull polling {connector.url} every {args.interval} s "
          f"(batch {args.batch_size}; cursor {cursor.path} at {connector.position!r}; "
          f"kafka {args.bootstrap} topic {sink.topic})", flush=True)
    try:
        connector.run(stop, interval=args.interval, until_caught_up=args.once)
    finally:
        client.close()
        sink.close(timeout=5.0)
    print(f"lienthong pull stopped at cursor {connector.position!r}; "
          f"{connector.published} events published, {connector.deadlettered} dead-lettered",
          flush=True)
    return 0
