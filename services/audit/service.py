"""``lienthong audit chain``: the single writer of ``audit.log``.

    service = ChainService(bootstrap, topics.names(settings), audit_key)
    service.run(stop)            # until stop.is_set()

It reads the source topics (``dossier.events``, ``deliveries``, ``receipts``, ``alerts``,
``deadletter``, ``operator.actions``) and appends one entry per record to the audit partition
with the same number as the record's partition — every keyed topic is partitioned by dossier
code with the same count, so one dossier's whole history is one chain (``deadletter`` and
``operator.actions``, one partition each, go to 0).

Exactly once, across kill -9: each batch of entries, any checkpoint due, and the source
positions reached are written in one Kafka transaction (``transactional.id`` fixed per hub, so
a new instance fences an old one and aborts what it left open). On start the service reads the
committed source positions of its group and the last committed entry of each audit partition
to learn ``prev`` and ``seq``; nothing is appended twice and nothing is skipped. The worker's
hot path is not touched: the chain shares only the broker and, on one machine, the CPU with it
(``bench/bench_audit.py`` measures the cost). It uses aiokafka for its stream, whose C record
code takes about 2.5 times less CPU per entry than kafka-python's; it builds each entry's bytes
directly (``entries.append_run``), hands each audit partition's entries to the producer as whole
record batches, and gathers up to half a second of records per transaction, so that under load
it spends about 10 µs of CPU per entry and commits a few transactions a second.

Every ``checkpoint_seconds`` (and on a clean stop) it signs the head of every partition with
the hub's Ed25519 audit key into ``audit.checkpoints``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioPartition
from kafka import KafkaConsumer, TopicPartition

from lienthong.schemas import codec, topics
from lienthong.services.audit.chain import ChainState, sign_checkpoint, step
from lienthong.services.audit.entries import AuditKey, append_run, logged_at_field
from lienthong.services.record_batches import send_records

log = logging.getLogger(__name__)

GROUP_ID = "lienthong-audit-chain"

#: source topic attribute of ``TopicNames`` -> the entry's ``source_kind``.
SOURCES = {"events": "event", "deliveries": "delivery", "receipts": "receipt",
           "alerts": "alert", "deadletter": "deadletter", "operator_actions": "operator"}


def last_entries(bootstrap: str, topic: str, timeout_s: float = 30.0) -> dict[int, bytes]:
    """The last committed entry of each partition of ``topic`` (partitions without any left
    out): read backwards in growing windows from the end."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed", group_id=None)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        out: dict[int, bytes] = {}
        for tp in tps:
            window = 64
            while end[tp] > begin[tp]:
                start = max(begin[tp], end[tp] - window)
                consumer.seek(tp, start)
                last: bytes | None = None
                deadline = time.monotonic() + timeout_s
                while consumer.position(tp) < end[tp]:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"reading the end of {topic}/{tp.partition}")
                    for records in consumer.poll(timeout_ms=500).values():
                        for r in records:
                            if r.offset < end[tp]:
                                last = r.value
                if last is not None:
                    out[tp.partition] = last
                    break
                if start == begin[tp]:
                    break  # only transaction markers
                window *= 4
        return out
    finally:
        consumer.close()


def state_after(value: bytes) -> ChainState:
    """The chain state after an entry (its own ``seq`` + 1, its chain hash)."""
    entry = codec.AUDIT_ENTRIES.decode(value)
    return ChainState(int(entry["seq"]) + 1, step(entry["prev"], value))


@dataclass
class ChainStats:
    appended: int = 0
    batches: int = 0
    checkpoints: int = 0
    started_at: float = field(default_factory=time.monotonic)


