"""Delivery throughput to healthy destinations, alone and with one slow or dead destination.

    .venv/bin/python bench/bench_delivery.py [--deliveries 3000] [--destinations 5]

Uses the embedded broker (or KAFKA_BOOTSTRAP_SERVERS) and real HTTP servers on 127.0.0.1.
Each scenario gets fresh topics and group; the figure is healthy deliveries applied per second
from the service's start until the last healthy delivery was applied, so the scenarios compare
within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from lienthong.connectors.delivery import BreakerConfig, DeliveryPolicy
from lienthong.connectors.delivery.service import DeliveryService
from lienthong.connectors.http import RetryPolicy
from lienthong.deploy.embedded import kafka_cluster
from lienthong.schemas import codec


class Sink:
    def __init__(self, latency: float, status: int) -> None:
        self.latency, self.status = latency, status
        self.seen: set[str] = set()
        self.receipts = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.receipts += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.status != 200:
            return web.Response(status=self.status)
        self.seen.add(request.headers["Idempotency-Key"])
        return web.Response(status=200)


async def serve(sink: Sink) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/inbox", sink.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/inbox"


async def scenario(bootstrap: str, name: str, n: int, destinations: int,
                   odd: tuple[float, int] | None) -> float:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    suffix = uuid.uuid4().hex[:8]
    names = {t: f"bench-{t}-{suffix}" for t in ("deliveries", "alerts", "deadletter")}
    admin.create_topics([NewTopic(names["deliveries"], 6, 1), NewTopic(names["alerts"], 1, 1),
                         NewTopic(names["deadletter"], 1, 1)])
    admin.close()
    codes = [f"000.00.{60 + i}.H99" for i in range(destinations)]
    sinks = {c: Sink(0.0, 200) for c in codes}
    if odd is not None:
        sinks[codes[0]] = Sink(*odd)
    servers = [await serve(s) for s in sinks.values()]
    urls = {c: url for c, (_, url) in zip(codes, servers, strict=True)}
    rng = random.Random(1)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    healthy_ids: set[str] = set()
    for i in range(n):
        dossier = f"000.00.15.H99-20260609-{i % (n // 10):07d}"
        dest = codes[rng.randrange(destinations)]
        did = f"{suffix}-{i}"
        if odd is None or dest != codes[0]:
            healthy_ids.add(did)
        producer.send(names["deliveries"], key=dossier.encode(), value=codec.encode_delivery({
            "delivery_id": did, "destination": dest, "kind": "handoff", "dossier": dossier,
            "event_id": str(uuid.uuid4()), "at": "2026-06-09T09:00:00+07:00",
            "payload": {"n": i, "note": "Chuyển hồ sơ liên thông"}}))
    producer.flush()
    producer.close()
    policy = DeliveryPolicy(
        retry=RetryPolicy(attempts=8, base_delay=0.1, max_delay=2.0),
        breaker=BreakerConfig(failure_threshold=5, open_seconds=1.0, max_open_seconds=5.0),
        request_timeout=5.0, max_wait_seconds=600.0)
    service = DeliveryService(
        bootstrap, urls.get, signer=None, policy=policy, group_id=f"bench-{suffix}",
        deliveries_topic=names["deliveries"], alerts_topic=names["alerts"],
        deadletter_topic=names["deadletter"],
        consumer_options={"session_timeout_ms": 6000, "heartbeat_interval_ms": 500})
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await service.started.wait()
    t0 = time.monotonic()

    def healthy_applied() -> int:
        return sum(len(s.seen & healthy_ids) for s in sinks.values())

    while healthy_applied() < len(healthy_ids):
        await asyncio.sleep(0.01)
    took = time.monotonic() - t0
    stop.set()
    await task
    for runner, _ in servers:
        await runner.cleanup()
    rate = len(healthy_ids) / took
    extra = ""
    if odd is not None:
        s = sinks[codes[0]]
        extra = f"; odd destination: {len(s.seen)} applied, {s.receipts} receipts"
    print(f"{name:<34} {len(healthy_ids):>5} healthy in {took:6.2f} s = {rate:7.0f}/s{extra}")
    return rate


def _write_results(name: str, data: dict[str, Any]) -> None:
    """bench/results/<name>.json, for comparison over time."""
    path = Path(__file__).resolve().parent / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"bench": name, "when": datetime.now(UTC).isoformat(
        timespec="seconds"), "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        **data}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--destinations", type=int, default=5)
    args = parser.parse_args()
    with kafka_cluster() as bootstrap:
        base = await scenario(bootstrap, "all healthy", args.deliveries, args.destinations, None)
        slow = await scenario(bootstrap, "one slow (0.5 s answers)", args.deliveries,
                              args.destinations, (0.5, 200))
        dead = await scenario(bootstrap, "one dead (503 after 0.5 s)", args.deliveries,
                              args.destinations, (0.5, 503))
        print(f"healthy throughput ratio: slow/healthy {slow / base:.2f}, "
              f"dead/healthy {dead / base:.2f}")
    _write_results("delivery", {
        "deliveries": args.deliveries, "destinations": args.destinations,
        "healthy_per_s": {"all_healthy": round(base), "one_slow": round(slow),
                          "one_dead": round(dead)},
        "ratio_slow_vs_healthy": round(slow / base, 3),
        "ratio_dead_vs_healthy": round(dead / base, 3)})


if __name__ == "__main__":
    asyncio.run(main())
