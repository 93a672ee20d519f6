"""``lienthong citizen-notify``: tell applicants what happens to their dossiers (SMS, Zalo OA,
e-mail), and manage opt-outs.

    lienthong citizen-notify --smtp-host 10.0.0.25 --smtp-from thongbao@h99.gov.vn
        # with LIENTHONG_SMS_URL/TOKEN and LIENTHONG_ZALO_URL/TOKEN in the environment
    lienthong citizen-notify opt-out --sms 0912345678          # stop SMS to this number
    lienthong citizen-notify show 000.00.15.H99-20261125-0000007   # a dossier's messages

Its webhooks (delivery reports, SMS replies, Zalo events) and ``/metrics`` listen on
``--port`` (LIENTHONG_CITIZEN_PORT, 8600). Progress and the messages are kept in ``--store``
(DATA_DIR/citizen-notify.sqlite): run one notifier per hub.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import timedelta
from pathlib import Path

from lienthong.connectors.citizen.senders import EmailSender, Sender, SmsSender, ZaloSender
from lienthong.connectors.citizen.service import CitizenNotifier, Topics
from lienthong.connectors.citizen.store import NoticeStore
from lienthong.connectors.http.serving import serve_app
from lienthong.connectors.notify.service import SmtpSettings
from lienthong.schemas import topics
from lienthong.services.cli import load_catalogue_or_stop, require_bootstrap
from lienthong.services.clock import clock_from_spec
from lienthong.services.domain.citizen import Policy, normalise_phone, parse_quiet_hours
from lienthong.services.settings import Settings

log = logging.getLogger("lienthong.citizen")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = Settings.from_env()
    parser.description = (
        "Tell applicants by SMS, Zalo OA or e-mail when their dossier is received, handed on, "
        "needs supplements, is late (apology and new date), has its result, or was posted. "
        "Contacts come from the received event's applicant (phone, email, zalo_user_id). "
        "SMS: LIENTHONG_SMS_URL + LIENTHONG_SMS_TOKEN; Zalo: LIENTHONG_ZALO_URL + "
        "LIENTHONG_ZALO_TOKEN; e-mail: --smtp-host.")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("actions:\n  run (default)   read dossier.events and send\n"
                     "  opt-out         stop messages to an address (--sms/--zalo/--email)\n"
                     "  opt-in          undo an opt-out\n"
                     "  show DOSSIER    a dossier's messages and their status (masked)\n")
    parser.add_argument("action", nargs="?", default="run",
                        choices=("run", "opt-out", "opt-in", "show"), help="what to do")
    parser.add_argument("dossier", nargs="?", help="dossier code (for show)")
    parser.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--catalog", type=Path, default=s.catalog_path,
                        help=f"province catalogue (default {s.catalog_path})")
    parser.add_argument("--store", type=Path, default=s.data_dir / "citizen-notify.sqlite",
                        help="progress and messages (default DATA_DIR/citizen-notify.sqlite)")
    parser.add_argument("--host", default=s.host, help=f"address to bind (default {s.host})")
    parser.add_argument("--port", type=int, default=s.citizen_port,
                        help="webhooks and /metrics port (env LIENTHONG_CITIZEN_PORT, "
                             f"default {s.citizen_port}; 0: any free port)")
    parser.add_argument("--public-url", default=s.citizen_public_url,
                        help="base URL providers call back (env LIENTHONG_CITIZEN_PUBLIC_URL)")
    parser.add_argument("--quiet-hours", default=s.citizen_quiet_hours,
                        help="local hours with no SMS, HH:MM-HH:MM or 'off' (env "
                             f"LIENTHONG_CITIZEN_QUIET_HOURS, default {s.citizen_quiet_hours})")
    parser.add_argument("--max-age-hours", type=float, default=48.0,
                        help="do not tell of events older than this when read (default 48)")
    parser.add_argument("--keep-days", type=float, default=30.0,
                        help="erase addresses and texts of messages finished this long ago "
                             "(Decree 13/2023; default 30)")
    parser.add_argument("--smtp-host", default=None, help="SMTP relay; without it no e-mail")
    parser.add_argument("--smtp-port", type=int, default=25, help="SMTP port (default 25)")
    parser.add_argument("--smtp-from", default="thongbao@localhost",
                        help="sender address of the e-mails")
    parser.add_argument("--smtp-starttls", action="store_true", help="use STARTTLS")
    parser.add_argument("--smtp-user", default=None,
                        help="SMTP login (password from env LIENTHONG_SMTP_PASSWORD)")
    parser.add_argument("--sms", dest="sms_address", default=None,
                        help="phone number (opt-out/opt-in)")
    parser.add_argument("--zalo", dest="zalo_address", default=None,
                        help="Zalo user id (opt-out/opt-in)")
    parser.add_argument("--email", dest="email_address", default=None,
                        help="e-mail address (opt-out/opt-in)")


def _senders(args: argparse.Namespace, s: Settings, public: str) -> dict[str, Sender]:
    senders: dict[str, Sender] = {}
    token = f"?token={s.citizen_callback_token}" if s.citizen_callback_token else ""
    if s.sms_url:
        senders["sms"] = SmsSender(s.sms_url, s.sms_token or "", s.sms_brandname,
                                   callback_url=f"{public}/v1/citizen/sms/reports{token}")
    if s.zalo_url:
        senders["zalo"] = ZaloSender(s.zalo_url, s.zalo_token or "")
    if args.smtp_host:
        senders["email"] = EmailSender(SmtpSettings(args.smtp_host, args.smtp_port,
                                                    args.smtp_from, args.smtp_starttls,
                                                    args.smtp_user, s.smtp_password))
    return senders


def _addresses(args: argparse.Namespace) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if args.sms_address:
        phone = normalise_phone(args.sms_address)
        if phone is None:
            raise ValueError(f"--sms {args.sms_address!r} is not a Vietnamese mobile number")
        out.append(("sms", phone))
    if args.zalo_address:
        out.append(("zalo", args.zalo_address.strip()))
    if args.email_address:
        out.append(("email", args.email_address.strip().lower()))
    if not out:
        raise ValueError("give at least one of --sms, --zalo, --email")
    return out


def _manage(args: argparse.Namespace) -> int:
    store = NoticeStore(args.store)
    try:
        if args.action == "show":
            if not args.dossier:
                print("lienthong citizen-notify show: which dossier?", file=sys.stderr)
                return 2
            print(json.dumps(store.messages_of(args.dossier), ensure_ascii=False, indent=1))
            return 0
        clock = clock_from_spec(Settings.from_env().clock)
        for channel, address in _addresses(args):
            if args.action == "opt-out":
                new = store.opt_out(channel, address, "operator", clock.now())
                print(f"{channel}: {'opted out' if new else 'already opted out'}")
            else:
                done = store.opt_in(channel, address)
                print(f"{channel}: {'opted in' if done else 'was not opted out'}")
        return 0
    finally:
        store.close()


async def _run(args: argparse.Namespace) -> int:
    s = Settings.from_env()
    catalogue = load_catalogue_or_stop(args.catalog)
    require_bootstrap(args.bootstrap)
    try:
        quiet = parse_quiet_hours(args.quiet_hours)
    except ValueError as exc:
        print(f"lienthong citizen-notify: --quiet-hours: {exc}", file=sys.stderr)
        return 2
    public = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    senders = _senders(args, s, public)
    if not senders:
        print("lienthong citizen-notify: no channel: set LIENTHONG_SMS_URL, LIENTHONG_ZALO_URL "
              "or give --smtp-host", file=sys.stderr)
        return 2
    names = topics.names(s)
    notifier = CitizenNotifier(
        args.bootstrap, catalogue, NoticeStore(args.store), senders,
        Topics(names.events, names.citizen),
        policy=Policy(quiet_hours=quiet, max_age=timedelta(hours=args.max_age_hours)),
        clock=clock_from_spec(s.clock), callback_token=s.citizen_callback_token,
        keep=timedelta(days=args.keep_days))
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    task.add_done_callback(lambda _: stop.set())
    print(f"citizen-notify: {', '.join(sorted(senders))} from {names.events}; "
          f"timeline on {names.citizen}", file=sys.stderr, flush=True)
    await serve_app(notifier.build_app(), args.host, args.port, stop=stop,
                    banner=lambda port: f"citizen-notify webhooks and /metrics on "
                                        f"http://{args.host}:{port}")
    stop.set()
    try:
        await task
    except Exception as exc:
        print(f"lienthong citizen-notify: stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        notifier.store.close()
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.action != "run":
        try:
            return _manage(args)
        except ValueError as exc:
            print(f"lienthong citizen-notify {args.action}: {exc}", file=sys.stderr)
            return 2
    return asyncio.run(_run(args))
