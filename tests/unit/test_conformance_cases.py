"""The conformance kit's judges, without a network: what passes and what fails, and why."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

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
    sample_event,
)
from lienthong.connectors.conformance.kit import Case, Row, table
from lienthong.schemas import codec

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
            "delivery.needs_key"} <= set(rows)
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
