"""``lienthong up``: the whole hub on one machine, in embedded mode.

Starts the embedded Apache Kafka broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``), creates the hub's
topics, then runs each part as its own process, as production does: the agency-system doubles
(demo destinations), a worker, the gateway, the delivery service, the dashboard and the
sample-province simulator. Prints where to look and how to sign in; Ctrl-C stops everything.

The demo is a province day that unfolds now. Its clock starts at this morning's office opening
(or the last working morning's) and runs ``--speed`` times real time; every part that asks what
time it is (worker, dashboard, delivery, simulator) gets the same ``LIENTHONG_CLOCK``, and the
dashboard's header says it is simulated time. Before the worker starts, the simulator pushes the
morning's backlog (the dossiers received on earlier working days and still open) through the
gateway; then each new event is sent when the shared clock reaches it.

Each demo day (its date and plan) has topics and worker state of its own when
``LIENTHONG_TOPIC_PREFIX`` is unset (prefix ``demoYYYYMMDD-HASH.``), and a restart on the same
day resumes the clock where the last run stopped (``DATA_DIR/demoYYYYMMDD-HASH.clock.json``).

Without ``--users`` the start is a demo: a one-off ``demo`` account is made, and its password
printed with the addresses. With ``--users FILE`` (or ``LIENTHONG_DASHBOARD_USERS``) no account
is made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from lienthong.connectors.simulator.day import (
    DEFAULT_BACKLOG_DAYS,
    DEFAULT_SPEED,
    day_prefix,
    demo_start,
    resumed_origin,
)
from lienthong.services.settings import Settings

DEMO_RATE_LIMIT = 1000  # requests/s per agency at the demo's gateway

DEMO_USER = "demo"
DEFAULT_PER_HOUR = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = Settings.from_env()
    parser.description = (
        "Run the whole hub on this machine: embedded Kafka broker, worker, gateway, delivery, "
        "dashboard, demo agency systems and the sample-province simulator, in a province day "
        "that unfolds now: simulated time from this morning's office opening at --speed times "
        "real time, shared by every part and shown on the dashboard. Data persists in "
        "--data-dir across restarts.")
    parser.add_argument("--data-dir", default=None, help="where broker data, keys and spools "
                        "live (LIENTHONG_DATA_DIR; default ./var)")
    parser.add_argument("--catalog", default=None, help="province catalogue "
                        "(default: examples/province-h99.yaml)")
    parser.add_argument("--speed", type=float, default=None,
                        help=f"simulated seconds per real second (default {DEFAULT_SPEED:g}: "
                        "a working hour a minute)")
    parser.add_argument("--start", default=None,
                        help="simulated instant the day starts at, ISO-8601 (default: this "
                        "morning's office opening, or the last working morning's)")
    parser.add_argument("--per-hour", type=float, default=DEFAULT_PER_HOUR,
                        help=f"dossiers received per working hour (default {DEFAULT_PER_HOUR:g})")
    parser.add_argument("--backlog-days", type=int, default=DEFAULT_BACKLOG_DAYS,
                        help="working days of receipts before --start whose open dossiers "
                        f"are there at the start (default {DEFAULT_BACKLOG_DAYS})")
    parser.add_argument("--dossiers", type=int, default=None,
                        help="dossiers the simulator plans (default: enough for the backlog "
                        "days and two working days)")
    parser.add_argument("--rate", type=float, default=50.0,
                        help="the simulator's live events per second at most (default 50)")
    parser.add_argument("--users", type=Path, default=s.dashboard_users,
                        help="dashboard operator accounts (LIENTHONG_DASHBOARD_USERS); without "
                        "it a one-off demo account is made and its password printed")
    parser.add_argument("--doubles-port", type=int, default=9800,
                        help="port of the demo agency systems (default 9800)")
    parser.add_argument("--delivery-metrics-port", type=int, default=9311,
                        help="port of the delivery service's /metrics (default 9311)")
    parser.add_argument("--no-simulator", action="store_true",
                        help="do not start the simulator (the clock is then the wall clock "
                        "unless --speed or --start is given)")


def _spawn(name: str, args: list[str], logs: Path,
           env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its life
    return subprocess.Popen([sys.executable, "-m", "lienthong.services.cli", *args],
                            stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes],
                    timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return True
        time.sleep(0.2)
    return False


def demo_account(path: Path) -> str:
    """Write a users file with the one-off ``demo`` admin account; returns its password."""
    from lienthong.services.ops.auth import Operator, hash_password, save_users

    password = secrets.token_urlsafe(12)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_users(path, [Operator(DEMO_USER, hash_password(password), "admin", None, True)])
    return password


def dashboard_accounts(users: Path | None, data: Path) -> tuple[Path, str | None]:
    """The users file the dashboard reads, and the demo password if this is a demo start: an
    operator's own file (``--users``) is used as it is and no account is made."""
    if users is not None:
        return users, None
    path = data / "dashboard-demo-users.yaml"
    return path, demo_account(path)


