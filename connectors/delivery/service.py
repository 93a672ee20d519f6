"""The delivery service: reads ``deliveries`` and POSTs each one to its destination.

    service = DeliveryService(bootstrap, endpoints=catalogue_endpoints(catalogue),
                              signer=RequestSigner("LIENTHONG", hub_key))
    await service.run(stop_event)

How it keeps its promises:

- **Per-dossier order.** Records are queued in *lanes* keyed by (partition, destination,
  dossier); a lane sends one delivery at a time, in offset order. Lanes run concurrently, so
  other dossiers and other destinations never wait for a slow one. A delivery that is parked
  does not hold its lane: the ones after it go on (the parked one can be re-sent).
- **At-least-once reading, once-only applying.** An offset is committed only when it and every
  offset before it in its partition was delivered or parked (:class:`PartitionOffsets`). What
  was in flight at a crash or rebalance is sent again; the ``Idempotency-Key`` (the delivery id)
  lets the destination apply it once.
- **Bounded memory.** At most ``max_in_flight_per_partition`` records per partition are held;
  a partition at its limit is paused and resumed when half of them finished.
- **Each destination's own shape.** The body is the canonical delivery, except where the
  policy's ``request_builders`` name a destination (the national portal gets its status sync);
  a delivery its builder refuses is parked as ``delivery_unmappable``.
- **Signed receipts.** With ``receipt_keys``, the destination's answer to a hand-off, result or
  status sync must carry its signed receipt (``services/domain/receipts.py``): a good one goes
  to ``receipts`` before the delivery counts as done; a bad one is refused into ``deadletter``
  with its reason (the delivery stays applied, but not receipted). A delivery with no good
  receipt by its due raises a ``delivery_failing`` alert with cause ``receipt_missing`` (id
  ``receipt_missing:{delivery id}``): a hand-off's due is the end of the destination's allotted
  working time for its step (``receipt_due``), a result's or status sync's
  ``receipt_wait_seconds`` after it was read.
- **The receipt watch survives a restart.** Each awaited receipt is written to the compacted
  ``receipts.expected`` (key = delivery id, on the partition of its delivery, modulo) before
  the delivery's offset is committed, and tombstoned once its receipt is recorded or its
  alert raised. An instance that is given a deliveries partition pauses it, reads that
  partition's awaited receipts back into its watch, then resumes it; so a restart, or a
  partition moving to another instance, loses no pending ``receipt_missing`` alert, and one
  already raised is not raised again (its tombstone follows the alert). A repeat is possible
  only if the service dies between the alert and its tombstone, or alerts a delivery still
  uncommitted; it carries the same id, which every consumer of ``alerts`` deduplicates.
- **One dead agency does not slow the others.** Each destination has its own HTTP connection
  pool, concurrency limit and circuit breaker; while its circuit is open its deliveries wait
  without using attempts, and a delivery that waited ``max_wait_seconds`` is parked so the
  partition keeps moving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from lienthong.connectors.delivery.breaker import CircuitBreaker, Permit
from lienthong.connectors.delivery.metrics import DeliveryMetrics
from lienthong.connectors.delivery.offsets import PartitionOffsets
from lienthong.connectors.delivery.policy import (
    DeliveryPolicy,
    FailureStreaks,
    Outcome,
    classify_status,
)
from lienthong.connectors.delivery.records import (
    OutboundDelivery,
    RecordProblem,
    deadletter_bytes,
    expected_bytes,
    failing_alert_bytes,
    hub_topic,
    read_delivery,
    read_expected,
    request_body,
)
from lienthong.connectors.http import NO_RETRY, RequestSigner, make_async_client
from lienthong.connectors.http.client import retry_after_seconds
from lienthong.schemas import codec
from lienthong.services.clock import Clock, WallClock
from lienthong.services.domain.receipts import (
    ACKNOWLEDGED_KINDS,
    Expected,
    ReceiptKeys,
    ReceiptRefused,
    ReceiptWatch,
    check_receipt,
    pending,
    receipt_due,
    receipt_missing_id,
)

log = logging.getLogger(__name__)

GROUP_ID = "lienthong-delivery"

#: Dead-letter reason codes written by this service.
REJECTED = "delivery_rejected"  # the destination answered a permanent 4xx
EXHAUSTED = "delivery_exhausted"  # every attempt failed
UNAVAILABLE = "destination_unavailable"  # the circuit stayed open past max_wait_seconds
NO_ENDPOINT = "no_endpoint"  # the catalogue has no endpoint for the destination
UNMAPPABLE = "delivery_unmappable"  # the destination's request shape cannot be built from it
NO_RECEIPT = "receipt_missing"  # cause of the alert of a delivery never receipted in time

EndpointLookup = Callable[[str], str | None]


class MissingTopic(RuntimeError):
    """A topic the service needs does not exist on the cluster."""


@dataclass
class _Item:
    tp: TopicPartition
    offset: int
    key: bytes | None
    value: bytes
    read_at: float  # monotonic
    delivery: OutboundDelivery
    noted: asyncio.Task[None] | None = None  # its awaited receipt being written


@dataclass
class _Partition:
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    paused: bool = False


@dataclass
class _Destination:
    code: str
    breaker: CircuitBreaker
    limit: asyncio.Semaphore
    client: httpx.AsyncClient
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        """Wake every lane waiting on this destination's circuit."""
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass(frozen=True)
class _Attempt:
    outcome: Outcome
    cause: str  # metrics label: ok, http_4xx, http_5xx, timeout, connection
    detail: str
    retry_after: float | None = None
    answer: Any = None  # the destination's JSON answer to a delivered request


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: DeliveryService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.service._revoke(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.service._assign(list(assigned))


class DeliveryService:
    """Consumes ``deliveries`` in group ``lienthong-delivery`` and delivers every record.

    ``endpoints`` maps a destination code to its URL (the catalogue's ``endpoint``); ``signer``
    signs each attempt as the hub (DESIGN section 7); ``client_factory`` builds the HTTP client
    of one destination (tests may pass a transport). Topic names default to the hub's topics.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        endpoints: EndpointLookup,
        *,
        signer: RequestSigner | None,
        policy: DeliveryPolicy | None = None,
        metrics: DeliveryMetrics | None = None,
        group_id: str = GROUP_ID,
        deliveries_topic: str | None = None,
        alerts_topic: str | None = None,
        deadletter_topic: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        client_factory: Callable[[str], httpx.AsyncClient] | None = None,
        consumer_options: dict[str, Any] | None = None,
        receipt_keys: ReceiptKeys | None = None,
        receipts_topic: str | None = None,
        receipt_wait_seconds: float = 4 * 3600.0,
        expected_topic: str | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.endpoints = endpoints
        self.signer = signer
        self.policy = policy or DeliveryPolicy()
        self.metrics = metrics or DeliveryMetrics()
        self.group_id = group_id
        self.deliveries_topic = deliveries_topic or hub_topic("DELIVERIES")
        self.alerts_topic = alerts_topic or hub_topic("ALERTS")
        self.deadletter_topic = deadletter_topic or hub_topic("DEADLETTER")
        self.clock = clock or WallClock()
        self.rng = rng or random.Random()
        self.client_factory = client_factory or self._default_client
        self.consumer_options = consumer_options or {}
        self.receipt_keys = receipt_keys
        self.receipts_topic = receipts_topic or hub_topic("RECEIPTS")
        self.receipt_wait = timedelta(seconds=receipt_wait_seconds)
        self.expected_topic = expected_topic or hub_topic("RECEIPTS_EXPECTED")
        # One watch per deliveries partition held: it moves with its partition.
        self.watches: dict[TopicPartition, ReceiptWatch] = {}
        self._expected_partitions = 0
        self._watch_reader: AIOKafkaConsumer | None = None
        self.streaks = FailureStreaks(self.policy.alert_after_failures)
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._lanes: dict[tuple[TopicPartition, str, str], deque[_Item]] = {}
        self._tasks: dict[tuple[TopicPartition, str, str], asyncio.Task[None]] = {}
        self._destinations: dict[str, _Destination] = {}
        self._background: set[asyncio.Task[None]] = set()  # alerts being produced
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.started = asyncio.Event()  # set once partitions were first assigned

    # -- wiring ---------------------------------------------------------------------------------

    def _default_client(self, destination: str) -> httpx.AsyncClient:
        # Retries are ours (the breaker must see each attempt), so the transport does none.
        return make_async_client(
            retry=NO_RETRY, signer=self.signer,
            timeout=httpx.Timeout(self.policy.request_timeout,
                                  connect=min(3.0, self.policy.request_timeout)),
            headers={"User-Agent": "lienthong-delivery"},
            max_connections=self.policy.max_concurrency_per_destination)

    def _destination(self, code: str) -> _Destination:
        d = self._destinations.get(code)
        if d is None:
            d = _Destination(code, CircuitBreaker(self.policy.breaker),
                             asyncio.Semaphore(self.policy.max_concurrency_per_destination),
                             self.client_factory(code))
            self._destinations[code] = d
            self.metrics.circuit_state(code, d.breaker.state(time.monotonic()))
        return d

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Deliver until ``stop`` is set (or the task is cancelled); then commit what finished."""
        stop = stop or asyncio.Event()
        options: dict[str, Any] = {
            "group_id": self.group_id, "enable_auto_commit": False,
            "auto_offset_reset": "earliest", "isolation_level": "read_committed",
            "max_poll_records": min(500, self.policy.max_in_flight_per_partition),
        }
        options.update(self.consumer_options)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, **options)
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all",
                                          enable_idempotence=True)
        await self._producer.start()
        try:
            if self.receipt_keys is not None:
                await self._start_watch_reader()
            self._consumer.subscribe([self.deliveries_topic], listener=_Rebalance(self))
            await self._consumer.start()
            watcher = asyncio.create_task(self._watch_receipts(stop)) \
                if self.receipt_keys is not None else None
            try:
                await self._loop(stop)
            finally:
                if watcher is not None:
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
                await self._shutdown()
        finally:
            if self._watch_reader is not None:
                await self._watch_reader.stop()
            await self._producer.stop()
            for d in self._destinations.values():
                await d.client.aclose()

    async def _loop(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        assert consumer is not None
        last_commit = 0.0
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            for tp, records in batches.items():
                part = self._partitions.get(tp)
                if part is None:  # revoked while the fetch was under way
                    continue
                for rec in records:
                    part.offsets.take(rec.offset)
                    self._dispatch(tp, rec.offset, rec.key, rec.value)
                if part.offsets.in_flight >= self.policy.max_in_flight_per_partition \
                        and not part.paused:
                    consumer.pause(tp)
                    part.paused = True
            self._refresh_gauges()
            now = time.monotonic()
            if now - last_commit >= 0.2:
                await self._commit()
                last_commit = now

    async def _shutdown(self) -> None:
        if self._background:  # let raised alerts reach Kafka
            await asyncio.wait(self._background, timeout=5.0)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(KafkaError):
            await self._commit()
        assert self._consumer is not None
        await self._consumer.stop()

    # -- partitions and commits -----------------------------------------------------------------

    async def _assign(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self._partitions.setdefault(tp, _Partition())
        if self.receipt_keys is not None and assigned:
            # No delivery of a partition is read before its awaited receipts are back.
            assert self._consumer is not None
            self._consumer.pause(*assigned)
            await self._restore_watches(assigned)
            self._consumer.resume(*[tp for tp in assigned if not self._partitions[tp].paused])
        self.started.set()

    async def _revoke(self, revoked: list[TopicPartition]) -> None:
        gone = set(revoked)
        await self._commit(only=gone)
        # The new owner starts from the committed position and redoes anything in flight.
        tasks = [t for key, t in self._tasks.items() if key[0] in gone]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for key in [k for k in self._lanes if k[0] in gone]:
            self._lanes.pop(key, None)
            self._tasks.pop(key, None)
        for tp in gone:
            self._partitions.pop(tp, None)
            self.watches.pop(tp, None)  # the new owner reads them back

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        ready = {tp: pos for tp, part in self._partitions.items()
                 if (only is None or tp in only) and (pos := part.offsets.to_commit()) is not None}
        if not ready:
            return
        try:
            await consumer.commit({tp: OffsetAndMetadata(pos, "") for tp, pos in ready.items()})
        except (CommitFailedError, KafkaError) as exc:
            log.warning("commit of %s failed (%s); it is retried", ready, exc)
            return
        for tp, pos in ready.items():
            part = self._partitions.get(tp)
            if part is not None:
                part.offsets.committed(pos)

    def _finish(self, item: _Item) -> None:
        part = self._partitions.get(item.tp)
        if part is None:
            return
        part.offsets.finish(item.offset)
        if part.paused and part.offsets.in_flight <= self.policy.max_in_flight_per_partition // 2:
            part.paused = False
            if self._consumer is not None and item.tp in self._consumer.assignment():
                self._consumer.resume(item.tp)

    def _refresh_gauges(self) -> None:
        self.metrics.in_flight.set(sum(p.offsets.in_flight for p in self._partitions.values()))
        self.metrics.paused_partitions.set(sum(p.paused for p in self._partitions.values()))
        self.metrics.receipts_awaited.set(sum(len(w) for w in self.watches.values()))
        now = time.monotonic()
        for d in self._destinations.values():
            self.metrics.circuit_state(d.code, d.breaker.state(now))

    # -- lanes ----------------------------------------------------------------------------------

    def _dispatch(self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes) -> None:
        try:
            delivery = read_delivery(value)
        except RecordProblem as problem:
            stub = OutboundDelivery("", "", "", "", b"")
            item = _Item(tp, offset, key, value, time.monotonic(), stub)
            self._spawn((tp, "", f"#{offset}"), item, self._park_only(item, problem.reason,
                                                                         problem.detail))
            return
        item = _Item(tp, offset, key, value, time.monotonic(), delivery)
        watch = self.watches.get(tp)
        if watch is not None and delivery.kind in ACKNOWLEDGED_KINDS:
            expected = Expected(delivery.delivery_id, delivery.destination, delivery.dossier,
                                delivery.kind, receipt_due(delivery.kind, delivery.payload,
                                                           self.clock.now(), self.receipt_wait))
            if watch.expect(expected):  # written while the delivery is under way
                item.noted = self._background_send(
                    self.expected_topic, delivery.delivery_id.encode(),
                    expected_bytes(expected, tp.partition), self._expected_partition(tp))
        lane_key = (tp, delivery.destination, delivery.dossier)
        lane = self._lanes.get(lane_key)
        if lane is not None:
            lane.append(item)
            return
        self._lanes[lane_key] = deque([item])
        self._tasks[lane_key] = asyncio.create_task(self._run_lane(lane_key),
                                                    name=f"lane {lane_key}")

    def _spawn(self, key: tuple[TopicPartition, str, str], item: _Item,
               work: Awaitable[None]) -> None:
        async def once() -> None:
            try:
                await work
                self._finish(item)
            finally:
                self._tasks.pop(key, None)
        self._tasks[key] = asyncio.create_task(once())

    async def _park_only(self, item: _Item, reason: str, detail: str) -> None:
        await self._park(item, reason, detail)

    async def _run_lane(self, key: tuple[TopicPartition, str, str]) -> None:
        lane = self._lanes[key]
        try:
            while lane:
                item = lane[0]
                await self._deliver(item)
                if item.noted is not None:  # awaited receipt written before the commit
                    await item.noted
                lane.popleft()
                self._finish(item)
        finally:
            if self._lanes.get(key) is lane and not lane:
                del self._lanes[key]
                self._tasks.pop(key, None)

    # -- one delivery ---------------------------------------------------------------------------

    async def _deliver(self, item: _Item) -> None:
        """Deliver ``item`` or park it; returns only when one of the two happened."""
        delivery = item.delivery
        endpoint = self.endpoints(delivery.destination)
        if not endpoint:
            await self._park(item, NO_ENDPOINT,
                             f"the catalogue has no endpoint for {delivery.destination}")
            return
        try:
            body = request_body(delivery, self.policy.request_builders)
        except (ValueError, TypeError, KeyError) as exc:  # retrying cannot change the shape
            await self._park(item, UNMAPPABLE,
                             f"no {delivery.destination} request can be built from it: {exc}")
            return
        dest = self._destination(delivery.destination)
        delays = self.policy.retry.delays(self.rng)
        deadline = item.read_at + self.policy.max_wait_seconds
        attempts = 0
        last = "no attempt was made"
        while True:
            permit = await self._admit(dest, deadline)
            if permit is None:
                await self._park(item, UNAVAILABLE, f"circuit open past the wait limit; "
                                 f"{attempts} attempt(s), last: {last}")
                return
            try:
                async with dest.limit:
                    result = await self._attempt(dest, endpoint, delivery, body)
            except BaseException:
                dest.breaker.release(permit)
                raise
            attempts += 1
            last = result.detail
            self._record(dest, permit, result)
            if result.outcome is Outcome.DELIVERED:
                self.metrics.delivered.labels(dest.code).inc()
                self.metrics.latency.labels(dest.code).observe(time.monotonic() - item.read_at)
                if self.receipt_keys is not None and delivery.kind in ACKNOWLEDGED_KINDS:
                    await self._take_receipt(item, body, result.answer)
                return
            if result.outcome is Outcome.PERMANENT:
                await self._park(item, REJECTED, result.detail)
                return
            pause = next(delays, None)
            if pause is None:
                await self._park(item, EXHAUSTED, f"{attempts} attempts, last: {last}")
                return
            if result.retry_after is not None:
                pause = max(pause, result.retry_after)
            await asyncio.sleep(pause)

    async def _admit(self, dest: _Destination, deadline: float) -> Permit | None:
        """Wait until the destination's circuit lets a request through, or the deadline."""
        while True:
            now = time.monotonic()
            permit = dest.breaker.acquire(now)
            self.metrics.circuit_state(dest.code, dest.breaker.state(now))
            if permit is not None:
                return permit
            if now >= deadline:
                return None
            hint = dest.breaker.wait_hint(now)
            timeout = min(1.0 if hint is None else max(hint, 0.001), deadline - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dest.changed.wait(), timeout)

    async def _attempt(self, dest: _Destination, endpoint: str,
                       delivery: OutboundDelivery, body: bytes) -> _Attempt:
        headers = {"Content-Type": "application/json",
                   "Idempotency-Key": delivery.delivery_id}
        try:
            response = await dest.client.post(endpoint, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return _Attempt(Outcome.RETRY, "timeout", f"timeout ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return _Attempt(Outcome.RETRY, "connection",
                            f"connection error ({type(exc).__name__}: {exc})")
        status = response.status_code
        outcome = classify_status(status)
        detail = f"HTTP {status}"
        if outcome is not Outcome.DELIVERED:
            text = response.text[:200].strip()
            if text:
                detail = f"{detail}: {text}"
        cause = "ok" if outcome is Outcome.DELIVERED else f"http_{status // 100}xx"
        hint = retry_after_seconds(response, self.policy.retry.max_delay) \
            if outcome is Outcome.RETRY else None
        answer = None
        if outcome is Outcome.DELIVERED and self.receipt_keys is not None:
            with contextlib.suppress(ValueError):
                answer = response.json()
        return _Attempt(outcome, cause, detail, hint, answer)

    def _record(self, dest: _Destination, permit: Permit, result: _Attempt) -> None:
        now = time.monotonic()
        label = {Outcome.DELIVERED: "delivered", Outcome.PERMANENT: "rejected",
                 Outcome.RETRY: "retry"}[result.outcome]
        self.metrics.attempts.labels(dest.code, label).inc()
        if result.outcome is Outcome.RETRY:
            self.metrics.failures.labels(dest.code, result.cause).inc()
            changed = dest.breaker.record_failure(permit, now)
            failing = self.streaks.failure(dest.code, self.clock.now(), result.detail)
            if failing is not None:
                self.metrics.alerts.labels(dest.code).inc()
                self._spawn_alert(failing_alert_bytes(failing, self.clock.now()), dest.code)
        else:
            if result.outcome is Outcome.PERMANENT:
                self.metrics.failures.labels(dest.code, result.cause).inc()
            # Any answer, even a refusal, shows the destination is up.
            changed = dest.breaker.record_success(permit, now)
            self.streaks.success(dest.code)
        if changed:
            self.metrics.circuit_state(dest.code, dest.breaker.state(now))
            log.info("circuit of %s is now %s", dest.code, dest.breaker.state(now).name)
        # A half-open probe's verdict (or a closed circuit) lets the waiting lanes go.
        dest.notify()

    # -- receipts -------------------------------------------------------------------------------

    async def _take_receipt(self, item: _Item, body: bytes, answer: Any) -> None:
        """Record the destination's signed receipt, or refuse it into ``deadletter``."""
        assert self.receipt_keys is not None
        delivery = item.delivery
        signed = answer.get("receipt") if isinstance(answer, dict) else None
        if signed is None:
            self.metrics.receipts.labels(delivery.destination, "absent").inc()
            return  # the watch raises receipt_missing if none comes in time
        try:
            record = check_receipt(signed, delivery_id=delivery.delivery_id,
                                   kind=delivery.kind, dossier=delivery.dossier,
                                   destination=delivery.destination, body=body,
                                   keys=self.receipt_keys, recorded_at=self.clock.now())
            value = codec.RECEIPTS.encode(record)
        except (ReceiptRefused, codec.CodecError) as exc:
            reason = exc.reason if isinstance(exc, ReceiptRefused) else "receipt_malformed"
            self.metrics.receipts.labels(delivery.destination, "refused").inc()
            original = json.dumps(signed, ensure_ascii=False).encode("utf-8") \
                if not isinstance(signed, bytes) else signed
            await self._send(self.deadletter_topic, item.key, deadletter_bytes(
                original=original, key=item.key, reason=reason,
                detail=f"receipt of {delivery.delivery_id} from {delivery.destination} "
                       f"refused: {exc}", source_topic=item.tp.topic,
                partition=item.tp.partition, offset=item.offset, at=self.clock.now()))
            log.warning("refused the receipt of %s from %s: %s", delivery.delivery_id,
                        delivery.destination, exc)
            return
        await self._send(self.receipts_topic, delivery.dossier.encode(), value)
        watch = self.watches.get(item.tp)
        if watch is not None and watch.received(delivery.delivery_id):
            if item.noted is not None:  # the tombstone must come after the expectation
                await item.noted
            await self._send(self.expected_topic, delivery.delivery_id.encode(), None,
                             self._expected_partition(item.tp))
        self.metrics.receipts.labels(delivery.destination, "recorded").inc()

    async def _watch_receipts(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = self.clock.now()
            for tp, watch in list(self.watches.items()):
                for late in watch.overdue(now):
                    await self._raise_missing(tp, late, now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def _raise_missing(self, tp: TopicPartition, late: Expected, now: datetime) -> None:
        """The alert first, then the tombstone: a crash between them repeats the alert under
        the same id (deduplicated downstream) rather than losing it."""
        self.metrics.alerts.labels(late.destination).inc()
        await self._send(self.alerts_topic, late.dossier.encode(), codec.encode_alert({
            "alert_id": receipt_missing_id(late.delivery_id),
            "kind": "delivery_failing", "cause": NO_RECEIPT, "scope": "dossier",
            "dossier": late.dossier, "agency": late.destination,
            "destination": late.destination, "due_at": late.due.isoformat(),
            "fired_at": now.isoformat(),
            "detail": f"no signed receipt from {late.destination} for {late.kind} "
                      f"{late.delivery_id} by {late.due.isoformat()}"}))
        await self._send(self.expected_topic, late.delivery_id.encode(), None,
                         self._expected_partition(tp))

    # -- the receipt watch's log ----------------------------------------------------------------

    async def _start_watch_reader(self) -> None:
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                  enable_auto_commit=False)
        await reader.start()
        self._watch_reader = reader
        if self.expected_topic not in await reader.topics():
            raise MissingTopic(f"topic {self.expected_topic} (the receipt watch) does not "
                               f"exist on {self.bootstrap_servers}; create the hub's topics "
                               "first (lienthong up, or the topics job of deploy/)")
        assert self._producer is not None
        self._expected_partitions = len(await self._producer.partitions_for(self.expected_topic))

    def _expected_partition(self, tp: TopicPartition) -> int:
        return tp.partition % self._expected_partitions

    async def _restore_watches(self, assigned: list[TopicPartition]) -> None:
        """Read the awaited receipts of ``assigned`` back into a new watch each."""
        pause = 0.1
        while True:
            try:
                restored = await self._read_expected({tp.partition for tp in assigned})
                break
            except KafkaError as exc:
                log.warning("reading %s failed (%s); retrying", self.expected_topic, exc)
                await asyncio.sleep(pause)
                pause = min(5.0, pause * 2)
        for tp in assigned:
            watch = ReceiptWatch()
            watch.restore(restored.get(tp.partition, ()))
            self.watches[tp] = watch
            if len(watch):
                log.info("%s: awaiting %d receipt(s) again", tp, len(watch))

    async def _read_expected(self, partitions: set[int]) -> dict[int, list[Expected]]:
        reader = self._watch_reader
        assert reader is not None
        tps = sorted({TopicPartition(self.expected_topic, p % self._expected_partitions)
                      for p in partitions})
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        end = await reader.end_offsets(tps)
        entries: list[tuple[str, Expected | None]] = []
        owner: dict[str, int] = {}
        while any([await reader.position(tp) < end[tp] for tp in tps]):
            for tp, records in (await reader.getmany(*tps, timeout_ms=500)).items():
                for rec in records:
                    key = rec.key.decode("utf-8", "replace") if rec.key else ""
                    if rec.value is None:
                        entries.append((key, None))
                        continue
                    try:
                        partition, expected = read_expected(rec.value)
                    except codec.CodecError as exc:  # not ours to drop silently
                        await self._send(self.deadletter_topic, rec.key, deadletter_bytes(
                            original=rec.value, key=rec.key, reason=exc.reason,
                            detail=f"not an awaited receipt: {exc}", source_topic=tp.topic,
                            partition=tp.partition, offset=rec.offset, at=self.clock.now()))
                        continue
                    owner[expected.delivery_id] = partition
                    entries.append((key, expected))
        out: dict[int, list[Expected]] = {}
        for e in pending(entries):
            if owner[e.delivery_id] in partitions:
                out.setdefault(owner[e.delivery_id], []).append(e)
        return out

    # -- Kafka outputs --------------------------------------------------------------------------

    def _spawn_alert(self, value: bytes, destination: str) -> None:
        self._background_send(self.alerts_topic, destination.encode(), value)

    def _background_send(self, topic: str, key: bytes | None, value: bytes,
                         partition: int | None = None) -> asyncio.Task[None]:
        task = asyncio.create_task(self._send(topic, key, value, partition))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _send(self, topic: str, key: bytes | None, value: bytes | None,
                    partition: int | None = None) -> None:
        """Produce and wait for the acknowledgement, retrying while Kafka is unreachable."""
        assert self._producer is not None
        pause = 0.1
        while True:
            try:
                await self._producer.send_and_wait(topic, value=value, key=key,
                                                   partition=partition)
                return
            except KafkaError as exc:
                log.warning("producing to %s failed (%s); retrying", topic, exc)
                await asyncio.sleep(pause)
                pause = min(5.0, pause * 2)

    async def _park(self, item: _Item, reason: str, detail: str) -> None:
        """Put the original record in ``deadletter`` with the reason and where it came from."""
        value = deadletter_bytes(
            original=item.value, key=item.key, reason=reason, detail=detail,
            source_topic=item.tp.topic, partition=item.tp.partition, offset=item.offset,
            at=self.clock.now())
        await self._send(self.deadletter_topic, item.key, value)
        self.metrics.parked.labels(item.delivery.destination or "?", reason).inc()
        log.warning("parked %s/%s@%s (%s): %s", item.tp.topic, item.tp.partition, item.offset,
                    reason, detail)
