"""What the vendor conformance kit sends and how it judges the answers (no I/O here).

A :class:`Case` is one row of the pass/fail table: an id such as ``signing.stale``, what it
checks, the request to make and a ``judge`` that turns the answer into :class:`Verdict`. The
runner (``kit.py``) does the HTTP; everything that decides is here, so the rules are tested
without a network.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from lienthong.services.domain.receipts import (
    ReceiptKeys,
    ReceiptRefused,
    check_form,
    check_signature,
    check_subject,
)

ICT = timezone(timedelta(hours=7))
AGENCY_EVENT_TYPES = ("received", "handoff", "supplement_requested", "supplement_received",
                      "obligation_requested", "obligation_paid", "apology_issued",
                      "result_ready", "returned", "withdrawn", "stopped", "postal_update")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as the judge sees it (``json`` is None when the body is not JSON)."""

    status: int
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    text: str = ""


@dataclass(frozen=True)
class Verdict:
    passed: bool
    detail: str


@dataclass(frozen=True)
class Signing:
    """How a request is signed: by the vendor's own signer, by the kit with the vendor's key,
    with a wrong key, with a reused nonce or with an old timestamp."""

    mode: str = "reference"  # vendor | reference | wrong_key | replay | stale | none


@dataclass(frozen=True)
class Case:
    row: str
    checks: str
    method: str = "POST"
    path: str = "/v1/events"
    body: bytes = b""
    signing: Signing = field(default_factory=Signing)
    judge: Callable[[Answer, Answer | None], Verdict] = field(repr=False, default=lambda a, b:
                                                              Verdict(False, "no judge"))
    twice: bool = False  # send it again (a retry); the judge gets both answers
    target: str = "gateway"  # gateway | inbox
    headers: Mapping[str, str] = field(default_factory=dict)
    # Judge the answers of the row named here instead of sending anything (several rows that
    # look at one delivery's answers, e.g. its receipt).
    answers_of: str | None = None


# -- the events of the contract ------------------------------------------------------------

def conformance_dossier(agency: str, now: datetime) -> str:
    """A dossier code of the national portal's form for this run, e.g.
    ``000.00.15.H99-20261203-9123456`` (the 9 marks a conformance run)."""
    return f"{agency}-{now.astimezone(ICT):%Y%m%d}-9{secrets.randbelow(10**6):06d}"


def sample_event(etype: str, agency: str, dossier: str, now: datetime,
                 to_agency: str) -> dict[str, Any]:
    """A valid event of ``etype`` from ``agency`` (canonical JSON, DESIGN section 4)."""
    at = now.astimezone(ICT).replace(microsecond=0)
    base = {"event_id": str(uuid.uuid4()), "type": etype, "dossier": dossier,
            "at": at.isoformat(), "agency": agency}
    extra: dict[str, Any] = {
        "received": {"procedure": "1.001193", "channel": "desk",
                     "applicant": {"name": "Nguyễn Văn Kiểm Thử", "id_number": "001099012345",
                                   "phone": "0912345678"}},
        "handoff": {"to_agency": to_agency, "note": "Chuyển hồ sơ (kiểm thử tích hợp)"},
        "supplement_requested": {"reason": "Thiếu bản sao giấy khai sinh"},
        "supplement_received": {},
        "obligation_requested": {"amount_vnd": 150_000},
        "obligation_paid": {"amount_vnd": 150_000},
        "apology_issued": {"new_due_at": (at + timedelta(days=3)).isoformat(),
                           "reason": "Xin lỗi vì chậm trễ"},
        "result_ready": {"decision": "approved"},
        "returned": {"channel": "desk"},
        "withdrawn": {"reason": "Công dân rút hồ sơ"},
        "stopped": {"reason": "Hồ sơ không đủ điều kiện"},
        "postal_update": {"tracking_number": "EB123456789VN", "leg": "result_out",
                          "status": "in_transit"},
    }[etype]
    return {**base, **extra}


def _body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


# -- judges ----------------------------------------------------------------------------------

def accepted(event_ids: list[str]) -> Callable[[Answer, Answer | None], Verdict]:
    def judge(a: Answer, _: Answer | None) -> Verdict:
        got = a.json.get("accepted") if isinstance(a.json, dict) else None
        if a.status == 202 and got == event_ids:
            return Verdict(True, f"202, accepted {len(event_ids)}")
        return Verdict(False, f"expected 202 accepting {event_ids}; got {_said(a)}")
    return judge


