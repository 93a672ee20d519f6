"""Getting accepted events into Kafka, or onto the durable spool when Kafka is unreachable.

The gateway answers 202 only after one of the two happened. Per-dossier order is kept: once
anything is spooled, later events go behind it on the spool until the forwarder has drained it
in order; only then do events go straight to Kafka again. A gateway restarted with a non-empty
spool starts in spooling mode and forwards what is left first.

Delivery is at least once: a crash between Kafka's acknowledgement and the spool cursor's
fsync re-sends a few records; the hub deduplicates on ``event_id`` (DESIGN section 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lienthong.connectors.gateway.spool import Spool, SpoolFull

log = logging.getLogger(__name__)

Record = tuple[bytes, bytes]  # (key = dossier code, value = codec bytes)


class KafkaUnavailable(RuntimeError):
    """No producer could be built or the records could not be handed to it in time."""


class KafkaSink:
    """A kafka-python idempotent producer (``acks=all``) used from one thread only.

    The producer is built lazily so the gateway starts while Kafka is down, and rebuilt after
    a failure so records that missed their deadline are aborted rather than sent late behind
    the spooled copies.
    """

    def __init__(self, bootstrap_servers: str, topic: str, *, timeout: float = 5.0,
                 producer_factory: Callable[..., Any] | None = None,
                 client_id: str = "lienthong-gateway") -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.timeout = timeout
        self.client_id = client_id
        self._factory = producer_factory
        self._producer: Any = None

    def _build(self) -> Any:
        from kafka import KafkaProducer  # imported here: tests of the app need no kafka client

        factory = self._factory or KafkaProducer
        half = max(500, int(self.timeout * 500))
        return factory(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            bootstrap_timeout_ms=half,
            max_block_ms=half,  # waiting for metadata when the leader is unknown
            request_timeout_ms=max(400, half - 100),
            delivery_timeout_ms=half,  # then the record fails for good and is spooled
            reconnect_backoff_max_ms=1000,
        )

    def send(self, records: Sequence[Record], *, topic: str | None = None) -> list[Any]:
        """Hand the records to the producer, in order; returns kafka-python futures.

        ``topic`` overrides the sink's own topic for these records (e.g. ``deadletter``), so
        one idempotent producer serves every topic a connector writes."""
        try:
            if self._producer is None:
                self._producer = self._build()
            return [self._producer.send(topic or self.topic, key=k, value=v)
                    for k, v in records]
        except Exception as exc:  # NoBrokersAvailable, KafkaTimeoutError, connection errors
            self.reset()
            raise KafkaUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def reset(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:  # closing a broken producer must not mask the original error
                log.debug("closing producer failed", exc_info=True)

    def close(self, timeout: float = 5.0) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(timeout=timeout)
            producer.close(timeout=timeout)


def _bridge(kafka_future: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is None:
            fut.set_result(value)
        else:
            fut.set_exception(error)

    kafka_future.add_callback(lambda v: loop.call_soon_threadsafe(settle, v, None))
    kafka_future.add_errback(lambda e: loop.call_soon_threadsafe(settle, None, e))
    return fut


class Publisher:
    """Publishes batches of encoded events; see the module docstring for the guarantees."""

    def __init__(self, sink: KafkaSink, spool: Spool, *,
                 on_spool_change: Callable[[int], None] | None = None,
                 max_backoff: float = 5.0, chunk: int = 500) -> None:
        self.sink = sink
        self.spool = spool
        self.max_backoff = max_backoff
        self.chunk = chunk
        self._on_spool_change = on_spool_change or (lambda n: None)
        self._kafka_thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-kafka")
        self._disk_thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-spool")
        self._lock = asyncio.Lock()
        self._spooling = not spool.is_empty()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.forwarded = 0

    @property
    def spooling(self) -> bool:
        return self._spooling

    def pending(self) -> int:
        return self.spool.pending()

    async def start(self) -> None:
        self._on_spool_change(self.spool.pending())
        self._task = asyncio.create_task(self._forward_loop(), name="spool-forwarder")
        if self._spooling:
            log.info("spool holds %d events from before; forwarding them first",
                     self.spool.pending())
            self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._kafka_thread, self.sink.close, 3.0)
        except Exception:
            log.warning("closing the Kafka producer failed", exc_info=True)
        self._kafka_thread.shutdown(wait=False)
        self._disk_thread.shutdown(wait=True)
        self.spool.close()

    async def _send(self, records: Sequence[Record]) -> list[BaseException | None]:
        """Send in order; per record None (acknowledged) or the error."""
        loop = asyncio.get_running_loop()
        try:
            futures = await loop.run_in_executor(self._kafka_thread, self.sink.send, records)
        except KafkaUnavailable as exc:
            return [exc] * len(records)
        waiting = [_bridge(f, loop) for f in futures]
        done, _ = await asyncio.wait(waiting, timeout=self.sink.timeout + 2.0)
        out: list[BaseException | None] = []
        for w in waiting:
            if w in done:
                out.append(w.exception())
            else:
                w.cancel()
                out.append(TimeoutError("no acknowledgement from Kafka in time"))
        if any(out):
            await loop.run_in_executor(self._kafka_thread, self.sink.reset)
        return out

    async def _append(self, records: Sequence[Record]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._disk_thread, self.spool.append, records)
        self._on_spool_change(self.spool.pending())
        self._wake.set()

    async def publish(self, records: Sequence[Record]) -> str:
        """Return ``"kafka"`` or ``"spool"`` once the records are safe; raises ``SpoolFull``."""
        if not records:
            return "kafka"
        async with self._lock:
            if self._spooling:
                await self._append(records)
                return "spool"
        errors = await self._send(records)
        failed = [r for r, e in zip(records, errors, strict=True) if e is not None]
        if not failed:
            return "kafka"
        log.warning("Kafka did not acknowledge %d of %d events (%s); spooling them",
                    len(failed), len(records), next(e for e in errors if e is not None))
        async with self._lock:
            self._spooling = True
            await self._append(failed)
        return "spool"

    def _end_spooling_if_drained(self) -> bool:
        """Whether the spool is empty; if so, publishes go straight to Kafka again (nothing is
        left to go before them). Called holding ``_lock``."""
        if not self.spool.is_empty():
            return False
        if self._spooling:
            log.info("spool drained; publishing straight to Kafka again")
            self._spooling = False
        return True

    async def _forward_loop(self) -> None:
        rng = random.Random()
        failures = 0
        acked_ahead: set[int] = set()  # offsets acknowledged beyond the first failure
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if self.spool.is_empty():
                async with self._lock:
                    if self._end_spooling_if_drained():
                        self._wake.clear()
                if not self._spooling:
                    await self._wake.wait()
                continue
            batch = await loop.run_in_executor(self._disk_thread, self.spool.read, self.chunk)
            todo = [r for r in batch if r.offset not in acked_ahead]
            errors = await self._send([(r.key, r.value) for r in todo])
            failed = {r.offset for r, e in zip(todo, errors, strict=True) if e is not None}
            acked_ahead |= {r.offset for r in todo if r.offset not in failed}
            prefix = 0
            for r in batch:
                if r.offset in failed:
                    break
                prefix += 1
            if prefix:
                upto = batch[prefix - 1].end
                async with self._lock:
                    await loop.run_in_executor(self._disk_thread, self.spool.acknowledge,
                                               upto, prefix)
                    # In the same hold of the lock: no publish finds the spool emptied and
                    # still marked spooling.
                    drained = self._end_spooling_if_drained()
                acked_ahead = {o for o in acked_ahead if o >= upto}
                if drained:
                    acked_ahead.clear()
                self.forwarded += prefix
                self._on_spool_change(self.spool.pending())
            if failed:
                failures += 1
                delay = rng.uniform(0, min(self.max_backoff, 0.2 * 2 ** min(failures, 10)))
                log.info("forwarding the spool failed (%d events waiting); retrying in %.1f s",
                         self.spool.pending(), delay)
                await asyncio.sleep(delay)
            else:
                failures = 0


__all__ = ["KafkaSink", "KafkaUnavailable", "Publisher", "Record", "SpoolFull"]
