"""The local hub on the real broker and with real processes: its topics, and telling a process
it killed from one that stopped by itself."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer

from lienthong.deploy.embedded.broker import free_port
from lienthong.deploy.local import LocalHub
from lienthong.services.domain.catalogue import load_catalogue
from tests.integration.hub import read_records

AN_HOUR_AGO_MS = int((time.time() - 3600) * 1000)


def test_timed_topics_carry_the_brokers_append_time_and_events_their_own(
        kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path) -> None:
    hub = LocalHub(kafka_bootstrap, tmp_path, partitions=2, broker_timestamps=True)
    copy = f"{hub.prefix}passthrough"
    hub.create_topics(extra=(copy,))
    hub.create_topics(extra=(copy,))  # a second time leaves them as they are
    described = {t["name"]: len(t["partitions"])
                 for t in kafka_admin.describe_topics([*hub.names.all(), copy])}
    assert described[hub.names.events] == 2 and described[copy] == 2
    assert described[hub.names.deadletter] == 1

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    before = time.time() * 1000
    for topic in (hub.names.events, hub.names.deliveries, copy):
        producer.send(topic, key=b"k", value=b"v", timestamp_ms=AN_HOUR_AGO_MS)
    producer.flush()
    producer.close()
    stamps = {topic: read_records(kafka_bootstrap, topic, 1, settle=0)[0].timestamp
              for topic in (hub.names.events, hub.names.deliveries, copy)}
    assert stamps[hub.names.events] == AN_HOUR_AGO_MS  # the producer's CreateTime
    assert stamps[hub.names.deliveries] >= before - 1000  # the broker's append instant
    assert stamps[copy] >= before - 1000


async def test_a_process_killed_on_purpose_is_no_crash_and_one_that_exits_is(
        tmp_path: Path) -> None:
    hub = LocalHub("127.0.0.1:9", tmp_path)
    hub.write_keys(load_catalogue(hub.catalogue_path))
    try:
        # No broker at that address: the gateway still answers and keeps events in its spool.
        gateway = hub.start_gateway(bootstrap=f"127.0.0.1:{free_port()}")
        health = await hub.gateway_ready(timeout=30)
        assert health["spooled"] == 0, health
        checker = hub.spawn("catalog", ["catalog", "check", str(hub.catalogue_path)],
                            hub.env())
        await asyncio.to_thread(checker.wait, 30)
        hub.kill(gateway)
        assert gateway.returncode is not None
        assert hub.crashed() == ["catalog0"]
        assert "listening on" in hub.log("gateway0"), hub.log("gateway0")
        restarted = hub.start_gateway(bootstrap=f"127.0.0.1:{free_port()}")
        await hub.gateway_ready(timeout=30)  # the same address after a restart
        assert hub.label(restarted) == "gateway1" and restarted.poll() is None
    finally:
        await asyncio.to_thread(hub.stop_all)
    assert all(p.poll() is not None for p in hub.procs.values())
