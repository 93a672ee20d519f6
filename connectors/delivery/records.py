"""The records the delivery connector reads and writes, through the one codec.

- a delivery read from ``deliveries`` becomes an :class:`OutboundDelivery` whose ``body`` is the
  delivery's canonical JSON (``payload`` as an object); :func:`request_body` gives what is
  POSTed: that, or the destination's own shape (the national portal's status sync);
- a ``delivery_failing`` alert for ``alerts``;
- a dead-letter record for ``deadletter`` (original bytes and key, reason, source topic,
  partition and offset), and the same read back for ``lienthong deadletter``;
- an awaited receipt for ``receipts.expected`` (:func:`expected_bytes`, read back by
  :func:`read_expected`), key = the delivery id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lienthong.connectors.delivery.policy import (
    DELIVERY_FAILING,
    FailingDestination,
    RequestBuilder,
)
from lienthong.schemas import codec
from lienthong.services.domain.receipts import Expected


def hub_topic(name: str) -> str:
    """A topic name (``DELIVERIES``…) from the one module that knows them, imported late,
    with ``LIENTHONG_TOPIC_PREFIX`` applied as every other part of the hub does."""
    from lienthong.schemas import topics
    from lienthong.services.settings import Settings

    return Settings.from_env().topic_prefix + str(getattr(topics, name))


class RecordProblem(Exception):
    """A record that cannot be used; ``reason`` is its dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class OutboundDelivery:
    delivery_id: str
    destination: str
    kind: str
    dossier: str
    body: bytes  # UTF-8 JSON of the canonical delivery
    payload: Mapping[str, Any] = field(default_factory=dict)


def read_delivery(value: bytes | None) -> OutboundDelivery:
    if value is None:
        raise RecordProblem("corrupt_record", "the record has no value")
    try:
        d = codec.decode_delivery(value)
    except codec.CodecError as exc:
        raise RecordProblem(exc.reason, str(exc)) from None
    body = json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return OutboundDelivery(d["delivery_id"], d["destination"], d["kind"], d["dossier"], body,
                            d["payload"])


def request_body(delivery: OutboundDelivery,
                 builders: Mapping[str, RequestBuilder]) -> bytes:
    """What is POSTed to the delivery's destination: its own shape where it has a builder,
    else the canonical delivery. Raises ``ValueError`` when the builder refuses it."""
    build = builders.get(delivery.destination)
    if build is None:
        return delivery.body
    shaped = build(json.loads(delivery.body))
    return json.dumps(shaped, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def failing_alert_bytes(failing: FailingDestination, fired_at: datetime) -> bytes:
    return codec.encode_alert({
        "alert_id": failing.alert_id, "kind": DELIVERY_FAILING, "scope": "destination",
        "dossier": None, "agency": None, "destination": failing.destination,
        "due_at": None, "fired_at": fired_at.isoformat(),
        "detail": (f"{failing.failures} consecutive delivery attempts failed since "
                   f"{failing.first_failure.isoformat()}; last: {failing.last_error}")[:2000],
    })


def deadletter_bytes(*, original: bytes, key: bytes | None, reason: str, detail: str,
                     source_topic: str, partition: int, offset: int, at: datetime) -> bytes:
    return codec.encode_deadletter({
        "original": original, "key": key, "reason": reason, "detail": detail[:4000],
        "source_topic": source_topic, "partition": partition, "offset": offset,
        "at": at.isoformat(),
    })


@dataclass(frozen=True)
class ParkedRecord:
    """A dead-letter record as ``lienthong deadletter`` shows it."""

    original: bytes
    key: bytes | None
    reason: str
    detail: str
    source_topic: str
    partition: int
    offset: int
    at: str
    dossier: str | None  # from the key, or the parked delivery's own dossier field


def read_parked(value: bytes | None) -> ParkedRecord:
    if value is None:
        raise RecordProblem("corrupt_record", "the record has no value")
    try:
        r = codec.decode_deadletter(value)
    except codec.CodecError as exc:
        raise RecordProblem(exc.reason, str(exc)) from None
    dossier: str | None = None
    key = r["key"]
    if key:
        try:
            dossier = key.decode("utf-8")
        except UnicodeDecodeError:
            dossier = None
    if dossier is None:
        try:
            dossier = codec.decode_delivery(r["original"])["dossier"]
        except codec.CodecError:
            dossier = None
    return ParkedRecord(r["original"], key, r["reason"], r["detail"], r["source_topic"],
                        r["partition"], r["offset"], r["at"], dossier)


def expected_bytes(expected: Expected, partition: int) -> bytes:
    """The ``receipts.expected`` value of a delivery read from deliveries ``partition``."""
    return codec.RECEIPTS_EXPECTED.encode({
        "delivery_id": expected.delivery_id, "destination": expected.destination,
        "dossier": expected.dossier, "kind": expected.kind,
        "due_at": expected.due.isoformat(), "partition": partition})


def read_expected(value: bytes) -> tuple[int, Expected]:
    """(deliveries partition, expectation) of a ``receipts.expected`` value; ``CodecError``
    if it is not one."""
    r = codec.RECEIPTS_EXPECTED.decode(value, validate=True)
    return r["partition"], Expected(r["delivery_id"], r["destination"], r["dossier"],
                                    r["kind"], datetime.fromisoformat(r["due_at"]))
