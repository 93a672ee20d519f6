"""Hand-off receipts (biên nhận giao – nhận): what a destination signs when it applies a delivery.

A receipt says: *receiver* applied *delivery_id* (of *kind*, for *dossier*), whose body had
SHA-256 *body_sha256*, at *received_at*. The receiver signs :func:`receipt_text` with its
Ed25519 key; anyone with the receiver's public key can check it, months later, without the hub
and without any secret — which an HMAC over a shared secret cannot give, since the hub holds
the same secret and could have made the tag itself.

The answer a destination gives to a delivery POST carries it as ``{"receipt": {...}}`` with the
fields of :func:`sign_receipt`. :func:`check_receipt` turns that answer into the receipt record
of ``codec.RECEIPTS`` or refuses it with a reason code (:class:`ReceiptRefused`).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .identifiers import agency_code_problem

ALGORITHM = "ed25519"
_SIGNED_FIELDS = ("delivery_id", "kind", "dossier", "body_sha256", "receiver", "received_at",
                  "key_id")

#: Reason codes of a refused receipt (dead-letter ``reason``).
MALFORMED = "receipt_malformed"
WRONG_DELIVERY = "receipt_wrong_delivery"
WRONG_BODY = "receipt_wrong_body"
WRONG_RECEIVER = "receipt_wrong_receiver"
UNKNOWN_KEY = "receipt_unknown_key"
REVOKED_KEY = "receipt_revoked_key"
BAD_SIGNATURE = "receipt_bad_signature"


class ReceiptRefused(ValueError):
    """A receipt that proves nothing; ``reason`` is its dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    raw: bytes  # 32 bytes
    revoked: bool = False


class ReceiptKeys:
    """Receivers' public keys by agency code (several during a rotation; revoked ones listed)."""

    def __init__(self, keys: Mapping[str, Iterable[PublicKey]]) -> None:
        self._keys = {agency: {k.key_id: k for k in ks} for agency, ks in keys.items()}

    def find(self, agency: str, key_id: str) -> PublicKey | None:
        return self._keys.get(agency, {}).get(key_id)

    def agencies(self) -> list[str]:
        return sorted(self._keys)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ReceiptKeys:
        """The public-keys file (JSON or YAML) of :meth:`from_mapping`; ``ValueError`` says
        what is wrong with it."""
        import yaml

        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read it ({exc})") from None
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_mapping(cls, data: Any, source: str = "receipt keys") -> ReceiptKeys:
        """``{agency: [{key_id, public_key: base64 or hex of the 32 raw bytes, revoked?}]}``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a mapping of agency code -> list of keys")
        out: dict[str, list[PublicKey]] = {}
        for agency, entries in data.items():
            problem = agency_code_problem(agency)
            if problem:
                raise ValueError(f"{source}: agency {agency!r}: {problem}")
            if not isinstance(entries, list) or not entries:
                raise ValueError(f"{source}: agency {agency}: expected a non-empty list")
            keys = []
            for i, entry in enumerate(entries):
                where = f"{source}: agency {agency}, key #{i}"
                if not isinstance(entry, Mapping) or not isinstance(entry.get("key_id"), str) \
                        or not isinstance(entry.get("public_key"), str):
                    raise ValueError(f"{where}: expected {{key_id, public_key}}")
                keys.append(PublicKey(entry["key_id"], _raw_key(entry["public_key"], where),
                                      bool(entry.get("revoked", False))))
            out[agency] = keys
        return cls(out)


def _raw_key(text: str, where: str) -> bytes:
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{where}: public_key must be the 32-byte Ed25519 key, base64 or hex")
    return raw


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def demo_key(agency: str) -> Ed25519PrivateKey:
    """A key anyone can derive from the agency code: for the demo doubles and simulator only,
    never for a real agency (it proves nothing, by design everyone can sign with it)."""
    seed = hashlib.sha256(f"lienthong demo receipt key {agency}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


DEMO_KEY_ID = "demo"


def demo_keys(agencies: Iterable[str]) -> ReceiptKeys:
    return ReceiptKeys({a: [PublicKey(DEMO_KEY_ID, public_raw(demo_key(a)))] for a in agencies})


def receipt_text(fields: Mapping[str, Any]) -> bytes:
    """The exact bytes a receipt's signature covers: a fixed prefix, then the signed fields."""
    return "\n".join(["lienthong-receipt-v1", *(str(fields[k]) for k in _SIGNED_FIELDS)]
                     ).encode("utf-8")


