"""Reconciling the hub's portal status of every dossier with the national portal's, and the
``portal_drift`` alert (DESIGN section 6, Alerts; section 7, national_portal).

The pure part (:func:`compare`, :class:`DriftTracker`) decides; the shell
(:class:`Reconciler`) reads the hub's statuses from the compacted ``dossier.status`` topic,
asks the portal, and produces the alert.

A status sync in flight makes the two disagree for a moment, so a dossier counts as drifting
only when the same disagreement is seen in ``confirm`` consecutive rounds. Drift is one alert
per episode: scope ``destination``, destination ``DVCQG``, id from (DVCQG, portal_drift, the
instant the episode was first confirmed), so a restarted reconciler that sees the same episode
from the same start does not make a second one; the episode ends when a round sees no drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from lienthong.connectors.national_portal.mapping import STATUS_NAMES, to_portal_request
from lienthong.services.domain.alerts import destination_alert_id
from lienthong.services.domain.routing import PORTAL

log = logging.getLogger(__name__)

PORTAL_DRIFT = "portal_drift"


@dataclass(frozen=True, slots=True)
class Drift:
    dossier: str
    hub: int
    portal: int | None  # None: the portal does not know the dossier

    def describe(self) -> str:
        theirs = "unknown" if self.portal is None else \
            f"{self.portal} ({STATUS_NAMES.get(self.portal, '?')})"
        return f"{self.dossier}: hub {self.hub} ({STATUS_NAMES.get(self.hub, '?')}), " \
               f"portal {theirs}"


def compare(hub: Mapping[str, int], portal: Mapping[str, int | None]) -> list[Drift]:
    """Dossiers whose portal status differs from the hub's (missing at the portal included)."""
    return [Drift(code, status, portal.get(code)) for code, status in sorted(hub.items())
            if portal.get(code) != status]


@dataclass
class DriftTracker:
    """Confirms drift across rounds and opens/closes drift episodes."""

    confirm: int = 2
    seen: dict[tuple[str, int, int | None], int] = field(default_factory=dict)
    episode_start: datetime | None = None

    def observe(self, drifts: Iterable[Drift], now: datetime) -> list[Drift] | None:
        """Feed one round; returns the confirmed drifts when a new episode opens, else None."""
        counts: dict[tuple[str, int, int | None], int] = {}
        for d in drifts:
            k = (d.dossier, d.hub, d.portal)
            counts[k] = self.seen.get(k, 0) + 1
        self.seen = counts
        confirmed = [Drift(*k) for k, n in sorted(counts.items(), key=lambda kv: kv[0][0])
                     if n >= self.confirm]
        if not confirmed:
            if not counts:
                self.episode_start = None
            return None
        if self.episode_start is not None:
            return None
        self.episode_start = now
        return confirmed


def drift_alert(drifts: Sequence[Drift], started: datetime, fired_at: datetime,
                limit: int = 20) -> dict[str, Any]:
    """The ``portal_drift`` alert record (for ``codec.encode_alert``)."""
    shown = "; ".join(d.describe() for d in drifts[:limit])
    more = f"; and {len(drifts) - limit} more" if len(drifts) > limit else ""
    return {"alert_id": destination_alert_id(PORTAL, PORTAL_DRIFT, started),
            "kind": PORTAL_DRIFT, "scope": "destination", "dossier": None, "agency": None,
            "destination": PORTAL, "due_at": None, "fired_at": fired_at.isoformat(),
            "detail": (f"{len(drifts)} dossier(s) differ from the national portal: "
                       f"{shown}{more}")[:2000]}


