"""``citizen-notify`` on the real broker, with real SMS/Zalo doubles and the SMTP sink on
127.0.0.1: a dossier's events give the right messages once; quiet hours hold an SMS to the
morning; opt-outs; a provider's 429 and 5xx are retried; a kill -9 sends nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lienthong.connectors.citizen import (
    CitizenNotifier,
    EmailSender,
    NoticeStore,
    SmsSender,
    Topics,
    ZaloSender,
)
from lienthong.connectors.doubles.messaging import SmsDouble, ZaloDouble
from lienthong.connectors.doubles.smtp import SmtpSink
from lienthong.connectors.http.serving import listening
from lienthong.connectors.notify.service import SmtpSettings
from lienthong.deploy.embedded.broker import free_port
from lienthong.schemas import topics
from lienthong.schemas.codec import EVENTS
from lienthong.services.clock import Clock, ScaledClock
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.domain.citizen import Policy, QuietHours, RetryRule
from lienthong.services.ops.board import OpsBoard
from lienthong.services.ops.feed import FeedTopics, StatusFeed
from lienthong.services.settings import Settings

SAMPLE = Path(__file__).parents[2] / "examples" / "province-h99.yaml"
CATALOGUE = load_catalogue(SAMPLE)
TZ = CATALOGUE.calendar.tz
COMMUNE, POLICE = "000.00.15.H99", "000.02.10.H99"
FAST = RetryRule(attempts=8, base=timedelta(seconds=0.2), cap=timedelta(seconds=2))


def dossier_code(n: int) -> str:
    return f"{COMMUNE}-20261125-{n:07d}"


def ev(etype: str, dossier: str, at: datetime, agency: str = COMMUNE,
       **fields: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": etype, "dossier": dossier,
            "at": at.isoformat(timespec="seconds"), "agency": agency, **fields}


def receipt(dossier: str, at: datetime, **contacts: str) -> dict[str, Any]:
    return ev("received", dossier, at, procedure="1.001193", channel="desk",
              applicant={"name": "Trần Thị B", "id_number": "001199012345", **contacts})


def produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for e in events:
        producer.send(topic, EVENTS.encode(e), key=e["dossier"].encode())
    producer.flush()
    producer.close()


def hub_topics(bootstrap: str) -> tuple[Settings, topics.TopicNames]:
    settings = Settings(topic_prefix=f"c{uuid.uuid4().hex[:8]}.", partitions=2)
    topics.ensure_topics(bootstrap, settings)
    return settings, topics.names(settings)


def timeline(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=1500)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    out = [json.loads(r.value) for r in consumer]
    consumer.close()
    return out


async def until(check: Any, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.1)


@dataclass
class Running:
    notifier: CitizenNotifier
    sms: SmsDouble
    zalo: ZaloDouble
    mail: SmtpSink
    base: str


@contextlib.asynccontextmanager
async def running(bootstrap: str, names: topics.TopicNames, store: Path, *,
                  clock: Clock | None = None, sms_options: dict[str, Any] | None = None,
                  zalo_options: dict[str, Any] | None = None) -> AsyncIterator[Running]:
    """The notifier in this process, its webhooks served, the providers' doubles."""
    sms = SmsDouble(report_after=0.1, **(sms_options or {}))
    zalo = ZaloDouble(report_after=0.1, **(zalo_options or {}))
    async with SmtpSink() as mail, listening(sms.build_app()) as sms_url, \
            listening(zalo.build_app()) as zalo_url:
        senders: dict[str, Any] = {}
        notifier = CitizenNotifier(
            bootstrap, CATALOGUE, NoticeStore(store), senders,
            Topics(names.events, names.citizen), retry=FAST, clock=clock,
            policy=Policy(quiet_hours=QuietHours()),
            zalo_poll_after=timedelta(seconds=0.2))
        async with listening(notifier.build_app()) as base:
            sms.mo_url = f"{base}/v1/citizen/sms/inbound"
            zalo.webhook_url = f"{base}/v1/citizen/zalo/events"
            senders.update({
                "sms": SmsSender(sms_url, sms.token, "MOTCUA",
                                 callback_url=f"{base}/v1/citizen/sms/reports"),
                "zalo": ZaloSender(zalo_url, zalo.token),
                "email": EmailSender(SmtpSettings("127.0.0.1", mail.port, "thongbao@h99")),
            })
            notifier.senders = senders
            notifier.policy = Policy(QuietHours(), frozenset({"sms"}), timedelta(days=2),
                                     frozenset(senders))
            stop = asyncio.Event()
            task = asyncio.create_task(notifier.run(stop))
            await asyncio.wait_for(notifier.ready.wait(), 30)
            try:
                yield Running(notifier, sms, zalo, mail, base)
            finally:
                stop.set()
                await asyncio.wait_for(task, 15)
                notifier.store.close()


