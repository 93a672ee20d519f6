"""The embedded broker's configuration and API, without starting a broker."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from lienthong.deploy.embedded import EmbeddedKafka, kafka_cluster, pinned_version
from lienthong.deploy.embedded.broker import broker_config, new_cluster_id, pom_path


def test_the_pom_pins_the_kafka_version_and_ships_with_the_package() -> None:
    assert pom_path().exists()
    assert pinned_version() == "4.4.0"
    assert "<version>3.8.1</version>" in pom_path().read_text()  # maven-dependency-plugin


def test_single_node_config_has_replication_one_and_short_group_and_transaction_bounds() -> None:
    config = broker_config(1, 1, {1: (9092, 9093)}, data=Path("/d"))
    assert config["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "min.insync.replicas"):
        assert config[key] == "1", key
    assert config["group.initial.rebalance.delay.ms"] == "0"
    assert config["auto.create.topics.enable"] == "false"
    assert int(config["transaction.max.timeout.ms"]) <= 60000
    assert int(config["group.min.session.timeout.ms"]) <= 1000


def test_three_node_config_lists_every_voter_and_requires_two_in_sync_replicas() -> None:
    ports = {1: (1001, 2001), 2: (1002, 2002), 3: (1003, 2003)}
    config = broker_config(2, 3, ports, data=Path("/d"),
                           extra={"log.retention.ms": "1000"})
    assert config["node.id"] == "2"
    assert config["controller.quorum.voters"] == (
        "1@127.0.0.1:2001,2@127.0.0.1:2002,3@127.0.0.1:2003")
    assert config["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1002"
    assert config["default.replication.factor"] == "3"
    assert config["min.insync.replicas"] == "2"
    assert config["transaction.state.log.min.isr"] == "2"
    assert config["log.retention.ms"] == "1000"


def test_cluster_ids_are_16_random_bytes_in_url_safe_base64() -> None:
    first, second = new_cluster_id(), new_cluster_id()
    assert first != second and len(first) == 22
    assert len(base64.urlsafe_b64decode(first + "==")) == 16


def test_kill_and_restart_name_existing_nodes_only() -> None:
    broker = EmbeddedKafka(nodes=1)
    with pytest.raises(ValueError, match="no node 2"):
        broker.kill(2)
    with pytest.raises(ValueError, match="nodes must be at least 1"):
        EmbeddedKafka(nodes=0)


def test_external_bootstrap_servers_skip_the_embedded_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    with kafka_cluster() as bootstrap:
        assert bootstrap == "127.0.0.1:1"
