"""How the worker's changelogged table is recovered after a restart or a rebalance.

faust-streaming 0.15.3 (pinned exactly) reads the changelog in ``Recovery._slurp_changelogs``
with, for every record, a task (``asyncio.wait_for`` on the queue), three debug lines whose
f-strings are built even when debug logging is off, and a recount of every partition's
remaining offsets (``need_recovery`` and ``standby_remaining_total`` build Counters of all
assigned partitions). That made recovery some thirty times a bare aiokafka read of the same
changelog (``bench/bench_restart.py``). The loop below is faust's with three changes: it takes
records that are already queued without a task, builds no debug text, and asks whether
recovery has ended when the queue is drained instead of after each record (the end is only
possible then: the last records are in the queue until they are applied). It gives the event
loop a turn every ``YIELD_EVERY`` records, as the queue can hold many.

**Reading in bulk.** Even so, faust's path costs some 50 µs a record (the consumer thread's
message objects, the conductor, an event per record, faust's JSON decoding of the value, the
table's changelog batch) against about 5 µs for a bare aiokafka read of the same changelog.
For a table marked with ``recover_in_bulk`` (an in-memory store whose values its owner decodes
itself) faust's seek before a recovery of active partitions (``_seek_offsets``) plans instead,
for each partition behind its highwater, a read from the record after faust's offset (the last
one applied) through the highwater (the last on the log), and seeks faust's own consumer of
those partitions to the log end, so that it fetches nothing of them. The loop below then runs
the plan (``read_in_bulk``): a consumer of its own, outside any group, fetches batches of up to
``BULK_RECORDS`` and each record's key and value bytes go straight into the store (last record
per key wins, a tombstone deletes: ``apply_records``); faust's offset of the partition follows
what has been applied, so faust's own test for the end of recovery (every offset at its
highwater) ends it, and the owner decodes a value when it first reads it. A rebalance stops the
read where it got (the offsets say how far; the next recovery plans from there). If the read
fails, faust's consumer is sought back to faust's offsets and faust's own path reads the rest
(if that seek fails too, the bulk read is planned again from where it got).
Standby partitions are read by faust's path (the worker keeps none).

Python's cyclic collector is held off from the first changelog record until the deadline index
has been rebuilt (``hold_collector`` / ``release_collector``): a recovery adds tens of millions
of long-lived objects (a million states, each a tree of dicts, lists, strings and datetimes)
and no reference cycle, and every collection on the way walks the objects added so far and
finds nothing. Measured on 200,000 kept states: ``orjson.loads`` of a stored state costs 30 µs
with the collector on, 4.9 µs with it off. On release the survivors are frozen (``gc.freeze``:
moved to the collector's permanent generation), so the first full collection after the
restart does not walk them either and hold the event loop for seconds; they are still freed by
reference counting when a state is replaced or a partition moves away.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from time import monotonic, perf_counter
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from faust.stores import memory as faust_memory
from faust.tables import recovery as faust_recovery
from faust.transport.drivers.aiokafka import server_list
from faust.types import TP
from mode.services import ServiceTask

YIELD_EVERY = 500
BULK_RECORDS = 5000  # records of one bulk fetch: applied without a turn of the event loop
BULK_FETCH_BYTES = 4 << 20  # per partition and fetch
_BULK = "_lienthong_recover_in_bulk"


def recover_in_bulk(table: Any) -> None:
    """Recover ``table`` by the bulk read above: its store is then handed the changelog's
    value bytes, which its owner decodes on first read."""
    setattr(table, _BULK, True)


def apply_records(data: MutableMapping[Any, Any], partitions: MutableMapping[Any, int],
                  partition: int, records: Iterable[tuple[Any, bytes | None]]) -> int:
    """Apply changelog records (key, value bytes or None for a tombstone), in log order, to
    an in-memory store's ``data`` and its key -> partition map; returns how many were applied
    (records without a key are not: faust refuses them too)."""
    applied = 0
    pop = data.pop
    for key, value in records:
        if key is None:
            continue
        applied += 1
        if value is None:
            pop(key, None)
            partitions.pop(key, None)
        else:
            data[key] = value
            partitions[key] = partition
    return applied


def bulk_plan(offsets: Mapping[Any, int | None], highwaters: Mapping[Any, int | None],
              bulk: Iterable[Any]) -> dict[Any, tuple[int, int]]:
    """(first offset to read, last offset to read) of each partition of ``bulk`` that has
    records to recover, from faust's offsets (last applied, -1 or None: none) and highwaters
    (last offset on the log, -1: empty)."""
    plan = {}
    for tp in bulk:
        last = highwaters.get(tp)
        done = offsets.get(tp)
        done = -1 if done is None else done
        if last is not None and last > done:
            plan[tp] = (done + 1, last)
    return plan


async def read_in_bulk(consumer: AIOKafkaConsumer, plan: Mapping[TopicPartition, tuple[int, int]],
                       on_read: Callable[[TopicPartition, list[Any], int], None],
                       current: Callable[[], bool] = lambda: True) -> None:
    """Read each partition of ``plan`` from its first through its last offset with
    ``consumer`` (started, in no group), in batches of up to ``BULK_RECORDS``; each batch goes,
    in log order, to ``on_read(partition, records, through)``, ``through`` being the offset the
    partition has been read through (its last record's; the plan's last offset, with no more
    records, once the position has passed it: compacted or control records leave gaps). Stops
    early, before handing on anything more, as soon as ``current()`` is false."""
    consumer.assign(list(plan))
    for tp, (first, _) in plan.items():
        consumer.seek(tp, first)
    remaining = set(plan)
    while remaining and current():
        batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=BULK_RECORDS)
        if not current():
            return
        for tp, records in batches.items():
            if records:
                on_read(tp, records, records[-1].offset)
        for tp in list(remaining):
            position = await consumer.position(tp)
            if not current():
                return
            if position > plan[tp][1]:
                on_read(tp, [], plan[tp][1])
                remaining.discard(tp)


async def _seek_offsets(self: Any, consumer: Any, tps: set[TP], offsets: Any,
                        title: str) -> None:  # pragma: no cover - runs inside faust
    """faust's seek before a recovery; the active partitions of bulk tables are planned for
    the bulk read and faust's consumer is sought to their log end instead."""
    plan: dict[TP, tuple[int, int]] = {}
    if title == "active":
        bulk = [tp for tp in tps if getattr(self.tp_to_table.get(tp), _BULK, False)
                and isinstance(self.tp_to_table[tp].data, faust_memory.Store)]
        plan = bulk_plan(offsets, self.active_highwaters, bulk)
        self._lienthong_plan = (self._generation_id, plan)
        if plan:
            _wake(self).set()  # the loop below may be waiting for a record: none will come
    await consumer.seek_wait({tp: plan[tp][1] + 1 if tp in plan else max(offsets[tp], 0)
                              for tp in tps})


