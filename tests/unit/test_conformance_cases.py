"""The conformance kit's judges, without a network: what passes and what fails, and why."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from lienthong.connectors.conformance.cases import (
    AGENCY_EVENT_TYPES,
    Answer,
    accepted,
    gateway_cases,
    idempotent,
    inbox_cases,
    needs_key,
    refused,
    rejected,
    same_acceptance,
    sample_delivery,
    sample_event,
)
from lienthong.connectors.conformance.kit import Case, Row, table
from lienthong.schemas import codec
from lienthong.services.domain.receipts import (
    DEMO_KEY_ID,
    PublicKey,
    ReceiptKeys,
    demo_key,
    demo_keys,
    public_raw,
    sign_receipt,
)

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=timezone(timedelta(hours=7)))
A = "000.00.15.H99"


@pytest.mark.parametrize("etype", AGENCY_EVENT_TYPES)
def test_every_sample_event_is_valid_under_the_contract(etype: str) -> None:
    event = sample_event(etype, A, f"{A}-20261203-9000001", NOW, "000.00.00.H99")
    assert codec.decode_event(codec.encode_event(event)) == event


def test_the_table_covers_signing_every_type_rejections_retry_and_the_inbox() -> None:
    rows = [c.row for c in gateway_cases(A, NOW, to_agency="000.00.00.H99",
                                         other_agency="000.00.99.H99", vendor_signer=False)]
    rows += [c.row for c in inbox_cases(A, NOW)]
    assert {"signing.right", "signing.wrong", "signing.replayed", "signing.stale",
            "signing.missing", "reject.forbidden_agency", "reject.invalid_event",
            "reject.operator_only", "reject.duplicate_in_batch", "reject.malformed_json",
            "retry.idempotent", "delivery.accepted", "delivery.idempotent",
            "delivery.needs_key", "receipt.present", "receipt.delivery", "receipt.signature",
            "receipt.retry"} <= set(rows)
    assert {f"event.{t}" for t in AGENCY_EVENT_TYPES if t != "received"} <= set(rows)
    assert len(rows) == len(set(rows))


def test_judges_name_what_they_expected_and_what_came() -> None:
    assert accepted(["e1"])(Answer(202, {"accepted": ["e1"]}), None).passed
    v = accepted(["e1"])(Answer(401, {"error": "bad_signature"}), None)
    assert not v.passed and "bad_signature" in v.detail and "202" in v.detail
    assert refused(401, "stale_timestamp")(Answer(401, {"error": "stale_timestamp"}), None).passed
    assert not refused(401, "stale_timestamp")(Answer(202, {"accepted": []}), None).passed
    row = {"index": 0, "reason": "invalid_event", "field": "dossier"}
    assert rejected(422, "invalid_event", "dossier")(Answer(422, {"rejected": [row]}),
                                                      None).passed
    assert not rejected(422, "invalid_event", "at")(Answer(422, {"rejected": [row]}),
                                                     None).passed
    ok = Answer(202, {"accepted": ["e1"]})
    assert same_acceptance("e1")(ok, ok).passed
    assert not same_acceptance("e1")(ok, Answer(500, None, text="boom")).passed


def test_an_inbox_must_recognise_a_retry_and_insist_on_the_key() -> None:
    first = Answer(200, {"status": "applied"})
    assert idempotent(first, Answer(200, {"status": "duplicate"})).passed
    assert idempotent(first, Answer(200, {}, {"Idempotent-Replayed": "true"})).passed
    v = idempotent(first, Answer(200, {"status": "applied"}))
    assert not v.passed and "Idempotency-Key" in v.detail
    assert not idempotent(first, Answer(409, {"error": "duplicate"})).passed  # must be 2xx
    assert needs_key(Answer(400, {"error": "missing_idempotency_key"}), None).passed
    assert not needs_key(Answer(200, {"status": "applied"}), None).passed


def test_the_table_counts_passes_and_failures() -> None:
    from lienthong.connectors.conformance.cases import Verdict
    rows = [Row(Case("signing.right", "signed right"), Verdict(True, "202")),
            Row(Case("delivery.idempotent", "retry"), Verdict(False, "not recognised"))]
    text = table(rows)
    assert "PASS" in text and "FAIL" in text and "1 passed, 1 failed" in text


# -- receipts -------------------------------------------------------------------------------

RECEIVED_AT = datetime(2026, 12, 3, 9, 0, 2, tzinfo=timezone(timedelta(hours=7)))
KEYS = demo_keys([A])


def receipt_rows(keys: ReceiptKeys | None = KEYS) -> dict[str, Case]:
    """The four receipt rows, all judging the answers of the retried delivery."""
    cases = {c.row: c for c in inbox_cases(A, NOW, keys)}
    rows = {r: c for r, c in cases.items() if r.startswith("receipt.")}
    assert {c.answers_of for c in rows.values()} == {"delivery.idempotent"}
    return rows | {"sent": cases["delivery.idempotent"]}


def answer_for(case: Case, *, key: Ed25519PrivateKey | None = None, body: bytes | None = None,
               receiver: str = A, status: str = "applied", **over: str) -> Answer:
    """What a signing inbox answers to ``case``'s delivery (``key`` None: the demo key)."""
    delivery = json.loads(case.body)
    receipt = sign_receipt(key or demo_key(A), DEMO_KEY_ID,
                           delivery_id=over.pop("delivery_id", delivery["delivery_id"]),
                           kind=delivery["kind"], dossier=delivery["dossier"],
                           body=case.body if body is None else body, receiver=receiver,
                           received_at=RECEIVED_AT)
    return Answer(200, {"status": status, "receipt": {**receipt, **over}})