def _clock_line(clock: object, start: datetime) -> str:
    from lienthong.services.clock import ScaledClock

    if not isinstance(clock, ScaledClock):
        return "wall clock (real time)"
    resumed = (f", resuming the day begun {start:%H:%M %d/%m/%Y}"
               if clock.origin > start else "")
    return (f"SIMULATED, {clock.speed:g}x real time from {clock.origin:%H:%M %d/%m/%Y}"
            f"{resumed} (LIENTHONG_CLOCK={clock.spec()})")


def run(args: argparse.Namespace) -> int:
    from lienthong.connectors.simulator.play import write_keys
    from lienthong.deploy.embedded import kafka_cluster
    from lienthong.schemas.topics import ensure_topics
    from lienthong.services.clock import Clock, ScaledClock, WallClock
    from lienthong.services.domain.catalogue import CatalogueError, load_catalogue

    settings = Settings.from_env(data_dir=args.data_dir, catalog_path=args.catalog)
    prefix_given = bool(settings.topic_prefix)
    try:
        catalogue = load_catalogue(settings.catalog_path)
    except (CatalogueError, OSError) as exc:
        print(f"lienthong up: catalogue {settings.catalog_path}: {exc}", file=sys.stderr)
        return 2
    tz = catalogue.calendar.tz
    start = None
    if args.start is not None:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            print(f"lienthong up: --start {args.start!r} is not an ISO-8601 instant",
                  file=sys.stderr)
            return 2
        start = start if start.tzinfo is not None else start.replace(tzinfo=tz)
    if args.speed is not None and args.speed <= 0:
        print("lienthong up: --speed must be positive", file=sys.stderr)
        return 2
    simulated = not args.no_simulator or args.speed is not None or start is not None
    if start is None:
        start = demo_start(catalogue.calendar, datetime.now(tz))
    speed = DEFAULT_SPEED if args.speed is None else args.speed

    data = settings.data_dir.resolve()
    day_file = data / "demo.clock.json"
    origin = start
    if simulated and not prefix_given:
        prefix = day_prefix(start, f"{args.per_hour:g}/{args.backlog_days}/{args.dossiers}")
        settings = replace(settings, topic_prefix=prefix, app_id=f"{prefix}{settings.app_id}")
        day_file = data / f"{prefix}clock.json"
        origin = resumed_origin(_read_json(day_file), start)
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    keys = data / "keys.json"
    if not keys.exists():
        write_keys(catalogue, keys)
    routed = data / "catalog-demo.json"
    routed.unlink(missing_ok=True)  # written afresh by the doubles once they listen
    users, password = dashboard_accounts(args.users, data)
    host = settings.host
    gateway_port, dashboard_port = settings.gateway_port, settings.dashboard_port
    gateway_url = f"http://{host}:{gateway_port}"
    plan_args = ["--keys-file", str(keys), "--gateway", gateway_url,
                 "--catalog", str(settings.catalog_path), "--per-hour", f"{args.per_hour:g}",
                 "--backlog-days", str(args.backlog_days), "--start", start.isoformat()]
    if args.dossiers is not None:
        plan_args += ["--dossiers", str(args.dossiers)]

    print("lienthong: starting the embedded Apache Kafka broker ...", flush=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    with kafka_cluster(settings, data_dir=data / "kafka") as bootstrap:
        ensure_topics(bootstrap, settings)
        common = ["--bootstrap", bootstrap]
        # Every part on the same topics; the clock is added once the backlog is in.
        env = {**os.environ, "LIENTHONG_TOPIC_PREFIX": settings.topic_prefix,
               "LIENTHONG_APP_ID": settings.app_id}
        spool = data / "spool" / settings.topic_prefix.rstrip(".") if settings.topic_prefix \
            else data / "spool"
        try:
            procs["doubles"] = _spawn("doubles", [
                "doubles", "--port", str(args.doubles_port), "--catalog",
                str(settings.catalog_path), "--write-catalog", str(routed)], logs, env)
            # The backlog of eight working days goes in as fast as the gateway takes it (about
            # 200 events/s, some agencies most of them): the default 50 requests/s per agency
            # refused a few with 429 after the simulator's retries.
            procs["gateway"] = _spawn("gateway", [
                "gateway", *common, "--port", str(gateway_port), "--keys-file", str(keys),
                "--spool-dir", str(spool), "--rate-limit", str(DEMO_RATE_LIMIT),
                "--rate-burst", str(2 * DEMO_RATE_LIMIT)], logs, env)
            for _ in range(300):  # the routed catalogue is written once the doubles listen
                if routed.exists() or procs["doubles"].poll() is not None:
                    break
                time.sleep(0.1)
            if not routed.exists() or not _wait_listening(host, gateway_port,
                                                          procs["gateway"]):
                print(f"lienthong up: the demo agency systems or the gateway did not start; "
                      f"see {logs}/doubles.log and {logs}/gateway.log", file=sys.stderr)
                return 1
            if not args.no_simulator:
                # The backlog goes in before the worker starts: it then judges deadlines only
                # once every dossier's history is applied (it waits for the backlog it finds).
                print(f"lienthong: the agency systems push the dossiers open at "
                      f"{start:%H:%M %d/%m/%Y} ...", flush=True)
                backlog = subprocess.run(
                    [sys.executable, "-m", "lienthong.services.cli", "simulate", *plan_args,
                     "--send", "backlog", "--rate", "0"],
                    stdout=open(logs / "simulator-backlog.log", "ab"),  # noqa: SIM115
                    check=False)
                if backlog.returncode != 0:
                    print(f"lienthong up: some backlog events were refused; see "
                          f"{logs}/simulator-backlog.log", file=sys.stderr)
            clock: Clock = WallClock()
            if simulated:
                scaled = ScaledClock.starting_now(origin, speed)
                clock = scaled
                env["LIENTHONG_CLOCK"] = scaled.spec()
            else:
                env["LIENTHONG_CLOCK"] = "wall"
            procs["worker"] = _spawn("worker", ["worker", *common, "--catalog", str(routed),
                                                "--data-dir", str(data)], logs, env)
            # The doubles sign their receipts with the agencies' demo keys; the delivery service
            # checks them and the audit chain records everything with a key made here once.
            procs["delivery"] = _spawn("delivery", [
                "delivery", *common, "--catalog", str(routed), "--keys-file", str(keys),
                "--metrics-port", str(args.delivery_metrics_port), "--demo-receipt-keys"],
                logs, env)
            audit_key = data / "audit-key.pem"
            if not audit_key.exists():
                from lienthong.services.audit.entries import create_audit_key

                create_audit_key(audit_key)
            procs["audit"] = _spawn("audit", ["audit", "chain", *common, "--audit-key",
                                              str(audit_key)], logs, env)
            procs["dashboard"] = _spawn("dashboard", [
                "dashboard", *common, "--users", str(users), "--port", str(dashboard_port),
                "--catalog", str(settings.catalog_path)], logs, env)
            if not args.no_simulator:
                procs["simulator"] = _spawn("simulator", [
                    "simulate", *plan_args, "--send", "live", "--rate", f"{args.rate:g}"],
                    logs, env)
            _wait_listening(host, dashboard_port, procs["dashboard"])
            login = (f"sign in as '{DEMO_USER}', password {password}  (a new one each start)"
                     if password is not None else f"accounts in {users}")
            topics_line = (f"{settings.topic_prefix}*  (LIENTHONG_TOPIC_PREFIX: set it, and "
                           "LIENTHONG_CLOCK, for\n                       lienthong report or "
                           "deadletter on this demo)") if settings.topic_prefix else "no prefix"
            print(f"""
lienthong is running (Ctrl-C stops everything)
  clock                {_clock_line(clock, start)}
  Kafka bootstrap      {bootstrap}
  topics               {topics_line}
  dashboard            http://{host}:{dashboard_port}/
  dashboard login      {login}
  gateway (agencies)   {gateway_url}/v1/events   OpenAPI: /openapi.json
  worker metrics       http://{host}:{settings.worker_port}/metrics
  demo agency systems  http://{host}:{args.doubles_port}/stats
  agency keys          {keys}
  audit log            lienthong audit verify --bootstrap {bootstrap} \
                         --audit-key {data / "audit-key.pem"}
  logs                 {logs}/
""", flush=True)
            return _watch(procs, logs, lambda: _save_day(day_file, start, clock)
                          if simulated else None)
        except KeyboardInterrupt:
            return 130
        finally:
            print("lienthong: stopping ...", flush=True)
            for proc in procs.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _save_day(path: Path, start: datetime, clock: Any) -> None:
    """Where the demo day got to, for a restart to resume from."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"start": start.isoformat(),
                               "reached": clock.now().isoformat()}), encoding="utf-8")
    tmp.replace(path)


def _watch(procs: dict[str, subprocess.Popen[bytes]], logs: Path,
           checkpoint: Callable[[], None]) -> int:
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    saved = 0.0
    while not stop["now"]:
        if time.monotonic() - saved >= 5:
            checkpoint()
            saved = time.monotonic()
        for name, proc in procs.items():
            if proc.poll() is not None and name != "simulator":
                print(f"lienthong: {name} stopped (exit {proc.returncode}); "
                      f"see {logs}/{name}.log", flush=True)
                stop["now"] = True
                code = 1
        time.sleep(0.5)
    checkpoint()
    return code
