"""The dashboard's Kafka shell: reads ``dossier.status``, ``alerts``, ``deadletter`` and
``receipts`` from the beginning into the read model, and re-sends parked messages.

Partitions are assigned by hand (no consumer group): every dashboard process reads everything,
and a restart rebuilds the read model from the compacted status topic and the alert feed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from lienthong.schemas.codec import CodecError, decode_alert, decode_deadletter, decode_receipt
from lienthong.services.ops.board import AlertRecord, Change, OpsBoard, SnapshotError
from lienthong.services.ops.metrics import DashboardMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedTopics:
    """The topics to read; a reader that needs only snapshots (reports) leaves out the rest."""

    status: str
    alerts: str | None = None
    deadletter: str | None = None
    citizen: str | None = None      # citizen.notifications: what applicants were told
    receipts: str | None = None

    def all(self) -> tuple[str, ...]:
        return tuple(t for t in (self.status, self.alerts, self.deadletter, self.citizen,
                                 self.receipts)
                     if t is not None)


@dataclass(frozen=True)
class Parked:
    """What a re-send needs: the original bytes, key and topic."""

    source_topic: str
    key: bytes | None
    original: bytes


class StatusFeed:
    """Consumes the topics into ``board``; calls ``notify`` with each change, and
    ``on_alert`` with each alert the first time its id is seen."""

    def __init__(self, bootstrap: str, board: OpsBoard, topics: FeedTopics,
                 notify: Callable[[Change | None], None],
                 metrics: DashboardMetrics | None = None,
                 on_alert: Callable[[AlertRecord], None] | None = None) -> None:
        self.bootstrap = bootstrap
        self.board = board
        self.topics = topics
        self.notify = notify
        self.metrics = metrics
        self.on_alert = on_alert
        self.parked: dict[tuple[int, int], Parked] = {}
        self.ready = asyncio.Event()      # set once the first catch-up reached the end
        self._producer: AIOKafkaProducer | None = None

    # consuming -------------------------------------------------------------------------------

    async def _partitions(self, consumer: AIOKafkaConsumer,
                          timeout: float = 30.0) -> list[TopicPartition]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            await consumer._client.force_metadata_update()
            found: list[TopicPartition] = []
            missing = []
            for topic in self.topics.all():
                parts = consumer.partitions_for_topic(topic)
                if parts:
                    found.extend(TopicPartition(topic, p) for p in sorted(parts))
                else:
                    missing.append(topic)
            if not missing:
                return found
            optional = {self.topics.citizen, self.topics.receipts}
            if set(missing) <= optional:
                # A hub whose topics predate citizen notifications or receipts: the timeline
                # goes without them.
                log.warning("dashboard: topics %s not found; not shown on timelines",
                            ", ".join(map(str, missing)))
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"topics not found on {self.bootstrap}: {', '.join(missing)}")
            await asyncio.sleep(0.5)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            tps = await self._partitions(consumer)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            caught_up = {tp for tp, off in end.items() if off == 0}
            if len(caught_up) == len(tps):
                self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    self.apply(records)
                    last = records[-1].offset + 1 if records else 0
                    if self.metrics is not None:
                        hw = consumer.highwater(tp)
                        if hw is not None:
                            self.metrics.lag.labels("dashboard", tp.topic,
                                                    str(tp.partition)).set(max(0, hw - last))
                    if not self.ready.is_set() and last >= end.get(tp, 0):
                        caught_up.add(tp)
                if not self.ready.is_set():
                    caught_up |= {tp for tp in tps if end.get(tp, 0) == 0}
                    if len(caught_up) == len(tps):
                        self.ready.set()
        finally:
            await consumer.stop()

    def apply(self, records: Iterable[ConsumerRecord[Any, Any]]) -> None:
        """Apply records of one partition, in order (also the seam tests drive directly)."""
        for rec in records:
            try:
                change = self._apply_one(rec)
            except (ValueError, KeyError, TypeError, CodecError) as exc:
                # SnapshotError is a ValueError; one bad record never stops the feed.
                log.warning("dashboard: skipped %s/%d@%d: %s", rec.topic, rec.partition,
                            rec.offset, exc)
                self._count(rec.topic, "rejected")
                continue
            self._count(rec.topic, "duplicate" if change is None else "applied")
            self.notify(change)

    def _apply_one(self, rec: ConsumerRecord[Any, Any]) -> Change | None:
        if rec.topic == self.topics.status:
            if rec.value is None:
                return self.board.forget(bytes(rec.key or b"").decode("utf-8"))
            try:
                data = json.loads(rec.value)
            except ValueError as exc:
                raise SnapshotError(f"not JSON: {exc}") from exc
            return self.board.apply_snapshot(data)
        if rec.topic == self.topics.alerts:
            data = decode_alert(rec.value)
            change = self.board.add_alert(data)
            if change is not None and self.on_alert is not None:
                self.on_alert(AlertRecord.from_dict(data))
            return change
        if rec.topic == self.topics.citizen:
            try:
                data = json.loads(rec.value)
            except ValueError as exc:
                raise SnapshotError(f"not JSON: {exc}") from exc
            return self.board.add_citizen_notice(data)
        if rec.topic == self.topics.deadletter:
            parked = decode_deadletter(rec.value)
            self.parked[(rec.partition, rec.offset)] = Parked(
                parked["source_topic"], parked.get("key"), parked["original"])
            return self.board.add_deadletter(rec.partition, rec.offset, parked)
        if rec.topic == self.topics.receipts:
            return self.board.add_receipt(decode_receipt(rec.value))
        return None

    def _count(self, topic: str, result: str) -> None:
        if self.metrics is not None:
            name = ("status" if topic == self.topics.status else
                    "alerts" if topic == self.topics.alerts else
                    "citizen" if topic == self.topics.citizen else
                    "receipts" if topic == self.topics.receipts else "deadletter")
            self.metrics.records.labels(name, result).inc()

    # re-sending ------------------------------------------------------------------------------

    async def resend(self, offset: int) -> None:
        """Publish the parked message at ``offset`` of the dead-letter topic (original bytes
        and key) to its source topic; deliveries carry an Idempotency-Key, so a repeat is
        harmless."""
        hits = [(tp, p) for tp, p in self.parked.items() if tp[1] == offset]
        if not hits:
            raise LookupError(f"no parked message at offset {offset}")
        if len(hits) > 1:
            raise LookupError(f"offset {offset} exists in several dead-letter partitions")
        parked = hits[0][1]
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                              enable_idempotence=True)
            await self._producer.start()
        await self._producer.send_and_wait(parked.source_topic, parked.original,
                                           key=parked.key)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
