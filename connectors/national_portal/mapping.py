"""The national portal's (Cổng Dịch vụ công quốc gia, DVCQG) status-sync shape, and the
mapping from the hub's ``portal_status`` delivery to it (DESIGN section 7).

A status sync (đồng bộ trạng thái hồ sơ) is one JSON object::

    {"MaHoSo": "000.00.15.H99-20261125-0000007", "MaTTHC": "1.001193",
     "MaDonVi": "000.00.15.H99", "TrangThaiHoSo": 4, "KenhThucHien": 1,
     "ThoiDiem": "2026-11-25T09:15:00+07:00", "MaSuKien": "5b1e…"}

``TrangThaiHoSo``: 1 new, 2 received, 3 not received, 4 processing, 5 supplement requested,
6 financial obligation, 7 withdrawn by applicant, 8 stopped, 9 processed, 10 result returned.
``KenhThucHien``: 1 desk, 2 online, 3 postal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATUS_NAMES: dict[int, str] = {
    1: "new", 2: "received", 3: "not_received", 4: "processing", 5: "supplement_requested",
    6: "financial_obligation", 7: "withdrawn", 8: "stopped", 9: "processed",
    10: "result_returned",
}
CHANNEL_NAMES: dict[int, str] = {1: "desk", 2: "online", 3: "postal"}

PORTAL_FIELDS = ("MaHoSo", "MaTTHC", "MaDonVi", "TrangThaiHoSo", "KenhThucHien", "ThoiDiem",
                 "MaSuKien")


class PortalShapeError(ValueError):
    """A delivery or a status sync that does not have the expected shape."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def _code(value: Any, allowed: Mapping[int, str], field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value not in allowed:
        raise PortalShapeError(field, f"{value!r} is not one of {sorted(allowed)}")
    return value


def to_portal_request(delivery: Mapping[str, Any]) -> dict[str, Any]:
    """The DVCQG status sync for a hub ``portal_status`` delivery (its canonical JSON, as the
    delivery service POSTs it: ``{"delivery_id", "destination", "kind", "dossier",
    "event_id", "payload": {...}}``)."""
    if delivery.get("kind") != "portal_status":
        raise PortalShapeError("kind", f"{delivery.get('kind')!r} is not portal_status")
    payload = delivery.get("payload")
    if not isinstance(payload, Mapping):
        raise PortalShapeError("payload", "must be an object")
    for name in ("dossier", "procedure", "status", "channel", "agency", "at"):
        if payload.get(name) is None:
            raise PortalShapeError(f"payload.{name}", "is required")
    return {
        "MaHoSo": payload["dossier"],
        "MaTTHC": payload["procedure"],
        "MaDonVi": payload["agency"],
        "TrangThaiHoSo": _code(payload["status"], STATUS_NAMES, "payload.status"),
        "KenhThucHien": _code(payload["channel"], CHANNEL_NAMES, "payload.channel"),
        "ThoiDiem": payload["at"],
        "MaSuKien": payload.get("event_id") or delivery.get("event_id"),
    }


def check_portal_request(body: Any) -> dict[str, Any]:
    """A status sync as the portal checks it; raises PortalShapeError naming the field."""
    if not isinstance(body, Mapping):
        raise PortalShapeError("", "a status sync must be a JSON object")
    for name in ("MaHoSo", "MaTTHC", "MaDonVi", "ThoiDiem"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise PortalShapeError(name, "is required (a non-empty string)")
    _code(body.get("TrangThaiHoSo"), STATUS_NAMES, "TrangThaiHoSo")
    _code(body.get("KenhThucHien"), CHANNEL_NAMES, "KenhThucHien")
    unknown = set(body) - set(PORTAL_FIELDS)
    if unknown:
        raise PortalShapeError(sorted(unknown)[0], "is not a field of a status sync")
    return dict(body)