def judged(rows: dict[str, Case], first: Answer, again: Answer) -> dict[str, bool]:
    return {r: c.judge(first, again).passed for r, c in rows.items() if r != "sent"}


def test_a_receipt_signed_by_the_agency_over_the_body_sent_passes_every_receipt_row() -> None:
    rows = receipt_rows()
    first = answer_for(rows["sent"])
    again = answer_for(rows["sent"], status="duplicate")
    assert judged(rows, first, again) == dict.fromkeys(
        ["receipt.present", "receipt.delivery", "receipt.signature", "receipt.retry"], True)
    # Ed25519 is deterministic: the same fields give the same receipt again.
    assert "(the same receipt)" in rows["receipt.retry"].judge(first, again).detail
    # A fresh receipt on the retry (signed at another instant) verifies as well.
    later = Answer(200, {"status": "duplicate", "receipt": sign_receipt(
        demo_key(A), DEMO_KEY_ID, delivery_id=json.loads(rows["sent"].body)["delivery_id"],
        kind="handoff", dossier=json.loads(rows["sent"].body)["dossier"],
        body=rows["sent"].body, receiver=A, received_at=RECEIVED_AT + timedelta(seconds=5))})
    v = rows["receipt.retry"].judge(first, later)
    assert v.passed and "(a new signature)" in v.detail


def test_an_unsigned_answer_fails_every_receipt_row_saying_a_receipt_is_expected() -> None:
    rows = receipt_rows()
    bare = Answer(200, {"status": "applied"})
    assert judged(rows, bare, Answer(200, {"status": "duplicate"})) == dict.fromkeys(
        ["receipt.present", "receipt.delivery", "receipt.signature", "receipt.retry"], False)
    v = rows["receipt.present"].judge(bare, None)
    assert "no receipt" in v.detail and '"receipt"' in v.detail


def test_a_forged_signature_fails_only_the_signature_rows() -> None:
    rows = receipt_rows()
    forged = answer_for(rows["sent"], key=Ed25519PrivateKey.generate())
    result = judged(rows, forged, forged)
    assert result == {"receipt.present": True, "receipt.delivery": True,
                      "receipt.signature": False, "receipt.retry": False}
    assert "receipt_bad_signature" in rows["receipt.signature"].judge(forged, None).detail


def test_a_receipt_over_another_body_fails_the_delivery_row_though_its_signature_is_good() -> None:
    rows = receipt_rows()
    # e.g. the inbox hashed its re-serialised JSON instead of the bytes it received.
    body = json.dumps(json.loads(rows["sent"].body), indent=1).encode()
    other = answer_for(rows["sent"], body=body)
    assert judged(rows, other, other) == {"receipt.present": True, "receipt.delivery": False,
                                          "receipt.signature": True, "receipt.retry": False}
    assert "receipt_wrong_body" in rows["receipt.delivery"].judge(other, None).detail


def test_a_receipt_naming_another_delivery_or_receiver_fails_the_delivery_row() -> None:
    rows = receipt_rows()
    judge = rows["receipt.delivery"].judge
    v = judge(answer_for(rows["sent"], delivery_id="another-delivery"), None)
    assert not v.passed and "receipt_wrong_delivery" in v.detail
    # Signed by the agency but naming another receiver: the signature still verifies.
    elsewhere = answer_for(rows["sent"], receiver="000.00.16.H99")
    assert not judge(elsewhere, None).passed
    assert "receipt_wrong_receiver" in judge(elsewhere, None).detail
    assert rows["receipt.signature"].judge(elsewhere, None).passed


