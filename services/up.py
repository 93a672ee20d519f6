"""``lienthong up``: the whole hub on one machine, in embedded mode.

Starts the embedded Apache Kafka broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``), creates the hub's
topics, then runs each part as its own process, as production does: the agency-system doubles
(demo destinations), a worker, the gateway, the delivery service, the dashboard and the
sample-province simulator. Prints where to look; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from lienthong.services.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the whole hub on this machine: embedded Kafka broker, worker, gateway, delivery, "
        "dashboard, demo agency systems and the sample-province simulator. Data persists in "
        "--data-dir across restarts.")
    parser.add_argument("--data-dir", default=None, help="where broker data, keys and spools "
                        "live (LIENTHONG_DATA_DIR; default ./var)")
    parser.add_argument("--catalog", default=None, help="province catalogue "
                        "(default: examples/province-h99.yaml)")
    parser.add_argument("--dossiers", type=int, default=300,
                        help="dossiers the simulator files (default 300)")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="simulator events per second (default 10)")
    parser.add_argument("--no-simulator", action="store_true", help="do not start the simulator")


def _spawn(name: str, args: list[str], logs: Path) -> subprocess.Popen[bytes]:
    log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its life
    return subprocess.Popen([sys.executable, "-m", "lienthong.services.cli", *args],
                            stdout=log, stderr=subprocess.STDOUT)


def run(args: argparse.Namespace) -> int:
    from lienthong.connectors.simulator.play import write_keys
    from lienthong.deploy.embedded import kafka_cluster
    from lienthong.schemas.topics import ensure_topics
    from lienthong.services.domain.catalogue import load_catalogue

    settings = Settings.from_env(data_dir=args.data_dir, catalog_path=args.catalog)
    data = settings.data_dir.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    keys = data / "keys.json"
    if not keys.exists():
        write_keys(load_catalogue(settings.catalog_path), keys)
    routed = data / "catalog-demo.json"
    doubles_port, gateway_port, dashboard_port = 9800, settings.gateway_port, 8500

    print("lienthong: starting the embedded Apache Kafka broker ...", flush=True)
    with kafka_cluster(settings, data_dir=data / "kafka") as bootstrap:
        ensure_topics(bootstrap, settings)
        common = ["--bootstrap", bootstrap]
        procs = {"doubles": _spawn("doubles", ["doubles", "--port", str(doubles_port),
                                               "--catalog", str(settings.catalog_path),
                                               "--write-catalog", str(routed)], logs)}
        for _ in range(100):  # the routed catalogue is written once the doubles listen
            if routed.exists():
                break
            time.sleep(0.1)
        procs["worker"] = _spawn("worker", ["worker", *common, "--catalog", str(routed),
                                            "--data-dir", str(data)], logs)
        procs["gateway"] = _spawn("gateway", ["gateway", *common, "--port", str(gateway_port),
                                              "--keys-file", str(keys),
                                              "--spool-dir", str(data / "spool")], logs)
        # The doubles sign their receipts with the agencies' demo keys; the delivery service
        # checks them and the audit chain records everything with a key made here once.
        procs["delivery"] = _spawn("delivery", ["delivery", *common, "--catalog", str(routed),
                                                "--keys-file", str(keys),
                                                "--demo-receipt-keys"], logs)
        audit_key = data / "audit-key.pem"
        if not audit_key.exists():
            from lienthong.services.audit.entries import create_audit_key

            create_audit_key(audit_key)
        procs["audit"] = _spawn("audit", ["audit", "chain", *common, "--audit-key",
                                          str(audit_key)], logs)
        procs["dashboard"] = _spawn("dashboard", ["dashboard", *common, "--demo",
                                                  "--port", str(dashboard_port)], logs)
        if not args.no_simulator:
            time.sleep(3)
            procs["simulator"] = _spawn("simulator", [
                "simulate", "--gateway", f"http://127.0.0.1:{gateway_port}",
                "--keys-file", str(keys), "--dossiers", str(args.dossiers),
                "--rate", str(args.rate)], logs)
        print(f"""
lienthong is running (Ctrl-C stops everything)
  Kafka bootstrap      {bootstrap}
  dashboard            http://127.0.0.1:{dashboard_port}/  (demo login: {logs}/dashboard.log)
  gateway (agencies)   http://127.0.0.1:{gateway_port}/v1/events   OpenAPI: /openapi.json
  worker metrics       http://127.0.0.1:{settings.worker_port}/metrics
  demo agency systems  http://127.0.0.1:{doubles_port}/stats
  agency keys          {keys}
  audit log            lienthong audit verify --bootstrap {bootstrap} \
                         --audit-key {data / "audit-key.pem"}
  logs                 {logs}/
""", flush=True)
        stop = {"now": False}

        def on_signal(signum: int, frame: object) -> None:
            stop["now"] = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            while not stop["now"]:
                for name, proc in procs.items():
                    if proc.poll() is not None and name != "simulator":
                        print(f"lienthong: {name} stopped (exit {proc.returncode}); "
                              f"see {logs}/{name}.log", flush=True)
                        stop["now"] = True
                time.sleep(0.5)
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
    return 0
