"""The worker over the real embedded Kafka broker, run as a real process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.hub import Hub, TopicReader, decoded

COMMUNE, POLICE, INSURANCE = "000.00.15.H99", "000.02.10.H99", "000.03.10.H99"


@pytest.fixture
def hub(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Hub]:
    hub = Hub(kafka_bootstrap, tmp_path)
    hub.create_topics()
    yield hub
    hub.stop_all()


def ev(etype: str, code: str, at: str, agency: str = COMMUNE, **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": etype, "dossier": code, "at": at,
            "agency": agency, **extra}


def received(code: str, at: str) -> dict[str, Any]:
    return ev("received", code, at, procedure="1.001193", channel="desk",
              applicant={"name": "Trần Thị Bích", "id_number": "001099012345"})


def code(n: int) -> str:
    return f"{COMMUNE}-20261125-{n:07d}"


def test_a_handoff_becomes_a_delivery_and_bad_input_is_dead_lettered(hub: Hub) -> None:
    hub.start_worker()
    dossier = code(1)
    hub.publish([received(dossier, "2026-11-25T09:15:00+07:00"),
                 ev("handoff", dossier, "2026-11-25T10:00:00+07:00", to_agency=POLICE),
                 # illegal: the commune no longer holds the dossier
                 ev("handoff", dossier, "2026-11-25T10:05:00+07:00", to_agency=INSURANCE)])
    from kafka import KafkaProducer

    raw = KafkaProducer(bootstrap_servers=hub.bootstrap)
    raw.send(hub.names.events, key=b"junk", value=b"\x00\x01 not an event")
    raw.flush()
    raw.close()
    hub.publish([ev("handoff", dossier, "2026-11-25T11:00:00+07:00", agency=POLICE,
                    to_agency=INSURANCE)])

    deliveries = TopicReader(hub.bootstrap, hub.names.deliveries)
    letters = TopicReader(hub.bootstrap, hub.names.deadletter)
    try:
        def handoffs(records: list[Any]) -> list[dict[str, Any]]:
            return [d for d in decoded(records, "delivery") if d["kind"] == "handoff"]

        assert deliveries.until(lambda r: len(handoffs(r)) >= 2, 90, hub.workers), hub.log()
        assert [d["destination"] for d in handoffs(deliveries.records)] == [POLICE, INSURANCE]
        assert letters.until(lambda r: len(r) >= 2, 30, hub.workers), hub.log()
        reasons = sorted(d["reason"] for d in decoded(letters.records, "deadletter"))
        assert reasons[1] == "not_holder" and reasons[0] != "not_holder"
        assert hub.workers[0].poll() is None, "the worker keeps running after bad input"
    finally:
        deliveries.close()
        letters.close()


def test_an_overdue_alert_comes_within_2_s_of_its_instant_with_no_traffic(hub: Hub) -> None:
    # Received Wed 25 Nov 2026 09:15: the first step (4 working hours) is due 14:45
    # (09:15-11:30 is 2h15, 13:00-14:45 is 1h45). Virtual time reaches 14:45 25 s from now.
    lead = 25.0
    epoch = time.time()
    hub.start_worker(clock=f"scaled:2026-11-25T14:44:35+07:00:1@{epoch}")
    due_real = epoch + lead
    dossier = code(2)
    hub.publish([received(dossier, "2026-11-25T09:15:00+07:00")])
    alerts = TopicReader(hub.bootstrap, hub.names.alerts)
    try:
        def overdue(records: list[Any]) -> list[int]:
            return [i for i, a in enumerate(decoded(records, "alert"))
                    if a["kind"] == "overdue" and a["scope"] == "step"]

        assert alerts.until(lambda r: bool(overdue(r)), lead + 30, hub.workers), hub.log()
        arrival = alerts.arrivals[overdue(alerts.records)[0]]
        lateness = arrival - due_real
        assert -0.5 < lateness <= 2.0, f"overdue alert {lateness:.2f} s after its instant"
    finally:
        alerts.close()
