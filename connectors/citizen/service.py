"""The citizen notifier's shell: reads ``dossier.events``, plans messages with the core
(``services/domain/citizen.py``), sends them through the channels' senders, takes delivery
reports and opt-outs from the providers' webhooks, and puts every message's status on the
``citizen.notifications`` topic (the dossier's timeline on the dashboard).

    notifier = CitizenNotifier(bootstrap, catalogue, NoticeStore(path), {"sms": SmsSender(...)})
    await notifier.run(stop)            # and serve notifier.build_app() for the webhooks

Partitions of ``dossier.events`` are assigned by hand (no consumer group): one notifier per hub,
its progress (offsets) kept in its store with what it planned, in one transaction per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from lienthong.connectors.citizen.senders import Outgoing, Sender, ZaloSender
from lienthong.connectors.citizen.store import NoticeStore, StoredMessage
from lienthong.schemas.codec import EVENTS, CodecError
from lienthong.services.clock import Clock, WallClock
from lienthong.services.domain.catalogue import Catalogue
from lienthong.services.domain.citizen import (
    DossierFacts,
    Message,
    Policy,
    RetryRule,
    Skip,
    Wording,
    is_opt_out,
    mask,
    normalise_phone,
    plan,
    sms_fallback,
)
from lienthong.services.domain.dossier import appointment_of

log = logging.getLogger("lienthong.citizen")

GROUP = "lienthong-citizen-notify"


def wording_for(catalogue: Catalogue) -> Wording:
    """The catalogue's names, province and time zone, and each procedure's own templates."""
    def agency_name(code: str) -> str | None:
        a = catalogue.agency(code)
        return a.name if a is not None else None

    def procedure_name(code: str, at: datetime) -> str | None:
        p = catalogue.procedure(code, at)
        return p.name if p is not None else None

    def template(code: str, kind: str, at: datetime) -> str | None:
        p = catalogue.procedure(code, at)
        return p.citizen_template(kind) if p is not None else None

    return Wording(catalogue.calendar.tz, catalogue.province_name, agency_name,
                   procedure_name, template)


class CitizenMetrics:
    """``/metrics`` of the notifier, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.planned = Counter("lienthong_citizen_messages_planned",
                               "Messages planned from dossier events, by channel and kind.",
                               ["channel", "kind"], registry=r)
        self.skipped = Counter("lienthong_citizen_messages_skipped",
                               "Messages not sent, by reason (opted_out, stale, no_contact).",
                               ["reason"], registry=r)
        self.attempts = Counter("lienthong_citizen_send_attempts",
                                "Attempts to hand a message to its provider, by outcome "
                                "(accepted, retry, rejected).", ["channel", "outcome"],
                                registry=r)
        self.reports = Counter("lienthong_citizen_delivery_reports",
                               "Delivery reports from providers (delivered, failed).",
                               ["channel", "status"], registry=r)
        self.optouts = Counter("lienthong_citizen_optouts", "Opt-outs received, by channel.",
                               ["channel"], registry=r)
        self.undecodable = Counter("lienthong_citizen_undecodable_events",
                                   "dossier.events records the notifier could not decode "
                                   "(the worker dead-letters them).", registry=r)
        self.handover = Histogram(
            "lienthong_citizen_handover_seconds",
            "From the event's Kafka timestamp to the provider taking the message (messages "
            "not held by quiet hours): the SLO's measure.", ["channel"], registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600))
        self.queued = Gauge("lienthong_citizen_messages_queued",
                            "Messages waiting to be sent (quiet hours and retries included).",
                            registry=r)
        self.lag = Gauge("lienthong_citizen_events_lag",
                         "Records of dossier.events not yet read.", registry=r)


@dataclass(frozen=True)
class Topics:
    events: str
    notifications: str


