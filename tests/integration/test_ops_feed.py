"""The dashboard's Kafka shell on the real broker: snapshots, alerts (once per id) and dead
letters read from the beginning into the read model; a bad record is skipped; a re-send puts
the parked bytes back on their source topic."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lienthong.schemas.codec import encode_alert, encode_deadletter
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.ops.board import Change, OpsBoard
from lienthong.services.ops.feed import FeedTopics, StatusFeed
from lienthong.services.ops.metrics import DashboardMetrics

CATALOGUE = load_catalogue(Path(__file__).parents[2] / "examples" / "province-h99.yaml")
CODE = "000.00.15.H99-20261201-0000001"


def snapshot(state: str = "processing") -> dict[str, Any]:
    return {"dossier": CODE, "procedure": "1.001193", "procedure_name": "Khai sinh",
            "receiving_agency": "000.00.15.H99", "receiving_level": "commune",
            "channel": "desk", "applicant": {"name": "Lê Thị Mai", "id_number": "001199000001"},
            "holder": "000.00.15.H99", "state": state,
            "received_at": "2026-12-01T08:00:00+07:00", "due_at": "2026-12-01T09:00:00+07:00",
            "ended_at": None, "outcome": "overdue", "steps": [], "pauses": [],
            "apologies": [], "postal": [], "portal_status": 4, "timeline": [],
            "updated_at": "2026-12-01T08:00:00+07:00"}


ALERT = {"alert_id": "0b7c9d1e-0000-5000-8000-000000000001", "kind": "overdue",
         "scope": "dossier", "dossier": CODE, "agency": "000.00.15.H99", "destination": None,
         "due_at": "2026-12-01T09:00:00+07:00", "fired_at": "2026-12-01T09:00:00+07:00",
         "detail": ""}


async def _until(condition: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.mark.kafka
async def test_the_feed_reads_every_topic_from_the_beginning_and_resends(
        kafka_bootstrap: str, new_topic: Any) -> None:
    topics = FeedTopics(new_topic(3, prefix="status"), new_topic(3, prefix="alerts"),
                        new_topic(1, prefix="deadletter"))
    source = new_topic(1, prefix="deliveries")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    key = CODE.encode()
    producer.send(topics.status, json.dumps(snapshot()).encode(), key=key)
    producer.send(topics.status, b"{not json", key=b"broken")
    producer.send(topics.alerts, encode_alert(ALERT), key=key)
    producer.send(topics.alerts, encode_alert(ALERT), key=key)     # a restarted worker's repeat
    producer.send(topics.deadletter, encode_deadletter({
        "original": b"parked-bytes", "key": key, "reason": "delivery_exhausted",
        "detail": "HTTP 503 five times", "source_topic": source, "partition": 0,
        "offset": 12, "at": "2026-12-01T10:00:00+07:00"}))
    producer.flush()

    board = OpsBoard(CATALOGUE)
    changes: list[Change | None] = []
    metrics = DashboardMetrics(board, lambda: datetime.now(board.calendar.tz))
    feed = StatusFeed(kafka_bootstrap, board, topics, changes.append, metrics)
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.ready.wait(), 30)
        await _until(lambda: len(board) == 1 and board.deadletters())
        assert board.dossier(CODE).applicant_name == "Lê Thị Mai"  # type: ignore[union-attr]
        assert [a.alert_id for a in board.alerts()] == [ALERT["alert_id"]]
        assert board.deadletters()[0].reason == "delivery_exhausted"
        text = metrics.render_text().decode()
        assert 'lienthong_dashboard_records_total{result="rejected",topic="status"} 1.0' in text
        assert 'lienthong_dashboard_records_total{result="duplicate",topic="alerts"} 1.0' in text

        # live: a newer snapshot arrives after the catch-up
        producer.send(topics.status, json.dumps(snapshot("ended") | {
            "updated_at": "2026-12-01T11:00:00+07:00",
            "ended_at": "2026-12-01T11:00:00+07:00"}).encode(), key=key)
        producer.flush()
        await _until(lambda: board.dossier(CODE).state == "ended")  # type: ignore[union-attr]
        assert any(c is not None and c.dossier == CODE for c in changes)

        await feed.resend(board.deadletters()[0].offset)
        consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None,
                                 auto_offset_reset="earliest", consumer_timeout_ms=10000)
        consumer.assign([TopicPartition(source, 0)])
        got = next(iter(consumer))
        consumer.close()
        assert (got.value, got.key) == (b"parked-bytes", key)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await feed.close()
        producer.close()
