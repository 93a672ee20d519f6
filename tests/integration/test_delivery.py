"""The delivery service over the real broker, with real HTTP servers on 127.0.0.1 playing the
destination agencies' systems.

Each fake agency checks the hub's signature, honours ``Idempotency-Key`` (a key it has seen is
answered 200 and not applied again) and counts raw receipts and applications separately, so a
test sees both the retries and the exactly-once effect.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lienthong.connectors.delivery import BreakerConfig, DeliveryPolicy
from lienthong.connectors.delivery.service import DeliveryService
from lienthong.connectors.http import (
    AgencyKey,
    KeyRing,
    NonceCache,
    RequestSigner,
    RetryPolicy,
    verify_request,
)
from lienthong.schemas import codec
from lienthong.services.cli import main as cli_main

pytestmark = pytest.mark.kafka

HUB = "LIENTHONG"
HUB_SECRET = "hub-secret-for-tests-0123456789"
FAST = DeliveryPolicy(
    retry=RetryPolicy(attempts=6, base_delay=0.05, max_delay=0.4),
    breaker=BreakerConfig(failure_threshold=3, open_seconds=0.3, max_open_seconds=1.0),
    alert_after_failures=3, request_timeout=2.0, max_in_flight_per_partition=200,
    max_wait_seconds=60.0)
CONSUMER = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500,
            "metadata_max_age_ms": 5000}

Behaviour = Callable[["Agency", web.Request], "int | None"]


@dataclass
class Agency:
    """A destination agency system: verifies the hub, applies each Idempotency-Key once."""

    code: str
    behaviour: Behaviour | None = None  # returns a status to answer instead of applying
    receipts: list[tuple[str, float]] = field(default_factory=list)  # (key, when)
    applied: list[dict] = field(default_factory=list)  # bodies, in application order
    seen: set[str] = field(default_factory=set)
    url: str = ""
    keyring: KeyRing = field(default_factory=lambda: KeyRing(
        {HUB: [AgencyKey("k1", HUB_SECRET.encode())]}))
    nonces: NonceCache = field(default_factory=NonceCache)
    bad_signatures: int = 0
    latency: Callable[[], float] | None = None  # seconds before answering

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.latency is not None:
            await asyncio.sleep(self.latency())
        try:
            verify_request(self.keyring, self.nonces, request.method, request.path_qs,
                           request.headers, body)
        except Exception:
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        key = request.headers.get("Idempotency-Key", "")
        self.receipts.append((key, time.monotonic()))
        if self.behaviour is not None:
            status = self.behaviour(self, request)
            if status is not None:
                return web.json_response({"error": "no"}, status=status)
        if key in self.seen:
            return web.json_response({"duplicate": True})
        self.seen.add(key)
        self.applied.append(json.loads(body))
        return web.json_response({"applied": key})

    def applied_keys(self) -> list[str]:
        return [b["delivery_id"] for b in self.applied]


@pytest.fixture
async def agencies() -> AsyncIterator[Callable[..., asyncio.Future]]:
    runners: list[web.AppRunner] = []

    async def start(code: str, behaviour: Behaviour | None = None) -> Agency:
        agency = Agency(code, behaviour)
        app = web.Application()
        app.router.add_post("/inbox", agency.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        agency.url = f"http://127.0.0.1:{port}/inbox"
        runners.append(runner)
        return agency

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


_seq = itertools.count(1)


def delivery(destination: str, dossier: str, n: int) -> dict:
    return {"delivery_id": f"{dossier}/{destination}/{n}/{uuid.uuid4().hex[:6]}",
            "destination": destination, "kind": "handoff", "dossier": dossier,
            "event_id": str(uuid.uuid4()), "at": "2026-06-09T09:00:00+07:00",
            "payload": {"seq": n, "dossier": dossier}}


def dossier_code(i: int) -> str:
    return f"000.00.15.H99-20260609-{next(_seq) * 100 + i:07d}"


def produce(bootstrap: str, topic: str, records: list[dict]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    for r in records:
        producer.send(topic, key=r["dossier"].encode(), value=codec.encode_delivery(r))
    producer.flush()
    producer.close()


def read_topic(bootstrap: str, topic: str) -> list[tuple[int, bytes]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 10
    while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=300).values():
            out.extend((r.offset, r.value) for r in records)
    consumer.close()
    return out


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Running:
    service: DeliveryService
    stop: asyncio.Event
    task: asyncio.Task

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)


@pytest.fixture
def topics3(new_topic: Callable[..., str]) -> dict[str, str]:
    return {"deliveries": new_topic(3, prefix="deliveries"),
            "alerts": new_topic(1, prefix="alerts"),
            "deadletter": new_topic(1, prefix="deadletter")}


async def start_service(bootstrap: str, topics: dict[str, str], endpoints: dict[str, str],
                        policy: DeliveryPolicy = FAST) -> Running:
    service = DeliveryService(
        bootstrap, endpoints.get, signer=RequestSigner(HUB, HUB_SECRET, "k1"), policy=policy,
        group_id=f"delivery-{uuid.uuid4().hex[:8]}", deliveries_topic=topics["deliveries"],
        alerts_topic=topics["alerts"], deadletter_topic=topics["deadletter"],
        rng=random.Random(5), consumer_options=CONSUMER)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await asyncio.wait_for(service.started.wait(), 20)
    return Running(service, stop, task)


def assert_in_dossier_order(agency: Agency) -> None:
    last: dict[str, int] = {}
    for body in agency.applied:
        seq = body["payload"]["seq"]
        assert seq > last.get(body["dossier"], 0), f"{body['dossier']} out of order"
        last[body["dossier"]] = seq


async def test_deliveries_arrive_once_and_in_dossier_order(
        kafka_bootstrap: str, topics3: dict[str, str], agencies) -> None:
    a = await agencies("000.00.20.H99")
    b = await agencies("000.00.21.H99")
    # Variable latency so that lanes overtake each other and order has to be kept on purpose.
    jitter = random.Random(11)
    a.latency = b.latency = lambda: jitter.uniform(0.0, 0.03)

    dossiers = [dossier_code(i) for i in range(12)]
    records = []
    for n in range(1, 6):
        for i, d in enumerate(dossiers):
            records.append(delivery(a.code if i % 2 else b.code, d, n))
    produce(kafka_bootstrap, topics3["deliveries"], records)
    running = await start_service(kafka_bootstrap, topics3, {a.code: a.url, b.code: b.url})
    try:
        await wait_for(lambda: len(a.applied) + len(b.applied) == len(records), 25,
                       "every delivery to be applied")
        await asyncio.sleep(0.3)  # nothing more should come
    finally:
        await running.close()
    assert sorted(a.applied_keys() + b.applied_keys()) == sorted(r["delivery_id"]
                                                                 for r in records)
    assert len(a.receipts) + len(b.receipts) == len(records)  # no retries were needed
    assert a.bad_signatures == b.bad_signatures == 0
    assert_in_dossier_order(a)
    assert_in_dossier_order(b)
    assert read_topic(kafka_bootstrap, topics3["deadletter"]) == []


async def test_a_destination_failing_for_a_while_gets_everything_exactly_once(
        kafka_bootstrap: str, topics3: dict[str, str], agencies) -> None:
    until = time.monotonic() + 1.5

    def unavailable_at_first(agency: Agency, request: web.Request) -> int | None:
        return 503 if time.monotonic() < until else None

    a = await agencies("000.00.30.H99", unavailable_at_first)
    dossiers = [dossier_code(i) for i in range(4)]
    records = [delivery(a.code, d, n) for n in range(1, 4) for d in dossiers]
    policy = DeliveryPolicy(
        retry=RetryPolicy(attempts=30, base_delay=0.05, max_delay=0.3),
        breaker=BreakerConfig(failure_threshold=3, open_seconds=0.2, max_open_seconds=0.4),
        alert_after_failures=3, request_timeout=2.0, max_wait_seconds=60.0)
    running = await start_service(kafka_bootstrap, topics3, {a.code: a.url}, policy)
    produce(kafka_bootstrap, topics3["deliveries"], records)
    try:
        await wait_for(lambda: len(a.applied) == len(records), 25, "all applied")
        await asyncio.sleep(0.3)
    finally:
        await running.close()
    keys = a.applied_keys()
    assert sorted(keys) == sorted(r["delivery_id"] for r in records)  # each applied once
    assert len(a.receipts) > len(records)  # the retries are visible as raw receipts
    assert_in_dossier_order(a)
    alerts = [codec.decode_alert(v) for _, v in read_topic(kafka_bootstrap, topics3["alerts"])]
    failing = [al for al in alerts if al["kind"] == "delivery_failing"]
    assert failing and {al["destination"] for al in failing} == {a.code}
    assert len({al["alert_id"] for al in failing}) == len(failing)
    assert read_topic(kafka_bootstrap, topics3["deadletter"]) == []
    sample = running.service.metrics.registry.get_sample_value
    assert sample("lienthong_delivery_attempts_total",
                  {"destination": a.code, "outcome": "retry"}) == len(a.receipts) - len(records)
    assert sample("lienthong_deliveries_delivered_total", {"destination": a.code}) == \
        len(records)
    assert sample("lienthong_delivery_circuit_state", {"destination": a.code}) == 0  # closed


async def test_a_dead_destination_does_not_delay_a_healthy_one(
        kafka_bootstrap: str, topics3: dict[str, str], agencies) -> None:
    dead = await agencies("000.00.40.H99", lambda agency, request: 503)
    dead.latency = lambda: 0.5  # a struggling system: slow, then an error
    healthy = await agencies("000.00.41.H99")
    # The dead agency's deliveries come first in every partition.
    records = [delivery(dead.code, dossier_code(i), 1) for i in range(30)]
    records += [delivery(healthy.code, dossier_code(i), 1) for i in range(30)]
    running = await start_service(kafka_bootstrap, topics3,
                                  {dead.code: dead.url, healthy.code: healthy.url})
    started = time.monotonic()
    produce(kafka_bootstrap, topics3["deliveries"], records)
    try:
        await wait_for(lambda: len(healthy.applied) == 30, 15, "the healthy agency's share")
        healthy_done = time.monotonic() - started
    finally:
        await running.close()
    assert dead.applied == []
    # The breaker keeps the dead destination to a trickle of probes, not 30 x 6 attempts.
    assert len(dead.receipts) < 30 * FAST.retry.attempts
    # 30 healthy deliveries over loopback take well under a second; the dead agency's retries
    # (6 attempts, up to ~1 s of backoff each) must not add to that.
    assert healthy_done < 5.0, f"healthy destination took {healthy_done:.1f} s"


async def test_a_permanent_refusal_is_parked_and_resend_delivers_it(
        kafka_bootstrap: str, topics3: dict[str, str], agencies,
        capsys: pytest.CaptureFixture[str]) -> None:
    refuse = {"on": True}

    def refuses_first(agency: Agency, request: web.Request) -> int | None:
        return 422 if refuse["on"] and request.headers["Idempotency-Key"].endswith("/2") \
            else None

    a = await agencies("000.00.50.H99", refuses_first)
    d = dossier_code(1)
    records = [delivery(a.code, d, n) for n in (1, 2, 3)]
    records[1]["delivery_id"] = records[1]["delivery_id"].rsplit("/", 1)[0] + "/2"
    running = await start_service(kafka_bootstrap, topics3, {a.code: a.url})
    produce(kafka_bootstrap, topics3["deliveries"], records)
    try:
        await wait_for(lambda: len(a.applied) == 2, 15, "the two accepted deliveries")
        await wait_for(lambda: read_topic(kafka_bootstrap, topics3["deadletter"]) != [], 10,
                       "the refused delivery to be parked")
        receipts_for_refused = [k for k, _ in a.receipts if k == records[1]["delivery_id"]]
        assert len(receipts_for_refused) == 1  # a permanent 4xx is not retried
        parked = read_topic(kafka_bootstrap, topics3["deadletter"])
        assert len(parked) == 1
        dl = codec.decode_deadletter(parked[0][1])
        assert dl["reason"] == "delivery_rejected"
        assert dl["source_topic"] == topics3["deliveries"]
        assert codec.decode_delivery(dl["original"])["delivery_id"] == records[1]["delivery_id"]

        capsys.readouterr()
        assert cli_main(["deadletter", "--bootstrap", kafka_bootstrap, "--topic",
                         topics3["deadletter"], "list"]) == 0
        listing = capsys.readouterr().out
        assert "delivery_rejected" in listing and d in listing

        refuse["on"] = False
        code = await asyncio.to_thread(cli_main, [
            "deadletter", "--bootstrap", kafka_bootstrap, "--topic", topics3["deadletter"],
            "resend", str(parked[0][0])])
        assert code == 0
        await wait_for(lambda: len(a.applied) == 3, 15, "the re-sent delivery")
    finally:
        await running.close()
    assert a.applied_keys()[-1] == records[1]["delivery_id"]
    assert sorted(a.applied_keys()) == sorted(r["delivery_id"] for r in records)
