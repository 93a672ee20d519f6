"""``lienthong delivery``: run the delivery service until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from lienthong.connectors.delivery.breaker import BreakerConfig
from lienthong.connectors.delivery.metrics import DeliveryMetrics
from lienthong.connectors.delivery.policy import DeliveryPolicy
from lienthong.connectors.delivery.records import hub_topic
from lienthong.connectors.delivery.service import GROUP_ID, DeliveryService, MissingTopic
from lienthong.connectors.http import KeysFileError, RequestSigner, load_keyring
from lienthong.services.domain.receipts import ReceiptKeys, demo_keys
from lienthong.services.settings import Settings

DEFAULT_METRICS_PORT = 9311
HUB_AGENCY = "LIENTHONG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Consume the deliveries topic and POST each delivery as JSON to its destination's "
        "endpoint from the catalogue, with an Idempotency-Key and the hub's signature; in order "
        "per dossier, retried with exponential backoff and jitter, one circuit breaker per "
        "destination, a delivery_failing alert after repeated failures, and parking in "
        "deadletter after the last try. Stop with Ctrl-C (what finished is committed).")
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    s = Settings.from_env()
    d = DeliveryPolicy()
    g = parser.add_argument_group("connections")
    g.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                   help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    g.add_argument("--catalog", default=str(s.catalog_path),
                   help="province catalogue giving each destination's endpoint "
                   "(env LIENTHONG_CATALOG)")
    g.add_argument("--keys-file", default=str(s.keys_file) if s.keys_file else None,
                   help="keys file holding the hub's signing key under --hub-agency "
                   "(env LIENTHONG_KEYS_FILE)")
    g.add_argument("--hub-agency", default=HUB_AGENCY,
                   help="the code the hub signs its requests as (X-Agency)")
    g.add_argument("--allow-unsigned", action="store_true",
                   help="send unsigned requests when no hub key is configured (demos only)")
    g.add_argument("--receipt-keys", default=None, metavar="FILE",
                   help="agencies' Ed25519 public keys (JSON or YAML: {agency: [{key_id, "
                   "public_key}]}); hand-offs, results and status syncs must then be answered "
                   "with a receipt signed by the destination")
    g.add_argument("--demo-receipt-keys", action="store_true",
                   help="accept receipts signed with the catalogue agencies' demo keys (the "
                   "doubles and simulator sign with them; demos only, they prove nothing)")
    g.add_argument("--receipt-hours", type=float, default=4.0,
                   help="hours a result or status sync may go without a signed receipt "
                   "before a receipt_missing alert (a hand-off waits until the end of the "
                   "destination's allotted working time for its step); the awaited receipts "
                   "are kept in the receipts.expected topic, so a restart loses none")
    g.add_argument("--group", default=GROUP_ID, help="consumer group")
    g.add_argument("--topic", default=None, help="topic to consume (default: the hub's "
                   "deliveries topic)")
    g.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT,
                   help="port of the Prometheus /metrics endpoint (0: none)")
    g.add_argument("--metrics-host", default=s.host, help="address /metrics binds to")
    p = parser.add_argument_group("retry and circuit breaker")
    p.add_argument("--attempts", type=int, default=d.retry.attempts,
                   help="tries per delivery before it is parked")
    p.add_argument("--backoff-base", type=float, default=d.retry.base_delay,
                   help="first retry pause bound, seconds (doubles each try, full jitter)")
    p.add_argument("--backoff-max", type=float, default=d.retry.max_delay,
                   help="largest retry pause, seconds")
    p.add_argument("--timeout", type=float, default=d.request_timeout,
                   help="HTTP request timeout, seconds")
    p.add_argument("--breaker-failures", type=int, default=d.breaker.failure_threshold,
                   help="consecutive failures that open a destination's circuit")
    p.add_argument("--breaker-open", type=float, default=d.breaker.open_seconds,
                   help="seconds an open circuit waits before a probe (doubles per failed "
                   "probe)")
    p.add_argument("--breaker-open-max", type=float, default=d.breaker.max_open_seconds,
                   help="longest open pause, seconds")
    p.add_argument("--alert-after", type=int, default=d.alert_after_failures,
                   help="consecutive failed attempts before a delivery_failing alert")
    p.add_argument("--max-wait", type=float, default=d.max_wait_seconds,
                   help="seconds a delivery may wait on an open circuit before it is parked")
    p.add_argument("--max-in-flight", type=int, default=d.max_in_flight_per_partition,
                   help="records held per partition before it is paused")
    p.add_argument("--concurrency", type=int, default=d.max_concurrency_per_destination,
                   help="simultaneous requests per destination")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")


def policy_from_args(args: argparse.Namespace) -> DeliveryPolicy:
    from lienthong.connectors.http import RetryPolicy

    return DeliveryPolicy(
        retry=RetryPolicy(attempts=args.attempts, base_delay=args.backoff_base,
                          max_delay=args.backoff_max),
        breaker=BreakerConfig(failure_threshold=args.breaker_failures,
                              open_seconds=args.breaker_open,
                              max_open_seconds=max(args.breaker_open, args.breaker_open_max)),
        alert_after_failures=args.alert_after, request_timeout=args.timeout,
        max_in_flight_per_partition=args.max_in_flight,
        max_concurrency_per_destination=args.concurrency, max_wait_seconds=args.max_wait)


def hub_signer(args: argparse.Namespace) -> RequestSigner | None:
    """The hub's signer from the keys file; None (unsigned) only with --allow-unsigned."""
    if args.keys_file:
        ring = load_keyring(args.keys_file)
        live = ring.live_keys(args.hub_agency)
        if live:
            return RequestSigner(args.hub_agency, live[0].secret, live[0].key_id)
        problem = f"{args.keys_file} holds no live key for {args.hub_agency}"
    else:
        problem = "no keys file (--keys-file or LIENTHONG_KEYS_FILE)"
    if args.allow_unsigned:
        logging.getLogger(__name__).warning("%s: deliveries are sent UNSIGNED", problem)
        return None
    raise KeysFileError(f"{problem}; destinations could not authenticate the hub "
                        "(use --allow-unsigned for a demo)")


