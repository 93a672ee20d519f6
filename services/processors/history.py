"""A dossier's past events, read back from ``dossier.events`` (for voids and corrections).

The dossier table keeps a dossier's state and timeline, not its events; the log keeps every
event for good (a legal record), in order, on the dossier's partition. When an operator voids
or corrects an event, the tracker reads that partition up to the void's own offset and keeps
the records whose key is the dossier's code; the domain core (``corrections.correct``) replays
them. A void is rare, so each read uses its own short-lived consumer (no group, no commit).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError


class DossierHistory(Protocol):
    """Reads one dossier's records of a partition, before an offset, in log order."""

    async def records(self, topic: str, partition: int, key: bytes,
                      before: int) -> list[bytes]: ...


class HistoryUnavailable(RuntimeError):
    """The log could not be read back in time (the void is parked, with this reason)."""


class LogHistory:
    """``DossierHistory`` over Kafka: scans the partition from its log start.

    ``timeout`` bounds one read (seconds); a partition of a few million events is read in
    seconds, as only the keys are compared before a record is kept.
    """

    def __init__(self, bootstrap: str, *, client_id: str = "lienthong-history",
                 timeout: float = 60.0) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.timeout = timeout

    async def records(self, topic: str, partition: int, key: bytes,
                      before: int) -> list[bytes]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    client_id=self.client_id, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        tp = TopicPartition(topic, partition)
        out: list[bytes] = []
        deadline = time.monotonic() + self.timeout
        try:
            await asyncio.wait_for(consumer.start(), self.timeout)
            consumer.assign([tp])
            start = (await consumer.beginning_offsets([tp]))[tp]
            if start >= before:
                return out
            consumer.seek(tp, start)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HistoryUnavailable(f"reading {topic}[{partition}] up to offset "
                                             f"{before} took longer than {self.timeout:.0f} s")
                batch = await consumer.getmany(tp, timeout_ms=int(min(left, 1.0) * 1000),
                                               max_records=10_000)
                for message in batch.get(tp, ()):
                    if message.offset >= before:
                        return out
                    if message.key == key and message.value is not None:
                        out.append(message.value)
                if await consumer.position(tp) >= before:
                    return out
        except (TimeoutError, KafkaError, OSError) as exc:
            raise HistoryUnavailable(f"cannot read {topic}[{partition}]: {exc!r}") from exc
        finally:
            await consumer.stop()


class InMemoryHistory:
    """``DossierHistory`` over records kept in memory (tests, tools)."""

    def __init__(self) -> None:
        self.log: dict[tuple[str, int], list[tuple[int, bytes | None, bytes]]] = {}

    def append(self, topic: str, partition: int, offset: int, key: bytes | None,
               value: bytes) -> None:
        self.log.setdefault((topic, partition), []).append((offset, key, value))

    async def records(self, topic: str, partition: int, key: bytes,
                      before: int) -> list[bytes]:
        return [v for o, k, v in self.log.get((topic, partition), ()) if o < before and k == key]