def _wake(self: Any) -> asyncio.Event:
    """Set when a bulk read is planned: wakes the loop below."""
    wake: asyncio.Event | None = getattr(self, "_lienthong_wake", None)
    if wake is None:
        wake = self._lienthong_wake = asyncio.Event()
    return wake


async def _read_in_bulk(self: Any, generation: int, plan: dict[TP, tuple[int, int]],
                        ) -> None:  # pragma: no cover - runs inside faust
    """The bulk read of ``plan``, made for rebalance ``generation`` (module docstring)."""
    log = faust_recovery.logger
    self.flush_buffers()  # what faust's path queued before applies first: the bulk read follows
    hold_collector()
    offsets = self.active_offsets
    started = perf_counter()
    applied = 0
    tps = {TopicPartition(tp.topic, tp.partition): tp for tp in plan}

    def current() -> bool:
        # A rebalance sets the start signal, then the next recovery clears it and bumps the
        # generation: either way the plan is stale, and a revoked partition's offset is gone
        # (writing it again would make a later assignment skip its records).
        return (not self.should_stop and self._generation_id == generation
                and not self.signal_recovery_start.is_set())

    def on_read(ktp: TopicPartition, records: list[Any], through: int) -> None:
        nonlocal applied
        tp = tps[ktp]
        if records:
            store = self.tp_to_table[tp].data
            applied += apply_records(store.data, store._key_partition, tp.partition,
                                     [(r.key, r.value) for r in records])
        offsets[tp] = max(offsets[tp], through)

    consumer = AIOKafkaConsumer(
        bootstrap_servers=server_list(self.app.conf.broker, 9092),
        client_id=f"{self.app.conf.id}-recovery", enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=BULK_FETCH_BYTES,
        isolation_level="read_committed" if self.app.in_transaction else "read_uncommitted")
    try:
        await consumer.start()
        await read_in_bulk(consumer, {k: plan[tp] for k, tp in tps.items()}, on_read, current)
    except Exception as exc:
        if current():
            log.warning(f"bulk recovery read failed ({exc!r}): faust's own path reads the rest")
            rest = {tp: max(offsets[tp], 0) for tp in plan if offsets[tp] < plan[tp][1]}
            try:
                await self.app.consumer.seek_wait(rest)
            except Exception as again:
                # faust's consumer stays at the log end of those partitions: without another
                # bulk read nothing would ever bring their records.
                log.warning(f"seeking back failed too ({again!r}): reading in bulk again")
                await asyncio.sleep(1.0)
                if current():
                    ends = {tp: plan[tp][1] for tp in rest}
                    self._lienthong_plan = (generation, bulk_plan(offsets, ends, rest))
                    _wake(self).set()
    finally:
        try:
            await consumer.stop()
        except Exception as exc:
            log.warning(f"bulk recovery consumer did not stop cleanly ({exc!r})")
    log.info(f"Read {applied} changelog records of {len(plan)} partitions in bulk in "
             f"{perf_counter() - started:.1f} s")


