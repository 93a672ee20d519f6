"""``lienthong notify``: alerts to the agency responsible (webhook or e-mail) and a daily digest
per agency.

    lienthong notify --bootstrap HOST:9092 --smtp-host 10.0.0.25 --smtp-from canhbao@h99.gov.vn \\
        --digest-at 07:30 --dashboard-url https://dieuhanh.h99.gov.vn
    lienthong notify --digest-now ...          # send today's digests once, then exit

Each agency's ``alert_webhook`` / ``alert_email`` come from the catalogue (an agency without
them is reported to its nearest ancestor that has them, else to the ``--fallback-*`` contact).
The sent log (``--sent-log``) keeps every alert and digest from going out twice across
restarts. The SMTP password, if the relay wants one, is read from ``LIENTHONG_SMTP_PASSWORD``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from datetime import time, timedelta
from pathlib import Path

from lienthong.connectors.notify.routing import AlertRouter, Contact
from lienthong.connectors.notify.service import (
    Dispatcher,
    MailSender,
    NotifyService,
    SentLog,
    SmtpSettings,
    WebhookSender,
)
from lienthong.schemas import topics
from lienthong.services.cli import load_catalogue_or_stop, require_bootstrap
from lienthong.services.clock import clock_from_spec
from lienthong.services.ops.feed import FeedTopics, StatusFeed
from lienthong.services.settings import Settings

log = logging.getLogger("lienthong.notify")


def _hhmm(text: str) -> time | None:
    if text.lower() in ("off", "none", ""):
        return None
    try:
        hh, mm = text.split(":")
        return time(int(hh), int(mm))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected HH:MM or 'off', got {text!r}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = Settings.from_env()
    parser.description = ("Send each alert to the agency responsible (its webhook and/or "
                          "e-mail from the catalogue) and a daily digest per agency.")
    parser.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--catalog", type=Path, default=s.catalog_path,
                        help=f"province catalogue (default {s.catalog_path})")
    parser.add_argument("--smtp-host", default=None,
                        help="SMTP relay host; without it nothing is mailed")
    parser.add_argument("--smtp-port", type=int, default=25, help="SMTP port (default 25)")
    parser.add_argument("--smtp-from", default="lienthong@localhost",
                        help="sender address of the mail")
    parser.add_argument("--smtp-starttls", action="store_true", help="use STARTTLS")
    parser.add_argument("--smtp-user", default=None,
                        help="SMTP login (password from env LIENTHONG_SMTP_PASSWORD)")
    parser.add_argument("--no-webhooks", action="store_true",
                        help="do not post to agencies' alert webhooks")
    parser.add_argument("--digest-at", type=_hhmm, default=time(7, 30),
                        help="local time of the daily digest, HH:MM (default 07:30; 'off')")
    parser.add_argument("--digest-days", choices=("working", "all"), default="working",
                        help="send digests on working days only (default) or every day")
    parser.add_argument("--digest-empty", action="store_true",
                        help="also send a digest to agencies with nothing pending")
    parser.add_argument("--digest-now", action="store_true",
                        help="read the status topic, send today's digests, and exit")
    parser.add_argument("--kinds", default=None,
                        help="comma-separated alert kinds to send (default: all)")
    parser.add_argument("--max-age-hours", type=float, default=6.0,
                        help="do not send alerts fired longer ago than this (default 6)")
    parser.add_argument("--fallback-email", default=None,
                        help="mailbox for agencies with no contact up their chain")
    parser.add_argument("--fallback-webhook", default=None,
                        help="webhook for agencies with no contact up their chain")
    parser.add_argument("--dashboard-url", default=None,
                        help="dashboard address, for links in the messages")
    parser.add_argument("--lang", choices=("vi", "en"), default="vi",
                        help="language of the messages (default vi)")
    parser.add_argument("--sent-log", type=Path, default=s.data_dir / "notify-sent.log",
                        help="keys of notices already sent (default DATA_DIR/notify-sent.log)")


async def _main(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    catalogue = load_catalogue_or_stop(args.catalog)
    require_bootstrap(args.bootstrap)
    fallback = None
    if args.fallback_email or args.fallback_webhook:
        fallback = Contact("*", "fallback", args.fallback_webhook, args.fallback_email)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else None
    router = AlertRouter(catalogue, kinds=kinds, max_age=timedelta(hours=args.max_age_hours),
                         fallback=fallback, dashboard_url=args.dashboard_url, lang=args.lang)
    webhook = None if args.no_webhooks else WebhookSender()
    mail = None
    if args.smtp_host:
        mail = MailSender(SmtpSettings(args.smtp_host, args.smtp_port, args.smtp_from,
                                       args.smtp_starttls, args.smtp_user,
                                       settings.smtp_password))
    if webhook is None and mail is None:
        print("lienthong notify: nothing to send with: give --smtp-host or allow webhooks",
              file=sys.stderr)
        return 2
    clock = clock_from_spec(settings.clock)
    service = NotifyService(router, Dispatcher(webhook, mail), SentLog(args.sent_log),
                            clock.now, digest_at=args.digest_at, digest_days=args.digest_days,
                            include_empty=args.digest_empty)
    names = topics.names(settings)
    feed_topics = FeedTopics(names.status, names.alerts)
    try:
        if args.digest_now:
            return await _digest_once(service, args.bootstrap, names.status)
        task = asyncio.create_task(service.run(args.bootstrap, feed_topics))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task.add_done_callback(lambda t: stop.set())
        print(f"notify: alerts from {names.alerts}, digests at "
              f"{args.digest_at or 'off'}", file=sys.stderr)
        await stop.wait()
        code = 0
        if task.done() and not task.cancelled() and task.exception() is not None:
            print(f"lienthong notify: stopped: {task.exception()}", file=sys.stderr)
            code = 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return code
    finally:
        if webhook is not None:
            await webhook.close()


async def _digest_once(service: NotifyService, bootstrap: str, status: str) -> int:
    feed = StatusFeed(bootstrap, service.board, FeedTopics(status), notify=lambda c: None)
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.ready.wait(), 120)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    sent = await service.send_digests(service.clock())
    print(f"notify: {len(sent)} digests sent", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return asyncio.run(_main(args))