def sign_receipt(key: Ed25519PrivateKey, key_id: str, *, delivery_id: str, kind: str,
                 dossier: str, body: bytes, receiver: str, received_at: datetime
                 ) -> dict[str, str]:
    """The receipt a destination puts in its answer (``{"receipt": ...}``)."""
    fields = {"delivery_id": delivery_id, "kind": kind, "dossier": dossier,
              "body_sha256": hashlib.sha256(body).hexdigest(), "receiver": receiver,
              "received_at": received_at.isoformat(), "key_id": key_id}
    return {**fields, "algorithm": ALGORITHM, "signature": key.sign(receipt_text(fields)).hex()}


def check_receipt(answer: Any, *, delivery_id: str, kind: str, dossier: str,
                  destination: str, body: bytes, keys: ReceiptKeys,
                  recorded_at: datetime) -> dict[str, str]:
    """The receipt record for a delivery, from the destination's signed answer.

    Refused (:class:`ReceiptRefused`) unless it is about this very delivery and body, signed by
    the destination itself with a live key it has published.
    """
    check_form(answer)
    check_subject(answer, delivery_id=delivery_id, kind=kind, dossier=dossier,
                  destination=destination, body=body)
    check_signature(answer, destination, keys)
    return {"receipt_id": f"receipt:{delivery_id}",
            **{k: answer[k] for k in _SIGNED_FIELDS}, "algorithm": ALGORITHM,
            "signature": answer["signature"], "recorded_at": recorded_at.isoformat()}


def check_form(answer: Any) -> None:
    """Refused as ``receipt_malformed`` unless every signed field, the algorithm and the
    signature are there as text, and ``received_at`` is an instant with offset."""
    if not isinstance(answer, Mapping):
        raise ReceiptRefused(MALFORMED, "the receipt must be a JSON object")
    missing = [k for k in (*_SIGNED_FIELDS, "algorithm", "signature")
               if not isinstance(answer.get(k), str) or not answer.get(k)]
    if missing:
        raise ReceiptRefused(MALFORMED, f"missing or not text: {', '.join(missing)}")
    if answer["algorithm"] != ALGORITHM:
        raise ReceiptRefused(MALFORMED, f"algorithm {answer['algorithm']!r} is not "
                                        f"{ALGORITHM}")
    try:
        at = datetime.fromisoformat(answer["received_at"])
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ReceiptRefused(MALFORMED, "received_at must be an ISO-8601 instant with offset")


def check_subject(answer: Mapping[str, Any], *, delivery_id: str, kind: str, dossier: str,
                  destination: str, body: bytes) -> None:
    """Refused unless a well-formed receipt names this delivery, the SHA-256 of the exact
    bytes sent and the destination as its receiver."""
    if (answer["delivery_id"], answer["kind"], answer["dossier"]) != (delivery_id, kind,
                                                                      dossier):
        raise ReceiptRefused(WRONG_DELIVERY, f"it acknowledges {answer['delivery_id']} "
                             f"({answer['kind']}, {answer['dossier']}), not {delivery_id}")
    if answer["body_sha256"] != hashlib.sha256(body).hexdigest():
        raise ReceiptRefused(WRONG_BODY, "body_sha256 is not the SHA-256 of the body sent")
    if answer["receiver"] != destination:
        raise ReceiptRefused(WRONG_RECEIVER, f"signed as {answer['receiver']}, but the "
                             f"delivery went to {destination}")


def check_signature(answer: Mapping[str, Any], destination: str,
                    keys: ReceiptKeys) -> PublicKey:
    """The live published key of ``destination`` whose signature a well-formed receipt
    carries, or refused (unknown key, revoked key, bad signature)."""
    key = keys.find(destination, answer["key_id"])
    if key is None:
        raise ReceiptRefused(UNKNOWN_KEY, f"{destination} has no published key "
                             f"{answer['key_id']!r}")
    if key.revoked:
        raise ReceiptRefused(REVOKED_KEY, f"key {key.key_id} of {destination} is revoked")
    try:
        signature = bytes.fromhex(answer["signature"])
        Ed25519PublicKey.from_public_bytes(key.raw).verify(signature, receipt_text(answer))
    except (ValueError, InvalidSignature):
        raise ReceiptRefused(BAD_SIGNATURE, f"the signature does not verify with key "
                             f"{key.key_id} of {destination}") from None
    return key


