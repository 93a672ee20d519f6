"""Signed hand-off receipts over the real broker: the delivery service against the agency
doubles on 127.0.0.1, which sign what they apply with their agency keys."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from aiohttp import web
from kafka import KafkaConsumer, TopicPartition

from lienthong.connectors.delivery.service import DeliveryService
from lienthong.connectors.doubles.agencies import AgencyDoubles
from lienthong.connectors.http.serving import listening
from lienthong.schemas import codec
from lienthong.services.domain import receipts
from tests.integration.test_delivery import CONSUMER, FAST, produce, read_topic, wait_for

pytestmark = pytest.mark.kafka

GOOD, FORGER, SILENT = "000.02.10.H99", "000.03.10.H99", "000.00.16.H99"
DOSSIER = "000.00.15.H99-20260609-0000042"


def hub_topics(new_topic: Callable[..., str]) -> dict[str, str]:
    keyed = ("deliveries", "receipts", "expected")
    return {kind: new_topic(2 if kind in keyed else 1, prefix=kind,
                            config={"cleanup.policy": "compact"} if kind == "expected" else None)
            for kind in ("deliveries", "alerts", "deadletter", "receipts", "expected")}


def handoff(destination: str, n: int, step_due_at: str | None = None) -> dict[str, object]:
    payload: dict[str, object] = {"to_agency": destination, "n": n}
    if step_due_at is not None:
        payload["step_due_at"] = step_due_at
    return {"delivery_id": f"{DOSSIER}/{destination}/{n}", "destination": destination,
            "kind": "handoff", "dossier": DOSSIER, "event_id": str(uuid.uuid4()),
            "at": "2026-06-09T09:00:00+07:00", "payload": payload}


async def test_good_receipts_are_recorded_forged_ones_refused_and_missing_ones_alerted(
        kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    names = hub_topics(new_topic)
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
            expected_topic=names["expected"],
            receipt_keys=receipts.demo_keys([GOOD, FORGER, SILENT]), receipt_wait_seconds=3.0,
            rng=random.Random(3), consumer_options=CONSUMER)
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


class HandClock:
    """The hub's clock, moved by the test: days pass in an instant."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def latest_by_key(bootstrap: str, topic: str) -> dict[str, bytes | None]:
    """What compaction keeps of a topic: the last value of each key (None: a tombstone)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    out: dict[str, bytes | None] = {}
    while any(consumer.position(tp) < end[tp] for tp in tps):
        for records in consumer.poll(timeout_ms=300).values():
            out.update((r.key.decode(), r.value) for r in records)
    consumer.close()
    return out


async def test_an_awaited_receipt_outlives_a_restart_and_its_alert_fires_once_after_the_due(
        kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    # Both hand-offs are read at 09:00 on Tuesday 9 June 2026; the police's step (two working
    # days) ends Thursday 11 June at 17:00, so that is when their receipts are due.
    names = hub_topics(new_topic)
    step_due = "2026-06-11T17:00:00+07:00"
    clock = HandClock(datetime(2026, 6, 9, 2, 0, tzinfo=UTC))
    doubles = AgencyDoubles([GOOD, SILENT], faults={SILENT: {"unsigned_count": 1}})
    app_doubles = web.Application()
    doubles.add_routes(app_doubles)
    group = f"receipts-{uuid.uuid4().hex[:8]}"
    silent_id, good_id = f"{DOSSIER}/{SILENT}/1", f"{DOSSIER}/{GOOD}/1"

    def alerts() -> list[dict[str, object]]:
        return [codec.decode_alert(v) for _, v in read_topic(kafka_bootstrap, names["alerts"])]

    async with listening(app_doubles) as base:
        def instance() -> DeliveryService:
            return DeliveryService(
                kafka_bootstrap, lambda code: f"{base}/agencies/{code}/inbox", signer=None,
                policy=FAST, group_id=group, deliveries_topic=names["deliveries"],
                alerts_topic=names["alerts"], deadletter_topic=names["deadletter"],
                receipts_topic=names["receipts"], expected_topic=names["expected"],
                receipt_keys=receipts.demo_keys([GOOD, SILENT]), clock=clock,
                rng=random.Random(5), consumer_options=CONSUMER)

        async def running(service: DeliveryService, work: Callable[[], object]) -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            try:
                await asyncio.wait_for(service.started.wait(), 20)
                await work()  # type: ignore[misc]
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)

        async def deliver_both() -> None:
            produce(kafka_bootstrap, names["deliveries"],
                    [handoff(GOOD, 1, step_due), handoff(SILENT, 1, step_due)])
            await wait_for(lambda: sum(b.applications for b in doubles.inboxes.values()) == 2,
                           20, "both hand-offs to be applied")
            await wait_for(lambda: len(read_topic(kafka_bootstrap, names["receipts"])) == 1,
                           10, "the police's receipt")

        await running(instance(), deliver_both)  # stopped a day and a half before the due
        watched = latest_by_key(kafka_bootstrap, names["expected"])
        assert watched[good_id] is None  # receipted: a tombstone
        silent = watched[silent_id]
        assert silent is not None
        assert codec.RECEIPTS_EXPECTED.decode(silent)["due_at"] == step_due

        clock.at = datetime(2026, 6, 11, 9, 59, tzinfo=UTC)  # 16:59, Thursday

        second = instance()

        async def due_passes() -> None:
            await asyncio.sleep(1.5)  # a minute before the due: nothing yet
            assert alerts() == []
            assert second.metrics.registry.get_sample_value(
                "lienthong_delivery_receipts_awaited") == 1  # read back, still awaited
            clock.at = datetime(2026, 6, 11, 10, 1, tzinfo=UTC)  # 17:01
            await wait_for(lambda: len(alerts()) >= 1, 10, "the receipt_missing alert")
            await asyncio.sleep(1.5)  # nothing more should come

        await running(second, due_passes)  # a new instance, after the restart

        async def once_more() -> None:
            await asyncio.sleep(2.0)

        await running(instance(), once_more)  # restarted again after the alert

    [alert] = alerts()
    assert (alert["alert_id"], alert["cause"], alert["agency"], alert["due_at"]) == (
        f"receipt_missing:{silent_id}", "receipt_missing", SILENT, step_due)
    assert alert["fired_at"] == "2026-06-11T10:01:00+00:00"
    assert sum(b.applications for b in doubles.inboxes.values()) == 2  # nothing sent again
    assert latest_by_key(kafka_bootstrap, names["expected"]) == {good_id: None,
                                                                 silent_id: None}
