"""``lienthong restore DIR``: put a backup made by ``lienthong backup`` back into a hub.

First every file's SHA-256 is checked against the manifest (a damaged backup restores
nothing); then the hub's topics are created (``LIENTHONG_TOPIC_PREFIX`` and
``LIENTHONG_PARTITIONS`` name the target) and the restore is refused if any target topic
already holds records, unless ``--force``. Records go back to their partition with their key,
value, headers and timestamp; the catalogue, operator accounts and audit log are written where
``--catalog-to``, ``--users-to`` and ``--audit-log-to`` say. Then start the workers under a new
``LIENTHONG_APP_ID`` (they rebuild their state from ``dossier.events``) and the dashboard.
Exit status 0 restored, 1 refused or failed (the reason is printed), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from lienthong.services.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = Settings.from_env()
    parser.description = __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None
    parser.add_argument("backup", type=Path, help="the backup directory (holds manifest.json)")
    parser.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                        help="Kafka bootstrap servers of the target (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--force", action="store_true",
                        help="restore even into topics or files that are not empty (mixes "
                             "histories: only for a restore that stopped half-way)")
    parser.add_argument("--verify-only", action="store_true",
                        help="check the backup's hashes and print what it holds; write nothing")
    parser.add_argument("--topics", default=None,
                        help="comma-separated topics to restore (default: every topic in the "
                             "backup), e.g. dossier.events,deadletter,catalog")
    parser.add_argument("--catalog-to", type=Path, default=None,
                        help="write the backed-up catalogue here")
    parser.add_argument("--users-to", type=Path, default=s.dashboard_users,
                        help="write the operator accounts here (LIENTHONG_DASHBOARD_USERS)")
    parser.add_argument("--audit-log-to", type=Path, default=s.data_dir / "dashboard-audit.jsonl",
                        help="write the audit log here (default LIENTHONG_DATA_DIR/"
                             "dashboard-audit.jsonl)")
    parser.add_argument("--keys-file-to", type=Path, default=None,
                        help="write the keys file here, when the backup includes it")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for Kafka before giving up (30)")


def run(args: argparse.Namespace) -> int:
    from lienthong.services.backup.archive import LocalFiles, load_manifest, restore
    from lienthong.services.backup.manifest import BackupError, problems, sha256_of, summary

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        manifest = load_manifest(args.backup)
    except BackupError as exc:
        print(f"lienthong restore: {exc}", file=sys.stderr)
        return 1
    for line in summary(manifest):
        print(f"  {line}", file=sys.stderr)
    if args.verify_only:
        damaged = problems(manifest, args.backup)
        for line in damaged:
            print(f"lienthong restore: {line}", file=sys.stderr)
        print(json.dumps({"backup": str(args.backup), "intact": not damaged}))
        return 1 if damaged else 0
    if not args.bootstrap:
        print("lienthong restore: no Kafka address; set KAFKA_BOOTSTRAP_SERVERS or "
              "--bootstrap", file=sys.stderr)
        return 2
    wanted = None if args.topics is None else {t.strip() for t in args.topics.split(",")}
    if wanted is not None and not wanted <= {t.topic for t in manifest.topics}:
        print(f"lienthong restore: not in the backup: "
              f"{', '.join(sorted(wanted - {t.topic for t in manifest.topics}))}",
              file=sys.stderr)
        return 2
    targets = LocalFiles(catalogue=args.catalog_to, users=args.users_to,
                         audit=args.audit_log_to, keys=args.keys_file_to)
    try:
        written = restore(args.backup, args.bootstrap, Settings.from_env(), force=args.force,
                          topic_filter=lambda t: wanted is None or t in wanted,
                          targets=targets, timeout=args.timeout)
    except (BackupError, OSError) as exc:
        print(f"lienthong restore: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # Kafka unreachable, timeouts
        print(f"lienthong restore: Kafka at {args.bootstrap}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    for role, target, option in (("catalogue", args.catalog_to, "--catalog-to"),
                                 ("users", args.users_to, "--users-to"),
                                 ("audit", args.audit_log_to, "--audit-log-to"),
                                 ("keys", args.keys_file_to, "--keys-file-to")):
        if manifest.file(role) is not None:
            print(f"  {role}: " + (f"written to {target}" if target is not None else
                                   f"in the backup, not restored (name a path with {option})"),
                  file=sys.stderr)
    keys = manifest.keys
    if keys is not None and not keys.included:
        here = Path(keys.path)
        same = here.is_file() and sha256_of(here) == keys.sha256
        state = ("present and identical to the backup" if same else
                 "MISSING or different: restore it from the encrypted copy of /etc/lienthong")
        print(f"  keys file {keys.path}: {state}", file=sys.stderr)
    print(json.dumps({"restored": written}))
    return 0