def hub_statuses(snapshots: Iterable[tuple[bytes | None, bytes | None]]) -> dict[str, int]:
    """``{dossier: portal_status}`` from ``dossier.status`` records (key, value) in offset
    order; a tombstone removes the dossier, an unreadable snapshot is skipped."""
    out: dict[str, int] = {}
    for key, value in snapshots:
        code = key.decode("utf-8", "replace") if key is not None else None
        if value is None:
            if code is not None:
                out.pop(code, None)
            continue
        try:
            snap = json.loads(value)
            code = snap.get("dossier") or code
            status = snap.get("portal_status")
        except (ValueError, AttributeError):
            continue
        if isinstance(code, str) and isinstance(status, int):
            out[code] = status
    return out


class PortalClient:
    """The portal's status API (``base_url`` e.g. ``http://127.0.0.1:9800/dvcqg``)."""

    def __init__(self, base_url: str, client: httpx.AsyncClient | None = None,
                 chunk: int = 500) -> None:
        from lienthong.connectors.http import RetryPolicy, make_async_client

        self.base_url = base_url.rstrip("/")
        self.client = client or make_async_client(
            retry=RetryPolicy(attempts=4, base_delay=0.2, max_delay=2.0), timeout=10.0)
        self.chunk = chunk

    async def sync(self, delivery: Mapping[str, Any]) -> httpx.Response:
        """Send a hub ``portal_status`` delivery as a status sync (Idempotency-Key: its id)."""
        body = json.dumps(to_portal_request(delivery), ensure_ascii=False).encode("utf-8")
        return await self.client.post(
            f"{self.base_url}/api/status-sync", content=body,
            headers={"Content-Type": "application/json",
                     "Idempotency-Key": str(delivery["delivery_id"])})

    async def statuses(self, codes: Sequence[str]) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for i in range(0, len(codes), self.chunk):
            response = await self.client.post(f"{self.base_url}/api/status-query",
                                              json={"MaHoSo": list(codes[i:i + self.chunk])})
            response.raise_for_status()
            for item in response.json()["items"]:
                out[item["MaHoSo"]] = item.get("TrangThaiHoSo")
        return out

    async def aclose(self) -> None:
        await self.client.aclose()


def read_compacted(bootstrap: str, topic: str, timeout: float = 10.0
                   ) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of ``topic`` up to its current end, in offset order per partition."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=500)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                          or ())]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout} s")
            for records in consumer.poll(timeout_ms=200).values():
                out.extend((r.key, r.value) for r in records)
        return out
    finally:
        consumer.close()


class Reconciler:
    """One round: hub statuses, portal statuses, compare, maybe an alert on ``alerts``."""

    def __init__(self, bootstrap: str, portal: PortalClient, *, status_topic: str,
                 alerts_topic: str, tracker: DriftTracker | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.bootstrap, self.portal = bootstrap, portal
        self.status_topic, self.alerts_topic = status_topic, alerts_topic
        self.tracker = tracker or DriftTracker()
        self.now = now
        self._producer: Any = None
        self.rounds = 0
        self.last_drifts: list[Drift] = []

    def _produce(self, alert: dict[str, Any]) -> None:
        from kafka import KafkaProducer

        from lienthong.schemas.codec import encode_alert

        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                           enable_idempotence=True,
                                           client_id="lienthong-portal-reconciler")
        self._producer.send(self.alerts_topic, key=PORTAL.encode(),
                            value=encode_alert(alert)).get(timeout=15)

    async def round(self) -> dict[str, Any] | None:
        records = await asyncio.to_thread(read_compacted, self.bootstrap, self.status_topic)
        hub = hub_statuses(records)
        portal = await self.portal.statuses(sorted(hub))
        drifts = compare(hub, portal)
        self.last_drifts = drifts
        self.rounds += 1
        now = self.now()
        opened = self.tracker.observe(drifts, now)
        if opened is None:
            return None
        assert self.tracker.episode_start is not None
        alert = drift_alert(opened, self.tracker.episode_start, now)
        await asyncio.to_thread(self._produce, alert)
        log.warning("portal drift: %s", alert["detail"])
        return alert

    async def run(self, every: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.round()
            except (httpx.HTTPError, TimeoutError, OSError) as exc:
                log.warning("reconciliation round failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None
