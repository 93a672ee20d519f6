"""``lienthong audit``: the hash-chained audit log (nhật ký kiểm tra có chuỗi băm).

    lienthong audit key --create var/audit-2026.pem   # once; prints the public key to publish
    lienthong audit chain                              # the single writer of audit.log
    lienthong audit verify                             # recompute every chain from Kafka
    lienthong audit copy --out audit-copy.jsonl        # the whole log as a file
    lienthong audit verify --copy audit-copy.jsonl     # … checked away from the cluster
    lienthong audit export --dossier CODE --out DIR    # CODE.json + CODE.html for an inspector
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from lienthong.schemas import topics
from lienthong.services.progress import ProgressBar, clock_text
from lienthong.services.settings import Settings

CHUNK_ENTRIES = 20_000  # = verify.CHUNK_ENTRIES, not imported: --help stays free of Kafka

EPILOG = """\
An inspector checks an export without the hub: copy services/audit/chain.py (standard library
plus the 'cryptography' package) and run  python chain.py CODE.json  — or, where lienthong is
installed,  python -m lienthong.services.audit.chain CODE.json . Exit status 0: it verifies.
Compare the export's public key with the one the hub's operator published.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = Settings.from_env()
    parser.description = (
        "The tamper-evident audit log. Every accepted event, delivery, receipt, alert and dead "
        "letter is appended to audit.log, each entry carrying the SHA-256 chain hash of the one "
        "before it in its partition; signed checkpoints of every partition's head go to "
        "audit.checkpoints.")
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser, *, key: bool = True) -> None:
        p.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                       help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
        if key:
            p.add_argument("--audit-key", type=Path, default=s.audit_key_file,
                           help="the hub's Ed25519 private key, PEM (env LIENTHONG_AUDIT_KEY)")

    k = sub.add_parser("key", help="create the hub's audit signing key, or print its public "
                       "key", description="Create (--create) or read an Ed25519 audit key and "
                       "print its key id and public key (hex), which the operator publishes.")
    k.add_argument("file", type=Path, help="PEM file of the private key")
    k.add_argument("--create", action="store_true", help="create a new key in FILE (mode 600)")

    c = sub.add_parser("chain", help="run the single writer of audit.log",
                       description="Consume the source topics and append every record to "
                       "audit.log, exactly once across restarts and kill -9 (one Kafka "
                       "transaction per batch, with the source positions); sign a checkpoint "
                       "every --checkpoint-seconds and when stopped (Ctrl-C).")
    common(c)
    c.add_argument("--checkpoint-seconds", type=float, default=60.0,
                   help="seconds between signed checkpoints (default 60)")
    c.add_argument("--nice", type=int, default=19,
                   help="lower the service's CPU priority by this much (default 19, the "
                   "lowest): on a busy machine the chain lags behind instead of slowing the "
                   "worker, and catches up when the load drops; it never loses or repeats an "
                   "entry, and its lag is that of its consumer group, PREFIXlienthong-audit-chain")
    c.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")

    v = sub.add_parser("verify", help="recompute every chain and check every checkpoint",
                       description="Read audit.log (or a copy) from the start, recompute each "
                       "partition's chain and check each checkpoint's signature and heads. "
                       "Prints a JSON report naming the first entry that does not match; exit "
                       "status 1 if any does. Memory is bounded, whatever the log's size: the "
                       "checkpoints are read first, then each partition's entries stream by "
                       f"in chunks of {CHUNK_ENTRIES:,}, the chain carried from one to the "
                       "next.")
    common(v)
    v.add_argument("--copy", type=Path, default=None,
                   help="check this copy file (lienthong audit copy) instead of Kafka")
    v.add_argument("--public-key", default=None,
                   help="the hub's audit public key (hex) when the private key is not at hand")

    cp = sub.add_parser("copy", help="write the whole audit log to a file",
                        description="Write every entry and checkpoint, with partitions and "
                        "offsets, to a JSON-lines file that 'verify --copy' checks. Entries are "
                        "written as they are read (bounded memory).")
    common(cp, key=False)
    cp.add_argument("--out", type=Path, required=True, help="file to write")

    e = sub.add_parser("export", help="one dossier's verifiable record (JSON + printable HTML)",
                       description="Write DIR/CODE.json (checkable with services/audit/"
                       "chain.py alone) and DIR/CODE.html (the printable tracking slip with "
                       "the proofs).", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    common(e)
    e.add_argument("--dossier", required=True, help="dossier code")
    e.add_argument("--out", type=Path, default=Path("."), help="directory (default: here)")
    e.add_argument("--copy", type=Path, default=None, help="read this copy file, not Kafka")
    e.add_argument("--public-key", default=None, help="the hub's audit public key (hex)")


def _fail(message: str) -> int:
    print(f"lienthong audit: {message}", file=sys.stderr)
    return 2


def _public_key(args: argparse.Namespace) -> tuple[str, bytes] | None:
    from lienthong.services.audit.entries import load_audit_key

    if getattr(args, "public_key", None):
        return "given", bytes.fromhex(args.public_key)
    if args.audit_key:
        key = load_audit_key(args.audit_key)
        return key.key_id, key.public_raw
    return None


def _names() -> topics.TopicNames:
    return topics.names(Settings.from_env())


def _progress(label: str) -> ProgressBar:
    """The bar of a long read: redrawn on stderr when it is a terminal; either way its summary
    is stderr's last line."""
    return ProgressBar(label, 0, tty_only=True)


def _summary(action: str, bar: ProgressBar, what: str, entries: int | None = None) -> str:
    seconds = time.monotonic() - bar.started
    took = f"{seconds:.1f} s" if seconds < 60 else clock_text(seconds)
    rate = f", {entries / max(seconds, 1e-6):,.0f} entries/s" if entries is not None else ""
    return f"{action}: {what} in {took}{rate}"


def _bootstrap(args: argparse.Namespace) -> str:
    if not args.bootstrap:
        raise ValueError("no Kafka address; pass --bootstrap or set KAFKA_BOOTSTRAP_SERVERS "
                         "(or check a file with --copy)")
    return str(args.bootstrap)


def run(args: argparse.Namespace) -> int:
    from lienthong.services.audit.entries import create_audit_key, load_audit_key

    try:
        if args.action == "key":
            key = create_audit_key(args.file) if args.create else load_audit_key(args.file)
            print(json.dumps({"key_id": key.key_id, "ed25519": key.public_hex}))
            return 0
        if args.action == "chain":
            return _chain(args)
        if args.action == "copy":
            from lienthong.services.audit.verify import stream_copy

            n = _names()
            with _progress("audit copy") as bar:
                entries, checkpoints = stream_copy(_bootstrap(args), n.audit_log,
                                                   n.audit_checkpoints, args.out, progress=bar)
                bar.summary = _summary("audit copy", bar, f"{entries:,} entries and "
                                       f"{checkpoints} checkpoints written to {args.out}", entries)
            print(f"{entries} entries and {checkpoints} checkpoints written to {args.out}")
            return 0
        if args.action == "verify":
            from lienthong.services.audit.verify import verify_copy_file, verify_kafka

            pub = _public_key(args)
            raw = pub[1] if pub else None
            with _progress("audit verify") as bar:
                if args.copy:
                    report = verify_copy_file(args.copy, raw, chunk_entries=CHUNK_ENTRIES,
                                              progress=bar)
                else:
                    n = _names()
                    report = verify_kafka(_bootstrap(args), n.audit_log, n.audit_checkpoints,
                                          raw, chunk_entries=CHUNK_ENTRIES, progress=bar)
                bar.summary = _summary(
                    "audit verify", bar, f"{report.entries:,} entries of {report.partitions} "
                    f"partition{'' if report.partitions == 1 else 's'} and "
                    f"{report.checkpoints} checkpoints checked: "
                    + ("ok" if report.ok else f"{len(report.problems)} problems"),
                    report.entries)
            out = report.as_json()
            out["rate_entries_per_s"] = round(report.entries / report.seconds) \
                if report.seconds > 0 else None
            print(json.dumps(out, ensure_ascii=False, indent=1))
            return 0 if report.ok else 1
        if args.action == "export":
            from lienthong.services.audit.export import (
                export_copy_file,
                export_kafka,
                write_export,
            )

            pub = _public_key(args)
            if pub is None:
                return _fail("the export needs the hub's audit key (--audit-key or "
                             "LIENTHONG_AUDIT_KEY) or --public-key")
            # --public-key alone does not name the key: the export takes the checkpoint's name
            public_key = {"ed25519": pub[1].hex()} if args.public_key else {
                "key_id": pub[0], "ed25519": pub[1].hex()}
            # Not with_suffix: dossier codes have dots of their own.
            json_path = args.out / f"{args.dossier}.json"
            html_path = args.out / f"{args.dossier}.html"
            with _progress("audit export") as bar:
                if args.copy:
                    export = export_copy_file(args.copy, args.dossier, public_key,
                                              chunk_entries=CHUNK_ENTRIES, progress=bar)
                else:
                    n = _names()
                    export = export_kafka(_bootstrap(args), n.audit_log, n.audit_checkpoints,
                                          args.dossier, public_key,
                                          chunk_entries=CHUNK_ENTRIES, progress=bar)
                with export:
                    args.out.mkdir(parents=True, exist_ok=True)
                    write_export(export, json_path, html_path)
                records = len(export.records)
                complete = "proven" if export.complete else "not proven (version-1 entries)"
                bar.summary = _summary("audit export", bar, f"{records} records of "
                                       f"{args.dossier} written to {json_path} and "
                                       f"{html_path}, completeness {complete}")
            print(f"{records} records of {args.dossier} written to {json_path} and "
                  f"{html_path}")
            return 0
    except FileExistsError as exc:
        return _fail(f"{exc.filename} exists; a key is never overwritten")
    except (ValueError, OSError, TimeoutError) as exc:
        return _fail(str(exc))
    return 2


def _chain(args: argparse.Namespace) -> int:
    from lienthong.services.audit.entries import load_audit_key
    from lienthong.services.audit.service import ChainService

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.bootstrap:
        return _fail("no Kafka address; pass --bootstrap or set KAFKA_BOOTSTRAP_SERVERS")
    if not args.audit_key:
        return _fail("no audit key; pass --audit-key or set LIENTHONG_AUDIT_KEY (create one "
                     "with: lienthong audit key --create FILE)")
    if args.nice > 0:
        os.nice(args.nice)
    service = ChainService(args.bootstrap, _names(), load_audit_key(args.audit_key),
                           checkpoint_seconds=args.checkpoint_seconds)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    service.run(stop)
    print(f"audit chain stopped: {service.stats.appended} entries appended in "
          f"{service.stats.batches} transactions")
    return 0
