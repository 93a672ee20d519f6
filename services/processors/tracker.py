"""The dossier tracker (theo dõi hồ sơ) and the deadline sweeper: the worker's two jobs.

Both are thin shells around the domain core. For every batch of source records the tracker
decodes, applies ``apply_event`` per dossier in partition order, and writes what the core
returned: deliveries, alerts, dead letters and a snapshot for the read models. The sweeper
wakes on wall-clock time, asks the core which time alerts are due (``time_alerts``) for the
dossiers whose alarm has come, and raises them, with no new event needed.

Exactly once, as the outside world sees it: every output of a change is acknowledged by Kafka
*before* the changed dossier state is written to the changelogged table, and the source offset
is committed only after that. A worker killed between the two re-applies the event after
restart and re-sends the same outputs under the same deterministic ids (Idempotency-Key of a
delivery, alert id), which the sinks deduplicate; a worker killed after the state write skips
the event as already seen, and its outputs are already on Kafka.

Batches are pipelined: ``submit`` applies a batch and queues its outputs, then returns a future
that is done when the batch is durable, so the next batch is applied while the acknowledgements
of this one are on their way. One writer (``_write_states``) takes the batches in submission
order, each once its outputs are acknowledged, and writes the states of those ready together
(a dossier changed by several of them once, its newest state), so the changelog receives a
dossier's states in order and no offset is committed ahead of its state. One lock serialises
applying and queueing (tracker and sweeper); states applied but not yet durable are read from
``unsaved``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from lienthong.schemas import codec
from lienthong.schemas.codec import CodecError
from lienthong.services.clock import Clock
from lienthong.services.domain.alerts import Alert
from lienthong.services.domain.catalogue import Catalogue
from lienthong.services.domain.corrections import correct
from lienthong.services.domain.dossier import (
    Applied,
    Decision,
    DossierState,
    Rejected,
    apply_event,
    mark_fired,
    next_alarm,
    time_alerts,
)
from lienthong.services.domain.events import VOIDED, Event, InvalidEvent, parse_event
from lienthong.services.domain.replay import collector_paused
from lienthong.services.domain.routing import Delivery
from lienthong.services.processors import metrics
from lienthong.services.processors.deadline_index import DeadlineIndex
from lienthong.services.processors.history import DossierHistory, HistoryUnavailable
from lienthong.services.processors.holdings import Holdings
from lienthong.services.processors.partitioning import partition_of
from lienthong.services.processors.snapshot import snapshot
from lienthong.services.processors.stored import summary_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record of ``dossier.events`` as the consumer saw it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class _Batch:
    """A batch submitted: its outputs' acknowledgements, the states to write after them."""

    acks: list[Awaitable[Any]]
    changes: list[StateChange]
    positions: dict[int, int]  # partition -> next offset, once durable
    on_durable: Callable[[], Awaitable[None]] | None
    done: asyncio.Future[None]


def _done(ack: Awaitable[Any]) -> bool:
    return not isinstance(ack, asyncio.Future) or ack.done()


DELIVERY, ALERT, DEADLETTER, STATUS = "delivery", "alert", "deadletter", "status"
REBUILD_STEP = 10_000  # states indexed between two turns of the event loop

# (kind, key, value, partition): keyed outputs go to the dossier's own partition (every keyed
# topic has the partitions of dossier.events), so no producer hashes the key again.
Output = tuple[str, bytes | None, bytes, int | None]


# (key, partition, state, the state's changelog bytes as of its batch)
StateChange = tuple[bytes, int, DossierState, bytes]


class DossierStates(Protocol):
    """The dossiers' states (bảng trạng thái hồ sơ): read like a mapping, made durable by
    ``save``, which returns only once the new states are on the changelog. ``encode`` gives a
    state's changelog bytes: taken when its batch is queued, as a later batch may change the
    same state object before this one is written."""

    def get(self, key: bytes, default: Any = None) -> Any: ...
    def items(self) -> Iterable[tuple[bytes, DossierState]]: ...
    def encode(self, state: DossierState) -> bytes: ...
    async def save(self, changes: Sequence[StateChange]) -> None: ...

    def known_partitions(self) -> Mapping[bytes, int]:
        """The partition of the keys whose partition is known without hashing them (the
        changelog partition each was recovered from); others may be missing."""
        ...


