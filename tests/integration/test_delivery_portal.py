"""The delivery service sends DVCQG its own status-sync shape: ``portal_status`` deliveries from
``deliveries`` reach the national portal double's ``/dvcqg/api/status-sync`` once each, in
order, and one the portal shape cannot hold is parked instead of sent."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lienthong.connectors.delivery import BreakerConfig, DeliveryPolicy
from lienthong.connectors.delivery.service import UNMAPPABLE, DeliveryService
from lienthong.connectors.doubles import Doubles, endpoint_for, running
from lienthong.connectors.http import RetryPolicy
from lienthong.schemas import codec

pytestmark = pytest.mark.kafka

DOSSIER = "000.00.15.H99-20261125-0000007"
OTHER = "000.00.15.H99-20261125-0000008"
FAST = DeliveryPolicy(
    retry=RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.3),
    breaker=BreakerConfig(failure_threshold=3, open_seconds=0.3, max_open_seconds=1.0),
    request_timeout=2.0, max_wait_seconds=30.0)


def portal_status(dossier: str, status: int, channel: int = 2) -> dict[str, Any]:
    event_id = str(uuid.uuid4())
    return {"delivery_id": str(uuid.uuid4()), "destination": "DVCQG", "kind": "portal_status",
            "dossier": dossier, "event_id": event_id, "at": "2026-11-25T09:15:00+07:00",
            "payload": {"dossier": dossier, "procedure": "1.001193", "status": status,
                        "channel": channel, "agency": "000.00.15.H99",
                        "at": "2026-11-25T09:15:00+07:00", "event_id": event_id}}


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    for r in records:
        producer.send(topic, key=r["dossier"].encode(), value=codec.encode_delivery(r))
    producer.flush()
    producer.close()


def read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[bytes] = []
        deadline = time.monotonic() + 10
        while any(consumer.position(tp) < end[tp] for tp in tps) \
                and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                out.extend(r.value for r in records)
        return out
    finally:
        consumer.close()


async def test_portal_statuses_reach_the_portal_in_its_shape_once_each_in_order(
        kafka_bootstrap: str, new_topic) -> None:
    topics = {name: new_topic(3 if name == "deliveries" else 1, prefix=name)
              for name in ("deliveries", "alerts", "deadletter")}
    good = [portal_status(DOSSIER, s) for s in (2, 4, 5, 4, 9, 10)]
    good.append(portal_status(OTHER, 2, channel=3))
    bad = portal_status(OTHER, 11)  # not a portal status code
    await asyncio.to_thread(produce, kafka_bootstrap, topics["deliveries"], [*good, bad])

    doubles = Doubles([])
    async with running(doubles) as base:
        service = DeliveryService(
            kafka_bootstrap, lambda code: endpoint_for(base, code), signer=None, policy=FAST,
            group_id=f"delivery-{uuid.uuid4().hex[:8]}", deliveries_topic=topics["deliveries"],
            alerts_topic=topics["alerts"], deadletter_topic=topics["deadletter"],
            rng=random.Random(3),
            consumer_options={"session_timeout_ms": 6000, "heartbeat_interval_ms": 500})
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            deadline = time.monotonic() + 30
            parked_values: list[bytes] = []
            while (doubles.portal.inbox.applications < len(good) or not parked_values) \
                    and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                parked_values = await asyncio.to_thread(read_all, kafka_bootstrap,
                                                        topics["deadletter"])
            await asyncio.sleep(0.3)  # nothing more should come
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)

    portal = doubles.portal
    assert portal.history[DOSSIER] == [2, 4, 5, 4, 9, 10]  # each once, in the hub's order
    assert portal.history[OTHER] == [2]
    assert portal.latest[OTHER]["KenhThucHien"] == 3
    assert portal.latest[DOSSIER]["MaDonVi"] == "000.00.15.H99"
    stats = portal.inbox.stats()
    assert (stats["receipts"], stats["rejected"], stats["duplicates"]) == (len(good), 0, 0)
    [parked] = [codec.decode_deadletter(v) for v in parked_values]
    assert parked["reason"] == UNMAPPABLE
    assert "payload.status" in parked["detail"]
    assert codec.decode_delivery(parked["original"])["delivery_id"] == bad["delivery_id"]