def refused(status: int, error: str) -> Callable[[Answer, Answer | None], Verdict]:
    """The whole request is refused with ``status`` and ``{"error": error}``."""
    def judge(a: Answer, _: Answer | None) -> Verdict:
        got = a.json.get("error") if isinstance(a.json, dict) else None
        if a.status == status and got == error:
            return Verdict(True, f"{status} {error}")
        return Verdict(False, f"expected {status} {error}; got {_said(a)}")
    return judge


def rejected(status: int, reason: str, field_name: str | None,
             index: int = 0) -> Callable[[Answer, Answer | None], Verdict]:
    """Event ``index`` of the batch is rejected with ``reason`` naming ``field_name``."""
    def judge(a: Answer, _: Answer | None) -> Verdict:
        rows = a.json.get("rejected") if isinstance(a.json, dict) else None
        row = next((r for r in rows or () if isinstance(r, dict) and r.get("index") == index),
                   None)
        if a.status == status and row is not None and row.get("reason") == reason and (
                field_name is None or row.get("field") == field_name):
            return Verdict(True, f"{status}, event {index}: {reason}"
                           + (f" ({field_name})" if field_name else ""))
        return Verdict(False, f"expected {status} with event {index} rejected as {reason}"
                       + (f" on {field_name}" if field_name else "") + f"; got {_said(a)}")
    return judge


def same_acceptance(event_id: str) -> Callable[[Answer, Answer | None], Verdict]:
    def judge(first: Answer, again: Answer | None) -> Verdict:
        one = accepted([event_id])(first, None)
        if not one.passed:
            return one
        assert again is not None
        two = accepted([event_id])(again, None)
        if not two.passed:
            return Verdict(False, f"the retry was not accepted like the first: {two.detail}")
        return Verdict(True, "202 both times, the same event id (the hub keeps it once)")
    return judge


def delivered(first: Answer, _: Answer | None) -> Verdict:
    if 200 <= first.status < 300:
        return Verdict(True, f"{first.status}")
    return Verdict(False, f"expected a 2xx answer to a delivery; got {_said(first)}")


def idempotent(first: Answer, again: Answer | None) -> Verdict:
    """A repeated Idempotency-Key is answered 2xx and says it was not applied again."""
    assert again is not None
    if not 200 <= first.status < 300:
        return Verdict(False, f"the first delivery was not accepted: {_said(first)}")
    if not 200 <= again.status < 300:
        return Verdict(False, f"a retry of the same delivery must be answered 2xx (the hub "
                       f"would retry it for ever otherwise); got {_said(again)}")
    replayed = {k.lower(): v for k, v in again.headers.items()}.get("idempotent-replayed")
    status = again.json.get("status") if isinstance(again.json, dict) else None
    if status == "duplicate" or (replayed or "").lower() == "true":
        return Verdict(True, f"{again.status}, not applied again")
    return Verdict(False, "the retry with the same Idempotency-Key was not recognised: answer "
                   '{"status": "duplicate"} (or header Idempotent-Replayed: true) and do not '
                   f"apply it again; got {_said(again)}")


def needs_key(first: Answer, _: Answer | None) -> Verdict:
    if 400 <= first.status < 500:
        return Verdict(True, f"{first.status} without an Idempotency-Key")
    return Verdict(False, "a delivery without an Idempotency-Key must be refused with a 4xx "
                   f"(it cannot be deduplicated); got {_said(first)}")


def _said(a: Answer) -> str:
    text = json.dumps(a.json, ensure_ascii=False) if a.json is not None else a.text
    return f"{a.status} {text[:300]}"


# -- the table -------------------------------------------------------------------------------