class InMemoryStates(dict[bytes, DossierState]):
    """States held in this process only (tests, tools): ``save`` just stores them.

    ``partitions`` is what ``known_partitions`` answers (empty: every key is hashed).
    """

    def __init__(self, *args: Any, partitions: Mapping[bytes, int] | None = None) -> None:
        super().__init__(*args)
        self.partitions: Mapping[bytes, int] = partitions or {}

    def known_partitions(self) -> Mapping[bytes, int]:
        return self.partitions

    def encode(self, state: DossierState) -> bytes:
        return b""

    async def save(self, changes: Sequence[StateChange]) -> None:
        self.update((key, state) for key, _, state, _ in changes)


class Outputs(Protocol):
    """Where the tracker writes. ``send_all`` queues the records (those of one topic and
    partition in the order given) and returns awaitables that complete when Kafka
    acknowledged them all."""

    async def send_all(self, records: Sequence[Output]) -> list[Awaitable[Any]]: ...


def _iso(t: datetime) -> str:
    return t.replace(microsecond=0).isoformat()


def delivery_record(d: Delivery, at: datetime) -> dict[str, Any]:
    return {"delivery_id": d.delivery_id, "destination": d.destination, "kind": d.kind,
            "dossier": d.dossier, "event_id": d.event_id, "at": _iso(at), "payload": d.payload}


def alert_record(a: Alert, tz: Any) -> dict[str, Any]:
    detail = {k: v for k, v in (("procedure", a.procedure), ("step", a.step),
                                ("event_id", a.event_id)) if v is not None}
    return {"alert_id": a.alert_id, "kind": a.kind, "scope": a.scope, "dossier": a.dossier,
            "agency": a.agency, "destination": None,
            "due_at": None if a.due_at is None else _iso(a.due_at.astimezone(tz)),
            "fired_at": _iso(a.at.astimezone(tz)),
            "detail": json.dumps(detail, ensure_ascii=False, separators=(",", ":"))}


