"""Composition root of the stream processors: one faust app built from settings.

``build_worker(settings, catalogue=..., clock=...)`` wires the faust app, its topics, the
changelogged dossier table, the tracker agent, the sweeper timer and the worker's web pages
(``/metrics``, ``/healthz``). Tests call the same function with a scaled clock and a test
catalogue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

import faust
import orjson
from aiokafka.errors import KafkaError as AIOKafkaError
from faust.serializers.codecs import Codec
from faust.types import TP
from kafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lienthong.schemas import topics
from lienthong.services.clock import Clock, WallClock
from lienthong.services.domain.catalogue import Catalogue, load_catalogue
from lienthong.services.domain.dossier import DossierState
from lienthong.services.processors import metrics, stored
from lienthong.services.processors.collector import FREEZE_SECONDS, CollectorPolicy
from lienthong.services.processors.fetching import (
    DirectFeed,
    add_direct_feed,
    tune_faust_consumer,
)
from lienthong.services.processors.history import LogHistory
from lienthong.services.processors.offsets import OffsetGuard
from lienthong.services.processors.positions import commit_start_offsets, with_coordinator
from lienthong.services.processors.recovery import (
    recover_in_bulk,
    release_collector,
    tune_faust_recovery,
)
from lienthong.services.processors.tracker import (
    ALERT,
    DEADLETTER,
    DELIVERY,
    STATUS,
    Output,
    SourceRecord,
    StateChange,
    Tracker,
)
from lienthong.services.record_batches import Record, send_by_partition, send_records
from lienthong.services.settings import Settings

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 0.2  # seconds; an overdue alert is raised within this of its instant
STALL_SECONDS = 5.0  # a partition behind its end that applies nothing this long is sought back
PRODUCER_BATCH_BYTES = 512 * 1024  # under the broker's 1 MiB message.max.bytes
BATCH_MAX = 1000  # events applied as one batch at most
BATCH_WITHIN = 0.002  # seconds a batch waits for more events once one is there
MAX_IN_FLIGHT = 5000  # events applied whose batches are not yet durable, at most


class DossierStateCodec(Codec):
    """Changelog encoding of a dossier's state: compact JSON of ``DossierState.to_dict()``,
    led, when a catalogue is given, by the index header of ``stored.py`` (what the deadline
    index needs, readable without decoding the state)."""

    def __init__(self, tz: tzinfo, catalogue: Catalogue | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tz = tz
        self.catalogue = catalogue
        self.fingerprint = ("" if catalogue is None
                            else stored.fingerprint(catalogue))

    def _dumps(self, state: Any) -> bytes:
        return stored.encode(state, self.catalogue, self.fingerprint)

    def _loads(self, data: bytes) -> Any:
        return DossierState.from_dict(orjson.loads(data), self.tz)


class DossierTable:
    """The changelogged dossier table as the tracker sees it: values are always DossierState.

    faust's recovery paths may hand back the changelog's JSON decoded as plain dicts; they are
    turned into states on first read and cached in the store without a changelog write.

    ``save`` writes the changelog itself and waits for Kafka's acknowledgement. A plain table
    assignment would queue the record in faust's producer buffer, whose flush before an offset
    commit gives up after 100 ms without progress (faust-streaming 0.15.3
    ``ProducerBuffer.flush_atmost``): under load an offset could be committed ahead of its
    state, and a worker killed then would lose the dossier.
    """

    def __init__(self, table: Any, codec: DossierStateCodec) -> None:
        self._table = table
        self._tz = codec.tz
        self._codec = codec

    def encode(self, state: DossierState) -> bytes:
        return self._codec.dumps(state)

    async def save(self, changes: Sequence[StateChange]) -> None:
        # Straight to the app's producer, on the dossier's own partition (the changelog is
        # co-partitioned with dossier.events): no faust message objects, no murmur2 per key.
        producer = self._table.app.producer._ensure_producer()
        name = self._table.changelog_topic.get_topic_name()
        acks = await send_by_partition(producer, name, (
            (partition, key, value) for key, partition, _, value in changes))
        if acks:
            await asyncio.gather(*acks)
        data = self._table.data
        for key, _, state, _ in changes:
            data[key] = state

    def _state(self, key: bytes, value: Any) -> DossierState:
        if isinstance(value, bytes):  # stored form, as a restart's bulk read leaves it
            value = self._codec.loads(value)
            self._table.data[key] = value
        elif isinstance(value, dict):
            value = DossierState.from_dict(value, self._tz)
            self._table.data[key] = value
        return value  # type: ignore[no-any-return]

    def get(self, key: bytes, default: Any = None) -> Any:
        value = self._table.get(key)
        return default if value is None else self._state(key, value)

    def __len__(self) -> int:
        return len(self._table)

    def known_partitions(self) -> Mapping[bytes, int]:
        """The changelog partition of every key recovered from it, as faust's in-memory store
        records it during recovery (``Store._key_partition``, faust-streaming 0.15.3); keys
        first written by this process are not in it."""
        known = getattr(self._table.data, "_key_partition", None)
        return known if isinstance(known, Mapping) else {}

    def summaries(self, catalogue: Catalogue) -> Iterator[tuple[bytes, stored.Summary]]:
        """(key, ``stored.Summary``) of every state: read from the stored form's index header
        where the state is still in that form and the header is of this calendar, else from
        the state (decoded now and kept decoded)."""
        fingerprint = self._codec.fingerprint
        store = self._table.data
        for key, value in list(getattr(store, "data", store).items()):
            if isinstance(value, bytes):
                known, summary = stored.read_summary(value, fingerprint)
                if known:
                    yield key, summary
                    continue
            yield key, stored.summary_of(self._state(key, value), catalogue)

    def items(self) -> Any:
        # Read back lazily, as the caller goes: a restart's million states are not all
        # decoded in one stretch of the event loop.
        return ((k, self._state(k, v)) for k, v in list(self._table.items()))


class _FaustOutputs:
    """Sends straight to the app's producer (the one faust's ``Topic.send`` ends in), each
    partition's records as whole record batches (``record_batches.py``): same order, same
    acknowledgement, without faust's per-record message, callback and sensor objects nor
    aiokafka's per-record coroutine and future."""

    def __init__(self, app: faust.App, by_kind: dict[str, faust.TopicT]) -> None:
        self._app = app
        self._names = {kind: topic.get_topic_name() for kind, topic in by_kind.items()}

    async def send_all(self, records: Sequence[Output]) -> list[Awaitable[Any]]:
        names = self._names
        runs: dict[tuple[str, int], list[Record]] = {}
        acks: list[Awaitable[Any]] = []
        for kind, key, value, partition in records:
            if partition is None:  # partitioned by the producer (dead letters: rare)
                acks.append(await self._app.producer.send(
                    names[kind], key, value, partition=None, timestamp=None, headers=None))
            else:
                runs.setdefault((names[kind], partition), []).append((key, value))
        producer = self._app.producer._ensure_producer()
        for (name, partition), run in runs.items():
            acks.extend(await send_records(producer, name, partition, run))
        return acks