class _Collector:
    """Whether this module holds the cyclic collector off (so only it turns it back on)."""

    held = False


def hold_collector() -> None:
    """Hold off the cyclic collector for a bulk load (a no-op if it is off already)."""
    if not _Collector.held and gc.isenabled():
        gc.disable()
        _Collector.held = True


def release_collector() -> None:
    """End a bulk load: freeze what survived it and turn the collector back on if
    ``hold_collector`` turned it off."""
    gc.freeze()
    if _Collector.held:
        _Collector.held = False
        gc.enable()


async def _slurp_changelogs(self: Any) -> None:  # pragma: no cover - runs inside faust
    changelog_queue = self.tables.changelog_queue
    get_nowait = changelog_queue.get_nowait
    tp_to_table = self.tp_to_table
    active_tps = self.active_tps
    standby_tps = self.standby_tps
    active_offsets = self.active_offsets
    standby_offsets = self.standby_offsets
    active_events_received_at = self._active_events_received_at
    standby_events_received_at = self._standby_events_received_at
    buffers = self.buffers
    buffer_sizes = self.buffer_sizes
    processing_times = self._processing_times
    log = faust_recovery.logger

    async def detect_aborted_tx() -> None:
        for tp, highwater in self.active_highwaters.items():
            offset = self.active_offsets[tp]
            if (highwater is not None and offset is not None and offset < highwater
                    and await self.app.consumer.position(tp) >= highwater):
                log.info(f"Aborted tx until highwater for {tp}")
                self.active_offsets[tp] = highwater

    async def when_drained(timeout: bool = False, timeout_count: int = 0) -> None:
        """faust's end-of-recovery and standby checks, once the queue is empty."""
        if timeout and self.app.in_transaction and timeout_count > 1:
            await detect_aborted_tx()
        if self.in_recovery and not self.need_recovery():
            self.flush_buffers()
            self._set_recovery_ended()
            if self._actives_span is not None:
                self._actives_span.set_tag("Actives-Ready", True)
            self.signal_recovery_end.set()
        standby_ready = self._standbys_span is None and self.tables.standbys_ready
        if not standby_ready and not self.standby_remaining_total():
            if self._standbys_span:
                faust_recovery.finish_span(self._standbys_span)
                self._standbys_span = None
            self.tables.on_standbys_ready()

    wake = _wake(self)

    async def take_plan() -> bool:
        """Run the bulk read planned by ``_seek_offsets`` for this rebalance, if any."""
        wake.clear()
        planned = getattr(self, "_lienthong_plan", None)
        if not planned:
            return False
        self._lienthong_plan = None
        generation, plan = planned
        if not plan or generation != self._generation_id:
            return False
        await _read_in_bulk(self, generation, plan)
        return True

    async def next_record() -> Any:
        """The next changelog record; None after 5 s without one, or once woken for a bulk
        read (``wake``)."""
        if wake.is_set():
            return None
        get = asyncio.ensure_future(changelog_queue.get())
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait((get, woken), timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not get.done():
                get.cancel()  # a record it was about to take stays in the queue
        return get.result() if get.done() and not get.cancelled() else None

    timeout_count = 0
    since_yield = 0
    while not self.should_stop:
        try:
            self.signal_recovery_end.clear()
            if await take_plan():
                await when_drained()
            try:
                event = get_nowait()
                since_yield += 1
                if since_yield >= YIELD_EVERY:
                    since_yield = 0
                    await asyncio.sleep(0)
            except asyncio.QueueEmpty:
                await when_drained()
                event = await next_record()
                if event is None:
                    if wake.is_set():
                        continue  # a bulk read is planned: taken at the loop's top
                    timeout_count += 1
                    if self.should_stop:
                        return
                    await take_plan()
                    await when_drained(timeout=True, timeout_count=timeout_count)
                    continue
            if not _Collector.held:
                hold_collector()
            now = monotonic()
            timeout_count = 0
            message = event.message
            tp = message.tp
            offset = message.offset
            is_active = False
            bufsize = buffer_sizes.get(tp)
            if tp in active_tps:
                is_active = True
                table = tp_to_table[tp]
                offsets = active_offsets
                if bufsize is None:
                    bufsize = buffer_sizes[tp] = table.recovery_buffer_size
                active_events_received_at[tp] = now
            elif tp in standby_tps:
                table = tp_to_table[tp]
                offsets = standby_offsets
                if bufsize is None:
                    bufsize = buffer_sizes[tp] = table.standby_buffer_size
                    standby_events_received_at[tp] = now
            else:
                log.warning(f"recovery unknown topic {tp} offset {offset}")
                continue  # faust applies it to the previous record's table
            seen_offset = offsets.get(tp, None)
            if seen_offset is None or offset > seen_offset:
                offsets[tp] = offset
                buf = buffers[table]
                buf.append(event)
                await table.on_changelog_event(event)
                if len(buf) >= bufsize:
                    table.apply_changelog_batch(buf)
                    buf.clear()
                    self._last_flush_at = now
                if is_active:
                    now_after = monotonic()
                    last_processed_at = self._last_active_event_processed_at
                    if last_processed_at is not None:
                        processing_times.append(now_after - last_processed_at)
                        if len(processing_times) > self.num_samples_required_for_estimate:
                            processing_times.popleft()
                    self._last_active_event_processed_at = now_after
        except Exception as ex:
            log.warning(f"Error in recovery {ex}")


def tune_faust_recovery() -> None:
    """Install the loop above in faust's Recovery service (once per process)."""
    cls = faust_recovery.Recovery
    if getattr(cls, "_lienthong_tuned", False):
        return
    cls._slurp_changelogs = ServiceTask(_slurp_changelogs)  # type: ignore[assignment]
    cls._seek_offsets = _seek_offsets  # type: ignore[method-assign]
    cls._lienthong_tuned = True  # type: ignore[attr-defined]
