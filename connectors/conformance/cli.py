"""``lienthong conformance``: check a vendor's integration against a hub, as a pass/fail table.

    lienthong conformance --gateway http://127.0.0.1:8400 --agency 000.00.15.H99 \\
        --keys vendor-keys.yaml [--inbox https://vendor.example/lienthong/inbox] \\
        [--signer "python sign.py"] [--receipt-keys vendor-public-keys.yaml]
    lienthong conformance --sign POST /v1/events --agency 000.00.15.H99 --keys FILE < body

Exit status: 0 every row passed, 1 a row failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run a vendor's integration against a hub (a sandbox, or the embedded one of "
        "'lienthong up') and print a pass/fail table: signing (right, wrong, replayed, stale, "
        "missing), every event type of the contract accepted, rejections with their reason "
        "codes, an idempotent retry, and — with --inbox — receiving a delivery and answering "
        "it with the Idempotency-Key honoured and a receipt signed with the agency's Ed25519 "
        "key (checked with --receipt-keys), also on a retry. The events it sends are real: "
        "use a sandbox hub.")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "The signer program (--signer) is run as 'SIGNER METHOD PATH' with the request body on\n"
        "standard input and must print the four headers X-Agency, X-Timestamp, X-Nonce and\n"
        "X-Signature as one JSON object; 'lienthong conformance --sign METHOD PATH' is the\n"
        "reference that prints what it should.\n\n"
        "The inbox's answer to a delivery must carry {\"receipt\": {...}} signed with the\n"
        "agency's Ed25519 key over the exact body received (README, 'Evidence: signed\n"
        "receipts'); without --receipt-keys or --demo-receipt-keys the signature rows fail\n"
        "and say how to pass the key.\n\n"
        "exit status: 0 every row passed, 1 a row failed, 2 usage error")
    parser.add_argument("--gateway", help="the hub's gateway base URL, e.g. "
                        "http://127.0.0.1:8400")
    parser.add_argument("--agency", required=True, help="the vendor's agency code, e.g. "
                        "000.00.15.H99")
    parser.add_argument("--keys", required=True, type=Path,
                        help="keys file holding the agency's key (the hub's keys-file format; "
                        "an entry LIENTHONG, when present, signs the deliveries to --inbox)")
    parser.add_argument("--inbox", help="the vendor's endpoint that receives deliveries "
                        "(checked when given)")
    parser.add_argument("--signer", help="the vendor's own signer program (see below); without "
                        "it the kit signs with the agency's key")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--receipt-keys", type=Path, metavar="FILE",
                      help="the agency's Ed25519 public key(s) that check the receipts its "
                      "inbox signs: the file format of 'lienthong delivery --receipt-keys' "
                      "(JSON or YAML: {agency: [{key_id, public_key: base64 or hex}]})")
    keys.add_argument("--demo-receipt-keys", action="store_true",
                      help="check receipts against the agency's demo key (what the demo "
                      "agency systems of 'lienthong doubles' sign with; proves nothing)")
    parser.add_argument("--to-agency", default="000.00.00.H99",
                        help="recipient of the sample hand-off (default 000.00.00.H99)")
    parser.add_argument("--other-agency", default="000.00.99.H99",
                        help="an agency code that is not the vendor's (forged-agency row)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--sign", nargs=2, metavar=("METHOD", "PATH"),
                        help="print the reference headers for a request (body on stdin)")


def run(args: argparse.Namespace) -> int:
    from lienthong.connectors.conformance.kit import Kit, table
    from lienthong.connectors.http import KeysFileError, load_keyring, signed_headers
    from lienthong.services.domain.receipts import ReceiptKeys, demo_keys

    try:
        keys = load_keyring(args.keys)
    except KeysFileError as exc:
        print(f"lienthong conformance: {exc}", file=sys.stderr)
        return 2
    if args.sign:
        live = keys.live_keys(args.agency)
        if not live:
            print(f"lienthong conformance: no live key of {args.agency} in {args.keys}",
                  file=sys.stderr)
            return 2
        method, path = args.sign
        body = sys.stdin.buffer.read()
        print(json.dumps(signed_headers(args.agency, live[0].secret, method.upper(), path,
                                        body)))
        return 0
    if not args.gateway:
        print("lienthong conformance: --gateway URL is required", file=sys.stderr)
        return 2
    try:
        receipt_keys = (ReceiptKeys.from_file(args.receipt_keys) if args.receipt_keys
                        else demo_keys([args.agency]) if args.demo_receipt_keys else None)
    except ValueError as exc:
        print(f"lienthong conformance: --receipt-keys {exc}", file=sys.stderr)
        return 2
    if receipt_keys is not None and args.agency not in receipt_keys.agencies():
        print(f"lienthong conformance: {args.receipt_keys} has no public key of "
              f"{args.agency}", file=sys.stderr)
        return 2
    kit = Kit(args.gateway, args.agency, keys, inbox=args.inbox, signer=args.signer,
              to_agency=args.to_agency, other_agency=args.other_agency,
              receipt_keys=receipt_keys)
    rows = kit.run()
    if args.json:
        print(json.dumps([{"row": r.case.row, "checks": r.case.checks,
                           "passed": r.verdict.passed, "detail": r.verdict.detail}
                          for r in rows], ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(table(rows))
    return 0 if all(r.verdict.passed for r in rows) else 1
