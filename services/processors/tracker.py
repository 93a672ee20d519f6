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
the event as already seen, and its outputs are already on Kafka. One lock serialises the tracker
and the sweeper, so a state is never written while another change's outputs are unacknowledged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from lienthong.schemas import codec
from lienthong.schemas.codec import CodecError
from lienthong.services.clock import Clock
from lienthong.services.domain.alerts import Alert
from lienthong.services.domain.catalogue import Catalogue
from lienthong.services.domain.dossier import (
    Applied,
    DossierState,
    Rejected,
    apply_event,
    mark_fired,
    next_alarm,
    time_alerts,
)
from lienthong.services.domain.events import InvalidEvent, parse_event
from lienthong.services.domain.replay import collector_paused
from lienthong.services.domain.routing import Delivery
from lienthong.services.processors import metrics
from lienthong.services.processors.deadline_index import DeadlineIndex
from lienthong.services.processors.holdings import Holdings
from lienthong.services.processors.partitioning import partition_of
from lienthong.services.processors.snapshot import snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record of ``dossier.events`` as the consumer saw it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


DELIVERY, ALERT, DEADLETTER, STATUS = "delivery", "alert", "deadletter", "status"
REBUILD_STEP = 10_000  # states indexed between two turns of the event loop
Output = tuple[str, bytes | None, bytes]  # (kind, key, value)


class DossierStates(Protocol):
    """The dossiers' states (bảng trạng thái hồ sơ): read like a mapping, made durable by
    ``save``, which returns only once the new states are on the changelog."""

    def get(self, key: bytes, default: Any = None) -> Any: ...
    def items(self) -> Iterable[tuple[bytes, DossierState]]: ...
    async def save(self, changes: Sequence[tuple[bytes, DossierState]]) -> None: ...

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

    async def save(self, changes: Sequence[tuple[bytes, DossierState]]) -> None:
        self.update(changes)


class Outputs(Protocol):
    """Where the tracker writes. ``send`` queues one record in call order and returns an
    awaitable that completes when Kafka acknowledged it."""

    async def send(self, kind: str, key: bytes | None, value: bytes) -> Awaitable[Any]: ...


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
                 live: bool = True) -> None:
        self.catalogue = catalogue
        self.clock = clock
        self.states = states
        self.outputs = outputs
        self.partitions = partitions
        self.index = index or DeadlineIndex()
        self.live = live  # reject events from the future (rule 11) against the clock
        self.lock = asyncio.Lock()
        self.holdings = Holdings(catalogue)
        self.processed: dict[int, int] = {}  # partition -> next offset after those applied
        self._tz = catalogue.calendar.tz

    # -- events ------------------------------------------------------------------------------

    async def handle(self, records: Sequence[SourceRecord]) -> None:
        """Apply a batch of source records; returns once everything is durably written."""
        async with self.lock:
            started = time.perf_counter()
            now = self.clock.now()
            out: list[Output] = []
            changed: dict[bytes, tuple[int, DossierState]] = {}
            for record in records:
                self._apply(record, now, out, changed)
            await self._write(out, changed)
            for record in records:
                self.processed[record.partition] = record.offset + 1
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    def _apply(self, record: SourceRecord, now: datetime, out: list[Output],
               changed: dict[bytes, tuple[int, DossierState]]) -> None:
        try:
            data = codec.EVENTS.decode(record.value)
            event = parse_event(data)
        except CodecError as exc:
            self._deadletter(record, getattr(exc, "reason", "undecodable"), str(exc), out)
            return
        except InvalidEvent as exc:
            self._deadletter(record, "invalid_event", str(exc), out)
            return
        key = event.dossier.encode()
        if record.key is not None and record.key != key:
            self._deadletter(record, "key_mismatch",
                             f"record key {record.key!r} is not the event's dossier code", out)
            return
        entry = changed.get(key)
        state = entry[1] if entry is not None else self.states.get(key)
        decision = apply_event(state, event, self.catalogue, now if self.live else None)
        if isinstance(decision, Rejected):
            metrics.REJECTED.labels(decision.reason).inc()
            self._deadletter(record, decision.reason, decision.detail, out)
            return
        if not isinstance(decision, Applied):
            metrics.DUPLICATES.inc()
            return
        metrics.EVENTS.labels(event.type, event.agency).inc()
        for d in decision.deliveries:
            out.append((DELIVERY, key, codec.DELIVERIES.encode(delivery_record(d, event.at),
                                                          validate=False)))
        self._send_alerts(key, decision.alerts, out)
        changed[key] = (record.partition, decision.state)

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
                state = self.states.get(key)
                if state is None:
                    continue
                alerts = time_alerts(state, self.catalogue, now)
                if alerts:
                    mark_fired(state, alerts)
                    self._send_alerts(key, alerts, out)
                    raised += len(alerts)
                changed[key] = (partition, state)
            await self._write(out, changed)
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
        mine: list[tuple[bytes, DossierState]] = []
        items = iter(self.states.items())
        while True:
            with collector_paused():
                for done, (key, state) in enumerate(items, 1):
                    partition = known.get(key)
                    if partition is None:
                        partition = partition_of(key, count)
                    if partition in owned:
                        mine.append((key, state))
                        if state.end_type is None:
                            alarm = next_alarm(state, catalogue)
                            if alarm is not None:
                                alarms[partition].append((alarm.timestamp(), key.decode()))
                    if done == step:
                        break
                else:
                    break  # every state seen
            yield
        with collector_paused():
            self.index = DeadlineIndex.of(alarms)
            self.holdings.recount(mine, self.clock.now())
        metrics.INDEXED.set(len(self.index))

    # -- plumbing ----------------------------------------------------------------------------

    def _send_alerts(self, key: bytes, alerts: list[Alert], out: list[Output]) -> None:
        for a in alerts:
            metrics.ALERTS.labels(a.kind).inc()
            out.append((ALERT, key, codec.ALERTS.encode(alert_record(a, self._tz), validate=False)))

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
        }, validate=False)))

    def _schedule(self, partition: int, key: bytes, state: DossierState) -> None:
        alarm = next_alarm(state, self.catalogue)
        self.index.schedule(partition, key.decode(), None if alarm is None else alarm.timestamp())

    async def _write(self, out: list[Output],
                     changed: dict[bytes, tuple[int, DossierState]]) -> None:
        now = self.clock.now()
        for key, (_, state) in changed.items():
            out.append((STATUS, key, snapshot(state, self.catalogue, now)))
        # Queue in order (a dossier's deliveries keep their order), then wait for every ack.
        acks = [await self.outputs.send(kind, key, value) for kind, key, value in out]
        if acks:
            await asyncio.gather(*acks)
        # Outputs are on Kafka: only now may the new states become durable, and they are
        # before this returns (so before the source offsets can be committed).
        await self.states.save([(key, state) for key, (_, state) in changed.items()])
        for key, (partition, state) in changed.items():
            self._schedule(partition, key, state)
        self.holdings.update(((key, state) for key, (_, state) in changed.items()), now)
        metrics.INDEXED.set(len(self.index))

