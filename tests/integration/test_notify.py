"""``lienthong notify``'s service on the real broker: alerts read from the topic reach the
agency's mailbox once per alert id, repeats on the topic included."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from lienthong.connectors.doubles.smtp import SmtpSink
from lienthong.connectors.notify import (
    AlertRouter,
    Dispatcher,
    MailSender,
    NotifyService,
    SentLog,
    SmtpSettings,
)
from lienthong.schemas.codec import encode_alert
from lienthong.services.domain.catalogue import load_catalogue, parse_catalogue
from lienthong.services.ops.feed import FeedTopics

SAMPLE = Path(__file__).parents[2] / "examples" / "province-h99.yaml"
COMMUNE = "000.00.15.H99"


def alert(alert_id: str, fired: datetime) -> dict[str, Any]:
    return {"alert_id": alert_id, "kind": "overdue", "scope": "dossier",
            "dossier": "000.00.15.H99-20261201-0000001", "agency": COMMUNE,
            "destination": None, "due_at": "2026-12-01T09:00:00+07:00",
            "fired_at": fired.isoformat(timespec="seconds"), "detail": ""}


@pytest.mark.kafka
async def test_alerts_on_the_topic_are_mailed_once_per_id(
        kafka_bootstrap: str, new_topic: Any, tmp_path: Path) -> None:
    data = load_catalogue(SAMPLE).to_dict()
    for a in data["agencies"]:
        if a["code"] == COMMUNE:
            a["alert_email"] = "motcua@hoabinh.h99.gov.vn"
    catalogue = parse_catalogue(data)
    now = datetime.now(catalogue.calendar.tz)
    topics = FeedTopics(new_topic(3, prefix="status"), new_topic(3, prefix="alerts"))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    key = b"000.00.15.H99-20261201-0000001"
    for alert_id in ("n-1", "n-1", "n-2"):                   # n-1 twice: a worker's repeat
        producer.send(topics.alerts, encode_alert(alert(alert_id, now)), key=key)
    producer.flush()
    async with SmtpSink() as sink:
        service = NotifyService(
            AlertRouter(catalogue),
            Dispatcher(None, MailSender(SmtpSettings("127.0.0.1", sink.port, "canhbao@h99"))),
            SentLog(tmp_path / "sent.log"), lambda: datetime.now(catalogue.calendar.tz),
            digest_at=None)
        task = asyncio.create_task(service.run(kafka_bootstrap, topics))
        try:
            mails = await sink.wait_for(2, timeout=30)
            producer.send(topics.alerts, encode_alert(alert("n-1", now)), key=key)
            producer.flush()
            await asyncio.sleep(2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            producer.close()
        assert len(sink.messages) == 2
        assert sorted(m.message["X-Lienthong-Key"] for m in mails) == ["n-1", "n-2"]
    assert sorted((tmp_path / "sent.log").read_text().split()) == ["n-1", "n-2"]
