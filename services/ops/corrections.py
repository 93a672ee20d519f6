"""Publishing an operator's void or correction, and hearing how the worker took it.

The dashboard's form and ``lienthong correct`` both end here: the event is checked by the codec,
written to ``dossier.events`` under the dossier's code (acks=all, idempotent producer), and the
worker replays the dossier (``services/domain/corrections.py``). ``outcome`` then waits for the
dossier's next snapshot that lists the void or correction on its timeline, or for the dead
letter that refused it, with its reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lienthong.schemas import codec, topics
from lienthong.services.settings import Settings


@dataclass(frozen=True)
class Outcome:
    """``applied`` (with the dossier's new snapshot), ``refused`` (reason, detail) or
    ``pending`` (nothing heard before the timeout)."""

    status: str
    reason: str | None = None
    detail: str | None = None
    snapshot: dict[str, Any] | None = None


class CorrectionsDesk:
    """Writes voids and corrections to ``dossier.events``; reads the dossier's events back."""

    def __init__(self, bootstrap: str, settings: Settings | None = None) -> None:
        self.bootstrap = bootstrap
        self.settings = settings or Settings.from_env()
        self.names = topics.names(self.settings)
        self._producer: KafkaProducer | None = None

    def _servers(self) -> list[str]:
        return [b.strip() for b in self.bootstrap.split(",") if b.strip()]

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    # -- reading ---------------------------------------------------------------------------
    def dossier_events(self, dossier: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The dossier's events in the log, in order (canonical JSON; undecodable ones left
        out: they were dead-lettered when they came)."""
        key = dossier.encode()
        consumer = KafkaConsumer(bootstrap_servers=self._servers(), enable_auto_commit=False,
                                 group_id=None, consumer_timeout_ms=1000)
        try:
            parts = consumer.partitions_for_topic(self.names.events) or set()
            tps = [TopicPartition(self.names.events, p) for p in sorted(parts)]
            ends = consumer.end_offsets(tps)
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            out: list[dict[str, Any]] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(
                    consumer.position(tp) < ends[tp] for tp in tps):
                for records in consumer.poll(timeout_ms=500, max_records=5000).values():
                    for r in records:
                        if r.key != key or r.value is None:
                            continue
                        try:
                            out.append(codec.decode_event(r.value))
                        except codec.CodecError:
                            continue
            return out
        finally:
            consumer.close()

    # -- writing ---------------------------------------------------------------------------
    def publish(self, event: Mapping[str, Any]) -> bytes:
        """Check and write one void or correction; returns once Kafka acknowledged it."""
        value = codec.encode_event(event)  # InvalidRecord names the field
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self._servers(), acks="all",
                                           enable_idempotence=True, linger_ms=0)
        self._producer.send(self.names.events, key=str(event["dossier"]).encode(),
                            value=value).get(timeout=30)
        return value

    def publish_and_watch(self, event: Mapping[str, Any], timeout: float = 15.0) -> Outcome:
        """``publish``, then wait up to ``timeout`` seconds for the worker's answer."""
        consumer = KafkaConsumer(bootstrap_servers=self._servers(), enable_auto_commit=False,
                                 group_id=None)
        try:
            tps = [TopicPartition(topic, p) for topic in (self.names.status,
                                                           self.names.deadletter)
                   for p in sorted(consumer.partitions_for_topic(topic) or ())]
            ends = consumer.end_offsets(tps)  # only what comes after the publish counts
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, ends[tp])
            self.publish(event)
            return _watch(consumer, self.names, event, timeout)
        finally:
            consumer.close()


def _watch(consumer: KafkaConsumer, names: topics.TopicNames, event: Mapping[str, Any],
           timeout: float) -> Outcome:
    event_id = str(event["event_id"])
    dossier = str(event["dossier"]).encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=300).items():
            for r in records:
                if tp.topic == names.status and r.key == dossier and r.value:
                    snap = json.loads(r.value)
                    if any(e.get("event_id") == event_id for e in snap.get("timeline", ())):
                        return Outcome("applied", snapshot=snap)
                elif tp.topic == names.deadletter and r.value:
                    try:
                        letter = codec.decode_deadletter(r.value)
                        original = codec.decode_event(letter["original"])
                    except (codec.CodecError, KeyError, TypeError):
                        continue
                    if original.get("event_id") == event_id:
                        return Outcome("refused", letter["reason"], letter["detail"])
    return Outcome("pending")
