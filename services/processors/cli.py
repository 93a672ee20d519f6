"""``lienthong worker``: run one stream-processing worker (tracker + deadline sweeper)."""

from __future__ import annotations

import argparse
import logging

from lienthong.services.clock import clock_from_spec
from lienthong.services.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run one worker: it keeps each dossier's state, routes hand-offs, computes legal "
        "deadlines and raises due-soon/overdue alerts. Workers started with the same --app-id "
        "share the partitions of dossier.events; start more to scale out.")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers "
                        "(default: KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--catalog", help="province catalogue (default: LIENTHONG_CATALOG)")
    parser.add_argument("--app-id", help="consumer group / app id (default: LIENTHONG_APP_ID)")
    parser.add_argument("--port", type=int, help="web port for /metrics and /healthz "
                        "(default: LIENTHONG_WORKER_PORT)")
    parser.add_argument("--data-dir", help="local state directory (default: LIENTHONG_DATA_DIR)")
    parser.add_argument("--clock", help="'wall' (default) or 'scaled:ISO-INSTANT:SPEED' "
                        "to run a province day in accelerated time (LIENTHONG_CLOCK)")
    parser.add_argument("--loglevel", default="info", choices=["debug", "info", "warning"])


def run(args: argparse.Namespace) -> int:
    from lienthong.services.processors.app import build_worker, run_worker

    settings = Settings.from_env(
        kafka_bootstrap_servers=args.bootstrap, catalog_path=args.catalog, app_id=args.app_id,
        worker_port=args.port, data_dir=args.data_dir, clock=args.clock)
    logging.basicConfig(level=args.loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = build_worker(settings, clock=clock_from_spec(settings.clock))
    print(f"lienthong worker {settings.app_id}: Kafka {settings.kafka_bootstrap_servers}, "
          f"metrics http://{settings.host}:{settings.worker_port}/metrics", flush=True)
    run_worker(worker, loglevel=args.loglevel)
    return 0
