"""Real hub parts for integration tests: workers as subprocesses, the gateway app on loopback,
topic readers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lienthong.connectors.gateway import KafkaSink, Publisher, Spool, build_app
from lienthong.connectors.http import KeyRing
from lienthong.connectors.http.serving import listening
from lienthong.connectors.postal.webhook import mount_postal
from lienthong.deploy.embedded.broker import free_port
from lienthong.schemas import codec, topics
from lienthong.schemas.codec import encode_event
from lienthong.services.settings import Settings

ROOT = Path(__file__).parents[2]
CATALOGUE = ROOT / "examples" / "province-h99.yaml"



@dataclass
class Hub:
    """One isolated hub on the session broker: its own topic prefix and app id."""

    bootstrap: str
    workdir: Path
    partitions: int = 4
    prefix: str = field(default_factory=lambda: f"h{uuid.uuid4().hex[:8]}.")
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_ports: list[int] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings(kafka_bootstrap_servers=self.bootstrap, partitions=self.partitions,
                        topic_prefix=self.prefix, app_id=f"{self.prefix}worker",
                        catalog_path=CATALOGUE, data_dir=self.workdir)

    @property
    def names(self) -> topics.TopicNames:
        return topics.names(self.settings)

    def create_topics(self) -> None:
        topics.ensure_topics(self.bootstrap, self.settings)

    def start_worker(self, clock: str = "wall") -> subprocess.Popen[bytes]:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
               "LIENTHONG_TOPIC_PREFIX": self.prefix,
               "LIENTHONG_PARTITIONS": str(self.partitions),
               "LIENTHONG_APP_ID": self.settings.app_id,
               "LIENTHONG_CATALOG": str(CATALOGUE), "LIENTHONG_CLOCK": clock,
               "LIENTHONG_DATA_DIR": str(self.workdir / f"w{len(self.workers)}"),
               "LIENTHONG_WORKER_PORT": str(self._new_port())}
        log = open(self.workdir / f"worker{len(self.workers)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "lienthong.services.cli", "worker",
                                 "--loglevel", "info"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.workdir)
        self.workers.append(proc)
        return proc

    def _new_port(self) -> int:
        self.worker_ports.append(free_port())
        return self.worker_ports[-1]

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def live(self) -> list[subprocess.Popen[bytes]]:
        """Workers not killed on purpose (a test watches these for crashes)."""
        return [p for p in self.workers if p.returncode is None]

    def log(self, index: int = 0) -> str:
        index = index % max(1, len(self.workers))
        return (self.workdir / f"worker{index}.log").read_text(errors="replace")[-4000:]

    def producer(self) -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                             enable_idempotence=True, linger_ms=2)

    def publish(self, events: list[dict[str, Any]]) -> None:
        producer = self.producer()
        for e in events:
            producer.send(self.names.events, key=e["dossier"].encode(),
                          value=codec.EVENTS.encode(e))
        producer.flush()
        producer.close()


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
