"""VNPost tracking callbacks (bưu chính công ích) mapped to hub events (DESIGN section 4).

A tracking webhook is one JSON object::

    {"tracking_number": "EL123456789VN", "order_type": "result_out", "status": "DELIVERED",
     "at": "2026-11-27T10:05:00+07:00", "dossier": "000.00.15.H99-20261125-0000007"}

``order_type`` is ``result_out`` (a result carried to the applicant) or ``dossier_in`` (a
dossier picked up from a citizen and carried to the receiving desk; such a callback also
carries ``receiving_agency``, ``procedure`` and ``applicant``). ``status`` is one of VNPost's
codes below.

Each callback becomes a ``postal_update`` from ``VNPOST`` with a deterministic ``event_id``
(uuid5 of tracking number, status and timestamp), so a re-sent callback is one event. The
dossier-in leg is different: the dossier does not exist in the hub until the desk has it, so
only its ``DELIVERED`` callback produces events — a ``received`` with channel ``postal`` at the
desk's receipt time (the delivery instant), then the leg's ``postal_update``. Earlier dossier-in
callbacks produce nothing (the hub would refuse them as ``unknown_dossier``). Postal time never
counts against an agency: the engine keeps ``postal_update`` on the timeline only.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lienthong.services.domain.identifiers import (
    agency_code_problem,
    dossier_code_problem,
    procedure_code_problem,
)

POSTAL_AGENCY = "VNPOST"

#: VNPost status code -> (hub status, Vietnamese label).
VNPOST_STATUSES: dict[str, tuple[str, str]] = {
    "PICKED_UP": ("picked_up", "Đã nhận hàng"),
    "IN_TRANSIT": ("in_transit", "Đang vận chuyển"),
    "DELIVERED": ("delivered", "Phát thành công"),
    "DELIVERY_FAILED": ("failed", "Phát không thành công"),
    "RETURNED": ("returned_to_sender", "Chuyển hoàn người gửi"),
}
ORDER_TYPES = ("result_out", "dossier_in")

# Namespace of postal event ids: uuid5(NS, "tracking|status|timestamp").
POSTAL_NAMESPACE = uuid.UUID("2f8e6a51-94c3-5b07-8d1e-4a6c0b9f3e27")


class CallbackError(ValueError):
    """A tracking callback that cannot be used; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field, self.problem = field, problem


def postal_event_id(tracking_number: str, status: str, at: str) -> str:
    """Deterministic id: the same callback sent twice is the same event."""
    return str(uuid.uuid5(POSTAL_NAMESPACE, f"{tracking_number}|{status}|{at}"))


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise CallbackError(name, "is required (a non-empty string)")
    return value


def _checked(problem: str | None, name: str) -> None:
    if problem:
        raise CallbackError(name, problem)


def map_callback(data: Any) -> list[dict[str, Any]]:
    """The hub events (canonical JSON) for one tracking callback; may be empty."""
    if not isinstance(data, Mapping):
        raise CallbackError("", "a tracking callback must be a JSON object")
    tracking = _text(data, "tracking_number")
    if len(tracking) > 64:
        raise CallbackError("tracking_number", "is longer than 64 characters")
    code = _text(data, "status")
    if code not in VNPOST_STATUSES:
        raise CallbackError("status", f"{code!r} is not one of {', '.join(VNPOST_STATUSES)}")
    status = VNPOST_STATUSES[code][0]
    order_type = _text(data, "order_type")
    if order_type not in ORDER_TYPES:
        raise CallbackError("order_type", f"{order_type!r} is not one of "
                            f"{', '.join(ORDER_TYPES)}")
    dossier = _text(data, "dossier")
    _checked(dossier_code_problem(dossier), "dossier")
    at_text = _text(data, "at")
    try:
        at = datetime.fromisoformat(at_text)
    except ValueError:
        raise CallbackError("at", f"{at_text[:40]!r} is not an ISO-8601 instant") from None
    if at.tzinfo is None:
        raise CallbackError("at", "has no UTC offset (write e.g. +07:00)")
    update = {"event_id": postal_event_id(tracking, code, at_text), "type": "postal_update",
              "dossier": dossier, "at": at.isoformat(), "agency": POSTAL_AGENCY,
              "tracking_number": tracking, "leg": order_type, "status": status}
    if order_type == "result_out":
        return [update]
    if status != "delivered":
        return []
    desk = _text(data, "receiving_agency")
    _checked(agency_code_problem(desk), "receiving_agency")
    procedure = _text(data, "procedure")
    _checked(procedure_code_problem(procedure), "procedure")
    applicant = data.get("applicant")
    if not isinstance(applicant, Mapping) or not isinstance(applicant.get("name"), str):
        raise CallbackError("applicant", "is required: {name, id_number?}")
    received = {"event_id": postal_event_id(tracking, "RECEIVED", at_text), "type": "received",
                "dossier": dossier, "at": at.isoformat(), "agency": desk,
                "procedure": procedure, "channel": "postal",
                "applicant": {k: applicant[k] for k in ("name", "id_number") if k in applicant}}
    return [received, update]