@dataclass
class Worker:
    app: faust.App
    tracker: Tracker
    settings: Settings
    bootstrap: str
    events_topic: str


def _brokers(bootstrap: str) -> list[str]:
    return [f"kafka://{b.strip()}" for b in bootstrap.split(",") if b.strip()]


def faust_app(settings: Settings, bootstrap: str, *, app_id: str, web: bool) -> faust.App:
    """The worker's faust app: every faust setting of the hot path in one place (the pipeline
    benchmark runs a bare agent on the same app to measure faust's own share)."""
    tune_faust_consumer()
    tune_faust_recovery()
    datadir = settings.data_dir / "worker"
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id,
        broker=_brokers(bootstrap),
        store="memory://",
        processing_guarantee="at_least_once",
        # Short group timeouts: a killed worker's partitions move in seconds, not minutes.
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=10,
        broker_commit_every=1000,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        table_standby_replicas=0,
        producer_acks=-1,
        # A batch of the tracker writes megabytes (snapshots, states): with aiokafka's 16 KiB
        # record batches a partition's batch fills after a few records and every further send
        # waits for the sender, one produce request at a time.
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        producer_max_request_size=8 * PRODUCER_BATCH_BYTES,
        web_enabled=web,
        web_bind=settings.host,
        web_port=settings.worker_port,
        web_in_thread=False,
        datadir=str(datadir / app_id),
        stream_wait_empty=False,
    )


