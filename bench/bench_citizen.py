"""The citizen-notification SLO: 95 % of messages handed to the provider within 10 s of the
event (quiet hours aside).

    .venv/bin/python bench/bench_citizen.py [--rate 40] [--seconds 20]

Uses the embedded broker (or KAFKA_BOOTSTRAP_SERVERS), the notifier in this process, the SMS
double (a provider that takes 200 messages a second, answers 429 above that and fails 1 % of
requests with 503) and the SMTP sink, all on 127.0.0.1. Dossier events (receipt, hand-off,
result; each applicant with a phone and half of them with an e-mail) are produced at a steady
rate; a message's figure is the provider's acceptance (wall clock, at the double) minus the
event's Kafka timestamp (the producer's CreateTime). The hub clock is set to 10:00 local time so
quiet hours do not hold the SMS. Baseline in the same run: one POST straight to the double.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import CATALOGUE, Figure, percentile, print_table, write_results

from lienthong.connectors.citizen import (
    CitizenNotifier,
    EmailSender,
    NoticeStore,
    SmsSender,
    Topics,
)
from lienthong.connectors.doubles.messaging import SmsDouble
from lienthong.connectors.doubles.smtp import SmtpSink
from lienthong.connectors.http.serving import listening
from lienthong.connectors.notify.service import SmtpSettings
from lienthong.deploy.embedded import kafka_cluster
from lienthong.schemas import topics
from lienthong.schemas.codec import EVENTS
from lienthong.services.clock import ScaledClock
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.domain.citizen import message_id
from lienthong.services.settings import Settings

COMMUNE, POLICE = "000.00.15.H99", "000.02.10.H99"
TARGET_SECONDS = 10.0
TARGET_SHARE = 95.0


def dossier_events(n: int, at: datetime) -> list[dict[str, Any]]:
    code = f"{COMMUNE}-20261125-{n:07d}"
    applicant: dict[str, str] = {"name": "Lê Văn C", "phone": f"0912{n:06d}"}
    if n % 2 == 0:
        applicant["email"] = f"cong.dan{n}@example.vn"
    base = {"dossier": code, "agency": COMMUNE}
    return [
        {**base, "event_id": str(uuid.uuid4()), "type": "received", "at": at.isoformat(),
         "procedure": "1.001193", "channel": "desk", "applicant": applicant},
        {**base, "event_id": str(uuid.uuid4()), "type": "handoff",
         "at": (at + timedelta(seconds=1)).isoformat(), "to_agency": POLICE},
        {**base, "event_id": str(uuid.uuid4()), "type": "result_ready",
         "at": (at + timedelta(seconds=2)).isoformat(), "decision": "approved"},
    ]


async def baseline(url: str, token: str, count: int = 50) -> float:
    """p95 of one POST straight to the double (what the provider itself costs)."""
    took: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        for i in range(count):
            t0 = time.perf_counter()
            await c.post("/v1/sms", json={"to": "84900000000", "text": "x", "ref": f"b{i}"},
                         headers={"Idempotency-Key": f"baseline-{i}"})
            took.append(time.perf_counter() - t0)
    return percentile(took, 95)


async def run(bootstrap: str, rate: float, seconds: float) -> tuple[list[Figure], int]:
    settings = Settings(topic_prefix=f"bc{uuid.uuid4().hex[:8]}.", partitions=4)
    topics.ensure_topics(bootstrap, settings)
    names = topics.names(settings)
    catalogue = load_catalogue(CATALOGUE)
    tz = catalogue.calendar.tz
    today = datetime.now(tz).date()
    clock = ScaledClock.starting_now(datetime(today.year, today.month, today.day, 10, 0,
                                              tzinfo=tz))
    sms = SmsDouble(rate_per_second=200, report_after=0.5)
    workdir = Path(tempfile.mkdtemp(prefix="bench-citizen-"))
    async with SmtpSink() as mail, listening(sms.build_app()) as sms_url:
        base_p95 = await baseline(sms_url, sms.token)
        sms.taken.clear()
        notifier = CitizenNotifier(
            bootstrap, catalogue, NoticeStore(workdir / "n.sqlite"),
            {"sms": SmsSender(sms_url, sms.token, "MOTCUA"),
             "email": EmailSender(SmtpSettings("127.0.0.1", mail.port, "thongbao@h99"))},
            Topics(names.events, names.citizen), clock=clock)
        async with listening(notifier.build_app()) as hooks:
            notifier.senders["sms"] = SmsSender(sms_url, sms.token, "MOTCUA",
                                                callback_url=f"{hooks}/v1/citizen/sms/reports")
            stop = asyncio.Event()
            task = asyncio.create_task(notifier.run(stop))
            await asyncio.wait_for(notifier.ready.wait(), 60)
            producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
            expected: dict[str, str] = {}          # message id -> channel
            sent_at: dict[str, float] = {}         # message id -> the event's CreateTime
            dossiers = int(rate * seconds / 3)
            rng = random.Random(7)
            start = time.monotonic()
            for n in range(dossiers):
                events = dossier_events(n, clock.now())
                for i, e in enumerate(events):
                    due = start + (3 * n + i) / rate
                    pause = due - time.monotonic()
                    if pause > 0:
                        await asyncio.sleep(pause)
                    e["at"] = clock.now().isoformat()     # stamped when it happens
                    if rng.random() < 0.01:
                        sms.fail_next += 1             # a transient provider error now and then
                    created = time.time()
                    producer.send(names.events, EVENTS.encode(e), key=e["dossier"].encode(),
                                  timestamp_ms=int(created * 1000))
                    for channel in ("sms", "email") if n % 2 == 0 else ("sms",):
                        mid = message_id(e["dossier"], e["event_id"], channel)
                        expected[mid], sent_at[mid] = channel, created
            producer.flush()
            want_sms = sum(1 for c in expected.values() if c == "sms")
            try:
                await sms.wait_for(want_sms, 120)
                await mail.wait_for(len(expected) - want_sms, 120)
            finally:
                producer.close()
                stop.set()
                await asyncio.wait_for(task, 30)
    latencies = [t.at - sent_at[t.key] for t in sms.taken.values() if t.key in sent_at]
    mail_ids = {str(m.message["Message-ID"]).strip("<>").split("@")[0]: m for m in mail.messages}
    # The sink keeps no arrival time: e-mail counts toward completeness, SMS toward latency.
    missing = [mid for mid, c in expected.items()
               if (c == "sms" and not any(t.key == mid for t in sms.taken.values()))
               or (c == "email" and mid not in mail_ids)]
    within = 100.0 * sum(1 for x in latencies if x <= TARGET_SECONDS) / max(1, len(latencies))
    p95 = percentile(latencies, 95)
    note = (f"{len(latencies)} SMS, {len(mail_ids)} e-mails, {len(missing)} missing; "
            f"p50 {percentile(latencies, 50) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 99) * 1000:.0f} ms; "
            f"{sms.answered.get(503, 0)} 503s, {sms.answered.get(429, 0)} 429s; "
            f"baseline POST p95 {base_p95 * 1000:.1f} ms")
    return [
        Figure("messages handed over within 10 s", within, "%", TARGET_SHARE, note=note),
        Figure("p95 event-to-provider handover", p95 * 1000, "ms", TARGET_SECONDS * 1000,
               higher_is_better=False,
               note=f"{p95 / base_p95:.0f}x the provider's own p95" if base_p95 else ""),
    ], len(missing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=40.0, help="events per second (40)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to produce (20)")
    args = parser.parse_args()
    with kafka_cluster() as bootstrap:
        figures, missing = asyncio.run(run(bootstrap, args.rate, args.seconds))
    print_table(f"citizen notifications, {args.rate:.0f} events/s for {args.seconds:.0f} s",
                figures)
    path = write_results("citizen", figures, {"rate": args.rate, "seconds": args.seconds,
                                              "messages_missing": missing})
    print(f"results: {path}")
    if missing:
        sys.exit(f"{missing} messages never reached their provider")


if __name__ == "__main__":
    main()