def test_a_retry_answered_without_its_receipt_fails_only_the_retry_row() -> None:
    rows = receipt_rows()
    first = answer_for(rows["sent"])
    result = judged(rows, first, Answer(200, {"status": "duplicate"}))
    assert result == {"receipt.present": True, "receipt.delivery": True,
                      "receipt.signature": True, "receipt.retry": False}
    assert "retry" in rows["receipt.retry"].judge(first, Answer(200, {})).detail


def test_without_the_agencys_public_key_the_signature_rows_say_how_to_pass_it() -> None:
    rows = receipt_rows(None)
    good = answer_for(rows["sent"])
    result = judged(rows, good, good)
    assert result == {"receipt.present": True, "receipt.delivery": True,
                      "receipt.signature": False, "receipt.retry": False}
    assert "--receipt-keys" in rows["receipt.signature"].judge(good, None).detail


def test_a_revoked_or_unknown_key_fails_the_signature_row() -> None:
    raw = public_raw(demo_key(A))
    revoked = receipt_rows(ReceiptKeys({A: [PublicKey(DEMO_KEY_ID, raw, revoked=True)]}))
    good = answer_for(revoked["sent"])
    assert "receipt_revoked_key" in revoked["receipt.signature"].judge(good, None).detail
    unknown = receipt_rows(ReceiptKeys({A: [PublicKey("2027-01", raw)]}))
    assert "receipt_unknown_key" in unknown["receipt.signature"].judge(good, None).detail


def test_a_malformed_receipt_fails_the_presence_row_with_the_field_named() -> None:
    rows = receipt_rows()
    bad = answer_for(rows["sent"], algorithm="hmac-sha256")
    v = rows["receipt.present"].judge(bad, None)
    assert not v.passed and "receipt_malformed" in v.detail and "algorithm" in v.detail


@given(st.integers(min_value=0, max_value=63), st.integers(min_value=1, max_value=15))
def test_any_flipped_hex_digit_of_the_signature_fails_the_signature_row(i: int,
                                                                        flip: int) -> None:
    rows = receipt_rows()
    good = answer_for(rows["sent"])
    sig = good.json["receipt"]["signature"]
    digit = format(int(sig[i], 16) ^ flip, "x")
    bad = Answer(200, {"receipt": {**good.json["receipt"],
                                   "signature": sig[:i] + digit + sig[i + 1:]}})
    assert not rows["receipt.signature"].judge(bad, None).passed
    assert rows["receipt.signature"].judge(good, None).passed


def test_the_receipt_rows_judge_the_same_delivery_the_idempotency_row_sends() -> None:
    rows = receipt_rows()
    sent = json.loads(rows["sent"].body)
    assert rows["sent"].headers["Idempotency-Key"] == sent["delivery_id"]
    assert sent["destination"] == A and sent["kind"] == "handoff"
    assert sample_delivery(A, NOW)["delivery_id"] != sent["delivery_id"]


def test_a_receipt_row_whose_delivery_got_no_answer_fails_pointing_at_that_row() -> None:
    from lienthong.connectors.conformance.kit import Kit
    from lienthong.connectors.http import KeyRing

    kit = Kit("http://127.0.0.1:9", A, KeyRing({}), inbox="http://127.0.0.1:9/inbox")
    v = kit._judge_again(receipt_rows()["receipt.signature"])
    assert not v.passed and "delivery.idempotent" in v.detail


def test_a_public_keys_file_without_the_agency_or_unreadable_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lienthong.services.cli import main

    keys_file = tmp_path / "vendor-keys.yaml"
    keys_file.write_text(json.dumps({A: [{"key_id": "k", "secret": "s" * 32}]}),
                         encoding="utf-8")
    public_file = tmp_path / "other-public-keys.yaml"
    public_file.write_text(json.dumps({"000.00.16.H99": [
        {"key_id": "k", "public_key": public_raw(demo_key(A)).hex()}]}), encoding="utf-8")
    base = ["conformance", "--gateway", "http://127.0.0.1:9", "--agency", A,
            "--keys", str(keys_file), "--receipt-keys"]
    assert main([*base, str(public_file)]) == 2
    assert f"no public key of {A}" in capsys.readouterr().err
    public_file.write_text("{not: [valid", encoding="utf-8")
    assert main([*base, str(public_file)]) == 2
    assert "cannot read it" in capsys.readouterr().err