def receipt_missing_id(delivery_id: str) -> str:
    """Deterministic id of the ``receipt_missing`` alert of one delivery (raised once)."""
    return f"receipt_missing:{delivery_id}"


#: Delivery kinds a destination system applies and must acknowledge with a receipt.
ACKNOWLEDGED_KINDS = frozenset({"handoff", "result", "status"})

#: The least time a hand-off read late (a backlog, a stopped delivery service) gets for its
#: receipt, so that an alert never fires before the destination could have answered.
RECEIPT_GRACE = timedelta(minutes=15)


def receipt_due(kind: str, payload: Mapping[str, Any], read_at: datetime,
                wait: timedelta) -> datetime:
    """When the receipt of a delivery read at ``read_at`` is overdue.

    A hand-off's receipt is due when the destination's allotted working time for its step
    ends (the hand-off's ``step_due_at``, computed by the worker in Vietnamese working time),
    but never sooner than ``RECEIPT_GRACE`` after it was read. A result, a status sync and a
    hand-off that carries no step due (one after the dossier ended) wait ``wait``.
    """
    if kind == "handoff":
        text = payload.get("step_due_at")
        if isinstance(text, str):
            try:
                step_due = datetime.fromisoformat(text)
            except ValueError:
                step_due = None
            if step_due is not None and step_due.tzinfo is not None:
                return max(step_due, read_at + RECEIPT_GRACE)
    return read_at + wait


@dataclass(frozen=True)
class Expected:
    """A delivery whose receipt is awaited until ``due``."""

    delivery_id: str
    destination: str
    dossier: str
    kind: str
    due: datetime


class ReceiptWatch:
    """Which deliveries still wait for their receipt, and which waited past their time.

    The watch outlives a restart through a compacted log keyed by delivery id (the delivery
    service's ``receipts.expected``): each method says what that log must be told —
    :meth:`expect` True: write the expectation; :meth:`received` True and every delivery
    :meth:`overdue` returns: write its tombstone. :func:`pending` reads such a log back, and
    :meth:`restore` starts a new watch from it.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, Expected] = {}
        self._raised: set[str] = set()

    def __len__(self) -> int:
        return len(self._waiting)

    def waiting(self) -> list[Expected]:
        """Deliveries still awaiting their receipt, soonest due first."""
        return sorted(self._waiting.values(), key=lambda e: (e.due, e.delivery_id))

    def expect(self, expected: Expected) -> bool:
        """Start waiting (a delivery read again keeps its first due); True if it is new."""
        if expected.delivery_id in self._raised or expected.delivery_id in self._waiting:
            return False
        self._waiting[expected.delivery_id] = expected
        return True

    def restore(self, expected: Iterable[Expected]) -> None:
        """Wait again for deliveries a previous watch was awaiting (read from its log)."""
        for e in expected:
            self.expect(e)

    def received(self, delivery_id: str) -> bool:
        """Its receipt was recorded; True if it was awaited (its log entry must go)."""
        return self._waiting.pop(delivery_id, None) is not None

    def overdue(self, now: datetime) -> list[Expected]:
        """Deliveries past their due with no receipt; each is returned once."""
        late = [e for e in self.waiting() if e.due <= now]
        for e in late:
            del self._waiting[e.delivery_id]
            self._raised.add(e.delivery_id)
        return late


def pending(log: Iterable[tuple[str, Expected | None]]) -> list[Expected]:
    """What a watch's log, read in order as ``(delivery id, expectation or None)``, still
    awaits: the last value of each key, a ``None`` (tombstone) ending it — what Kafka's
    compaction keeps."""
    latest: dict[str, Expected | None] = {}
    for key, value in log:
        latest[key] = value
    return sorted((e for e in latest.values() if e is not None),
                  key=lambda e: (e.due, e.delivery_id))
