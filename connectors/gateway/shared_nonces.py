"""The hub-wide nonce store: replay protection that holds across every gateway and restarts.

How a claim works (the decision itself is ``connectors/http/nonce_ledger.py``):

1. A key this gateway already knows to be claimed is refused at once (its view is kept warm by
   reading the topic all the time).
2. Otherwise the gateway appends ``(agency, nonce)`` to the ``gateway.nonces`` topic with
   ``acks=all``, on the partition chosen from the key, and learns the record's offset.
3. It waits until its reader has read that partition past that offset. Every gateway reads the
   same records in the same order, so the first live claim of a key wins everywhere; a later
   claim — a captured request sent to two gateways at the same moment — loses and is refused.

The reader starts ``2 × window + 60 s`` back in the topic (a claim with a timestamp 5 minutes
ahead stays live for 10 minutes), so a restarted gateway refuses the nonces it, or any other
gateway, accepted before. The topic is compacted and deleted after an hour
(``schemas/topics.py``): longer than any claim stays live.

When Kafka cannot confirm a claim within ``claim_timeout`` seconds the store, by default
(``outage="local"``), decides from this gateway's view alone for ``outage_seconds``, so agency
systems can still hand events to the spool: a replay sent to another gateway during a Kafka
outage is caught only by the hub's deduplication on ``event_id``. ``outage="refuse"`` answers 503
instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lienthong.connectors.http.nonce_ledger import (
    Claim,
    NonceLedger,
    claim_key,
    claim_value,
    parse_value,
    partition_for,
)
from lienthong.connectors.http.nonces import NonceCacheFull

log = logging.getLogger(__name__)


class NonceStoreUnavailable(NonceCacheFull):
    """Kafka cannot confirm claims and the store is set to refuse rather than decide alone."""


class KafkaNonceStore:
    """Claims nonces on a Kafka topic shared by every gateway of the hub (see module doc)."""

    def __init__(self, bootstrap_servers: str, topic: str, *, gateway_id: str,
                 window_seconds: float = 300.0, claim_timeout: float = 2.0,
                 outage: str = "local", outage_seconds: float = 5.0,
                 max_entries: int = 1_000_000,
                 on_result: Callable[[str], None] | None = None) -> None:
        if outage not in ("local", "refuse"):
            raise ValueError("outage is 'local' or 'refuse'")
        self.bootstrap_servers, self.topic, self.gateway_id = bootstrap_servers, topic, gateway_id
        self.window, self.claim_timeout = window_seconds, claim_timeout
        self.outage, self.outage_seconds = outage, outage_seconds
        self.lookback = 2 * window_seconds + 60.0
        self.ledger = NonceLedger(max_entries)
        self.on_result = on_result or (lambda result: None)
        self.partitions: int | None = None
        self._positions: dict[int, int] = {}
        self._waiters: dict[int, list[tuple[int, asyncio.Future[None]]]] = {}
        self._ready_at: dict[int, int] = {}
        self.ready = asyncio.Event()
        self._unreachable = asyncio.Event()  # the reader's first attempt failed
        self._down_until = 0.0
        self._local = itertools.count(1)
        # Claims decided alone while Kafka was away: appended once it confirms claims again,
        # so the other gateways learn them for what is left of their window.
        self._unconfirmed: list[tuple[bytes, float, float]] = []
        self._catching_up: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: Any = None
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="nonce-claims")

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, warm_timeout: float = 10.0) -> None:
        """Start reading the topic; wait (at most ``warm_timeout`` s) until this gateway has
        read the claims of the last window, so it refuses them without asking Kafka. When
        Kafka cannot be reached the gateway starts at once (its spool takes events)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._read_forever, name="nonce-reader",
                                        daemon=True)
        self._thread.start()
        waits = [asyncio.create_task(self.ready.wait()),
                 asyncio.create_task(self._unreachable.wait())]
        await asyncio.wait(waits, timeout=warm_timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        if not self.ready.is_set():
            log.warning("nonce topic %s not read within %.0f s; claims will wait for it",
                        self.topic, warm_timeout)

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(producer.close, 2)
        self._sender.shutdown(wait=False)

    # -- claims --------------------------------------------------------------------------

    async def claim(self, agency: str, nonce: str, timestamp: float, now: float) -> bool:
        key = claim_key(agency, nonce)
        self.ledger.evict(now)
        if self.ledger.holds(key, now):
            self.on_result("replay_known")
            return False
        self.ledger.check_room()
        until = max(timestamp, now) + self.window + 1.0
        if time.monotonic() < self._down_until or self.partitions is None:
            return self._decide_alone(key, now, until)
        partition = partition_for(key, self.partitions)
        try:
            offset = await asyncio.wait_for(self._append(key, partition, now, until),
                                            self.claim_timeout)
            await asyncio.wait_for(self._read_past(partition, offset), self.claim_timeout)
        except (TimeoutError, OSError, RuntimeError) as exc:
            log.warning("nonce claim not confirmed by Kafka (%s: %s); deciding from this "
                        "gateway's view for %.0f s", type(exc).__name__, exc,
                        self.outage_seconds)
            self._down_until = time.monotonic() + self.outage_seconds
            return self._decide_alone(key, now, until)
        if self._unconfirmed and self._catching_up is None:
            self._catching_up = asyncio.create_task(self._append_unconfirmed())
        if self.ledger.won(key, partition, offset):
            self.on_result("first")
            return True
        self.on_result("replay_raced")
        return False

    def _decide_alone(self, key: bytes, now: float, until: float) -> bool:
        if self.outage == "refuse":
            self.on_result("unavailable")
            raise NonceStoreUnavailable("the shared nonce store (Kafka) cannot confirm "
                                        "claims; retry later")
        # Negative offsets mark claims Kafka never confirmed; they are first by construction.
        self.ledger.observe(key, Claim(-1, -next(self._local), now, until))
        if len(self._unconfirmed) < self.ledger.max_entries:
            self._unconfirmed.append((key, now, until))
        self.on_result("local")
        return True

    async def _append_unconfirmed(self) -> None:
        try:
            while self._unconfirmed and self.partitions is not None:
                key, at, until = self._unconfirmed[0]
                if until >= time.time():
                    await asyncio.wait_for(
                        self._append(key, partition_for(key, self.partitions), at, until),
                        self.claim_timeout)
                self._unconfirmed.pop(0)
        except (TimeoutError, OSError, RuntimeError) as exc:
            log.warning("claims decided during the Kafka outage not yet shared: %s", exc)
        finally:
            self._catching_up = None

    async def _append(self, key: bytes, partition: int, now: float, until: float) -> int:
        loop = asyncio.get_running_loop()
        value = claim_value(now, until, self.gateway_id)
        future = await loop.run_in_executor(self._sender, self._send, key, value, partition)
        done: asyncio.Future[int] = loop.create_future()

        def settle(offset: int | None, error: BaseException | None) -> None:
            if done.done():
                return
            if error is None and offset is not None:
                done.set_result(offset)
            else:
                done.set_exception(RuntimeError(f"claim not written: {error}"))

        future.add_callback(lambda meta: loop.call_soon_threadsafe(settle, meta.offset, None))
        future.add_errback(lambda exc: loop.call_soon_threadsafe(settle, None, exc))
        return await done

    def _send(self, key: bytes, value: bytes, partition: int) -> Any:
        try:
            if self._producer is None:
                from kafka import KafkaProducer

                timeout_ms = max(500, int(self.claim_timeout * 1000))
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=f"lienthong-gateway-nonces-{self.gateway_id}", acks="all",
                    enable_idempotence=True, linger_ms=0, max_block_ms=timeout_ms,
                    bootstrap_timeout_ms=timeout_ms,
                    request_timeout_ms=timeout_ms, delivery_timeout_ms=timeout_ms + 100,
                    reconnect_backoff_max_ms=1000)
            return self._producer.send(self.topic, key=key, value=value, partition=partition)
        except Exception as exc:
            producer, self._producer = self._producer, None
            if producer is not None:
                with contextlib.suppress(Exception):
                    producer.close(timeout=0)
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc

    async def _read_past(self, partition: int, offset: int) -> None:
        if self._positions.get(partition, 0) > offset:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(partition, []).append((offset, waiter))
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()

    # -- the reader (its own thread; results applied on the event loop) -----------------

    def _apply(self, records: list[tuple[int, int, bytes, bytes | None]],
               positions: dict[int, int]) -> None:
        for partition, offset, key, value in records:
            parsed = parse_value(value)
            if parsed is not None:
                self.ledger.observe(key, Claim(partition, offset, parsed[0], parsed[1]))
        self._positions.update(positions)
        for partition, waiting in self._waiters.items():
            position = self._positions.get(partition, 0)
            keep = []
            for offset, waiter in waiting:
                if waiter.done():
                    continue
                if position > offset:
                    waiter.set_result(None)
                else:
                    keep.append((offset, waiter))
            waiting[:] = keep
        if not self.ready.is_set() and self._ready_at and all(
                self._positions.get(p, 0) >= end for p, end in self._ready_at.items()):
            self.ready.set()
            log.info("nonce topic %s read: %d live claims", self.topic, len(self.ledger))

    def _set_partitions(self, count: int, ends: dict[int, int]) -> None:
        self.partitions = count
        self._ready_at = ends

    def _read_forever(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        assert self._loop is not None
        loop, consumer = self._loop, None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers,
                                             client_id=f"lienthong-nonces-{self.gateway_id}",
                                             enable_auto_commit=False, group_id=None,
                                             fetch_max_wait_ms=100,
                                             bootstrap_timeout_ms=2000,
                                             request_timeout_ms=5000,
                                             reconnect_backoff_max_ms=1000)
                    parts = consumer.partitions_for_topic(self.topic)
                    if not parts:
                        raise RuntimeError(f"topic {self.topic} does not exist (create it "
                                           "with the hub's topics)")
                    tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
                    consumer.assign(tps)
                    since = int((time.time() - self.lookback) * 1000)
                    starts = consumer.offsets_for_times({tp: since for tp in tps})
                    ends = consumer.end_offsets(tps)
                    for tp in tps:
                        found = starts.get(tp)
                        consumer.seek(tp, found.offset if found is not None else ends[tp])
                    loop.call_soon_threadsafe(self._set_partitions, len(tps),
                                              {tp.partition: ends[tp] for tp in tps})
                batch = consumer.poll(timeout_ms=100, max_records=5000)
                records = [(r.partition, r.offset, r.key, r.value)
                           for rs in batch.values() for r in rs if r.key is not None]
                positions = {tp.partition: consumer.position(tp)
                             for tp in consumer.assignment()}
                loop.call_soon_threadsafe(self._apply, records, positions)
            except Exception as exc:  # Kafka away, topic missing: claims fall back meanwhile
                if not self._stop.is_set():
                    log.warning("nonce reader: %s: %s; retrying", type(exc).__name__, exc)
                    loop.call_soon_threadsafe(self._unreachable.set)
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        consumer.close()
                consumer = None
                self._stop.wait(2.0)
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close()
