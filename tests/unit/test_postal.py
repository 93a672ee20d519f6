"""VNPost tracking callbacks become postal_update events (and a postal receipt at the desk),
with deterministic ids; the webhook takes only VNPost's signed callbacks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from lienthong.connectors.http import AgencyKey, KeyRing, signed_headers
from lienthong.connectors.http.serving import listening
from lienthong.connectors.postal.mapping import CallbackError, map_callback, postal_event_id
from lienthong.connectors.postal.webhook import WEBHOOK_PATH, build_postal_app
from lienthong.schemas.codec import decode_event
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.domain.dossier import Applied, apply_event
from lienthong.services.domain.events import parse_event

DOSSIER = "000.00.15.H99-20261125-0000007"
DESK = "000.00.15.H99"


def callback(status: str = "DELIVERED", order_type: str = "result_out",
             **extra: Any) -> dict[str, Any]:
    return {"tracking_number": "EL123456789VN", "order_type": order_type, "status": status,
            "at": "2026-11-27T10:05:00+07:00", "dossier": DOSSIER, **extra}


@pytest.mark.parametrize(("code", "status"), [
    ("PICKED_UP", "picked_up"), ("IN_TRANSIT", "in_transit"), ("DELIVERED", "delivered"),
    ("DELIVERY_FAILED", "failed"), ("RETURNED", "returned_to_sender")])
def test_each_vnpost_status_maps_to_a_postal_update(code: str, status: str) -> None:
    [event] = map_callback(callback(code))
    assert event["type"] == "postal_update"
    assert (event["agency"], event["leg"], event["status"]) == ("VNPOST", "result_out", status)
    assert event["tracking_number"] == "EL123456789VN"
    parse_event(event)


def test_the_event_id_is_the_same_for_the_same_callback_and_differs_by_status_or_time() -> None:
    a = map_callback(callback())[0]["event_id"]
    assert a == map_callback(callback())[0]["event_id"]
    assert a == postal_event_id("EL123456789VN", "DELIVERED", "2026-11-27T10:05:00+07:00")
    assert a != map_callback(callback("IN_TRANSIT"))[0]["event_id"]
    assert a != map_callback(callback(at="2026-11-27T10:06:00+07:00"))[0]["event_id"]


def test_a_dossier_delivered_to_the_desk_is_received_by_post_at_the_delivery_instant() -> None:
    pickup = {"receiving_agency": DESK, "procedure": "1.001193",
              "applicant": {"name": "Nguyễn Văn A", "id_number": "001099012345"}}
    assert map_callback(callback("PICKED_UP", "dossier_in", **pickup)) == []
    assert map_callback(callback("IN_TRANSIT", "dossier_in", **pickup)) == []
    received, update = map_callback(callback("DELIVERED", "dossier_in", **pickup))
    assert (received["type"], received["channel"], received["agency"]) == (
        "received", "postal", DESK)
    assert received["at"] == "2026-11-27T10:05:00+07:00"
    assert (update["leg"], update["status"]) == ("dossier_in", "delivered")
    # Both apply in order, and the postal leg never becomes an agency's step.
    cat = load_catalogue("examples/province-h99.yaml")
    first = apply_event(None, parse_event(received), cat)
    assert isinstance(first, Applied)
    second = apply_event(first.state, parse_event(update), cat)
    assert isinstance(second, Applied)
    assert [s.agency for s in second.state.steps] == [DESK]


@pytest.mark.parametrize(("change", "field"), [
    ({"status": "LOST"}, "status"), ({"order_type": "both"}, "order_type"),
    ({"dossier": "nope"}, "dossier"), ({"at": "yesterday"}, "at"),
    ({"at": "2026-11-27T10:05:00"}, "at"), ({"tracking_number": ""}, "tracking_number")])
def test_a_bad_callback_names_its_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(CallbackError) as err:
        map_callback({**callback(), **change})
    assert err.value.field == field


class Recording:
    spooling = False

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    def pending(self) -> int:
        return 0

    async def publish(self, records: Sequence[tuple[bytes, bytes]]) -> str:
        self.records.extend(records)
        return "kafka"


KEYS = KeyRing({"VNPOST": [AgencyKey("v", b"vnpost-secret-0123456789")],
                DESK: [AgencyKey("d", b"desk-secret-0123456789ab")]})


async def _post(client: httpx.AsyncClient, payload: Any, agency: str = "VNPOST",
                secret: str = "vnpost-secret-0123456789") -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post(WEBHOOK_PATH, content=body,
                             headers=signed_headers(agency, secret, "POST", WEBHOOK_PATH, body))


async def test_webhook_publishes_signed_vnpost_callbacks_and_refuses_others() -> None:
    pub = Recording()
    app = build_postal_app(keys=KEYS, publisher=pub)
    async with listening(app) as url, httpx.AsyncClient(base_url=url) as c:
        ok = await _post(c, [callback("PICKED_UP"), callback("DELIVERED")])
        forged = await _post(c, callback(), agency=DESK, secret="desk-secret-0123456789ab")
        unsigned = await c.post(WEBHOOK_PATH, json=callback())
        bad = await _post(c, callback("LOST"))
    assert ok.status_code == 202
    assert len(ok.json()["accepted"]) == 2
    assert forged.status_code == 403
    assert unsigned.status_code == 401
    assert bad.status_code == 422
    assert bad.json()["rejected"][0]["field"] == "status"
    assert [k for k, _ in pub.records] == [DOSSIER.encode()] * 2
    assert [decode_event(v)["status"] for _, v in pub.records] == ["picked_up", "delivered"]
