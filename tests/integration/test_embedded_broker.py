"""The embedded broker launcher itself: persistence, port retry, the CLI, a 3-node cluster."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from lienthong.deploy.embedded import BrokerError, EmbeddedKafka
from lienthong.deploy.embedded import broker as broker_module

pytestmark = pytest.mark.kafka


def _read_all(bootstrap: str, topic: str, partitions: int, expected: int,
              timeout: float = 30.0) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        seen: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(seen) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                seen.extend(r.value for r in records)
        return seen
    finally:
        consumer.close()


def _create(bootstrap: str, topic: str, partitions: int, replication: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, replication)])
        admin.wait_for_topics([topic], timeout_ms=15000)
    finally:
        admin.close()


def test_persistent_data_dir_keeps_topics_and_messages_across_restarts(tmp_path: Path) -> None:
    broker = EmbeddedKafka(data_dir=tmp_path / "kafka")
    bootstrap = broker.start()
    try:
        _create(bootstrap, "kept", 1, 1)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        producer.send("kept", b"before restart").get(timeout=10)
        producer.close()
    finally:
        broker.stop()
    assert (tmp_path / "kafka" / "node-1" / "data" / "meta.properties").exists()
    assert (tmp_path / "kafka" / "node-1" / "logs" / "server.log").stat().st_size > 0

    bootstrap = broker.start()  # not reformatted: same cluster, same data
    try:
        assert _read_all(bootstrap, "kept", 1, 1) == [b"before restart"]
    finally:
        broker.stop()
    assert (tmp_path / "kafka").exists()  # persistent: stop() leaves it


def test_a_taken_port_is_retried_with_another(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_port = broker_module.free_port
        handed = iter([taken])

        def first_a_taken_port() -> int:
            return next(handed, None) or real_free_port()

        monkeypatch.setattr(broker_module, "free_port", first_a_taken_port)
        broker = EmbeddedKafka()
        try:
            bootstrap = broker.start()
            assert str(taken) not in bootstrap
            _create(bootstrap, "after-retry", 1, 1)
        finally:
            broker.stop()
        assert broker.data_dir is None  # temporary data removed


def test_a_fixed_port_that_is_taken_is_reported(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        broker = EmbeddedKafka(data_dir=tmp_path, port=squatter.getsockname()[1])
        with pytest.raises(BrokerError, match="exited during start-up"):
            broker.start(timeout=60)
        assert not broker.node_alive(1)


def test_cli_prints_the_bootstrap_address_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "lienthong.services.cli", "broker", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:"), line
        _create(line.split("=", 1)[1], "via-cli", 1, 1)
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    server_log = (tmp_path / "node-1" / "logs" / "server.log").read_text()
    assert "shut down completed" in server_log or "shutting down" in server_log


@pytest.fixture
def cluster() -> Iterator[EmbeddedKafka]:
    broker = EmbeddedKafka(nodes=3)
    broker.start(timeout=120)
    yield broker
    broker.stop()


def test_three_node_cluster_keeps_acks_all_writes_through_a_kill_9(
    cluster: EmbeddedKafka,
) -> None:
    bootstrap = cluster.bootstrap
    _create(bootstrap, "replicated", 3, 3)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    # The KRaft quorum leader (active controller) is also a partition leader: the harshest kill.
    quorum = admin.describe_metadata_quorum()
    victim = quorum["topics"][0]["partitions"][0]["leader_id"]
    admin.close()
    assert victim in (1, 2, 3)

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             request_timeout_ms=5000, delivery_timeout_ms=60000)
    sent = [f"r{i:03d}".encode() for i in range(150)]
    for value in sent[:50]:
        producer.send("replicated", value).get(timeout=30)
    cluster.kill(victim)
    assert not cluster.node_alive(victim)
    started = time.monotonic()
    for value in sent[50:100]:
        producer.send("replicated", value).get(timeout=60)
    recovered = time.monotonic() - started

    survivors = ",".join(cluster.address(n) for n in (1, 2, 3) if n != victim)
    admin = KafkaAdminClient(bootstrap_servers=survivors)
    try:
        partitions = admin.describe_topics(["replicated"])[0]["partitions"]
        assert all(p["leader_id"] != victim for p in partitions)
        assert all(len(p["isr_nodes"]) == 2 for p in partitions)  # min.insync.replicas met

        cluster.restart(victim)
        for value in sent[100:]:
            producer.send("replicated", value).get(timeout=30)
        deadline = time.monotonic() + 45
        while True:  # the restarted node catches up and rejoins every ISR
            partitions = admin.describe_topics(["replicated"])[0]["partitions"]
            if all(len(p["isr_nodes"]) == 3 for p in partitions):
                break
            assert time.monotonic() < deadline, partitions
            time.sleep(0.5)
    finally:
        admin.close()
        producer.close()

    got = _read_all(survivors, "replicated", 3, len(sent))
    assert sorted(got) == sent  # every acknowledged write, exactly once
    assert recovered < 30, f"writes stalled {recovered:.1f} s after the kill"
    print(f"writes resumed {recovered:.1f} s after kill -9 of node {victim}", file=sys.stderr)
