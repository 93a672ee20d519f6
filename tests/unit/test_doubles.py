"""The doubles are real HTTP servers on 127.0.0.1: idempotent inboxes with faults on demand,
a change feed, VNPost shipments and signed webhooks, and the national portal's status store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from lienthong.connectors.doubles import Doubles, point_catalogue_at, running
from lienthong.connectors.http import AgencyKey, KeyRing, NonceCache, verify_request
from lienthong.connectors.http.serving import listening
from lienthong.services.domain.catalogue import load_catalogue

ROOT = Path(__file__).resolve().parents[2]
A = "000.00.15.H99"


def delivery(key: str, dossier: str = "000.00.15.H99-20261125-0000001",
             kind: str = "handoff", payload: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"delivery_id": key, "destination": A, "kind": kind, "dossier": dossier,
            "event_id": key, "payload": payload or {}}


async def test_inbox_applies_each_key_once_and_counts_receipts_and_duplicates() -> None:
    d = Doubles([A])
    async with running(d) as base, httpx.AsyncClient(base_url=base) as c:
        for key in ("k1", "k2", "k1", "k3", "k2"):
            r = await c.post(f"/agencies/{A}/inbox", json=delivery(key),
                             headers={"Idempotency-Key": key})
            assert r.status_code == 200
        missing = await c.post(f"/agencies/{A}/inbox", json=delivery("x"))
        assert missing.status_code == 400
        stats = (await c.get("/stats")).json()["destinations"][A]
        order = (await c.get(f"/agencies/{A}/dossiers/000.00.15.H99-20261125-0000001")).json()
    assert (stats["receipts"], stats["applications"], stats["duplicates"]) == (6, 3, 2)
    assert [x["key"] for x in order["applied"]] == ["k1", "k2", "k3"]


async def test_inbox_fails_for_a_while_then_recovers_and_can_reject_and_be_slow() -> None:
    d = Doubles([A], faults={A: {"fail_seconds": 0.4}})
    async with running(d) as base, httpx.AsyncClient(base_url=base) as c:
        first = await c.post(f"/agencies/{A}/inbox", json=delivery("k"),
                             headers={"Idempotency-Key": "k"})
        assert first.status_code == 503
        await asyncio.sleep(0.5)
        ok = await c.post(f"/agencies/{A}/inbox", json=delivery("k"),
                          headers={"Idempotency-Key": "k"})
        assert ok.json()["status"] == "applied"
        await c.post(f"/agencies/{A}/control", json={"reject_count": 1, "reject_status": 409,
                                                     "slow_seconds": 0.2})
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        rejected = await c.post(f"/agencies/{A}/inbox", json=delivery("k9"),
                                headers={"Idempotency-Key": "k9"})
        assert rejected.status_code == 409
        assert loop.time() - t0 >= 0.2
        stats = (await c.get(f"/agencies/{A}/stats")).json()
    assert (stats["failed"], stats["rejected"], stats["applications"]) == (1, 1, 1)


async def test_change_feed_pages_from_a_cursor() -> None:
    d = Doubles([A])
    async with running(d) as base, httpx.AsyncClient(base_url=base) as c:
        await c.post(f"/agencies/{A}/changes",
                     json=[{"event": {"n": i}, "change_id": f"c{i}"} for i in range(5)])
        page = (await c.get(f"/agencies/{A}/changes", params={"cursor": 1, "limit": 3})).json()
        rest = (await c.get(f"/agencies/{A}/changes",
                            params={"cursor": page["next_cursor"]})).json()
    assert [x["change_id"] for x in page["changes"]] == ["c1", "c2", "c3"]
    assert page["more"] is True
    assert [x["change_id"] for x in rest["changes"]] == ["c4"]
    assert rest["more"] is False


async def test_portal_keeps_the_latest_status_and_refuses_bad_codes() -> None:
    d = Doubles([])
    code = "000.00.15.H99-20261125-0000001"

    def sync(status: int, channel: int = 1) -> dict[str, Any]:
        return {"MaHoSo": code, "MaTTHC": "1.001193", "MaDonVi": A, "TrangThaiHoSo": status,
                "KenhThucHien": channel, "ThoiDiem": "2026-11-25T09:00:00+07:00"}

    async with running(d) as base, httpx.AsyncClient(base_url=base) as c:
        assert (await c.post("/dvcqg/api/status-sync", json=sync(2),
                             headers={"Idempotency-Key": "a"})).status_code == 200
        assert (await c.post("/dvcqg/api/status-sync", json=sync(4),
                             headers={"Idempotency-Key": "b"})).status_code == 200
        bad = await c.post("/dvcqg/api/status-sync", json=sync(11),
                           headers={"Idempotency-Key": "c"})
        bad_channel = await c.post("/dvcqg/api/status-sync", json=sync(4, channel=4),
                                   headers={"Idempotency-Key": "d"})
        one = (await c.get(f"/dvcqg/api/status/{code}")).json()
        many = (await c.post("/dvcqg/api/status-query",
                             json={"MaHoSo": [code, "000.00.15.H99-20261125-0000002"]})).json()
        envelope = {"delivery_id": "e", "destination": "DVCQG", "kind": "portal_status",
                    "dossier": code, "event_id": "e1",
                    "payload": {"dossier": code, "procedure": "1.001193", "status": 9,
                                "channel": 2, "agency": A, "at": "2026-11-26T10:00:00+07:00",
                                "event_id": "e1"}}
        relayed = await c.post("/dvcqg/inbox", json=envelope, headers={"Idempotency-Key": "e"})
        after = (await c.get(f"/dvcqg/api/status/{code}")).json()
    assert one["TrangThaiHoSo"] == 4
    assert (bad.status_code, bad.json()["field"]) == (400, "TrangThaiHoSo")
    assert (bad_channel.status_code, bad_channel.json()["field"]) == (400, "KenhThucHien")
    assert [i["TrangThaiHoSo"] for i in many["items"]] == [4, None]
    assert relayed.status_code == 200
    assert (after["TrangThaiHoSo"], after["KenhThucHien"]) == (9, 2)


async def test_vnpost_turns_a_shipment_into_signed_tracking_webhooks() -> None:
    got: list[dict[str, Any]] = []
    ring = KeyRing({"VNPOST": [AgencyKey("k", b"vnpost-secret-0123456789")]})
    nonces = NonceCache()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        who = verify_request(ring, nonces, request.method, request.raw_path, request.headers,
                             body)
        got.append({"agency": who.agency, **json.loads(body)})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with listening(app) as hook_base:
        d = Doubles([], vnpost_webhook_url=f"{hook_base}/hook",
                    vnpost_key="vnpost-secret-0123456789", vnpost_auto_track_seconds=0.05)
        async with running(d) as base, httpx.AsyncClient(base_url=base) as c:
            r = await c.post("/vnpost/inbox", headers={"Idempotency-Key": "ship-1"}, json={
                "delivery_id": "ship-1", "destination": "VNPOST", "kind": "shipment",
                "dossier": "000.00.15.H99-20261125-0000001", "event_id": "e",
                "payload": {"leg": "result_out"}})
            again = await c.post("/vnpost/inbox", headers={"Idempotency-Key": "ship-1"},
                                 json={"dossier": "x"})
            tracking = r.json()["tracking_number"]
            for _ in range(100):
                if len(got) >= 3:
                    break
                await asyncio.sleep(0.05)
            manual = await c.post("/vnpost/control/track",
                                  json={"tracking_number": tracking, "status": "RETURNED"})
    assert again.json()["status"] == "duplicate"
    assert manual.status_code == 200
    assert [g["status"] for g in got] == ["PICKED_UP", "IN_TRANSIT", "DELIVERED", "RETURNED"]
    assert {g["agency"] for g in got} == {"VNPOST"}
    assert {g["tracking_number"] for g in got} == {tracking}


def test_catalogue_endpoints_can_point_at_the_doubles_server() -> None:
    cat = load_catalogue(ROOT / "examples" / "province-h99.yaml")
    moved = point_catalogue_at(cat, "http://127.0.0.1:9800/")
    assert moved.agency(A).endpoint == f"http://127.0.0.1:9800/agencies/{A}/inbox"
    assert moved.agency("VNPOST").endpoint == "http://127.0.0.1:9800/vnpost/inbox"
    assert moved.agency("DVCQG").endpoint == "http://127.0.0.1:9800/dvcqg/api/status-sync"
    assert moved.agency("000.00.00.H99").endpoint is None  # none before, none after
    assert len(moved.procedures) == len(cat.procedures)
