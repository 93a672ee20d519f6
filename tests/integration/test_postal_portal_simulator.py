"""The edges against the real broker: VNPost webhooks into dossier.events through the gateway,
the simulator posting a province's traffic to a real gateway, and portal drift raised on the
alerts topic."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer

from lienthong.connectors.doubles import Doubles, running
from lienthong.connectors.http import AgencyKey, KeyRing, load_keyring
from lienthong.connectors.national_portal.reconcile import (
    DriftTracker,
    PortalClient,
    Reconciler,
)
from lienthong.connectors.postal.mapping import postal_event_id
from lienthong.connectors.postal.webhook import WEBHOOK_PATH
from lienthong.connectors.simulator.generate import plan
from lienthong.connectors.simulator.play import Player, write_keys
from lienthong.schemas.codec import decode_alert, decode_event
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.domain.dossier import Applied, apply_event
from lienthong.services.domain.events import parse_event
from tests.integration.hub import read_records, running_gateway

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
VNPOST_SECRET = "vnpost-secret-0123456789"
DOSSIER = "000.00.15.H99-20261125-0000007"


read_topic = read_records


@contextlib.asynccontextmanager
async def gateway(bootstrap: str, topic: str, keys: KeyRing, spool_dir: Path,
                  postal: bool = False) -> AsyncIterator[str]:
    async with running_gateway(bootstrap, topic, keys, spool_dir, postal=postal) as (url, _):
        yield url


async def test_vnpost_tracking_webhooks_land_in_dossier_events_through_the_gateway(
        kafka_bootstrap: str, new_topic: Any, tmp_path: Path) -> None:
    topic = new_topic(partitions=3)
    keys = KeyRing({"VNPOST": [AgencyKey("v", VNPOST_SECRET.encode())]})
    async with gateway(kafka_bootstrap, topic, keys, tmp_path / "spool", postal=True) as gw:
        doubles = Doubles([], vnpost_webhook_url=gw + WEBHOOK_PATH, vnpost_key=VNPOST_SECRET,
                          vnpost_auto_track_seconds=0.05)
        async with running(doubles) as base, httpx.AsyncClient(base_url=base) as c:
            shipped = await c.post("/vnpost/inbox", headers={"Idempotency-Key": "ship-7"},
                                   json={"delivery_id": "ship-7", "destination": "VNPOST",
                                         "kind": "shipment", "dossier": DOSSIER,
                                         "event_id": "e", "payload": {"leg": "result_out"}})
            picked = await c.post("/vnpost/api/pickups", json={
                "dossier": "000.00.16.H99-20261125-0000001",
                "receiving_agency": "000.00.16.H99", "procedure": "2.000815",
                "applicant": {"name": "Lê Thị Hạnh", "id_number": "001199012345"}})
            assert shipped.status_code == 200 and picked.status_code == 201
            for _ in range(100):
                if doubles.vnpost.webhooks_sent >= 6:
                    break
                await asyncio.sleep(0.05)
            # A re-sent callback is the same event (same id): VNPost retries are harmless.
            shipment = doubles.vnpost.shipments[shipped.json()["tracking_number"]]
            await doubles.vnpost.track(shipment, "DELIVERED", shipment.sent[-1]["at"])
        assert doubles.vnpost.webhooks_failed == 0
    records = read_topic(kafka_bootstrap, topic, expect=6)
    events = [decode_event(r.value) for r in records]
    out = [e for e in events if e["dossier"] == DOSSIER]
    assert [e["status"] for e in out] == ["picked_up", "in_transit", "delivered", "delivered"]
    assert {(e["agency"], e["leg"]) for e in out} == {("VNPOST", "result_out")}
    assert out[-1]["event_id"] == out[-2]["event_id"] == postal_event_id(
        shipment.tracking_number, "DELIVERED", shipment.sent[-1]["at"])
    inbound = [e for e in events if e["dossier"] != DOSSIER]
    assert [(e["type"], e.get("channel"), e["agency"]) for e in inbound] == [
        ("received", "postal", "000.00.16.H99"), ("postal_update", None, "VNPOST")]
    assert {r.key for r in records} == {DOSSIER.encode(), b"000.00.16.H99-20261125-0000001"}


async def test_the_simulator_posts_a_province_day_through_a_real_gateway_in_order(
        kafka_bootstrap: str, new_topic: Any, tmp_path: Path) -> None:
    topic = new_topic(partitions=4)
    catalogue = load_catalogue(ROOT / "examples" / "province-h99.yaml")
    write_keys(catalogue, tmp_path / "keys.json")
    keys = load_keyring(tmp_path / "keys.json")
    events = plan(catalogue, seed=21, dossiers=40,
                  start=datetime.fromisoformat("2026-11-25T07:30:00+07:00"))
    async with gateway(kafka_bootstrap, topic, keys, tmp_path / "spool") as gw:
        started = time.monotonic()
        progress = await Player(gw, keys, rate=400, progress_to=None).play(events)
        seconds = time.monotonic() - started
    assert (progress.accepted, progress.rejected, progress.errors) == (len(events), 0, 0)
    assert seconds < 20
    got = [decode_event(r.value) for r in read_topic(kafka_bootstrap, topic, len(events))]
    assert len(got) == len(events)
    # Per dossier, Kafka holds the events in the planned order ...
    planned: dict[str, list[str]] = {}
    stored: dict[str, list[str]] = {}
    for e in events:
        planned.setdefault(e["dossier"], []).append(e["event_id"])
    for e in got:
        stored.setdefault(e["dossier"], []).append(e["event_id"])
    assert stored == planned
    # ... and the engine applies every one of them in partition order.
    states: dict[str, Any] = {}
    for e in got:
        data = {k: v for k, v in e.items() if v is not None}
        decision = apply_event(states.get(e["dossier"]), parse_event(data), catalogue)
        assert isinstance(decision, Applied), (e, decision)
        states[e["dossier"]] = decision.state


async def test_the_reconciler_raises_portal_drift_once_when_the_portal_disagrees(
        kafka_bootstrap: str, new_topic: Any) -> None:
    status_topic = new_topic(partitions=2, config={"cleanup.policy": "compact"})
    alerts_topic = new_topic(partitions=1)
    d1, d2 = "000.00.15.H99-20261125-0000001", "000.00.15.H99-20261125-0000002"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for code, status in ((d1, 2), (d2, 2), (d1, 9)):
        producer.send(status_topic, key=code.encode(),
                      value=json.dumps({"dossier": code, "portal_status": status}).encode())
    producer.flush()
    producer.close()
    doubles = Doubles([])
    async with running(doubles) as base:
        portal = PortalClient(f"{base}/dvcqg")
        for n, (code, status) in enumerate(((d1, 9), (d2, 4)), 1):
            await portal.sync({"delivery_id": f"k{n}", "kind": "portal_status",
                               "dossier": code, "event_id": f"e{n}",
                               "payload": {"dossier": code, "procedure": "1.001193",
                                           "status": status, "channel": 1,
                                           "agency": "000.00.15.H99",
                                           "at": "2026-11-25T09:00:00+07:00"}})
        rec = Reconciler(kafka_bootstrap, portal, status_topic=status_topic,
                         alerts_topic=alerts_topic, tracker=DriftTracker(confirm=2))
        try:
            first = await rec.round()
            second = await rec.round()
            third = await rec.round()
        finally:
            rec.close()
            await portal.aclose()
    assert first is None and third is None
    assert second is not None
    alerts = [decode_alert(r.value) for r in read_topic(kafka_bootstrap, alerts_topic, 1)]
    assert [(a["kind"], a["scope"], a["destination"]) for a in alerts] == [
        ("portal_drift", "destination", "DVCQG")]
    assert d2 in alerts[0]["detail"] and d1 not in alerts[0]["detail"]
    assert alerts[0]["alert_id"] == second["alert_id"]
