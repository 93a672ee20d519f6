"""``lienthong dashboard``: the operations dashboard, and its operator accounts.

    lienthong dashboard --users users.yaml [--port 8500] [--bootstrap HOST:PORT]
    lienthong dashboard --demo                       # sample data, a one-off admin password
    lienthong dashboard users add NAME --role operator --agency 000.00.20.H99 --users users.yaml
    lienthong dashboard users list --users users.yaml
    lienthong dashboard users set NAME --role viewer --no-personal-data --users users.yaml

Without ``--demo`` the dashboard refuses to start without a users file: there is no default
password. The session secret comes from ``--secret-file`` (sessions survive restarts) or is
drawn at random.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import secrets
import signal
import sys
from pathlib import Path

from aiohttp import web

from lienthong.services.cli import load_catalogue_or_stop, require_bootstrap
from lienthong.services.settings import Settings

log = logging.getLogger("lienthong.dashboard")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = Settings.from_env()
    parser.description = ("Serve the operations dashboard (overdue board, scoreboard, tracking "
                          "slips, alerts, dead letters) from the hub's topics.")
    parser.add_argument("--host", default=s.host, help=f"address to bind (default {s.host})")
    parser.add_argument("--port", type=int, default=s.dashboard_port,
                        help=f"HTTP port (default {s.dashboard_port}, env "
                        "LIENTHONG_DASHBOARD_PORT)")
    parser.add_argument("--users", type=Path, default=s.dashboard_users,
                        help="operator accounts file (env LIENTHONG_DASHBOARD_USERS)")
    parser.add_argument("--catalog", type=Path, default=s.catalog_path,
                        help=f"province catalogue (default {s.catalog_path})")
    parser.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--audit-log", type=Path, default=s.data_dir / "dashboard-audit.jsonl",
                        help="append-only audit log (JSON lines)")
    parser.add_argument("--secret-file", type=Path, default=None,
                        help="file holding the session-signing secret (32+ random bytes)")
    parser.add_argument("--cookie-secure", action="store_true",
                        help="mark the session cookie Secure (behind an HTTPS proxy)")
    parser.add_argument("--demo", action="store_true",
                        help="allow starting without a users file (a one-off admin password "
                        "is printed); without --bootstrap, show sample dossiers")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    users = sub.add_parser("users", help="manage operator accounts")
    usub = users.add_subparsers(dest="users_action", required=True, metavar="ACTION")
    add = usub.add_parser("add", help="add or replace an operator (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", choices=("admin", "operator", "viewer"), default="viewer")
    add.add_argument("--agency", default=None,
                     help="agency code: the operator sees only its subtree")
    add.add_argument("--personal-data", action="store_true",
                     help="may see applicants' names and ID numbers")
    add.add_argument("--may-correct", action="store_true",
                     help="an operator who may void or correct events (admins always may)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input")
    ls = usub.add_parser("list", help="print operators (never hashes)")
    rm = usub.add_parser("remove", help="remove an operator")
    rm.add_argument("name")
    st = usub.add_parser("set", help="change an operator's role, agency or personal-data "
                         "right (the password stays)")
    st.add_argument("name")
    st.add_argument("--role", choices=("admin", "operator", "viewer"), default=None)
    st.add_argument("--agency", default=None,
                    help="agency code; 'province' for the whole province")
    st.add_argument("--personal-data", dest="personal_data", action="store_true",
                    default=None, help="may see applicants' names and ID numbers")
    st.add_argument("--no-personal-data", dest="personal_data", action="store_false")
    st.add_argument("--may-correct", dest="may_correct", action="store_true", default=None,
                    help="may void or correct events")
    st.add_argument("--no-correct", dest="may_correct", action="store_false")
    for p in (add, ls, rm, st):
        # accepted after the action too: "dashboard users add NAME --users FILE"
        p.add_argument("--users", type=Path, default=argparse.SUPPRESS,
                       help="operator accounts file")


def _users_command(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from lienthong.services.ops.audit import AuditLog
    from lienthong.services.ops.auth import (
        USERNAME,
        Operator,
        UsersFileError,
        hash_password,
        load_users,
        save_users,
    )
    if args.users is None:
        print("lienthong dashboard users: name the users file with --users (or env "
              "LIENTHONG_DASHBOARD_USERS)", file=sys.stderr)
        return 2
    try:
        users = load_users(args.users) if args.users.exists() else {}
    except UsersFileError as exc:
        print(f"lienthong dashboard users: {exc}", file=sys.stderr)
        return 1
    if args.users_action == "list":
        for u in users.values():
            print(f"{u.username}\t{u.role}\t{u.agency or '*'}\t"
                  f"{'personal-data' if u.may_see_personal_data else '-'}\t"
                  f"{'may-correct' if u.may_void else '-'}")
        return 0
    # Account changes are audited beside sign-ins: who (the system user) changed whom.
    audit = AuditLog(args.audit_log)
    actor = f"cli:{getpass.getuser()}"
    if args.users_action == "remove":
        if users.pop(args.name, None) is None:
            print(f"no operator {args.name!r}", file=sys.stderr)
            return 1
        save_users(args.users, users.values())
        audit.record("operator_removed", actor, operator=args.name)
        return 0
    if args.users_action == "set":
        old = users.get(args.name)
        if old is None:
            print(f"no operator {args.name!r}", file=sys.stderr)
            return 1
        agency = old.agency if args.agency is None else (
            None if args.agency == "province" else args.agency)
        new = replace(old, role=args.role or old.role, agency=agency,
                      may_see_personal_data=old.may_see_personal_data
                      if args.personal_data is None else args.personal_data,
                      may_correct=old.may_correct if args.may_correct is None
                      else args.may_correct)
        if new.may_correct and new.role == "viewer":
            print("a viewer may not correct events; make the account an operator",
                  file=sys.stderr)
            return 1
        users[args.name] = new
        save_users(args.users, users.values())
        audit.record("operator_changed", actor, operator=args.name, role=new.role,
                     agency=new.agency, may_see_personal_data=new.may_see_personal_data,
                     may_correct=new.may_correct)
        return 0
    if not USERNAME.match(args.name):
        print("usernames are letters, digits and . _ @ -", file=sys.stderr)
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    if len(password) < 10:
        print("a password has at least 10 characters", file=sys.stderr)
        return 1
    if args.may_correct and args.role == "viewer":
        print("a viewer may not correct events; use --role operator", file=sys.stderr)
        return 1
    users[args.name] = Operator(args.name, hash_password(password), args.role, args.agency,
                                args.personal_data, args.may_correct)
    save_users(args.users, users.values())
    audit.record("operator_saved", actor, operator=args.name, role=args.role,
                 agency=args.agency, may_see_personal_data=args.personal_data,
                 may_correct=args.may_correct)
    print(f"operator {args.name} saved to {args.users}", file=sys.stderr)
    return 0


async def _serve(args: argparse.Namespace) -> int:
    from lienthong.schemas import topics
    from lienthong.services.clock import ScaledClock, clock_from_spec
    from lienthong.services.ops.audit import AuditLog
    from lienthong.services.ops.auth import (
        Operator,
        UsersFileError,
        hash_password,
        load_users,
    )
    from lienthong.services.ops.board import OpsBoard
    from lienthong.services.ops.demo import sample_alerts, sample_snapshots
    from lienthong.services.ops.feed import FeedTopics, StatusFeed
    from lienthong.services.ops.metrics import DashboardMetrics
    from lienthong.services.ops.web import DASHBOARD, create_app

    settings = Settings.from_env()
    catalogue = load_catalogue_or_stop(args.catalog)
    if args.users is not None:
        try:
            users = load_users(args.users)
        except UsersFileError as exc:
            print(f"lienthong dashboard: {exc}", file=sys.stderr)
            return 2
    elif args.demo:
        password = secrets.token_urlsafe(12)
        users = {"demo": Operator("demo", hash_password(password), "admin", None, True)}
        print(f"demo mode: sign in as 'demo' with password {password}", file=sys.stderr)
    else:
        print("lienthong dashboard: no users file (--users or LIENTHONG_DASHBOARD_USERS); "
              "there is no default password outside --demo. Create one with "
              "'lienthong dashboard users add NAME --users FILE'.", file=sys.stderr)
        return 2
    if not args.demo:
        require_bootstrap(args.bootstrap)
    secret = None
    if args.secret_file is not None:
        secret = args.secret_file.read_bytes().strip()
    clock = clock_from_spec(settings.clock)
    board = OpsBoard(catalogue)
    metrics = DashboardMetrics(board, clock.now)
    feed: StatusFeed | None = None
    if args.bootstrap:
        names = topics.names(settings)
        feed = StatusFeed(args.bootstrap, board,
                          FeedTopics(names.status, names.alerts, names.deadletter,
                                     citizen=names.citizen, receipts=names.receipts),
                          notify=lambda change: None, metrics=metrics)
    else:
        now = clock.now()
        snaps = sample_snapshots(catalogue, now, count=120)
        for s in snaps:
            board.apply_snapshot(s)
        for a in sample_alerts(snaps):
            board.add_alert(a)
    desk = None
    sink, actions = None, None
    if args.bootstrap:
        from kafka import KafkaProducer

        from lienthong.services.ops.corrections import CorrectionsDesk
        desk = CorrectionsDesk(args.bootstrap, settings)  # operators' voids (hủy sự kiện)
        actions = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all",
                                enable_idempotence=True)
        topic = topics.names(settings).operator_actions

        def sink(line: bytes, user: str | None) -> None:
            assert actions is not None
            actions.send(topic, value=line, key=(user or "").encode("utf-8") or None)

    app = create_app(board, users, resend=feed.resend if feed else None,
                     audit=AuditLog(args.audit_log, sink), clock=clock.now, secret=secret,
                     metrics=metrics, cookie_secure=args.cookie_secure,
                     simulated=clock if isinstance(clock, ScaledClock) else None,
                     correct=desk.publish if desk is not None else None)
    dash = app[DASHBOARD]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    print(f"dashboard on http://{args.host}:{args.port}/", file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task: asyncio.Task[None] | None = None
    if feed is not None:
        feed.notify = dash.notify
        task = asyncio.create_task(feed.run())
        task.add_done_callback(lambda t: stop.set())
    await stop.wait()
    code = 0
    if task is not None:
        if task.done() and task.exception() is not None:
            print(f"lienthong dashboard: Kafka feed stopped: {task.exception()}",
                  file=sys.stderr)
            code = 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await feed.close()  # type: ignore[union-attr]
    await runner.cleanup()
    if actions is not None:
        actions.close(timeout=10)  # flush the last operator actions
    return code


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.action == "users":
        return _users_command(args)
    return asyncio.run(_serve(args))