def daytime_clock() -> ScaledClock:
    """Hub time at 10:00 local today, running at real speed (no quiet hours)."""
    today = datetime.now(TZ).date()
    return ScaledClock.starting_now(datetime(today.year, today.month, today.day, 10, 0,
                                             tzinfo=TZ))


async def test_a_dossiers_events_give_the_right_messages_once(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    _, names = hub_topics(kafka_bootstrap)
    clock = daytime_clock()
    t = clock.now()
    d = dossier_code(1)
    events = [receipt(d, t, phone="0912345678", email="tran.b@example.vn"),
              ev("handoff", d, t + timedelta(seconds=1), to_agency=POLICE),
              ev("supplement_requested", d, t + timedelta(seconds=2), agency=POLICE,
                 reason="Thiếu bản sao giấy khai sinh"),
              ev("handoff", d, t + timedelta(seconds=3), agency=POLICE, to_agency=COMMUNE),
              ev("result_ready", d, t + timedelta(seconds=4), decision="approved")]
    events.append(dict(events[-1]))              # the same event read twice
    garbage = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    garbage.send(names.events, b"\xc3\x01not an event", key=d.encode())   # the worker
    garbage.flush()                                   # dead-letters it; here it tells nobody
    garbage.close()
    produce(kafka_bootstrap, names.events, events)
    async with running(kafka_bootstrap, names, tmp_path / "n.sqlite", clock=clock) as r:
        # received, hand-off to the police, supplement, result: the hand-back is not told.
        await r.sms.wait_for(4, 20)
        await r.mail.wait_for(4, 20)
        await until(lambda: all(m["status"] == "delivered" for m in
                                r.notifier.store.messages_of(d) if m["channel"] == "sms"),
                    what="SMS delivery reports")
        await asyncio.sleep(1.0)                  # nothing more arrives
        texts = [m.text for m in r.sms.taken.values()]
        assert len(r.sms.taken) == 4 and len(r.mail.messages) == 4
        assert all(m.to == "84912345678" for m in r.sms.taken.values())
        assert any("Thieu ban sao giay khai sinh" in x for x in texts)
        subjects = sorted(str(m.message["Subject"]) for m in r.mail.messages)
        assert subjects == sorted([f"Đã tiếp nhận hồ sơ {d}", f"Hồ sơ {d} được chuyển xử lý",
                                   f"Hồ sơ {d} cần bổ sung", f"Hồ sơ {d} đã có kết quả"])
        await until(lambda: r.notifier.store.reports(1) == [], what="reports published")
        body = (await _get(r.base + "/metrics")).decode()
        assert 'lienthong_citizen_send_attempts_total{channel="sms",outcome="accepted"} 4.0' \
            in body
        assert "lienthong_citizen_undecodable_events_total 1.0" in body
    # The dashboard's read model shows them on the dossier's tracking slip.
    board = OpsBoard(CATALOGUE)
    feed = StatusFeed(kafka_bootstrap, board, FeedTopics(names.status, citizen=names.citizen),
                      notify=lambda change: None)
    reading = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.ready.wait(), 20)
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
    shown = board.citizen_notices(d)
    assert [(n.channel, n.status) for n in shown].count(("sms", "delivered")) == 4
    assert [(n.channel, n.status) for n in shown].count(("email", "sent")) == 4
    assert {n.to for n in shown if n.channel == "sms"} == {"849****5678"}
    lines = timeline(kafka_bootstrap, names.citizen)
    sms_states = [x["status"] for x in lines if x["channel"] == "sms"]
    assert sms_states.count("sent") == 4 and sms_states.count("delivered") == 4
    assert all(x["dossier"] == d for x in lines)
    assert not any("0912345678" in json.dumps(x) or "84912345678" in json.dumps(x)
                   for x in lines)


