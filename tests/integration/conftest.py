"""Integration fixtures: one real Apache Kafka broker for the whole test session.

Use them like this::

    @pytest.mark.kafka
    def test_something(kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
        topic = new_topic(partitions=3)            # unique name, created and ready
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)

- ``kafka_bootstrap`` (session): the bootstrap address ``host:port``. It starts one embedded
  single-node KRaft broker (``lienthong.deploy.embedded``, temporary data, stopped at the end of
  the session) unless ``KAFKA_BOOTSTRAP_SERVERS`` is set, in which case that cluster is used.
  Topics are never created implicitly (``auto.create.topics.enable=false``): make them with
  ``new_topic`` or the hub's topic module.
- ``new_topic(partitions=1, *, prefix="t", config=None, replication=1) -> str``: creates a
  topic with a unique name and waits until its leaders are known; topics are left behind (they
  vanish with the temporary broker).

Any test that uses ``kafka_bootstrap`` is marked ``kafka`` automatically (``-m "not kafka"``
runs without a broker). Consumers in tests should use short group timeouts: the broker accepts
sessions down to 500 ms (``session_timeout_ms=3000, heartbeat_interval_ms=500`` works well).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator, Mapping
from typing import Protocol

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from lienthong.deploy.embedded import kafka_cluster


class NewTopicFactory(Protocol):
    def __call__(
        self,
        partitions: int = 1,
        *,
        prefix: str = "t",
        config: Mapping[str, str] | None = None,
        replication: int = 1,
    ) -> str: ...


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)
    # The client compatibility checks run first, on a broker no hub test has loaded yet, so
    # that their group timings measure the clients and not the hub's leftovers.
    items.sort(key=lambda item: "test_broker_compat.py" not in item.nodeid)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of the session's broker (embedded, or KAFKA_BOOTSTRAP_SERVERS)."""
    with kafka_cluster() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10000)
    yield admin
    admin.close()


_counter = itertools.count(1)


@pytest.fixture
def new_topic(kafka_admin: KafkaAdminClient) -> NewTopicFactory:
    """Factory: create a uniquely named topic and return its name once its leaders are known."""

    def create(
        partitions: int = 1,
        *,
        prefix: str = "t",
        config: Mapping[str, str] | None = None,
        replication: int = 1,
    ) -> str:
        name = f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"
        kafka_admin.create_topics(
            [NewTopic(name, partitions, replication, topic_configs=dict(config or {}))],
            timeout_ms=10000,
        )
        kafka_admin.wait_for_topics([name], timeout_ms=15000)
        return name

    return create