class Tracker:
    """Applies events and fires time alerts for the dossiers of this worker's partitions."""

    def __init__(self, *, catalogue: Catalogue, clock: Clock,
                 states: DossierStates, outputs: Outputs,
                 partitions: int, index: DeadlineIndex | None = None,
                 live: bool = True, history: DossierHistory | None = None) -> None:
        self.catalogue = catalogue
        self.clock = clock
        self.states = states
        self.outputs = outputs
        self.partitions = partitions
        self.index = index or DeadlineIndex()
        self.live = live  # reject events from the future (rule 11) against the clock
        self.lock = asyncio.Lock()
        self.holdings = Holdings(catalogue)
        self.processed: dict[int, int] = {}  # partition -> next offset after those durable
        # States applied whose batch is not durable yet (new dossiers are in no table before).
        self.unsaved: dict[bytes, DossierState] = {}
        self._pending: deque[_Batch] = deque()  # submitted, not yet durable, in order
        self._writer: asyncio.Future[None] | None = None
        self._tail: asyncio.Future[None] | None = None  # the last batch submitted
        self._tz = catalogue.calendar.tz
        self.history = history  # a dossier's past events, for voids and corrections
        self._applied: dict[tuple[str, str], int] = {}  # (type, agency) -> applied, this batch

    # -- events ------------------------------------------------------------------------------

    async def handle(self, records: Sequence[SourceRecord]) -> None:
        """Apply a batch of source records; returns once everything is durably written."""
        await (await self.submit(records))

    async def submit(self, records: Sequence[SourceRecord],
                     on_durable: Callable[[], Awaitable[None]] | None = None,
                     ) -> asyncio.Future[None]:
        """Apply a batch and queue its outputs; the task returned finishes (after
        ``on_durable``) once the outputs, then the states, are on Kafka."""
        async with self.lock:
            started = time.perf_counter()
            now = self.clock.now()
            out: list[Output] = []
            changed: dict[bytes, tuple[int, DossierState]] = {}
            for record in records:
                correction = self._apply(record, now, out, changed)
                if correction is not None:
                    await self._correct(record, correction, now, out, changed)
            positions = {r.partition: r.offset + 1 for r in records}
            self._count_applied()
            task = await self._queue(out, changed, positions, on_durable)
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            return task

    def _count_applied(self) -> None:
        """lienthong_events_total, once per batch and label pair (a metric child's lookup
        costs more than applying many an event)."""
        for (etype, agency), n in self._applied.items():
            metrics.EVENTS.labels(etype, agency).inc(n)
        self._applied.clear()

    async def drain(self) -> None:
        """Wait until every batch submitted so far is durable."""
        if self._tail is not None:
            await self._tail

    def _apply(self, record: SourceRecord, now: datetime, out: list[Output],
               changed: dict[bytes, tuple[int, DossierState]]) -> Event | None:
        """Apply one record; a void or a correction is returned for ``_correct`` instead."""
        try:
            data = codec.EVENTS.decode(record.value)
            event = parse_event(data)
        except CodecError as exc:
            self._deadletter(record, getattr(exc, "reason", "undecodable"), str(exc), out)
            return None
        except InvalidEvent as exc:
            self._deadletter(record, "invalid_event", str(exc), out)
            return None
        key = event.dossier.encode()
        if record.key is not None and record.key != key:
            self._deadletter(record, "key_mismatch",
                             f"record key {record.key!r} is not the event's dossier code", out)
            return None
        if self.history is not None and (event.type == VOIDED
                                         or event.corrects_event_id is not None):
            return event  # is_correction(), inline: this runs for every event
        entry = changed.get(key)
        state = entry[1] if entry is not None else self._state(key)
        decision = apply_event(state, event, self.catalogue, now if self.live else None)
        self._take(record, key, event, decision, out, changed)
        return None

    async def _correct(self, record: SourceRecord, event: Event, now: datetime,
                       out: list[Output], changed: dict[bytes, tuple[int, DossierState]]) -> None:
        """A void or a correction: the dossier replayed from its events in the log."""
        assert self.history is not None
        key = event.dossier.encode()
        entry = changed.get(key)
        state = entry[1] if entry is not None else self._state(key)
        if state is None:
            self._deadletter(record, "unknown_dossier", f"no dossier {event.dossier} to "
                             f"correct with this {event.type}", out)
            return
        try:
            raw = await self.history.records(record.topic, record.partition, key,
                                             record.offset)
        except HistoryUnavailable as exc:
            self._deadletter(record, "history_unavailable", str(exc), out)
            return
        known: dict[str, Event] = {}
        for value in raw:
            try:
                past = parse_event(codec.EVENTS.decode(value))
            except (CodecError, InvalidEvent):
                continue  # it went to the dead-letter topic when it came
            known.setdefault(past.event_id, past)
        decision = correct(state, event, known, self.catalogue, now if self.live else None)
        if self._take(record, key, event, decision, out, changed):
            log.info("dossier %s recomputed after %s %s by %s", event.dossier, event.type,
                     event.event_id, event.operator)

    def _take(self, record: SourceRecord, key: bytes, event: Event, decision: Decision,
              out: list[Output], changed: dict[bytes, tuple[int, DossierState]]) -> bool:
        """What the core decided about ``record``: a rejection is dead-lettered, a repeat
        counted, an applied change queues its deliveries and alerts (True)."""
        if isinstance(decision, Rejected):
            metrics.REJECTED.labels(decision.reason).inc()
            self._deadletter(record, decision.reason, decision.detail, out)
            return False
        if not isinstance(decision, Applied):
            metrics.DUPLICATES.inc()
            return False
        counted = (event.type, event.agency)
        applied = self._applied
        applied[counted] = applied.get(counted, 0) + 1
        partition = record.partition
        for d in decision.deliveries:
            out.append((DELIVERY, key, codec.DELIVERIES.encode(delivery_record(d, event.at),
                                                          validate=False), partition))
        self._send_alerts(key, partition, decision.alerts, out)
        changed[key] = (partition, decision.state)
        return True

    # -- time --------------------------------------------------------------------------------

    async def sweep(self, partitions: Collection[int] | None = None) -> int:
        """Raise the time alerts that have come due on ``partitions`` (default: all); returns
        how many were raised.

        The caller leaves out partitions still catching up on a backlog: their states lag
        behind events already on Kafka, and an alert raised from such a state (a step already
        handed on, a clock already paused) could not be taken back.
        """
        async with self.lock:
            now = self.clock.now()
            due = self.index.pop_due(now.timestamp(), partitions=partitions)
            if not due:
                return 0
            out: list[Output] = []
            changed: dict[bytes, tuple[int, DossierState]] = {}
            raised = 0
            for partition, code in due:
                key = code.encode()
                state = self._state(key)
                if state is None:
                    continue
                alerts = time_alerts(state, self.catalogue, now)
                if alerts:
                    mark_fired(state, alerts)
                    self._send_alerts(key, partition, alerts, out)
                    raised += len(alerts)
                changed[key] = (partition, state)
            task = await self._queue(out, changed, {}, None)
        await task
        return raised

    def rebuild_index(self, partitions: Iterable[int]) -> int:
        """Index every dossier of ``partitions`` from the table (after a rebalance or a
        restart), and count the open dossiers per holder afresh; returns how many are indexed.

        A key's partition comes from the table where it knows it (the changelog partition it
        was recovered from), else from murmur2 of the key. Python's cyclic collector is held
        off meanwhile: the index adds millions of small tuples while the table holds millions
        of states, and each collection would walk all of them to find no cycle.
        """
        for _ in self._rebuild(partitions, None):
            pass
        return len(self.index)

    async def rebuild_index_in_steps(self, partitions: Iterable[int],
                                     step: int = REBUILD_STEP) -> int:
        """``rebuild_index``, letting the event loop run after every ``step`` states.

        A worker restarting on a million states spends tens of seconds here (reading each
        state back from its stored form first); holding the loop that long stops faust's
        consumer keep-alive and the group heartbeat past the session timeout, and the
        partitions are taken away and recovered all over again.
        """
        for _ in self._rebuild(partitions, step):
            await asyncio.sleep(0)
        return len(self.index)

    def _rebuild(self, partitions: Iterable[int], step: int | None) -> Iterator[None]:
        """The rebuild, pausing (yielding) after every ``step`` states (None: never)."""
        owned = set(partitions)
        count = self.partitions
        known = self.states.known_partitions()
        catalogue = self.catalogue
        alarms: dict[int, list[tuple[float, str]]] = {p: [] for p in owned}
        mine: list[tuple[bytes, str, float | None]] = []  # open: (key, holder, overdue from)
        # The table reads what the index needs from the stored form where it can, without
        # decoding the state (stored.py); other stores give their states.
        summaries = getattr(self.states, "summaries", None)
        items = iter(summaries(catalogue) if summaries is not None else
                     ((k, summary_of(s, catalogue)) for k, s in self.states.items()))
        while True:
            with collector_paused():
                for done, (key, summary) in enumerate(items, 1):
                    partition = known.get(key)
                    if partition is None:
                        partition = partition_of(key, count)
                    if partition in owned and summary is not None:
                        alarm, holder, overdue_from = summary
                        mine.append((key, holder, overdue_from))
                        if alarm is not None:
                            alarms[partition].append((alarm, key.decode()))
                    if done == step:
                        break
                else:
                    break  # every state seen
            yield
        with collector_paused():
            self.index = DeadlineIndex.of(alarms)
            self.holdings.recount_open(mine, self.clock.now())
        metrics.INDEXED.set(len(self.index))

    # -- plumbing ----------------------------------------------------------------------------

    def _send_alerts(self, key: bytes, partition: int, alerts: list[Alert],
                     out: list[Output]) -> None:
        for a in alerts:
            metrics.ALERTS.labels(a.kind).inc()
            out.append((ALERT, key, codec.ALERTS.encode(alert_record(a, self._tz), validate=False),
                        partition))

    def _deadletter(self, record: SourceRecord, reason: str, detail: str,
                    out: list[Output]) -> None:
        metrics.DEADLETTERS.labels(reason).inc()
        log.warning("dead letter %s at %s[%d]@%d: %s", reason, record.topic, record.partition,
                    record.offset, detail)
        out.append((DEADLETTER, record.key, codec.DEADLETTERS.encode({
            "original": record.value, "key": record.key, "reason": reason,
            "detail": detail[:2000], "source_topic": record.topic,
            "partition": record.partition, "offset": record.offset,
            "at": _iso(datetime.now(UTC)),
        }, validate=False), None))

    def _schedule(self, partition: int, key: bytes, state: DossierState) -> None:
        alarm = next_alarm(state, self.catalogue)
        self.index.schedule(partition, key.decode(), None if alarm is None else alarm.timestamp())

    def _state(self, key: bytes) -> DossierState | None:
        state = self.unsaved.get(key)
        return state if state is not None else self.states.get(key)  # type: ignore[no-any-return]

    async def _queue(self, out: list[Output], changed: dict[bytes, tuple[int, DossierState]],
                     positions: dict[int, int],
                     on_durable: Callable[[], Awaitable[None]] | None) -> asyncio.Future[None]:
        """Queue the outputs in order (a dossier's deliveries keep their order) and hand the
        batch to the state writer, behind every batch submitted before it."""
        now = self.clock.now()
        for key, (partition, state) in changed.items():
            out.append((STATUS, key, snapshot(state, self.catalogue, now), partition))
        acks = await self.outputs.send_all(out) if out else []
        encode = self.states.encode
        changes = [(key, partition, state, encode(state))
                   for key, (partition, state) in changed.items()]
        for key, partition, state, _ in changes:
            self.unsaved[key] = state
            self._schedule(partition, key, state)
        self.holdings.update(((key, state) for key, _, state, _ in changes), now)
        metrics.INDEXED.set(len(self.index))
        batch = _Batch(acks, changes, positions, on_durable,
                       asyncio.get_running_loop().create_future())
        self._pending.append(batch)
        self._tail = batch.done
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_states())
        return batch.done

    async def _write_states(self) -> None:
        """The one writer of states (group commit): takes, in submission order, every batch
        whose outputs are acknowledged, writes their states (a dossier changed by several of
        them once, its newest state), and completes them once Kafka acknowledged."""
        pending = self._pending
        group: list[_Batch] = []
        try:
            while pending:
                head = pending[0]
                if head.acks:
                    await asyncio.gather(*head.acks)
                group = [pending.popleft()]
                while pending and all(_done(a) for a in pending[0].acks):
                    group.append(pending.popleft())
                for batch in group[1:]:
                    await asyncio.gather(*batch.acks)  # done: raises a failed one's error
                newest: dict[bytes, StateChange] = {}
                for batch in group:
                    for change in batch.changes:
                        newest.pop(change[0], None)  # re-inserted: keeps the order of the last
                        newest[change[0]] = change
                changes = list(newest.values())
                await self.states.save(changes)
                unsaved = self.unsaved
                for key, _, state, _ in changes:
                    if unsaved.get(key) is state:
                        del unsaved[key]
                for batch in group:
                    self.processed.update(batch.positions)
                    if batch.on_durable is not None:
                        await batch.on_durable()
                    batch.done.set_result(None)
            group = []
        except BaseException as exc:
            # Nothing after a failed write may become durable: fail every batch still waiting.
            for batch in [*group, *pending]:
                if not batch.done.done():
                    batch.done.set_exception(exc)
            pending.clear()
            if not isinstance(exc, Exception):
                raise
        finally:
            self._writer = None

