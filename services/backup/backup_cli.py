"""``lienthong backup --out DIR``: a consistent copy of the hub's legal record.

Writes every hub topic (each record with its partition, offset, timestamp, key, value and
headers, up to end offsets taken at one moment), the catalogue, the dashboard's operator
accounts and audit log, and a reference to the agency keys file (its path and SHA-256; the
secrets themselves only with ``--include-secrets``), then ``manifest.json`` with the SHA-256 of
every file. Progress is shown per topic on the console. Exit status 0 when the backup is
complete, 1 when it could not be made (the reason is printed), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from lienthong.services.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = Settings.from_env()
    parser.description = __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path,
                       help="new (or empty) directory for the backup")
    where.add_argument("--into", type=Path,
                       help="make a new dated directory (UTC, e.g. 20261203T013000Z) in this "
                            "one for the backup (the nightly timer's way)")
    parser.add_argument("--keep", type=int, default=None,
                        help="with --into: after a complete backup, delete the dated backups "
                             "beyond the KEEP newest (other directories are never touched)")
    parser.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                        help="Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--catalog", type=Path, default=s.catalog_path,
                        help=f"province catalogue to include (LIENTHONG_CATALOG; "
                             f"{s.catalog_path})")
    parser.add_argument("--keys-file", type=Path, default=s.keys_file,
                        help="agency keys file: its path and SHA-256 are recorded "
                             "(LIENTHONG_KEYS_FILE)")
    parser.add_argument("--include-secrets", action="store_true",
                        help="also copy the keys file itself (then protect the backup like "
                             "the keys: encrypted, off the VMs)")
    parser.add_argument("--users", type=Path, default=s.dashboard_users,
                        help="dashboard operator accounts (LIENTHONG_DASHBOARD_USERS)")
    parser.add_argument("--audit-log", type=Path, default=s.data_dir / "dashboard-audit.jsonl",
                        help="the dashboard's audit log (default LIENTHONG_DATA_DIR/"
                             "dashboard-audit.jsonl)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for Kafka before giving up (30)")


def run(args: argparse.Namespace) -> int:
    from lienthong.services.backup.archive import LocalFiles, backup
    from lienthong.services.backup.manifest import BackupError, dated_name, summary, to_prune

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    if not args.bootstrap:
        print("lienthong backup: no Kafka address; set KAFKA_BOOTSTRAP_SERVERS or --bootstrap",
              file=sys.stderr)
        return 2
    if args.keep is not None and (args.into is None or args.keep < 1):
        print("lienthong backup: --keep needs --into and is at least 1", file=sys.stderr)
        return 2
    if args.into is not None:
        args.out = args.into / dated_name(datetime.now(UTC))
    settings = Settings.from_env()
    files = LocalFiles(catalogue=args.catalog, users=args.users, audit=args.audit_log,
                       keys=args.keys_file)
    try:
        manifest = backup(args.bootstrap, settings, args.out, files,
                          include_secrets=args.include_secrets, timeout=args.timeout)
    except (BackupError, OSError) as exc:
        print(f"lienthong backup: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # Kafka unreachable, timeouts: say so, no traceback
        print(f"lienthong backup: Kafka at {args.bootstrap}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    for line in summary(manifest):
        print(f"  {line}", file=sys.stderr)
    pruned: list[str] = []
    if args.keep is not None:
        pruned = to_prune((p.name for p in args.into.iterdir()
                           if (p / "manifest.json").is_file()), args.keep)
        for name in pruned:
            shutil.rmtree(args.into / name)
    print(json.dumps({"backup": str(args.out), "created_at": manifest.created_at,
                      "records": {t.topic: t.records for t in manifest.topics},
                      "pruned": pruned}, ensure_ascii=False))
    return 0