def gateway_cases(agency: str, now: datetime, *, to_agency: str, other_agency: str,
                  vendor_signer: bool) -> list[Case]:
    """Signing, every event type of the contract, rejections with their reason codes and an
    idempotent retry, against the gateway."""
    dossier = conformance_dossier(agency, now)
    cases: list[Case] = []

    def post(row: str, checks: str, value: Any, judge: Callable[[Answer, Answer | None], Verdict],
             signing: str = "reference", twice: bool = False, raw: bytes | None = None) -> None:
        cases.append(Case(row, checks, body=_body(value) if raw is None else raw,
                          signing=Signing(signing), judge=judge, twice=twice))

    first = sample_event("received", agency, dossier, now, to_agency)
    if vendor_signer:
        post("signing.vendor", "a request signed by the vendor's own signer is accepted",
             first, accepted([first["event_id"]]), signing="vendor")
    else:
        post("signing.right", "a request signed with the agency's key is accepted", first,
             accepted([first["event_id"]]))
    e = sample_event("handoff", agency, dossier, now, to_agency)
    post("signing.wrong", "a signature made with another key is refused", e,
         refused(401, "bad_signature"), signing="wrong_key")
    post("signing.replayed", "a request whose nonce was already used is refused", e,
         refused(401, "replayed_nonce"), signing="replay")
    post("signing.stale", "a request signed 10 minutes ago is refused", e,
         refused(401, "stale_timestamp"), signing="stale")
    post("signing.missing", "a request without the signature headers is refused", e,
         refused(401, "missing_header"), signing="none")
    for etype in AGENCY_EVENT_TYPES:
        if etype == "received":
            continue  # sent first, above
        event = sample_event(etype, agency, dossier, now, to_agency)
        post(f"event.{etype}", f"a valid {etype} event is accepted", event,
             accepted([event["event_id"]]))
    post("reject.forbidden_agency", "an event of another agency is refused",
         sample_event("handoff", other_agency, dossier, now, to_agency),
         rejected(403, "forbidden_agency", "agency"))
    bad = {**sample_event("handoff", agency, dossier, now, to_agency), "dossier": "H99-1"}
    post("reject.invalid_event", "an event breaking the contract is refused, naming the field",
         bad, rejected(422, "invalid_event", "dossier"))
    void = {"event_id": str(uuid.uuid4()), "type": "event_voided", "dossier": dossier,
            "at": now.astimezone(ICT).replace(microsecond=0).isoformat(), "agency": agency,
            "voided_event_id": first["event_id"], "reason": "thử", "operator": "vendor"}
    post("reject.operator_only", "a void (operators only) is refused", void,
         rejected(403, "operator_only", "operator"))
    twin = sample_event("supplement_received", agency, dossier, now, to_agency)
    post("reject.duplicate_in_batch", "the same event twice in one batch: the second refused",
         [twin, twin], rejected(202, "duplicate_in_batch", "event_id", index=1))
    post("reject.malformed_json", "a body that is not JSON is refused", None,
         refused(400, "malformed_json"), raw=b'{"event_id": ')
    retry = sample_event("result_ready", agency, dossier, now, to_agency)
    post("retry.idempotent", "the same event sent again (a retry) is accepted again, once",
         retry, same_acceptance(retry["event_id"]), twice=True)
    return cases


def sample_delivery(agency: str, now: datetime) -> dict[str, Any]:
    """A hand-off delivery as the hub's delivery service posts it to a destination."""
    dossier = conformance_dossier(agency, now)
    event = sample_event("handoff", "000.00.00.H99", dossier, now, agency)
    return {"delivery_id": str(uuid.uuid4()), "destination": agency, "kind": "handoff",
            "dossier": dossier, "event_id": event["event_id"],
            "at": event["at"], "payload": {"event": event, "procedure": "1.001193"}}


@dataclass(frozen=True)
class Sent:
    """The delivery a receipt must acknowledge: what was POSTed, and to whom."""

    delivery_id: str
    kind: str
    dossier: str
    destination: str
    body: bytes

    @classmethod
    def of(cls, delivery: Mapping[str, Any], body: bytes) -> Sent:
        return cls(delivery["delivery_id"], delivery["kind"], delivery["dossier"],
                   delivery["destination"], body)


HOW_TO_PASS_KEYS = ("pass the agency's Ed25519 public key with --receipt-keys FILE "
                    "(or --demo-receipt-keys for the demo agency systems)")


def _receipt_of(a: Answer) -> Any:
    return a.json.get("receipt") if isinstance(a.json, dict) else None


def _formed(a: Answer) -> tuple[Any, Verdict | None]:
    """The answer's receipt, or the failing verdict when it has none fit to check."""
    receipt = _receipt_of(a)
    if receipt is None:
        return None, Verdict(False, f'no receipt in the answer (expected {{"receipt": {{…}}}}, '
                             f"signed with the agency's key); got {_said(a)}")
    try:
        check_form(receipt)
    except ReceiptRefused as exc:
        return None, Verdict(False, f"{exc.reason}: {exc.detail}")
    return receipt, None


def receipt_present(sent: Sent) -> Callable[[Answer, Answer | None], Verdict]:
    """The answer carries a receipt with every field, ``ed25519`` and a signature."""
    def judge(a: Answer, _: Answer | None) -> Verdict:
        receipt, failed = _formed(a)
        if failed is not None:
            return failed
        return Verdict(True, f"receipt of {receipt['receiver']}, key {receipt['key_id']}")
    return judge


