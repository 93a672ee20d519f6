"""The vendor conformance kit against the real gateway on the embedded broker: a correct
integration passes every row; a broken client double (wrong signature, no idempotency, no
receipts) and agency doubles told to forge or leave out their receipts fail exactly the rows
that check those (bounded: a few seconds)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lienthong.connectors.doubles.agencies import AgencyDoubles
from lienthong.connectors.http import load_keyring
from lienthong.connectors.http.serving import listening
from lienthong.services.cli import main
from lienthong.services.domain.receipts import public_raw

from .hub import running_gateway

pytestmark = pytest.mark.kafka

AGENCY = "000.00.15.H99"
KEYS = {AGENCY: [{"key_id": "2026-12", "secret": "vendor-secret-0123456789abcdef"}],
        "LIENTHONG": [{"key_id": "hub", "secret": "hub-secret-0123456789abcdef"}]}
BROKEN_SIGNER = """
import hashlib, hmac, json, secrets, sys, time
method, path = sys.argv[1], sys.argv[2]
body = sys.stdin.buffer.read()
ts, nonce = str(int(time.time())), secrets.token_hex(16)
# The classic mistake: the body itself instead of its SHA-256 in the signed text.
text = "\\n".join([method, path, ts, nonce, body.decode()])
sig = hmac.new(b"vendor-secret-0123456789abcdef", text.encode(), hashlib.sha256).hexdigest()
print(json.dumps({"X-Agency": "000.00.15.H99", "X-Timestamp": ts, "X-Nonce": nonce,
                  "X-Signature": sig}))
"""


RECEIPT_ROWS = {"receipt.present", "receipt.delivery", "receipt.signature", "receipt.retry"}
RECEIPT_KEY = Ed25519PrivateKey.generate()  # the vendor's own receipt key


def broken_inbox() -> web.Application:
    """Applies every delivery, every time: no Idempotency-Key, no deduplication, no receipt."""
    applied: list[Any] = []

    async def post(request: web.Request) -> web.Response:
        applied.append(await request.read())
        return web.json_response({"status": "applied", "count": len(applied)})

    app = web.Application()
    app.router.add_post("/inbox", post)
    return app


def rows(out: str) -> dict[str, bool]:
    return {r["row"]: r["passed"] for r in json.loads(out)}


async def test_the_kit_passes_a_correct_integration_and_fails_a_broken_one_on_the_right_rows(
        kafka_bootstrap: str, new_topic: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    keys_file = tmp_path / "vendor-keys.yaml"
    keys_file.write_text(yaml.safe_dump(KEYS), encoding="utf-8")
    # What the vendor hands the hub's operators: its receipt public key, in the file format of
    # `lienthong delivery --receipt-keys`.
    public_file = tmp_path / "vendor-public-keys.yaml"
    public_file.write_text(yaml.safe_dump(
        {AGENCY: [{"key_id": "2026-12", "public_key": public_raw(RECEIPT_KEY).hex()}]}),
        encoding="utf-8")
    topic = new_topic(partitions=1, prefix="dossier.events")
    doubles = AgencyDoubles([AGENCY], signing_keys={AGENCY: ("2026-12", RECEIPT_KEY)})
    good_inbox_app = web.Application()
    doubles.add_routes(good_inbox_app)
    demo = AgencyDoubles([AGENCY])  # signs with the agency's demo key
    demo_app = web.Application()
    demo.add_routes(demo_app)
    (tmp_path / "broken_signer.py").write_text(BROKEN_SIGNER, encoding="utf-8")
    reference = (f"{sys.executable} -m lienthong.services.cli conformance --agency {AGENCY} "
                 f"--keys {keys_file} --sign")
    async with running_gateway(kafka_bootstrap, topic, load_keyring(keys_file),
                               tmp_path / "spool") as (gateway, _), \
            listening(good_inbox_app) as good, listening(broken_inbox()) as bad, \
            listening(demo_app) as demo_url:
        base = ["conformance", "--gateway", gateway, "--agency", AGENCY,
                "--keys", str(keys_file), "--json"]
        status = await asyncio.to_thread(main, [
            *base, "--inbox", f"{good}/agencies/{AGENCY}/inbox", "--signer", reference,
            "--receipt-keys", str(public_file)])
        passed = rows(capsys.readouterr().out)
        assert status == 0, [r for r, ok in passed.items() if not ok]
        assert len(passed) == 29 and all(passed.values())
        assert {f"event.{t}" for t in ("handoff", "postal_update", "stopped")} <= set(passed)
        assert set(passed) >= RECEIPT_ROWS
        # The correct inbox applied each delivery once (the retry was a duplicate): the
        # receipt rows judge the answers already given, they send nothing of their own.
        box = doubles.inbox(AGENCY)
        assert (box.applications, box.duplicates) == (2, 1)

        status = await asyncio.to_thread(main, [
            *base, "--inbox", f"{bad}/inbox",
            "--signer", f"{sys.executable} {tmp_path / 'broken_signer.py'}",
            "--receipt-keys", str(public_file)])
        result = rows(capsys.readouterr().out)
        assert status == 1
        assert {r for r, ok in result.items() if not ok} == {
            "signing.vendor", "delivery.idempotent", "delivery.needs_key", *RECEIPT_ROWS}

        # The demo doubles sign with the demo keys: --demo-receipt-keys checks them.
        demo_inbox = ["--inbox", f"{demo_url}/agencies/{AGENCY}/inbox", "--demo-receipt-keys"]
        status = await asyncio.to_thread(main, [*base, *demo_inbox])
        result = rows(capsys.readouterr().out)
        assert status == 0 and len(result) == 29 and all(result.values())

        # A double that forges its receipts fails the signature rows only; one that answers
        # without receipts fails every receipt row and nothing else.
        for fault, failing in (("forged_count", {"receipt.signature", "receipt.retry"}),
                               ("unsigned_count", RECEIPT_ROWS)):
            demo.inbox(AGENCY).set_faults({"reset": True, fault: 10})
            status = await asyncio.to_thread(main, [*base, *demo_inbox])
            result = rows(capsys.readouterr().out)
            assert status == 1
            assert {r for r, ok in result.items() if not ok} == failing, fault

        # The demo double's own receipts are not the vendor's key: the real key file refuses
        # them on the signature rows.
        demo.inbox(AGENCY).set_faults({"reset": True})
        status = await asyncio.to_thread(main, [
            *base, "--inbox", f"{demo_url}/agencies/{AGENCY}/inbox",
            "--receipt-keys", str(public_file)])
        result = rows(capsys.readouterr().out)
        assert status == 1
        assert {r for r, ok in result.items() if not ok} == {"receipt.signature",
                                                             "receipt.retry"}

        # Without --signer the kit signs itself; the table is human-readable.
        status = await asyncio.to_thread(main, base[:-1])
        out = capsys.readouterr().out
        assert status == 0 and "signing.right" in out and "22 passed, 0 failed" in out