class CitizenNotifier:
    """Tells applicants what happens to their dossiers (see the module's docstring).

    ``senders``: channel → :class:`Sender` (a channel without one is not planned). ``policy``:
    quiet hours, staleness and channels. ``retry``: backoff of a provider that said not now.
    ``clock``: the hub's clock (quiet hours are judged on it). ``concurrency``: messages in
    flight per channel.
    """

    def __init__(self, bootstrap: str, catalogue: Catalogue, store: NoticeStore,
                 senders: Mapping[str, Sender], topics: Topics, *,
                 policy: Policy | None = None, retry: RetryRule | None = None,
                 clock: Clock | None = None, metrics: CitizenMetrics | None = None,
                 concurrency: int = 8, callback_token: str | None = None,
                 zalo_poll_after: timedelta = timedelta(seconds=2),
                 keep: timedelta = timedelta(days=30)) -> None:
        self.bootstrap = bootstrap
        self.catalogue = catalogue
        self.store = store
        self.senders = dict(senders)
        self.topics = topics
        base = policy or Policy()
        self.policy = Policy(base.quiet_hours, base.quiet, base.max_age,
                             base.channels & frozenset(self.senders))
        self.retry = retry or RetryRule()
        self.clock = clock or WallClock()
        self.metrics = metrics or CitizenMetrics()
        self.concurrency = concurrency
        self.callback_token = callback_token
        self.zalo_poll_after = zalo_poll_after
        self.keep = keep
        self.wording = wording_for(catalogue)
        self.ready = asyncio.Event()              # partitions assigned, stored offsets sought
        self._facts: dict[str, DossierFacts | None] = {}
        self._in_flight: set[str] = set()
        self._throttled: dict[str, float] = {}      # channel -> monotonic end of its pause
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None

    # -- running ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Read, send, report, until ``stop`` is set or the task is cancelled."""
        stop = stop or asyncio.Event()
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                          enable_idempotence=True)
        await self._producer.start()
        tasks = [asyncio.create_task(self._consume(stop), name="citizen-consume"),
                 asyncio.create_task(self._send_loop(stop), name="citizen-send"),
                 asyncio.create_task(self._report_loop(stop), name="citizen-reports")]
        if isinstance(self.senders.get("zalo"), ZaloSender):
            tasks.append(asyncio.create_task(self._poll_zalo(stop), name="citizen-zalo-poll"))
        try:
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not waiter:
                    t.result()      # a task that stopped by itself: its error stops the service
        finally:
            stop.set()
            # A graceful stop lets messages in flight finish (their provider's answer is
            # stored), then cancels what is still waiting.
            await asyncio.wait(tasks, timeout=10.0)
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            with contextlib.suppress(Exception):
                await self._publish_reports()
            await self._producer.stop()
            for sender in self.senders.values():
                await sender.close()

    # -- reading events ----------------------------------------------------------------------------

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    isolation_level="read_committed")
        await consumer.start()
        try:
            parts: set[int] | None = None
            for _ in range(120):
                parts = consumer.partitions_for_topic(self.topics.events)
                if parts:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.5)
            if not parts:
                raise RuntimeError(f"topic {self.topics.events} not found on {self.bootstrap}")
            tps = [TopicPartition(self.topics.events, p) for p in sorted(parts)]
            consumer.assign(tps)
            stored = self.store.offsets(self.topics.events)
            for tp in tps:
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            self.ready.set()
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                if batches:
                    await asyncio.to_thread(self._apply, batches)
                    self._wake.set()
                lag = 0
                for tp in tps:
                    hw = consumer.highwater(tp)
                    if hw is not None:
                        lag += max(0, hw - await consumer.position(tp))
                self.metrics.lag.set(lag)
        finally:
            await consumer.stop()

    def _apply(self, batches: Mapping[TopicPartition, list[Any]]) -> None:
        now = self.clock.now()
        facts: list[DossierFacts] = []
        messages: list[tuple[Message, float | None]] = []
        skipped: list[Skip] = []
        positions: dict[int, int] = {}
        voids: list[tuple[str, str]] = []
        ended: list[str] = []
        for tp, records in batches.items():
            for rec in records:
                positions[tp.partition] = rec.offset + 1
                try:
                    event = EVENTS.decode(rec.value)
                except (CodecError, TypeError) as exc:
                    # The worker dead-letters it with the reason; here it only tells nobody.
                    self.metrics.undecodable.inc()
                    log.warning("citizen: %s/%d@%d not decodable: %s", tp.topic, tp.partition,
                                rec.offset, exc)
                    continue
                dossier = event.get("dossier")
                if not isinstance(dossier, str):
                    continue
                if event.get("type") in ("returned", "withdrawn", "stopped"):
                    ended.append(dossier)
                if event.get("type") == "event_voided":
                    voids.append((dossier, str(event.get("voided_event_id"))))
                    continue
                known = self._known(dossier)
                appointment = None
                if event.get("type") == "received" and known is None:
                    with contextlib.suppress(ValueError, TypeError):
                        appointment = appointment_of(self.catalogue, str(event["procedure"]),
                                                     datetime.fromisoformat(event["at"]))
                p = plan(event, known, now=now, wording=self.wording, policy=self.policy,
                         opted_out=self.store.opted_out, appointment=appointment)
                if p.facts is not None:
                    kept = p.facts if appointment is None else DossierFacts(
                        p.facts.dossier, p.facts.procedure, p.facts.agency,
                        p.facts.received_at, appointment, p.facts.contacts)
                    self._facts[dossier] = kept
                    facts.append(kept)
                ts = rec.timestamp / 1000 if rec.timestamp is not None else None
                messages += [(m, ts) for m in p.messages]
                skipped += p.skipped
        added = self.store.apply(self.topics.events, positions, facts, messages, skipped, now,
                                 voids, ended)
        for m in added:
            self.metrics.planned.labels(m.channel, m.kind).inc()
        for s in skipped:
            self.metrics.skipped.labels(s.reason).inc()
        if len(self._facts) > 200_000:
            self._facts.clear()     # a cache of the store: bounded, refilled on demand

    def _known(self, dossier: str) -> DossierFacts | None:
        if dossier not in self._facts:
            self._facts[dossier] = self.store.facts(dossier)
        return self._facts[dossier]

    # -- sending -----------------------------------------------------------------------------------

    async def _send_loop(self, stop: asyncio.Event) -> None:
        limits = {c: asyncio.Semaphore(self.concurrency) for c in self.senders}
        running: set[asyncio.Task[None]] = set()
        counted = 0.0
        try:
            while not stop.is_set():
                now = self.clock.now()
                due = await asyncio.to_thread(self.store.due, now, 200, set(self._in_flight))
                paused = {c for c, until in self._throttled.items() if until > time.monotonic()}
                due = [m for m in due if m.channel not in paused]
                for m in due:
                    self._in_flight.add(m.message_id)
                    task = asyncio.create_task(self._send_one(m, limits[m.channel]))
                    running.add(task)
                    task.add_done_callback(running.discard)
                if time.monotonic() - counted > 5.0:
                    counted = time.monotonic()
                    counts = await asyncio.to_thread(self.store.counts)
                    self.metrics.queued.set(sum(n for (_, s), n in counts.items()
                                                if s == "queued"))
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.05 if due else 0.25)
        finally:
            if running:
                await asyncio.wait(running, timeout=8.0)
            for task in list(running):
                task.cancel()

    async def _send_one(self, m: StoredMessage, limit: asyncio.Semaphore) -> None:
        try:
            async with limit:
                sender = self.senders[m.channel]
                result = await sender.send(Outgoing(m.message_id, m.channel, m.address,
                                                    m.subject, m.text))
                now = self.clock.now()
                self.metrics.attempts.labels(m.channel, result.outcome).inc()
                if result.outcome == "accepted":
                    await asyncio.to_thread(self.store.handed, m, result.provider_id, now,
                                            final=m.channel == "email")
                    if m.event_ts is not None:
                        self.metrics.handover.labels(m.channel).observe(
                            max(0.0, time.time() - m.event_ts))
                    log.info("citizen: %s %s of %s to %s taken", m.channel, m.kind, m.dossier,
                             mask(m.channel, m.address))
                    return
                if result.throttled:
                    # Over the provider's rate: the whole channel waits, the message keeps
                    # its attempts.
                    wait = min(60.0, result.retry_after or 1.0)
                    self._throttled[m.channel] = time.monotonic() + wait
                    await asyncio.to_thread(self.store.retry, m, now + timedelta(seconds=wait),
                                            result.detail, counted=False)
                    return
                next_try = None if result.outcome == "rejected" else self.retry.next_try(
                    m.attempts + 1, now, result.retry_after)
                if next_try is None:
                    await asyncio.to_thread(self.store.fail, m, result.detail, now)
                    log.warning("citizen: %s %s of %s to %s failed: %s", m.channel, m.kind,
                                m.dossier, mask(m.channel, m.address), result.detail)
                    if result.outcome == "rejected":
                        await asyncio.to_thread(self._fall_back, m, now)
                else:
                    await asyncio.to_thread(self.store.retry, m, next_try, result.detail)
        finally:
            self._in_flight.discard(m.message_id)
            self._wake.set()

    def _fall_back(self, m: StoredMessage, now: datetime) -> None:
        """A Zalo message refused for good goes by SMS, if the applicant gave a phone."""
        facts = self._known(m.dossier)
        if facts is None:
            return
        refused = Message(m.message_id, m.dossier, m.event_id, m.kind, m.channel, m.address,
                          m.subject, m.text, now, now)
        instead = sms_fallback(refused, facts, now=now, tz=self.wording.tz,
                               policy=self.policy, opted_out=self.store.opted_out)
        if isinstance(instead, Message):
            self.store.apply(self.topics.events, {}, [], [(instead, m.event_ts)], [], now)
            self.metrics.planned.labels("sms", m.kind).inc()
        elif isinstance(instead, Skip):
            self.store.apply(self.topics.events, {}, [], [], [instead], now)

    async def _poll_zalo(self, stop: asyncio.Event) -> None:
        sender = self.senders["zalo"]
        assert isinstance(sender, ZaloSender)
        while not stop.is_set():
            before = self.clock.now() - self.zalo_poll_after
            for m in await asyncio.to_thread(self.store.awaiting_report, "zalo", before, 50):
                if m.provider_id is None:
                    continue
                status = await sender.status(m.provider_id)
                if status.delivered is not None:
                    self._delivery_report("zalo", m.provider_id, status.delivered,
                                          status.detail)
            await asyncio.sleep(1.0)

    def _delivery_report(self, channel: str, provider_id: str, delivered: bool,
                         detail: str) -> bool:
        found = self.store.delivery_report(channel, provider_id, delivered, detail,
                                           self.clock.now())
        if found:
            self.metrics.reports.labels(channel, "delivered" if delivered else "failed").inc()
        return found

    # -- the timeline ------------------------------------------------------------------------------

    async def _report_loop(self, stop: asyncio.Event) -> None:
        purged = 0.0
        while not stop.is_set():
            if not await self._publish_reports():
                await asyncio.sleep(0.2)
            if time.monotonic() - purged > 3600:
                # Personal data no longer than needed: addresses and texts of messages that
                # finished more than ``keep`` ago are erased (their ids stay).
                purged = time.monotonic()
                erased = await asyncio.to_thread(self.store.purge, self.clock.now() - self.keep)
                self._facts.clear()     # the cache must not outlive what was erased
                if erased:
                    log.info("citizen: erased the contacts of %d finished messages", erased)

    async def _publish_reports(self) -> int:
        assert self._producer is not None
        reports = await asyncio.to_thread(self.store.reports, 500)
        if not reports:
            return 0
        futures = [await self._producer.send(
            self.topics.notifications, json.dumps(r.body, ensure_ascii=False).encode(),
            key=r.dossier.encode()) for r in reports]
        await asyncio.gather(*futures)
        await asyncio.to_thread(self.store.reported, reports[-1].seq)
        return len(reports)

    # -- webhooks: delivery reports, replies, unfollows, /metrics ----------------------------------

    def build_app(self) -> web.Application:
        """``POST /v1/citizen/sms/reports`` (delivery reports), ``/v1/citizen/sms/inbound``
        (replies: "TU CHOI" opts out), ``/v1/citizen/zalo/events`` (``unfollow`` opts out),
        ``GET /metrics`` and ``/healthz``. With a callback token, webhooks need ``?token=``."""
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/v1/citizen/sms/reports", self._sms_report)
        app.router.add_post("/v1/citizen/sms/inbound", self._sms_inbound)
        app.router.add_post("/v1/citizen/zalo/events", self._zalo_event)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        return app

    def _refused(self, request: web.Request) -> web.Response | None:
        if self.callback_token and request.query.get("token") != self.callback_token:
            return web.json_response({"error": "bad_token",
                                      "detail": "the webhook URL's ?token= is wrong"},
                                     status=401)
        return None

    async def _json(self, request: web.Request, *names: str) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "not_json", "detail": "the body is not JSON"},
                                     status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "not_object",
                                      "detail": "the body must be a JSON object"}, status=400)
        missing = [n for n in names if not isinstance(body.get(n), str) or not body.get(n)]
        if missing:
            return web.json_response({"error": "missing_field", "fields": missing,
                                      "detail": f"missing or not text: {', '.join(missing)}"},
                                     status=422)
        return body

    async def _sms_report(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = await self._json(request, "id", "status")
        if isinstance(body, web.Response):
            return body
        status = body["status"].upper()
        if status not in ("DELIVERED", "FAILED", "EXPIRED", "UNDELIVERABLE"):
            return web.json_response({"error": "unknown_status",
                                      "detail": f"status {status!r} is not a final status"},
                                     status=422)
        found = await asyncio.to_thread(self._delivery_report, "sms", body["id"],
                                        status == "DELIVERED", status.lower())
        return web.json_response({"applied": found})

    async def _sms_inbound(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = await self._json(request, "from", "text")
        if isinstance(body, web.Response):
            return body
        phone = normalise_phone(body["from"])
        if phone is None:
            return web.json_response({"error": "bad_number",
                                      "detail": "from is not a Vietnamese mobile number"},
                                     status=422)
        if not is_opt_out(body["text"]):
            return web.json_response({"opted_out": False})
        await asyncio.to_thread(self.opt_out, "sms", phone, "sms_reply")
        return web.json_response({"opted_out": True})

    async def _zalo_event(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = await self._json(request, "event_name")
        if isinstance(body, web.Response):
            return body
        follower = body.get("follower")
        user = follower.get("id") if isinstance(follower, dict) else None
        if body["event_name"] != "unfollow":
            return web.json_response({"opted_out": False})
        if not isinstance(user, str) or not user:
            return web.json_response({"error": "missing_field", "fields": ["follower.id"],
                                      "detail": "an unfollow event needs follower.id"},
                                     status=422)
        await asyncio.to_thread(self.opt_out, "zalo", user, "zalo_unfollow")
        return web.json_response({"opted_out": True})

    def opt_out(self, channel: str, address: str, source: str) -> bool:
        new = self.store.opt_out(channel, address, source, self.clock.now())
        if new:
            self.metrics.optouts.labels(channel).inc()
            log.info("citizen: %s %s opted out (%s)", channel, mask(channel, address), source)
        return new

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry),
                            content_type="text/plain", charset="utf-8")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": self.ready.is_set()},
                                 status=200 if self.ready.is_set() else 503)
