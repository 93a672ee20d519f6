"""``lienthong gateway``: run the inbound gateway (cổng tiếp nhận) for agency systems.

Builds the whole gateway from settings and options: the keys file (re-read when it changes),
the durable spool, the idempotent Kafka producer, the codec, then serves until SIGINT/SIGTERM.
VNPost's tracking webhook (``POST /v1/postal/vnpost``) is served on the same port, sharing the
keys, replay cache, producer and spool.
A spool left by a previous run is forwarded to Kafka before any new event.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from lienthong.connectors.gateway.app import build_app
from lienthong.connectors.gateway.intake import Encoder, Limits
from lienthong.connectors.gateway.metrics import GatewayMetrics
from lienthong.connectors.gateway.publisher import KafkaSink, Publisher
from lienthong.connectors.gateway.spool import Spool
from lienthong.connectors.http.keys import KeyRingFile, KeysFileError
from lienthong.connectors.http.serving import serve_app
from lienthong.connectors.postal.webhook import WEBHOOK_PATH, mount_postal
from lienthong.services.settings import Settings

log = logging.getLogger("lienthong.gateway")


def default_encoder() -> Encoder:
    """The one codec: checks the contract (errors name the field) and encodes for Kafka."""
    from lienthong.schemas.codec import encode_event

    return encode_event


def default_topic(settings: Settings) -> str:
    """``dossier.events`` (with ``LIENTHONG_TOPIC_PREFIX``), from the one topic module."""
    from lienthong.schemas import topics

    return topics.names(settings).events


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = Settings.from_env()
    parser.add_argument("--host", default=s.host,
                        help=f"address to bind (LIENTHONG_HOST; {s.host})")
    parser.add_argument("--port", type=int, default=s.gateway_port,
                        help=f"port; 0 picks a free one (LIENTHONG_GATEWAY_PORT; {s.gateway_port})")
    parser.add_argument("--keys-file", type=Path, default=s.keys_file,
                        help="per-agency keys, JSON or YAML (LIENTHONG_KEYS_FILE)")
    parser.add_argument("--spool-dir", type=Path, default=s.data_dir / "gateway-spool",
                        help="durable spool for when Kafka is unreachable "
                             "(default: LIENTHONG_DATA_DIR/gateway-spool)")
    parser.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                        help="Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--topic", default=None,
                        help="topic for events (default: dossier.events after "
                             "LIENTHONG_TOPIC_PREFIX); the gateway never creates topics")
    parser.add_argument("--kafka-timeout", type=float, default=5.0,
                        help="seconds to wait for Kafka before spooling an event (5)")
    parser.add_argument("--max-body", type=int, default=Limits.max_body_bytes,
                        help=f"largest request body in bytes ({Limits.max_body_bytes})")
    parser.add_argument("--max-batch", type=int, default=Limits.max_batch,
                        help=f"most events per request ({Limits.max_batch})")
    parser.add_argument("--max-spool-bytes", type=int, default=1 << 30,
                        help="refuse (503) rather than spool beyond this many bytes (1 GiB)")


async def serve(args: argparse.Namespace, *, encode: Encoder | None = None,
                stop: asyncio.Event | None = None) -> int:
    if args.keys_file is None:
        print("lienthong gateway: no keys file; set LIENTHONG_KEYS_FILE or --keys-file",
              file=sys.stderr)
        return 2
    if not args.bootstrap:
        print("lienthong gateway: no Kafka; set KAFKA_BOOTSTRAP_SERVERS or --bootstrap "
              "(`lienthong broker` runs an embedded one)", file=sys.stderr)
        return 2
    try:
        keys = KeyRingFile(args.keys_file)
    except (KeysFileError, OSError) as exc:
        print(f"lienthong gateway: {exc}", file=sys.stderr)
        return 2
    topic = args.topic or default_topic(Settings.from_env())
    metrics = GatewayMetrics()
    spool = Spool(args.spool_dir, max_bytes=args.max_spool_bytes)
    sink = KafkaSink(args.bootstrap, topic, timeout=args.kafka_timeout)
    publisher = Publisher(sink, spool, on_spool_change=metrics.spooled.set)
    limits = Limits(max_body_bytes=args.max_body, max_batch=args.max_batch)
    app = build_app(keys=keys, encode=encode or default_encoder(), publisher=publisher,
                    limits=limits, metrics=metrics)
    mount_postal(app)  # VNPost's tracking webhooks: same port, keys, producer and spool

    def banner(port: int) -> str:
        return (f"lienthong gateway listening on http://{args.host}:{port} "
                f"(OpenAPI /openapi.json, metrics /metrics, VNPost {WEBHOOK_PATH}; "
                f"kafka {args.bootstrap} topic {topic}; "
                f"spool {args.spool_dir} holding {spool.pending()} events; "
                f"{len(keys.ring)} agencies with keys)")

    await serve_app(app, args.host, args.port, banner=banner, stop=stop)
    print(f"lienthong gateway stopped; {spool.pending()} events left in the spool", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # kafka-python logs every refused reconnect; the spool's own lines say what matters.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    return asyncio.run(serve(args))
