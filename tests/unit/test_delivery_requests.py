"""What the delivery service POSTs: the canonical delivery, or the destination's own shape
(the national portal's status sync) where the policy has a builder for it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lienthong.connectors.delivery.policy import DeliveryPolicy
from lienthong.connectors.delivery.records import read_delivery, request_body
from lienthong.connectors.national_portal.mapping import PortalShapeError, check_portal_request
from lienthong.schemas.codec import encode_delivery

DOSSIER = "000.00.15.H99-20261125-0000007"
EVENT = "5b1e7c1e-0d4e-4c9a-9d3e-2f1a0b9c8d7e"


def portal_status(status: int = 4, **payload: Any) -> dict[str, Any]:
    return {"delivery_id": "d-1", "destination": "DVCQG", "kind": "portal_status",
            "dossier": DOSSIER, "event_id": EVENT, "at": "2026-11-25T09:15:00+07:00",
            "payload": {"dossier": DOSSIER, "procedure": "1.001193", "status": status,
                        "channel": 2, "agency": "000.00.15.H99",
                        "at": "2026-11-25T09:15:00+07:00", "event_id": EVENT, **payload}}


def test_the_national_portal_gets_its_status_sync_shape() -> None:
    delivery = read_delivery(encode_delivery(portal_status()))
    body = json.loads(request_body(delivery, DeliveryPolicy().request_builders))
    assert check_portal_request(body) == {
        "MaHoSo": DOSSIER, "MaTTHC": "1.001193", "MaDonVi": "000.00.15.H99",
        "TrangThaiHoSo": 4, "KenhThucHien": 2, "ThoiDiem": "2026-11-25T09:15:00+07:00",
        "MaSuKien": EVENT}


def test_other_destinations_get_the_canonical_delivery_byte_for_byte() -> None:
    handoff = {**portal_status(), "destination": "000.02.10.H99", "kind": "handoff",
               "payload": {"note": "Chuyển hồ sơ"}}
    delivery = read_delivery(encode_delivery(handoff))
    assert request_body(delivery, DeliveryPolicy().request_builders) == delivery.body
    assert json.loads(delivery.body)["payload"] == {"note": "Chuyển hồ sơ"}


def test_a_delivery_the_portal_shape_cannot_hold_is_refused_naming_the_field() -> None:
    delivery = read_delivery(encode_delivery(portal_status(status=11)))
    with pytest.raises(PortalShapeError) as caught:
        request_body(delivery, DeliveryPolicy().request_builders)
    assert caught.value.field == "payload.status"
    assert request_body(delivery, {}) == delivery.body  # no builder: the generic envelope
