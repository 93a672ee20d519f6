"""``lienthong postal``: VNPost's tracking webhook receiver as its own process.

It is built from the gateway's parts (keys file, durable spool, idempotent producer, codec)
and takes the gateway's options; its spool directory defaults to ``postal-spool`` so it never
shares the gateway's. The same receiver can instead run inside the gateway:
``mount_postal(app)`` on the gateway's app serves ``POST /v1/postal/vnpost`` on its port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from aiohttp import web

from lienthong.connectors.gateway import cli as gateway_cli
from lienthong.connectors.gateway.publisher import KafkaSink, Publisher
from lienthong.connectors.gateway.spool import Spool
from lienthong.connectors.http.keys import KeyRingFile, KeysFileError
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
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else args.port
    print(f"lienthong postal listening on http://{args.host}:{port}{WEBHOOK_PATH} "
          f"(kafka {args.bootstrap} topic {topic}; spool {args.spool_dir})", flush=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    return asyncio.run(serve(args))