class ChainService:
    """The audit chain writer (see the module docstring)."""

    def __init__(self, bootstrap: str, names: topics.TopicNames, key: AuditKey, *,
                 checkpoint_seconds: float = 60.0, group_id: str | None = None,
                 transactional_id: str | None = None, batch_records: int = 5000,
                 batch_seconds: float = 0.5,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.bootstrap = bootstrap
        self.names = names
        self.key = key
        self.checkpoint_seconds = checkpoint_seconds
        prefix = names.audit_log[: -len(topics.AUDIT_LOG)]
        self.group_id = group_id or prefix + GROUP_ID
        self.transactional_id = transactional_id or prefix + GROUP_ID
        self.batch_records = batch_records
        self.batch_seconds = batch_seconds
        self.now = now
        self.states: dict[int, ChainState] = {}
        self.stats = ChainStats()
        self.ready = threading.Event()  # set once resumed and reading

    # -- start ----------------------------------------------------------------------------------

    def _resume(self, consumer: KafkaConsumer) -> tuple[list[TopicPartition], int]:
        audit_parts = len(consumer.partitions_for_topic(self.names.audit_log) or ())
        if audit_parts == 0:
            raise RuntimeError(f"topic {self.names.audit_log} does not exist; create the hub's "
                               "topics first")
        self.states = {p: ChainState() for p in range(audit_parts)}
        for p, value in last_entries(self.bootstrap, self.names.audit_log).items():
            self.states[p] = state_after(value)
        sources: list[TopicPartition] = []
        for attr in SOURCES:
            topic = getattr(self.names, attr)
            sources += [TopicPartition(topic, p)
                        for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(sources)
        for tp in sources:
            committed = consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        log.info("audit chain resumed: %s",
                 ", ".join(f"p{p} seq {s.seq}" for p, s in sorted(self.states.items())))
        return sources, audit_parts

    # -- loop -----------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Chain until ``stop`` is set (aiokafka under the hood: its C record code keeps the
        CPU per entry low, which is what the worker beside it feels)."""
        asyncio.run(self._run(stop))

    async def _run(self, stop: threading.Event) -> None:
        # Offsets and the last entries are read with kafka-python first (plain calls, once).
        probe = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group_id,
                              enable_auto_commit=False, isolation_level="read_committed")
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                    enable_idempotence=True,
                                    transactional_id=self.transactional_id,
                                    transaction_timeout_ms=30000, linger_ms=5,
                                    max_batch_size=1 << 20, max_request_size=8 << 20)
        await producer.start()  # fences an older instance, aborts its open batch
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    enable_auto_commit=False, isolation_level="read_committed",
                                    auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=4 << 20,
                                    fetch_min_bytes=64 << 10, fetch_max_wait_ms=200)
        try:
            sources, audit_parts = self._resume(probe)
            positions = {AioPartition(tp.topic, tp.partition): probe.position(tp)
                         for tp in sources}
            probe.close()
            await consumer.start()
            consumer.assign(list(positions))
            for tp, pos in positions.items():
                consumer.seek(tp, pos)
            kinds = {getattr(self.names, attr): kind for attr, kind in SOURCES.items()}
            last_checkpoint = time.monotonic()
            dirty = False
            self.ready.set()
            while not stop.is_set():
                batch = await self._gather(consumer)
                due = time.monotonic() - last_checkpoint >= self.checkpoint_seconds
                if not batch and not (due and dirty):
                    continue
                await self._commit_batch(producer, batch, kinds, audit_parts,
                                         checkpoint=due and (dirty or bool(batch)))
                if batch:
                    dirty = True
                if due and dirty:
                    last_checkpoint = time.monotonic()
                    dirty = False
            if dirty:
                await self._commit_batch(producer, {}, kinds, audit_parts, checkpoint=True)
        finally:
            with contextlib.suppress(Exception):
                probe.close()
            await consumer.stop()
            await producer.stop()

    async def _gather(self, consumer: AIOKafkaConsumer) -> dict[Any, list[Any]]:
        """The next batch: what the sources hold, and once the first records are there, what
        comes within ``batch_seconds`` more, up to ``batch_records``. Each transaction costs
        round trips and a marker in every partition it wrote, so under load the chain writes a
        few large ones a second instead of one per fetch (it lags by at most that long)."""
        batch = await consumer.getmany(timeout_ms=200, max_records=self.batch_records)
        count = sum(len(records) for records in batch.values())
        deadline = time.monotonic() + self.batch_seconds
        while 0 < count < self.batch_records:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = await consumer.getmany(timeout_ms=max(1, int(left * 1000)),
                                          max_records=self.batch_records - count)
            for tp, records in more.items():
                batch.setdefault(tp, []).extend(records)
                count += len(records)
        return batch

    async def _commit_batch(self, producer: AIOKafkaProducer,
                            batch: dict[Any, list[Any]], kinds: dict[str, str],
                            audit_parts: int, *, checkpoint: bool) -> None:
        states = dict(self.states)
        logged_at = self.now()
        logged_field = logged_at_field(logged_at)
        # audit partition -> (source records, their entries), in source-partition order
        runs: dict[int, list[tuple[list[Any], list[bytes]]]] = {}
        offsets: dict[Any, int] = {}
        appended = 0
        for tp, records in batch.items():
            if not records:
                continue
            target = tp.partition % audit_parts
            values, states[target] = append_run(states[target], kinds[tp.topic], tp.topic,
                                                tp.partition, records, logged_field)
            runs.setdefault(target, []).append((records, values))
            offsets[tp] = records[-1].offset + 1
            appended += len(values)
        # Any failure leaves self.states as committed; the process stops and, restarted,
        # resumes from what Kafka committed (the open transaction is aborted by the fencing).
        async with producer.transaction():
            for target, partition_runs in runs.items():
                await self._send_entries(producer, target, partition_runs)
            if checkpoint:
                record = sign_checkpoint(self.key.private, self.key.key_id,
                                         self.names.audit_log, logged_at.isoformat(), states)
                await producer.send(self.names.audit_checkpoints,
                                    value=codec.AUDIT_CHECKPOINTS.encode(record), partition=0)
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.group_id)
        self.states = states
        self.stats.appended += appended
        self.stats.batches += 1
        self.stats.checkpoints += int(checkpoint)

    async def _send_entries(self, producer: AIOKafkaProducer, target: int,
                            partition_runs: list[tuple[list[Any], list[bytes]]]) -> None:
        """One audit partition's entries as whole record batches (``record_batches.py``).
        The commit waits for them to be acknowledged."""
        await send_records(producer, self.names.audit_log, target,
                           ((record.key, value) for records, values in partition_runs
                            for record, value in zip(records, values, strict=True)))
