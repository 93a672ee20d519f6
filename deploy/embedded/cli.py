"""``lienthong broker``: fetch the embedded Apache Kafka's jars, or run it until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from lienthong.deploy.embedded.broker import DEFAULT_HEAP, BrokerError, EmbeddedKafka, ensure_jars


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fetch-only", action="store_true",
                        help="resolve the broker's jars from Maven Central into the cache and exit "
                             "(nothing to do when already cached)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="persistent data directory (kept across restarts); default: a "
                             "temporary directory removed on exit")
    parser.add_argument("--nodes", type=int, default=1, choices=(1, 3),
                        help="1 broker, or a 3-node KRaft cluster (replication 3, "
                             "min.insync.replicas 2)")
    parser.add_argument("--port", type=int, default=None,
                        help="client port of node 1 (node n gets PORT+n-1); default: free ports")
    parser.add_argument("--heap", default=DEFAULT_HEAP,
                        help=f"JVM heap per node (default {DEFAULT_HEAP}, Kafka's own)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.fetch_only:
            libs = ensure_jars(echo=lambda message: print(message, file=sys.stderr))
            print(libs)
            return 0
        return _serve(args)
    except BrokerError as exc:
        print(f"lienthong broker: {exc}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace) -> int:
    broker = EmbeddedKafka(data_dir=args.data_dir, nodes=args.nodes, port=args.port,
                           heap=args.heap)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        bootstrap = broker.start()
        print(f"Apache Kafka {broker.version} ({args.nodes} node{'s' if args.nodes > 1 else ''}) "
              f"ready in {broker.start_seconds:.1f} s; data in {broker.data_dir}", file=sys.stderr)
        print(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}", flush=True)
        while not stopping.wait(1.0):
            dead = [n for n in range(1, args.nodes + 1) if not broker.node_alive(n)]
            if len(dead) == args.nodes:
                print("lienthong broker: the broker exited; see its server.log", file=sys.stderr)
                return 1
        print("stopping the broker...", file=sys.stderr)
        return 0
    finally:
        broker.stop()
