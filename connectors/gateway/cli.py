"""``lienthong gateway``: run the inbound gateway (cổng tiếp nhận) for agency systems.

Builds the whole gateway from settings and options: the keys file (re-read when it changes),
the durable spool, the idempotent Kafka producer, the codec, then serves until SIGINT/SIGTERM.
VNPost's tracking webhook (``POST /v1/postal/vnpost``) is served on the same port, sharing the
keys, replay protection, producer and spool.

Several gateways of one hub share replay protection through the ``gateway.nonces`` topic
(``--nonces kafka``, the default): a signed request accepted by one is refused by every other,
also after a restart. Each gateway limits each agency to ``--rate-limit`` requests per second
(burst ``--rate-burst``); the limit is per gateway.
A spool left by a previous run is forwarded to Kafka before any new event.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

from lienthong.connectors.gateway.app import build_app
from lienthong.connectors.gateway.intake import Encoder, Limits
from lienthong.connectors.gateway.metrics import GatewayMetrics
from lienthong.connectors.gateway.publisher import KafkaSink, Publisher
from lienthong.connectors.gateway.shared_nonces import KafkaNonceStore
from lienthong.connectors.gateway.spool import Spool
from lienthong.connectors.http.keys import KeyRingFile, KeysFileError
from lienthong.connectors.http.nonces import NonceCache, NonceStore
from lienthong.connectors.http.serving import serve_app
from lienthong.connectors.postal.webhook import WEBHOOK_PATH, mount_postal
from lienthong.services.ratelimit import TokenBuckets
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


def default_nonce_topic(settings: Settings) -> str:
    """``gateway.nonces`` (with ``LIENTHONG_TOPIC_PREFIX``), from the one topic module."""
    from lienthong.schemas import topics

    return topics.names(settings).nonces


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
    parser.add_argument("--nonces", choices=("kafka", "memory"), default="kafka",
                        help="replay protection shared by every gateway through the "
                             "gateway.nonces topic (kafka, default), or this process only "
                             "(memory: one gateway alone)")
    parser.add_argument("--nonce-topic", default=None,
                        help="topic of nonce claims (default: gateway.nonces after "
                             "LIENTHONG_TOPIC_PREFIX)")
    parser.add_argument("--nonce-outage", choices=("local", "refuse"), default="local",
                        help="when Kafka cannot confirm a nonce claim within 2 s: decide from "
                             "this gateway's view and keep accepting into the spool (local, "
                             "default) or answer 503 (refuse)")
    parser.add_argument("--gateway-id", default=None,
                        help="this gateway's name in nonce claims (default: host:port:pid)")
    parser.add_argument("--rate-limit", type=float, default=50.0,
                        help="signed requests per second per agency on this gateway; 0 turns "
                             "the limit off (50)")
    parser.add_argument("--rate-burst", type=float, default=100.0,
                        help="requests an agency may send at once above the rate (100)")


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
    nonces: NonceStore
    if args.nonces == "kafka":
        nonce_topic = args.nonce_topic or default_nonce_topic(Settings.from_env())
        nonces = KafkaNonceStore(
            args.bootstrap, nonce_topic, outage=args.nonce_outage,
            gateway_id=args.gateway_id or f"{socket.gethostname()}:{args.port}:{os.getpid()}",
            on_result=lambda result: metrics.nonce_claims.labels(result).inc())
        replay = f"replay protection shared on {nonce_topic}"
    else:
        nonces, replay = NonceCache(), "replay protection in this process only"
    try:
        rate_limit = TokenBuckets(args.rate_limit, args.rate_burst)
    except ValueError as exc:
        print(f"lienthong gateway: --rate-burst: {exc}", file=sys.stderr)
        return 2
    app = build_app(keys=keys, encode=encode or default_encoder(), publisher=publisher,
                    limits=limits, metrics=metrics, nonces=nonces, rate_limit=rate_limit)
    mount_postal(app)  # VNPost's tracking webhooks: same port, keys, producer and spool

    def banner(port: int) -> str:
        return (f"lienthong gateway listening on http://{args.host}:{port} "
                f"(OpenAPI /openapi.json, metrics /metrics, VNPost {WEBHOOK_PATH}; "
                f"kafka {args.bootstrap} topic {topic}; "
                f"spool {args.spool_dir} holding {spool.pending()} events; "
                f"{len(keys.ring)} agencies with keys; {replay}; "
                f"{args.rate_limit:g} requests/s per agency)")

    await serve_app(app, args.host, args.port, banner=banner, stop=stop)
    print(f"lienthong gateway stopped; {spool.pending()} events left in the spool", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # kafka-python logs every refused reconnect; the spool's own lines say what matters.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    return asyncio.run(serve(args))
