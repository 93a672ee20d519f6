"""A worker's restart over the real embedded broker: the changelog read in bulk
(``services/processors/recovery.py``) and the states it leaves in the table."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from kafka import KafkaProducer

from lienthong.schemas import topics
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.domain.dossier import (
    Applied,
    DossierState,
    apply_event,
    mark_fired,
    next_alarm,
    time_alerts,
)
from lienthong.services.domain.events import parse_event
from lienthong.services.processors import recovery
from lienthong.services.processors.recovery import apply_records, read_in_bulk
from tests.integration.conftest import NewTopicFactory
from tests.integration.hub import CATALOGUE, Hub, TopicReader, decoded

COMMUNE, POLICE = "000.00.15.H99", "000.02.10.H99"


# -- the bulk read itself ----------------------------------------------------------------------

def _produce(bootstrap: str, topic: str,
             records: list[tuple[int, bytes, bytes | None]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for partition, key, value in records:
        producer.send(topic, key=key, value=value, partition=partition)
    producer.flush()
    producer.close()


def test_the_bulk_read_keeps_each_keys_last_record_and_drops_tombstoned_keys(
        kafka_bootstrap: str, new_topic: NewTopicFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "BULK_RECORDS", 3)  # several fetches per partition
    topic = new_topic(partitions=2)
    _produce(kafka_bootstrap, topic, [
        (0, b"a", b"a1"), (0, b"b", b"b1"), (0, b"a", b"a2"),    # offsets 0-2
        (0, b"c", b"c1"), (0, b"b", None), (0, b"a", b"a3"),     # 3-5: b tombstoned
        (0, b"d", b"d1"), (0, b"d", None), (0, b"d", b"d2"),     # 6-8: d back after its tombstone
        (1, b"x", b"x1"), (1, b"y", b"y1"), (1, b"x", None),     # 0-2
        (1, b"y", b"y2"), (1, b"z", b"z1"),                      # 3-4
    ])
    # Partition 1 as faust left it after applying offsets 0-2: the plan starts at 3.
    stores: dict[int, dict[bytes, bytes]] = {0: {}, 1: {b"y": b"y1"}}
    keys: dict[int, dict[bytes, int]] = {0: {}, 1: {b"y": 1}}
    through: dict[int, list[int]] = {0: [], 1: []}

    def on_read(tp: TopicPartition, records: list[Any], upto: int) -> None:
        apply_records(stores[tp.partition], keys[tp.partition], tp.partition,
                      [(r.key, r.value) for r in records])
        through[tp.partition].append(upto)

    async def run() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            await asyncio.wait_for(read_in_bulk(
                consumer, {TopicPartition(topic, 0): (0, 8), TopicPartition(topic, 1): (3, 4)},
                on_read), 30)
        finally:
            await consumer.stop()

    asyncio.run(run())
    assert stores == {0: {b"a": b"a3", b"c": b"c1", b"d": b"d2"},
                      1: {b"y": b"y2", b"z": b"z1"}}
    assert keys == {0: {b"a": 0, b"c": 0, b"d": 0}, 1: {b"y": 1, b"z": 1}}
    # Read through each partition's last offset, in order, in batches of at most three.
    assert through[0][-1] == 8 and through[1][-1] == 4
    assert through[0] == sorted(through[0]) and len(through[0]) >= 3


def test_the_bulk_read_hands_on_nothing_once_its_rebalance_is_over(
        kafka_bootstrap: str, new_topic: NewTopicFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "BULK_RECORDS", 2)
    topic = new_topic(partitions=1)
    _produce(kafka_bootstrap, topic, [(0, b"k%d" % i, b"v") for i in range(10)])
    batches: list[list[int]] = []

    def on_read(tp: TopicPartition, records: list[Any], upto: int) -> None:
        batches.append([r.offset for r in records])

    async def run() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            # A rebalance comes once the first batch is handed on: nothing more is.
            await asyncio.wait_for(read_in_bulk(consumer, {TopicPartition(topic, 0): (0, 9)},
                                                on_read, lambda: not batches), 30)
        finally:
            await consumer.stop()

    asyncio.run(run())
    assert batches == [[0, 1]]


# -- a worker killed and restarted -------------------------------------------------------------

@pytest.fixture
def hub(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Hub]:
    hub = Hub(kafka_bootstrap, tmp_path)
    hub.create_topics()
    yield hub
    hub.stop_all()


def _event(etype: str, dossier: str, at: str, agency: str = COMMUNE,
           **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": etype, "dossier": dossier, "at": at,
            "agency": agency, **extra}


def _last_states(hub: Hub, expect: int) -> dict[bytes, bytes]:
    """The last record of each key on the worker's table changelog, once ``expect`` keys are
    there (the worker writes a state once its outputs are acknowledged)."""
    deadline = time.time() + 60
    while True:  # the worker creates its changelog when it starts
        try:
            reader = TopicReader(hub.bootstrap, topics.changelog(hub.settings))
            break
        except ValueError:
            assert time.time() < deadline and hub.live(), hub.log()
            time.sleep(0.5)
    try:
        reader.until(lambda r: len({x.key for x in r}) >= expect, 60, hub.live())
        reader.until(lambda r: False, 1.0)
        return {r.key: r.value for r in sorted(reader.records, key=lambda r: r.offset)}
    finally:
        reader.close()


def test_a_worker_killed_and_restarted_serves_the_same_states_and_fires_each_due_alert_once(
        hub: Hub) -> None:
    # Received Tue 24 Nov 2026 16:00:00 + n s (1.001193), a day off (Vietnamese Culture Day):
    # every first step's 4 working hours start at the next opening, Wed 07:30, so it is due
    # 11:30 and its due_soon comes with 2 h left, at 09:30. The first
    # worker runs at 07:00 (nothing due); the restarted one from 09:29:50, eight times fast,
    # so every due_soon falls due after the kill.
    dossiers = 120
    codes = [f"{COMMUNE}-20261124-{n:07d}" for n in range(dossiers)]
    receipts = [_event("received", c, f"2026-11-24T16:{n // 60:02d}:{n % 60:02d}+07:00",
                       procedure="1.001193", channel="desk",
                       applicant={"name": "Trần Thị Bích", "id_number": "001099012345"})
                for n, c in enumerate(codes)]
    first = hub.start_worker(clock=f"scaled:2026-11-25T07:00:00+07:00:1@{time.time()}")
    hub.publish(receipts)
    before = _last_states(hub, dossiers)
    assert len(before) == dossiers, hub.log()
    hub.kill(first)

    hub.start_worker(clock=f"scaled:2026-11-25T09:29:50+07:00:8@{time.time()}")
    catalogue = load_catalogue(CATALOGUE)
    expected: dict[str, DossierState] = {}
    wanted_alerts: set[str] = set()
    swept_until = datetime.fromisoformat("2026-11-25T09:32:30+07:00")
    for raw in receipts:
        decision = apply_event(None, parse_event(raw), catalogue)
        assert isinstance(decision, Applied)
        state = expected[raw["dossier"]] = decision.state
        next_alarm(state, catalogue)  # as the worker's index asks it
        due = time_alerts(state, catalogue, swept_until)
        wanted_alerts |= {a.alert_id for a in due}
        mark_fired(state, due)
        next_alarm(state, catalogue)
    assert len(wanted_alerts) == dossiers  # one step due_soon each

    alerts = TopicReader(hub.bootstrap, hub.names.alerts)
    try:
        assert alerts.until(lambda r: {a["alert_id"] for a in decoded(r, "alert")}
                            >= wanted_alerts, 60, hub.live()), hub.log(chars=8000)
        alerts.until(lambda r: False, 2.0)  # and nothing more comes
        fired = [a["alert_id"] for a in decoded(alerts.records, "alert")]
    finally:
        alerts.close()
    assert sorted(fired) == sorted(wanted_alerts), "each due alert once, no other"
    log = hub.log(chars=200_000)
    assert "changelog records of" in log and "in bulk" in log, "recovered by the bulk read"

    # Every dossier's state as recovered: a hand-off applied to it after the restart gives
    # the state the core gives (an unknown, older or wrong state would be rejected or differ).
    handoffs = [_event("handoff", c, "2026-11-25T09:33:00+07:00", to_agency=POLICE)
                for c in codes]
    hub.publish(handoffs)
    for raw in handoffs:
        decision = apply_event(expected[raw["dossier"]], parse_event(raw), catalogue)
        assert isinstance(decision, Applied), decision
        next_alarm(decision.state, catalogue)
    after = _last_states(hub, dossiers)
    deadline = time.time() + 30
    while (sum(b'"handoff"' in v for v in after.values()) < dossiers
           and time.time() < deadline):
        after = _last_states(hub, dossiers)
    letters = TopicReader(hub.bootstrap, hub.names.deadletter)
    letters.until(lambda r: False, 1.0)
    letters.close()
    assert letters.records == [], [d["reason"] for d in decoded(letters.records, "deadletter")]
    tz = catalogue.calendar.tz
    for code in codes:
        got = DossierState.from_dict(orjson.loads(after[code.encode()]), tz)
        assert got.to_dict() == expected[code].to_dict(), code
