"""The embedded Apache Kafka broker (KRaft) for one machine: ``lienthong broker`` and tests."""

from lienthong.deploy.embedded.broker import (
    BrokerError,
    EmbeddedKafka,
    ensure_jars,
    kafka_cluster,
    pinned_version,
)

__all__ = ["BrokerError", "EmbeddedKafka", "ensure_jars", "kafka_cluster", "pinned_version"]
