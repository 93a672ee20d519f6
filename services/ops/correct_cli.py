"""``lienthong correct``: an operator voids a wrong event or enters a correcting one.

    lienthong correct void DOSSIER EVENT_ID --reason "Nhập trùng" --operator lan.nguyen
    lienthong correct replace DOSSIER EVENT_ID --reason "Chuyển nhầm" --operator lan.nguyen \\
        --event fixed-handoff.json

The operator signs in with the dashboard's accounts (``--users``, the password asked for or read
with ``--password-stdin``) and must be allowed to correct (``may_correct``, or an admin). The
void or correction is a new event on ``dossier.events``; the original stays in the log. The
command waits for the worker's answer and prints the dossier's recomputed outcome, or the
reason it was refused. Every attempt is written to the dashboard's operator audit log.

Exit status: 0 applied, 1 refused (or not allowed), 2 usage error, 3 no answer in time.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from lienthong.services.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Void a wrong event of a dossier (wrong agency, wrong time, entered twice) or enter a "
        "correcting event in its place, with a reason. The dossier's state, deadlines, alerts "
        "and indicators are recomputed as if the wrong event had not been there; the original "
        "stays in the log, marked voided on the timeline. Deliveries already made are not "
        "unsent and alerts already fired stay fired.")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "examples:\n"
        "  lienthong correct void G09.20-20260609-0092637 5b1e7c3a-8f7e-4a51-9d1c-0c6f2b1d9a01 \\\n"
        "      --reason 'Nhập trùng hai lần' --operator lan.nguyen\n"
        "  lienthong correct replace G09.20-20260609-0092637 5b1e7c3a-... \\\n"
        "      --reason 'Chuyển nhầm cơ quan' --operator lan.nguyen --event handoff.json\n\n"
        "exit status: 0 applied, 1 refused or not allowed, 2 usage error, 3 no answer in time")
    s = Settings.from_env()
    parser.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--users", type=Path, default=s.dashboard_users,
                        help="operator accounts file (env LIENTHONG_DASHBOARD_USERS)")
    parser.add_argument("--audit-log", type=Path, default=s.data_dir / "dashboard-audit.jsonl",
                        help="the operator audit log (JSON lines) shared with the dashboard")
    parser.add_argument("--wait", type=float, default=20.0,
                        help="seconds to wait for the worker's answer (0: do not wait)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    void = sub.add_parser(
        "void", help="void an event: the dossier is recomputed without it",
        description="Void EVENT_ID of DOSSIER: the dossier is replayed without it. The receipt "
        "cannot be voided (correct it with 'replace'); neither can a void.")
    replace = sub.add_parser(
        "replace", help="enter a correcting event in the place of a wrong one",
        description="Enter the event in --event (canonical JSON, any type; its event_id may be "
        "left out) in the place of EVENT_ID: the dossier is replayed with it instead. A "
        "corrected hand-off is delivered to its (right) recipient.")
    for p in (void, replace):
        p.add_argument("dossier", metavar="DOSSIER", help="dossier code (mã hồ sơ)")
        p.add_argument("event_id", metavar="EVENT_ID", help="the wrong event's id")
        p.add_argument("--reason", required=True,
                       help="why (free text, Vietnamese allowed; kept in the log)")
        p.add_argument("--operator", required=True, help="your operator account")
        p.add_argument("--password-stdin", action="store_true",
                       help="read the password from standard input")
    replace.add_argument("--event", required=True, metavar="FILE",
                         help="the correcting event, a JSON object ('-': standard input)")


def _fail(message: str, status: int = 1) -> int:
    print(f"lienthong correct: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    from lienthong.schemas.codec import InvalidRecord
    from lienthong.services.domain.catalogue import CatalogueError, load_catalogue
    from lienthong.services.domain.corrections import correction_event, void_event
    from lienthong.services.ops.audit import AuditLog
    from lienthong.services.ops.auth import UsersFileError, load_users, verify_password
    from lienthong.services.ops.corrections import CorrectionsDesk

    if not args.reason.strip():
        return _fail("--reason must say why", 2)
    if args.users is None:
        return _fail("name the operator accounts file with --users (or env "
                     "LIENTHONG_DASHBOARD_USERS)", 2)
    if not args.bootstrap:
        return _fail("no Kafka: set --bootstrap or KAFKA_BOOTSTRAP_SERVERS", 2)
    try:
        users = load_users(args.users)
    except UsersFileError as exc:
        return _fail(str(exc), 2)
    audit = AuditLog(args.audit_log)
    user = users.get(args.operator)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.operator}: ")
    if user is None or not verify_password(password, user.password_hash):
        audit.record("login_failed", args.operator, via="lienthong correct")
        return _fail("unknown operator or wrong password")
    action = "event_voided" if args.action == "void" else "event_corrected"
    if not user.may_void:
        audit.record(f"{action}_forbidden", user.username, dossier=args.dossier,
                     event_id=args.event_id)
        return _fail(f"operator {user.username} ({user.role}) may not void or correct events "
                     "(an admin, or an operator with may_correct)")

    desk = CorrectionsDesk(args.bootstrap)
    try:
        past = desk.dossier_events(args.dossier)
        target = next((e for e in past if e["event_id"] == args.event_id.lower()), None)
        if target is None:
            return _fail(f"dossier {args.dossier} has no event {args.event_id} in the log")
        if user.agency is not None and target["agency"] != user.agency:
            return _fail(f"operator {user.username} may correct only events of "
                         f"{user.agency}, not of {target['agency']}")
        settings = Settings.from_env()
        tz: Any = None  # the province's zone when the catalogue is at hand (for display)
        if settings.catalog_path:
            try:
                tz = load_catalogue(settings.catalog_path).calendar.tz
            except (CatalogueError, OSError):
                tz = None
        now = datetime.now(tz).astimezone(tz)
        if args.action == "void":
            event = void_event(args.dossier, args.event_id, args.reason, user.username,
                               target["agency"], now)
        else:
            try:
                raw = sys.stdin.read() if args.event == "-" else Path(args.event).read_text(
                    encoding="utf-8")
                given: Any = json.loads(raw)
            except (OSError, ValueError) as exc:
                return _fail(f"--event {args.event}: {exc}", 2)
            if not isinstance(given, dict):
                return _fail("--event must hold one JSON object", 2)
            if given.get("dossier", args.dossier) != args.dossier:
                return _fail("--event is for another dossier", 2)
            event = correction_event({"dossier": args.dossier, **given}, args.event_id,
                                     args.reason, user.username)
        try:
            if args.wait > 0:
                outcome = desk.publish_and_watch(event, timeout=args.wait)
            else:
                desk.publish(event)
                outcome = None
        except InvalidRecord as exc:
            return _fail(f"the {event.get('type')} is not valid: {exc}", 2)
        audit.record(action, user.username, dossier=args.dossier, target=args.event_id,
                     event_id=event["event_id"], reason=args.reason, via="lienthong correct")
    finally:
        desk.close()
    if outcome is None:
        print(f"{event['event_id']} published; the worker applies it")
        return 0
    if outcome.status == "applied":
        snap = outcome.snapshot or {}
        print(f"{event['event_id']} applied: dossier {args.dossier} is now "
              f"{snap.get('state')} ({snap.get('outcome')}), holder {snap.get('holder')}")
        return 0
    if outcome.status == "refused":
        return _fail(f"refused ({outcome.reason}): {outcome.detail}")
    print(f"{event['event_id']} published; no answer from the worker within {args.wait:.0f} s "
          "(see the dossier's timeline or 'lienthong deadletter list')", file=sys.stderr)
    return 3