def build_worker(settings: Settings, *, catalogue: Catalogue | None = None,
                 clock: Clock | None = None, bootstrap: str | None = None) -> Worker:
    """The worker: tracker agent + deadline sweeper over one faust app."""
    catalogue = catalogue or load_catalogue(settings.catalog_path)
    clock = clock or WallClock()
    bootstrap = bootstrap or settings.kafka_bootstrap_servers
    if not bootstrap:
        raise ValueError("no Kafka: set KAFKA_BOOTSTRAP_SERVERS or start 'lienthong broker'")
    names = topics.names(settings)
    app = faust_app(settings, bootstrap, app_id=settings.app_id, web=True)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw"}
    events_topic = app.topic(names.events, partitions=settings.partitions, **raw)
    by_kind = {
        DELIVERY: app.topic(names.deliveries, **raw),
        ALERT: app.topic(names.alerts, **raw),
        DEADLETTER: app.topic(names.deadletter, **raw),
        STATUS: app.topic(names.status, **raw),
    }
    state_codec = DossierStateCodec(catalogue.calendar.tz, catalogue)
    table = app.Table(
        "dossiers",
        key_type=bytes,
        # Recovery reads the changelog through this schema.
        schema=faust.Schema(key_type=bytes, key_serializer="raw", value_serializer=state_codec),
        partitions=settings.partitions,
        # Changelog partition = the dossier's partition in dossier.events (same murmur2 of the
        # same key bytes), and the sweeper may write outside a stream.
        use_partitioner=True,
    )
    # faust derives a table's serializers from model types only; the store and the changelog
    # topic are made lazily from these attributes, so setting them here is in time.
    table.key_serializer = "raw"
    table.value_serializer = state_codec
    # After a restart the changelog is read in bulk into the store as bytes; DossierTable
    # decodes a state when it is first read (recovery.py, stored.py).
    recover_in_bulk(table)
    tracker = Tracker(catalogue=catalogue, clock=clock,
                      states=DossierTable(table, state_codec),
                      outputs=_FaustOutputs(app, by_kind), partitions=settings.partitions,
                      history=LogHistory(bootstrap, client_id=f"{settings.app_id}-history"))

    guard = OffsetGuard()

    admin: list[Any] = []  # one kafka-python admin client, made on first use

    def committed_offsets() -> dict[int, int]:
        """The group's committed offsets of dossier.events, asked of the broker (faust's own
        view of them is not yet set when a backlog starts to flow after a rebalance)."""
        if not admin:
            from kafka import KafkaAdminClient

            admin.append(KafkaAdminClient(bootstrap_servers=bootstrap.split(","),
                                          client_id=f"{settings.app_id}-offsets"))
        offsets = with_coordinator(
            lambda: admin[0].list_group_offsets(settings.app_id).get(settings.app_id, {}))
        return {tp.partition: meta.offset for tp, meta in offsets.items()
                if tp.topic == names.events and meta.offset >= 0}

    async def committed_or_none() -> dict[int, int] | None:
        """``committed_offsets`` or, while the cluster cannot answer (a broker down), None:
        the callers skip a round rather than stop the worker."""
        try:
            return await asyncio.to_thread(committed_offsets)
        except (KafkaError, AIOKafkaError) as exc:
            log.warning("committed offsets unavailable for now: %s", exc)
            return None

    async def log_ends(tps: list[TP]) -> Mapping[TP, int] | None:
        """The partitions' end offsets, or None while the cluster cannot answer."""
        try:
            return await app.consumer.highwaters(*tps)
        except (KafkaError, AIOKafkaError) as exc:
            log.warning("partition ends unavailable for now: %s", exc)
            return None

    async def resume_positions(partitions: set[int]) -> dict[int, int | None]:
        """Where each partition resumes: its committed offset, else the log's start (None:
        unknown for now; the first record applied sets it)."""
        committed = await committed_or_none()
        if committed is None:
            return dict.fromkeys(partitions)
        missing = [TP(names.events, p) for p in partitions if p not in committed]
        try:
            earliest = await app.consumer.earliest_offsets(*missing) if missing else {}
        except (KafkaError, AIOKafkaError) as exc:
            log.warning("log starts unavailable for now: %s", exc)
            earliest = {}
        return {p: committed[p] if p in committed else earliest.get(TP(names.events, p))
                for p in partitions}

    def stop_on_failure(task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # A failed write leaves memory ahead of the changelog: start again from Kafka.
            log.error("could not write a batch; stopping the worker", exc_info=task.exception())
            os._exit(70)

    feed = DirectFeed(names.events)
    add_direct_feed(app, feed)

    @app.agent(events_topic)
    async def track(stream: faust.StreamT[bytes]) -> None:
        """Dossier tracker: applies each event of dossier.events to its dossier's state.

        The records come from the fetch loop through ``feed`` (``fetching.py``), not through
        ``stream``: the agent subscribes faust's consumer to the topic. Batches hold what is
        waiting (up to BATCH_MAX) and are pipelined: while one batch's writes are
        acknowledged the next is applied. A batch's records are acknowledged to the consumer
        (their offsets may be committed) only once the batch is durable.
        """
        in_flight: deque[tuple[asyncio.Future[None], int]] = deque()
        waiting = 0  # events applied, not yet durable
        consumer_ack = app.consumer.ack
        while True:
            messages = await feed.take(BATCH_MAX, BATCH_WITHIN)

            async def acknowledge(messages: list[Any] = messages) -> None:
                for message in messages:
                    consumer_ack(message)

            records = [SourceRecord(m.topic, m.partition, m.offset, m.key, m.value)
                       for m in messages]
            try:
                fresh = {r.partition for r in records} - guard.known()
                if fresh:
                    guard.start(await resume_positions(fresh))
                ready, seeks = guard.admit(records, time.monotonic())
                for partition, offset in seeks.items():
                    log.warning("offsets of partition %d skipped from %d: seeking back",
                                partition, offset)
                    await app.consumer.seek(TP(names.events, partition), offset)
                task = await tracker.submit(ready, on_durable=acknowledge)
            except Exception:  # a failed write leaves memory ahead of the changelog
                log.exception("could not apply a batch; stopping the worker")
                os._exit(70)
            task.add_done_callback(stop_on_failure)
            in_flight.append((task, len(messages)))
            waiting += len(messages)
            while in_flight and (in_flight[0][0].done() or waiting > MAX_IN_FLIGHT):
                done, count = in_flight.popleft()
                await done
                waiting -= count

    @app.on_partitions_revoked.connect
    async def finish_batches(app: faust.App, revoked: set[TP], **kwargs: Any) -> None:
        """Batches in flight are made durable before their partitions move to another worker:
        a state written late by this worker would follow the new owner's on the changelog.
        Records fetched and not yet taken are dropped: they are fetched again from the
        committed offsets by whichever worker owns their partition next."""
        feed.clear()
        await tracker.drain()

    # Partitions of dossier.events this worker owns, split into those whose backlog (records
    # already on Kafka when they were assigned) is not applied yet, and those that are live.
    catching_up: set[int] = set()
    live: set[int] = set()

    progress: dict[int, tuple[int, float]] = {}  # partition -> (applied position, since)

    async def unstick(partition: int, done: int, end: int) -> None:
        """A partition behind its log end whose applied position has not moved for
        STALL_SECONDS is sought back to that position: faust can leave a partition's fetch
        past records it dropped, and nothing would ever bring them again."""
        now = time.monotonic()
        seen = progress.get(partition)
        if getattr(app, "in_recovery", False):
            # While the table recovers, faust holds the partitions itself: a seek would
            # disturb its reading of the changelog.
            progress.pop(partition, None)
            return
        if done >= end or seen is None or seen[0] != done:
            progress[partition] = (done, now)
            return
        if now - seen[1] >= STALL_SECONDS:
            log.warning("partition %d stalled at offset %d of %d: seeking back there",
                        partition, done, end)
            await app.consumer.seek(TP(names.events, partition), done)
            guard.start({partition: done})
            progress[partition] = (done, now)

    async def catch_up() -> None:
        """Move partitions whose applied position reached the log end to ``live``."""
        tps = [TP(names.events, p) for p in catching_up]
        ends = await log_ends(tps)
        committed = await committed_or_none()
        if ends is None or committed is None:
            return
        for tp in tps:
            end = ends.get(tp)
            done = tracker.processed.get(tp.partition, committed.get(tp.partition, 0))
            if end is None:
                continue
            if done >= end:
                catching_up.discard(tp.partition)
                live.add(tp.partition)
                log.info("partition %d caught up at offset %d: sweeping it", tp.partition, done)
            else:
                await unstick(tp.partition, done, end)

    @app.timer(5.0)
    async def measure_lag() -> None:
        """lienthong_consumer_lag{consumer="worker"} of the partitions this worker owns."""
        if app.rebalancing:
            return
        owned = live | catching_up
        ends = await log_ends([TP(names.events, p) for p in owned])
        committed = await committed_or_none()
        if ends is None or committed is None:
            return
        metrics.CONSUMER_LAG.clear()
        for tp, end in ends.items():
            done = tracker.processed.get(tp.partition, committed.get(tp.partition, 0))
            if end is not None:
                metrics.CONSUMER_LAG.labels("worker", names.events, str(tp.partition)).set(
                    max(0, end - done))
                await unstick(tp.partition, done, end)

    collector = CollectorPolicy()
    collector.start()

    @app.timer(FREEZE_SECONDS)
    async def hold_long_lived() -> None:
        """Keep the collector's full passes off the states held (see ``collector.py``)."""
        collector.tick()

    @app.timer(SWEEP_INTERVAL)
    async def sweep() -> None:
        """Deadline sweeper: raises due_soon/overdue alerts on wall-clock time."""
        if app.rebalancing:
            return
        try:
            if catching_up:
                await catch_up()
            await tracker.sweep(partitions=live)
        except Exception:
            log.exception("could not write swept alerts; stopping the worker")
            os._exit(70)

    @table.on_recover
    async def reindex() -> None:
        owned = {tp.partition for tp in app.assignor.assigned_actives()
                 if tp.topic == names.events}
        started = time.perf_counter()
        try:
            async with tracker.lock:
                count = await tracker.rebuild_index_in_steps(owned)
        finally:
            # The collector was held off since the first changelog record (recovery.py).
            release_collector()
        live.clear()
        catching_up.clear()
        catching_up.update(owned)
        guard.forget()
        log.info("deadline index rebuilt: %d dossiers on partitions %s in %.1f s", count,
                 sorted(owned), time.perf_counter() - started)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "indexed": len(tracker.index)})

    return Worker(app=app, tracker=tracker, settings=settings, bootstrap=bootstrap,
                  events_topic=names.events)


def run_worker(worker: Worker, loglevel: str = "info") -> None:
    """Run until stopped (SIGTERM/SIGINT)."""
    started = commit_start_offsets(worker.bootstrap, worker.settings.app_id,
                                   worker.events_topic)
    if started:
        log.info("group %s starts %s at %s", worker.settings.app_id, worker.events_topic,
                 started)
    run_app(worker.app, loglevel)


def run_app(app: faust.App, loglevel: str = "warning") -> None:
    """Run a faust app in this process until stopped (SIGTERM/SIGINT)."""
    from faust.worker import Worker as FaustWorker

    asyncio.set_event_loop(asyncio.new_event_loop())
    runner = FaustWorker(app, loglevel=loglevel, quiet=True)
    # faust's terminal spinner sets the root logger to DEBUG at levels >= WARNING (to spin on
    # every record): every debug line of faust and aiokafka would then build a log record.
    runner.spinner = None
    runner.execute_from_commandline()
