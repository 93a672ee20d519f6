"""Signed hand-off receipts over the real broker: the delivery service against the agency
doubles on 127.0.0.1, which sign what they apply with their agency keys."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable

import pytest
from aiohttp import web

from lienthong.connectors.delivery.service import DeliveryService
from lienthong.connectors.doubles.agencies import AgencyDoubles
from lienthong.connectors.http.serving import listening
from lienthong.schemas import codec
from lienthong.services.domain import receipts
from tests.integration.test_delivery import CONSUMER, FAST, produce, read_topic, wait_for

pytestmark = pytest.mark.kafka

GOOD, FORGER, SILENT = "000.02.10.H99", "000.03.10.H99", "000.00.16.H99"
DOSSIER = "000.00.15.H99-20260609-0000042"


def handoff(destination: str, n: int) -> dict[str, object]:
    return {"delivery_id": f"{DOSSIER}/{destination}/{n}", "destination": destination,
            "kind": "handoff", "dossier": DOSSIER, "event_id": str(uuid.uuid4()),
            "at": "2026-06-09T09:00:00+07:00", "payload": {"to_agency": destination, "n": n}}


async def test_good_receipts_are_recorded_forged_ones_refused_and_missing_ones_alerted(
        kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    names = {kind: new_topic(2 if kind in ("deliveries", "receipts") else 1, prefix=kind)
             for kind in ("deliveries", "alerts", "deadletter", "receipts")}
    doubles = AgencyDoubles([GOOD, FORGER, SILENT],
                            faults={FORGER: {"forged_count": 1}, SILENT: {"unsigned_count": 1}})
    app_doubles = web.Application()
    doubles.add_routes(app_doubles)
    async with listening(app_doubles) as base:
        service = DeliveryService(
            kafka_bootstrap, lambda code: f"{base}/agencies/{code}/inbox", signer=None,
            policy=FAST, group_id=f"receipts-{uuid.uuid4().hex[:8]}",
            deliveries_topic=names["deliveries"], alerts_topic=names["alerts"],
            deadletter_topic=names["deadletter"], receipts_topic=names["receipts"],
            receipt_keys=receipts.demo_keys([GOOD, FORGER, SILENT]),
            receipt_wait_seconds=3.0, rng=random.Random(3), consumer_options=CONSUMER)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            await asyncio.wait_for(service.started.wait(), 20)
            records = [handoff(GOOD, 1), handoff(GOOD, 2), handoff(FORGER, 1),
                       handoff(SILENT, 1)]
            produce(kafka_bootstrap, names["deliveries"], records)
            await wait_for(lambda: sum(b.applications for b in doubles.inboxes.values()) == 4,
                           20, "every delivery to be applied")
            await wait_for(lambda: len(read_topic(kafka_bootstrap, names["alerts"])) >= 2, 15,
                           "the receipt_missing alerts")
            await asyncio.sleep(1.5)  # nothing more should come
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)

    recorded = [codec.decode_receipt(v) for _, v in read_topic(kafka_bootstrap,
                                                                names["receipts"])]
    assert sorted(r["delivery_id"] for r in recorded) == [f"{DOSSIER}/{GOOD}/1",
                                                          f"{DOSSIER}/{GOOD}/2"]
    for r in recorded:  # each one still checks out with the receiver's public key alone
        assert r["receiver"] == GOOD and r["receipt_id"] == f"receipt:{r['delivery_id']}"
        body = doubles.inboxes[GOOD].applied[r["delivery_id"]].body
        assert body["delivery_id"] == r["delivery_id"]

    parked = [codec.decode_deadletter(v) for _, v in read_topic(kafka_bootstrap,
                                                                 names["deadletter"])]
    assert [(p["reason"], p["source_topic"]) for p in parked] == [
        (receipts.BAD_SIGNATURE, names["deliveries"])]
    assert f"{DOSSIER}/{FORGER}/1" in parked[0]["detail"]
    assert b'"receiver": "000.03.10.H99"' in parked[0]["original"]  # the refused receipt

    alerts = [codec.decode_alert(v) for _, v in read_topic(kafka_bootstrap, names["alerts"])]
    assert sorted((a["alert_id"], a["cause"], a["agency"]) for a in alerts) == [
        (f"receipt_missing:{DOSSIER}/{SILENT}/1", "receipt_missing", SILENT),
        (f"receipt_missing:{DOSSIER}/{FORGER}/1", "receipt_missing", FORGER)]
    assert all(a["kind"] == "delivery_failing" and a["scope"] == "dossier" for a in alerts)