def receipt_keys(args: argparse.Namespace, agencies: list[str]) -> ReceiptKeys | None:
    """The receivers' public keys: a file, the demo keys, or None (receipts not checked)."""
    if args.receipt_keys:
        return ReceiptKeys.from_file(args.receipt_keys)
    if args.demo_receipt_keys:
        return demo_keys(agencies)
    return None


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.bootstrap:
        print("lienthong delivery: no Kafka address; pass --bootstrap or set "
              "KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    from lienthong.services.domain.catalogue import CatalogueError, load_catalogue

    try:
        signer = hub_signer(args)
        policy = policy_from_args(args)
    except (KeysFileError, ValueError) as exc:
        print(f"lienthong delivery: {exc}", file=sys.stderr)
        return 2
    try:
        catalogue = load_catalogue(args.catalog)
    except CatalogueError as exc:
        print(f"lienthong delivery: {exc}", file=sys.stderr)
        return 2

    try:
        keys = receipt_keys(args, [a.code for a in catalogue.agencies.values()])
    except ValueError as exc:
        print(f"lienthong delivery: {exc}", file=sys.stderr)
        return 2

    def endpoint(code: str) -> str | None:
        agency = catalogue.agency(code)
        return agency.endpoint if agency is not None else None

    metrics = DeliveryMetrics()
    if args.metrics_port:
        metrics.serve(args.metrics_port, args.metrics_host)
        print(f"metrics on http://{args.metrics_host}:{args.metrics_port}/metrics")
    from lienthong.services.clock import clock_from_spec
    try:  # the hub's clock: a delivery_failing alert carries the instant the worker also uses
        clock = clock_from_spec(Settings.from_env().clock)
    except ValueError as exc:
        print(f"lienthong delivery: LIENTHONG_CLOCK: {exc}", file=sys.stderr)
        return 2
    service = DeliveryService(args.bootstrap, endpoint, signer=signer, policy=policy,
                              metrics=metrics, group_id=args.group, clock=clock,
                              deliveries_topic=args.topic or hub_topic("DELIVERIES"),
                              receipt_keys=keys, receipt_wait_seconds=args.receipt_hours * 3600)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await service.run(stop)

    try:
        asyncio.run(main())
    except MissingTopic as exc:
        print(f"lienthong delivery: {exc}", file=sys.stderr)
        return 2
    return 0
