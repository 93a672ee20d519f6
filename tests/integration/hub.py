"""Real hub parts for integration tests: the local hub (``lienthong.deploy.local``), the
gateway app on loopback, topic readers."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from lienthong.connectors.gateway import KafkaSink, Publisher, Spool, build_app
from lienthong.connectors.http import KeyRing
from lienthong.connectors.http.serving import listening
from lienthong.connectors.postal.webhook import mount_postal
from lienthong.deploy.local import LocalHub
from lienthong.schemas import codec
from lienthong.schemas.codec import encode_event
from lienthong.services.settings import SAMPLE_CATALOGUE

ROOT = Path(__file__).parents[2]
CATALOGUE = SAMPLE_CATALOGUE


#: The hub the integration tests run: one isolated hub on the session broker (its own topic
#: prefix and app id), workers as subprocesses with free ports and logs in the test's directory.
Hub = LocalHub


class TopicReader:
    """Reads a whole topic from the beginning, then whatever arrives (no consumer group)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      consumer_timeout_ms=200)
        parts = self.consumer.partitions_for_topic(topic) or set()
        self.consumer.assign([TopicPartition(topic, p) for p in parts])
        self.consumer.seek_to_beginning()
        self.records: list[Any] = []
        self.arrivals: list[float] = []

    def poll(self) -> None:
        for batch in self.consumer.poll(timeout_ms=200).values():
            for record in batch:
                self.records.append(record)
                self.arrivals.append(time.time())

    def until(self, predicate: Any, timeout: float,
              alive: list[subprocess.Popen[bytes]] | None = None) -> bool:
        """Poll until ``predicate(records)``; False on timeout or if a process in ``alive``
        died meanwhile."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if alive and any(p.poll() is not None for p in alive):
                return False
            self.poll()
            if predicate(self.records):
                return True
        return False

    def close(self) -> None:
        self.consumer.close()


def decoded(records: list[Any], kind: str) -> Iterator[dict[str, Any]]:
    c = codec.codec_for(kind)
    for r in records:
        yield c.decode(r.value)


def read_records(bootstrap: str, topic: str, expect: int, timeout: float = 15.0,
                 settle: float = 1.0) -> list[Any]:
    """Every record of ``topic`` in (partition, offset) order, once ``expect`` records arrived
    (or ``timeout`` passed) and ``settle`` more seconds were read."""
    reader = TopicReader(bootstrap, topic)
    try:
        reader.until(lambda records: len(records) >= expect, timeout)
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            reader.poll()
        return sorted(reader.records, key=lambda r: (r.partition, r.offset))
    finally:
        reader.close()


@contextlib.asynccontextmanager
async def running_gateway(bootstrap: str, topic: str, keys: KeyRing, spool_dir: Path, *,
                          kafka_timeout: float = 5.0, postal: bool = False,
                          ) -> AsyncIterator[tuple[str, Publisher]]:
    """The real gateway app on 127.0.0.1 (a free port); yields its base URL and publisher."""
    publisher = Publisher(KafkaSink(bootstrap, topic, timeout=kafka_timeout), Spool(spool_dir),
                          max_backoff=0.5)
    app = build_app(keys=keys, encode=encode_event, publisher=publisher)
    if postal:
        mount_postal(app)
    async with listening(app) as url:
        yield url, publisher