async def _get(url: str) -> bytes:
    import httpx
    async with httpx.AsyncClient() as client:
        return (await client.get(url)).content


async def test_rate_limits_and_outages_of_the_provider_are_retried(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    _, names = hub_topics(kafka_bootstrap)
    clock = daytime_clock()
    t = clock.now()
    events = [receipt(dossier_code(n), t, phone=f"09123456{n:02d}") for n in range(10)]
    produce(kafka_bootstrap, names.events, events)
    async with running(kafka_bootstrap, names, tmp_path / "n.sqlite", clock=clock,
                       sms_options={"fail_next": 3, "rate_per_second": 4}) as r:
        await r.sms.wait_for(10, 30)
        assert r.sms.answered.get(503) == 3 and r.sms.answered.get(429, 0) >= 1
        assert len(r.sms.taken) == 10 and r.sms.answered[202] >= 10
        assert {m.to for m in r.sms.taken.values()} == {f"849123456{n:02d}" for n in range(10)}


async def test_an_sms_at_night_waits_for_the_morning(kafka_bootstrap: str,
                                                     tmp_path: Path) -> None:
    _, names = hub_topics(kafka_bootstrap)
    today = datetime.now(TZ).date()
    # Hub time 06:59:56 local, real speed: the SMS is held 4 s, the e-mail goes at once.
    clock = ScaledClock.starting_now(datetime(today.year, today.month, today.day, 6, 59, 56,
                                              tzinfo=TZ))
    d = dossier_code(2)
    produce(kafka_bootstrap, names.events,
            [receipt(d, clock.now(), phone="0987654321", email="b@example.vn")])
    async with running(kafka_bootstrap, names, tmp_path / "n.sqlite", clock=clock) as r:
        await r.mail.wait_for(1, 10)
        assert r.sms.taken == {}
        held = [m for m in r.notifier.store.messages_of(d) if m["channel"] == "sms"]
        assert held[0]["status"] == "queued"
        assert datetime.fromisoformat(held[0]["not_before"]) == datetime(
            today.year, today.month, today.day, 7, 0, tzinfo=TZ)
        await r.sms.wait_for(1, 15)
        assert clock.now() >= datetime(today.year, today.month, today.day, 7, 0, tzinfo=TZ)
    lines = timeline(kafka_bootstrap, names.citizen)
    assert [x["status"] for x in lines if x["channel"] == "sms"][:2] == ["held", "sent"]


async def test_a_citizen_who_replies_stop_or_unfollows_is_told_nothing_more(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    _, names = hub_topics(kafka_bootstrap)
    clock = daytime_clock()
    t = clock.now()
    a, b = dossier_code(3), dossier_code(4)
    produce(kafka_bootstrap, names.events,
            [receipt(a, t, phone="0911111111"), receipt(b, t, zalo_user_id="5550001112223")])
    async with running(kafka_bootstrap, names, tmp_path / "n.sqlite", clock=clock) as r:
        await r.sms.wait_for(1, 15)
        await r.zalo.wait_for(1, 15)
        assert await r.sms.reply("+84911111111", "Tu choi") == 200
        assert await r.zalo.unfollow("5550001112223") == 200
        produce(kafka_bootstrap, names.events,
                [ev("result_ready", a, t + timedelta(seconds=2), decision="approved"),
                 ev("result_ready", b, t + timedelta(seconds=2), decision="refused")])
        await until(lambda: len(r.notifier.store.messages_of(a)) == 2
                    and len(r.notifier.store.messages_of(b)) == 2, what="results planned")
        for d in (a, b):
            last = r.notifier.store.messages_of(d)[-1]
            assert (last["kind"], last["status"], last["detail"]) == (
                "result_ready", "skipped", "opted_out")
        assert len(r.sms.taken) == 1 and len(r.zalo.taken) == 1
        await until(lambda: r.notifier.store.messages_of(b)[0]["status"] == "delivered",
                    what="the Zalo delivery status, polled")
        bad = await _post(r.base + "/v1/citizen/sms/inbound", {"text": "STOP"})
        assert bad == (422, "missing_field")


async def test_a_zalo_message_refused_for_good_goes_by_sms(kafka_bootstrap: str,
                                                          tmp_path: Path) -> None:
    _, names = hub_topics(kafka_bootstrap)
    clock = daytime_clock()
    d = dossier_code(5)
    produce(kafka_bootstrap, names.events,
            [receipt(d, clock.now(), phone="0922222222", zalo_user_id="7770001112223")])
    # Nobody follows the OA: Zalo answers -213 (final), the notice goes by SMS instead.
    async with running(kafka_bootstrap, names, tmp_path / "n.sqlite", clock=clock,
                       zalo_options={"followers": set()}) as r:
        (sms,) = await r.sms.wait_for(1, 15)
        assert sms.to == "84922222222" and f"tiep nhan ho so {d}" in sms.text
        await until(lambda: [(m["channel"], m["status"]) for m in
                             r.notifier.store.messages_of(d)] == [("zalo", "failed"),
                                                                  ("sms", "delivered")],
                    what="Zalo failed, SMS delivered")
        assert "-213" in r.notifier.store.messages_of(d)[0]["detail"]
        assert r.zalo.taken == {} and r.zalo.requests == 1


async def _post(url: str, body: Any) -> tuple[int, str]:
    import httpx
    async with httpx.AsyncClient() as client:
        resp = await client.post(url, json=body)
        return resp.status_code, resp.json().get("error", "")


async def test_a_notifier_killed_with_sigkill_sends_no_message_twice(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings, names = hub_topics(kafka_bootstrap)
    count = 40
    today = datetime.now(TZ).date()
    origin = datetime(today.year, today.month, today.day, 10, 0, tzinfo=TZ)
    epoch = time.time()
    clock = ScaledClock(origin, 1.0, epoch)
    events = [receipt(dossier_code(100 + n), clock.now(), phone=f"0913{n:06d}")
              for n in range(count)]
    produce(kafka_bootstrap, names.events, events)
    # A slow provider (8 messages a second, answering 0.4 s after taking a message) so the
    # kill lands mid-stream, with messages taken whose answer the notifier never read.
    sms = SmsDouble(rate_per_second=8, report_after=0.1, answer_delay=0.4)
    store = tmp_path / "n.sqlite"
    async with listening(sms.build_app()) as sms_url:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
               "LIENTHONG_TOPIC_PREFIX": settings.topic_prefix,
               "LIENTHONG_CATALOG": str(SAMPLE), "LIENTHONG_SMS_URL": sms_url,
               "LIENTHONG_SMS_TOKEN": sms.token,
               "LIENTHONG_CLOCK": f"scaled:{origin.isoformat()}:1@{epoch}"}
        cmd = [sys.executable, "-m", "lienthong.services.cli", "citizen-notify",
               "--store", str(store), "--port", str(free_port()), "--quiet-hours", "off"]

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                    stderr=open(tmp_path / "notify.log", "ab"))

        first = start()
        try:
            await sms.wait_for(10, 40)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            taken_at_kill = len(sms.taken)
            assert taken_at_kill < count
            second = start()
            try:
                await sms.wait_for(count, 40)
                await asyncio.sleep(1.5)        # anything repeated would have come by now
            finally:
                second.terminate()
                second.wait(15)
        finally:
            if first.poll() is None:
                first.kill()
    # Every receipt told exactly once: one message per (dossier, event) at the provider,
    # whatever went over the wire twice (its idempotency key made the repeat a no-op).
    assert len(sms.taken) == count
    assert sorted(m.to for m in sms.taken.values()) == sorted(
        f"84913{n:06d}" for n in range(count))
    keys = [m.key for m in sms.taken.values()]
    assert len(set(keys)) == count
    # The restarted notifier did send some again (it could not know they had been taken):
    # the provider answered those from its idempotency keys instead of sending them twice.
    assert sms.repeats >= 1
    n = NoticeStore(store)
    assert n.counts().get(("sms", "queued"), 0) == 0
    n.close()
