"""The national portal connector: status syncs in the portal's codes, drift found and raised
once per episode, only when a disagreement lasts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lienthong.connectors.doubles import Doubles, running
from lienthong.connectors.national_portal.mapping import PortalShapeError, to_portal_request
from lienthong.connectors.national_portal.reconcile import (
    Drift,
    DriftTracker,
    PortalClient,
    compare,
    drift_alert,
    hub_statuses,
)
from lienthong.schemas.codec import decode_alert, encode_alert
from lienthong.services.domain.alerts import destination_alert_id

D1 = "000.00.15.H99-20261125-0000001"
D2 = "000.00.15.H99-20261125-0000002"
T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def portal_delivery(dossier: str, status: int, channel: int = 1, n: int = 1) -> dict:
    return {"delivery_id": f"d-{dossier}-{n}", "destination": "DVCQG", "kind": "portal_status",
            "dossier": dossier, "event_id": f"e{n}",
            "payload": {"dossier": dossier, "procedure": "1.001193", "status": status,
                        "channel": channel, "agency": "000.00.15.H99",
                        "at": "2026-11-25T09:00:00+07:00", "event_id": f"e{n}"}}


def test_a_portal_status_delivery_maps_to_the_portal_codes() -> None:
    sync = to_portal_request(portal_delivery(D1, 5, channel=3))
    assert sync == {"MaHoSo": D1, "MaTTHC": "1.001193", "MaDonVi": "000.00.15.H99",
                    "TrangThaiHoSo": 5, "KenhThucHien": 3,
                    "ThoiDiem": "2026-11-25T09:00:00+07:00", "MaSuKien": "e1"}
    with pytest.raises(PortalShapeError) as err:
        to_portal_request(portal_delivery(D1, 0))
    assert err.value.field == "payload.status"
    with pytest.raises(PortalShapeError):
        to_portal_request({**portal_delivery(D1, 4), "kind": "handoff"})


def test_compare_finds_different_and_missing_statuses() -> None:
    drifts = compare({D1: 4, D2: 9}, {D1: 4, D2: 5})
    assert drifts == [Drift(D2, 9, 5)]
    assert compare({D1: 4}, {}) == [Drift(D1, 4, None)]
    assert compare({D1: 4}, {D1: 4}) == []


def test_drift_is_raised_once_per_episode_and_only_when_it_lasts() -> None:
    t = DriftTracker(confirm=2)
    assert t.observe([Drift(D1, 4, 2)], T0) is None  # could be a sync in flight
    assert t.observe([], T0 + timedelta(minutes=1)) is None  # it was
    assert t.observe([Drift(D1, 9, 4)], T0 + timedelta(minutes=2)) is None
    opened = t.observe([Drift(D1, 9, 4)], T0 + timedelta(minutes=3))
    assert opened == [Drift(D1, 9, 4)]
    assert t.episode_start == T0 + timedelta(minutes=3)
    assert t.observe([Drift(D1, 9, 4)], T0 + timedelta(minutes=4)) is None  # same episode
    assert t.observe([], T0 + timedelta(minutes=5)) is None
    assert t.episode_start is None
    t.observe([Drift(D2, 10, 9)], T0 + timedelta(minutes=6))
    assert t.observe([Drift(D2, 10, 9)], T0 + timedelta(minutes=7)) == [Drift(D2, 10, 9)]


def test_the_drift_alert_is_a_destination_alert_for_dvcqg_with_a_deterministic_id() -> None:
    alert = drift_alert([Drift(D1, 9, 4)], T0, T0 + timedelta(seconds=5))
    decoded = decode_alert(encode_alert(alert))
    assert (decoded["kind"], decoded["scope"], decoded["destination"]) == (
        "portal_drift", "destination", "DVCQG")
    assert decoded["alert_id"] == destination_alert_id("DVCQG", "portal_drift", T0)
    assert D1 in decoded["detail"]


def test_hub_statuses_come_from_the_latest_snapshot_per_dossier() -> None:
    def snap(code: str, status: int) -> tuple[bytes, bytes]:
        return code.encode(), json.dumps({"dossier": code, "portal_status": status}).encode()

    records = [snap(D1, 2), snap(D2, 2), snap(D1, 4), (D2.encode(), None), (b"x", b"{bad")]
    assert hub_statuses(records) == {D1: 4}


async def test_synced_statuses_reconcile_and_a_changed_portal_status_drifts() -> None:
    d = Doubles([])
    async with running(d) as base:
        portal = PortalClient(f"{base}/dvcqg")
        try:
            for n, status in enumerate((2, 4, 9), 1):
                r = await portal.sync(portal_delivery(D1, status, n=n))
                assert r.status_code == 200
            await portal.sync(portal_delivery(D2, 2, n=9))
            hub = {D1: 9, D2: 2}
            assert compare(hub, await portal.statuses([D1, D2])) == []
            d.portal.latest[D2]["TrangThaiHoSo"] = 7  # someone changed it at the portal
            assert compare(hub, await portal.statuses([D1, D2])) == [Drift(D2, 2, 7)]
        finally:
            await portal.aclose()