def receipt_names_delivery(sent: Sent) -> Callable[[Answer, Answer | None], Verdict]:
    """The receipt names this delivery, the SHA-256 of the exact bytes sent and the agency."""
    def judge(a: Answer, _: Answer | None) -> Verdict:
        receipt, failed = _formed(a)
        if failed is not None:
            return failed
        try:
            check_subject(receipt, delivery_id=sent.delivery_id, kind=sent.kind,
                          dossier=sent.dossier, destination=sent.destination, body=sent.body)
        except ReceiptRefused as exc:
            return Verdict(False, f"{exc.reason}: {exc.detail}")
        return Verdict(True, f"delivery {sent.delivery_id}, body SHA-256 "
                       f"{receipt['body_sha256'][:12]}…, receiver {sent.destination}")
    return judge


def receipt_signed(sent: Sent,
                   keys: ReceiptKeys | None) -> Callable[[Answer, Answer | None], Verdict]:
    """The receipt's signature verifies with a live published key of the agency: a receipt
    signed with any other key (forged) fails here."""
    def judge(a: Answer, _: Answer | None) -> Verdict:
        receipt, failed = _formed(a)
        if failed is not None:
            return failed
        if keys is None:
            return Verdict(False, f"cannot check the signature: {HOW_TO_PASS_KEYS}")
        try:
            key = check_signature(receipt, sent.destination, keys)
        except ReceiptRefused as exc:
            return Verdict(False, f"{exc.reason}: {exc.detail}")
        return Verdict(True, f"Ed25519 signature verifies with key {key.key_id} of "
                       f"{sent.destination}")
    return judge


def receipt_on_retry(sent: Sent,
                     keys: ReceiptKeys | None) -> Callable[[Answer, Answer | None], Verdict]:
    """The answer to the repeated delivery (same Idempotency-Key) still carries a receipt of
    this delivery that verifies (the hub may only see the retry's answer)."""
    subject = receipt_names_delivery(sent)
    signed = receipt_signed(sent, keys)

    def judge(first: Answer, again: Answer | None) -> Verdict:
        if again is None:
            return Verdict(False, "the delivery was not sent again")
        for check in (subject, signed):
            v = check(again, None)
            if not v.passed:
                return Verdict(False, f"the retry's answer: {v.detail}")
        same = _receipt_of(again) == _receipt_of(first)
        return Verdict(True, "the retry's receipt verifies"
                       + (" (the same receipt)" if same else " (a new signature)"))
    return judge


def inbox_cases(agency: str, now: datetime,
                receipt_keys: ReceiptKeys | None = None) -> list[Case]:
    """Receiving a delivery and answering it: 2xx, the Idempotency-Key honoured, and a receipt
    signed with the agency's key over the exact body sent, also on a retry."""
    one, two = sample_delivery(agency, now), sample_delivery(agency, now)
    retried = _body(two)
    sent = Sent.of(two, retried)
    return [
        Case("delivery.accepted", "a hand-off delivery is answered 2xx", body=_body(one),
             judge=delivered, target="inbox", signing=Signing("hub"),
             headers={"Idempotency-Key": one["delivery_id"]}),
        Case("delivery.idempotent", "the same delivery again (same Idempotency-Key) is "
             "answered 2xx and not applied twice", body=retried, judge=idempotent,
             twice=True, target="inbox", signing=Signing("hub"),
             headers={"Idempotency-Key": two["delivery_id"]}),
        Case("delivery.needs_key", "a delivery without an Idempotency-Key is refused (4xx)",
             body=_body(sample_delivery(agency, now)), judge=needs_key, target="inbox",
             signing=Signing("hub")),
        Case("receipt.present", "the answer to a delivery carries a signed receipt",
             judge=receipt_present(sent), target="inbox", answers_of="delivery.idempotent"),
        Case("receipt.delivery", "the receipt names the delivery id, the SHA-256 of the exact "
             "body sent and the agency as receiver", judge=receipt_names_delivery(sent),
             target="inbox", answers_of="delivery.idempotent"),
        Case("receipt.signature", "the receipt's signature verifies with the agency's public "
             "key (a forged one fails)", judge=receipt_signed(sent, receipt_keys),
             target="inbox", answers_of="delivery.idempotent"),
        Case("receipt.retry", "the answer to the repeated delivery carries a receipt that "
             "still verifies", judge=receipt_on_retry(sent, receipt_keys), target="inbox",
             answers_of="delivery.idempotent"),
    ]
