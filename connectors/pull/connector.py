"""The poll loop: fetch a page of changes, publish it, wait for Kafka, then move the cursor.

Guarantees, in the order of one poll:

1. ``GET <base>/agencies/<agency>/changes?cursor=<saved>&limit=<batch>`` (see the package
   docstring for the contract). A failed or malformed answer changes nothing.
2. Every change is checked on its own (:func:`changes.prepare`); good ones become events for
   ``dossier.events`` (key: dossier code), bad ones dead letters for ``deadletter``.
3. All of them are produced through the gateway's :class:`KafkaSink` (kafka-python,
   ``acks=all``, idempotent) and every acknowledgement is awaited.
4. Only then is ``next_cursor`` written to the cursor file (fsync'd).

A crash anywhere before step 4 re-polls the same page on restart: its events are produced
again with the same event ids (at least once; the hub deduplicates on ``event_id``), and
nothing past the saved cursor is ever skipped.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from lienthong.connectors.gateway.intake import Encoder, Limits
from lienthong.connectors.gateway.publisher import KafkaSink, KafkaUnavailable
from lienthong.connectors.pull.changes import FeedError, Outcome, parse_page, prepare
from lienthong.connectors.pull.cursor import CursorFile

log = logging.getLogger(__name__)


def feed_url(base_url: str, agency: str) -> str:
    return f"{base_url.rstrip('/')}/agencies/{agency}/changes"


@dataclass(frozen=True)
class PollResult:
    changes: int
    published: int
    deadlettered: int
    cursor: Any  # the cursor saved after this poll (unchanged when the page was empty)
    more: bool


class PullConnector:
    """Pulls one agency system's change feed into Kafka; see the module docstring."""

    def __init__(self, *, agency: str, base_url: str, sink: KafkaSink, cursor: CursorFile,
                 deadletter_topic: str, client: httpx.Client, batch_size: int = 100,
                 system: str | None = None, encode: Encoder | None = None,
                 encode_deadletter: Callable[[Any], bytes] | None = None,
                 limits: Limits | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if encode is None or encode_deadletter is None:
            from lienthong.schemas import codec

            encode = encode or codec.encode_event
            encode_deadletter = encode_deadletter or codec.encode_deadletter
        self.agency = agency
        self.system = system or agency
        self.url = feed_url(base_url, agency)
        self.sink, self.cursor, self.client = sink, cursor, client
        self.deadletter_topic = deadletter_topic
        self.batch_size = batch_size
        self.encode, self.encode_deadletter = encode, encode_deadletter
        self.limits = limits or Limits()
        self.now = now
        self.source = f"pull:{agency}"
        self._position: Any = cursor.load()  # raises CursorError on a damaged file
        self.published = 0
        self.deadlettered = 0

    @property
    def position(self) -> Any:
        """The last committed cursor (None: from the beginning)."""
        return self._position

    def fetch(self) -> Any:
        params: dict[str, Any] = {"limit": self.batch_size}
        if self._position is not None:
            params["cursor"] = self._position
        response = self.client.get(self.url, params=params)
        if response.status_code != 200:
            raise FeedError(f"HTTP {response.status_code}: {response.text[:200].strip()}")
        try:
            return response.json()
        except ValueError as exc:
            raise FeedError(f"the answer is not JSON ({exc})") from exc

    def publish(self, outcome: Outcome) -> None:
        """Produce the page's records and return once Kafka acknowledged every one."""
        futures = self.sink.send(outcome.events)
        if outcome.deadletters:
            futures += self.sink.send(outcome.deadletters, topic=self.deadletter_topic)
        try:
            for future in futures:
                future.get(timeout=self.sink.timeout + 2.0)
        except Exception as exc:  # KafkaTimeoutError, NotLeaderForPartition, ...
            self.sink.reset()  # what missed its deadline is aborted, then re-polled
            raise KafkaUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def poll_once(self) -> PollResult:
        """One page in, acknowledged, cursor saved. Raises FeedError, httpx.HTTPError or
        KafkaUnavailable with the cursor unchanged."""
        page = parse_page(self.fetch())
        if not page.changes:
            return PollResult(0, 0, 0, self._position, False)
        outcome = prepare(page.changes, system=self.system, agency=self.agency,
                          encode=self.encode, encode_deadletter=self.encode_deadletter,
                          limits=self.limits, source=self.source, at=self.now())
        self.publish(outcome)
        self.cursor.save(page.next_cursor)
        self._position = page.next_cursor
        self.published += len(outcome.events)
        self.deadlettered += len(outcome.deadletters)
        for reason, (key, _) in zip(outcome.reasons, outcome.deadletters, strict=True):
            log.warning("%s: a change was dead-lettered (%s, dossier %s)", self.agency, reason,
                        key.decode("utf-8", "replace") if key else "-")
        return PollResult(len(page.changes), len(outcome.events), len(outcome.deadletters),
                          page.next_cursor, page.more)

    def run(self, stop: threading.Event, *, interval: float = 5.0, max_backoff: float = 60.0,
            until_caught_up: bool = False, rng: random.Random | None = None) -> None:
        """Poll until ``stop`` is set: straight on while the feed says ``more``, else every
        ``interval`` seconds; after a failure, back off (exponential, full jitter)."""
        rng = rng or random.Random()
        failures = 0
        while not stop.is_set():
            try:
                result = self.poll_once()
            except (FeedError, httpx.HTTPError, KafkaUnavailable) as exc:
                failures += 1
                delay = rng.uniform(0, min(max_backoff, interval * 2 ** min(failures, 10)))
                log.warning("%s: poll failed (%s); cursor stays at %r; retrying in %.1f s",
                            self.agency, exc, self._position, delay)
                stop.wait(delay)
                continue
            failures = 0
            if result.changes:
                log.info("%s: %d changes, %d events published, %d dead-lettered; cursor %r",
                         self.agency, result.changes, result.published, result.deadlettered,
                         result.cursor)
            if result.more:
                continue
            if until_caught_up:
                return
            stop.wait(interval)
