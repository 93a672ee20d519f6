"""``lienthong postal``: VNPost's tracking webhook receiver as its own process.

It is built from the gateway's parts (keys file, durable spool, idempotent producer, codec)
and takes the gateway's options; its spool directory defaults to ``postal-spool`` so it never
shares the gateway's. The same receiver also runs inside the gateway: ``lienthong gateway``
mounts it (``mount_postal(app)``) and serves ``POST /v1/postal/vnpost`` on its own port.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from lienthong.connectors.gateway import cli as gateway_cli
from lienthong.connectors.gateway.publisher import KafkaSink, Publisher
from lienthong.connectors.gateway.spool import Spool
from lienthong.connectors.http.keys import KeyRingFile, KeysFileError
from lienthong.connectors.http.serving import serve_app
from lienthong.connectors.postal.webhook import WEBHOOK_PATH, build_postal_app
from lienthong.services.settings import Settings

DEFAULT_PORT = 8402


def add_arguments(parser: argparse.ArgumentParser) -> None:
    gateway_cli.add_arguments(parser)
    s = Settings.from_env()
    parser.set_defaults(port=DEFAULT_PORT, spool_dir=s.data_dir / "postal-spool")


async def serve(args: argparse.Namespace, stop: asyncio.Event | None = None) -> int:
    if args.keys_file is None or not args.bootstrap:
        print("lienthong postal: needs --keys-file and --bootstrap (or LIENTHONG_KEYS_FILE and "
              "KAFKA_BOOTSTRAP_SERVERS)", file=sys.stderr)
        return 2
    try:
        keys = KeyRingFile(args.keys_file)
    except (KeysFileError, OSError) as exc:
        print(f"lienthong postal: {exc}", file=sys.stderr)
        return 2
    topic = args.topic or gateway_cli.default_topic(Settings.from_env())
    spool = Spool(args.spool_dir, max_bytes=args.max_spool_bytes)
    publisher = Publisher(KafkaSink(args.bootstrap, topic, timeout=args.kafka_timeout,
                                    client_id="lienthong-postal"), spool)
    app = build_postal_app(keys=keys, publisher=publisher, encode=gateway_cli.default_encoder())
    await serve_app(
        app, args.host, args.port, stop=stop,
        banner=lambda port: f"lienthong postal listening on http://{args.host}:{port}"
                            f"{WEBHOOK_PATH} (kafka {args.bootstrap} topic {topic}; "
                            f"spool {args.spool_dir})")
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    return asyncio.run(serve(args))
