"""ensure_topics against the real broker: creates the hub's topics once, then leaves them."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from lienthong.schemas import topics
from lienthong.services.settings import Settings


@pytest.mark.kafka
def test_ensure_topics_creates_every_topic_once_with_its_config(kafka_bootstrap: str) -> None:
    settings = Settings(topic_prefix=f"it-{uuid.uuid4().hex[:8]}.", partitions=3)
    wanted = topics.names(settings).all()

    created = topics.ensure_topics(kafka_bootstrap, settings, timeout_s=20)
    assert sorted(created) == sorted(wanted)
    assert topics.ensure_topics(kafka_bootstrap, settings, timeout_s=20) == []

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(wanted))}
        names = topics.names(settings)
        assert described[names.events] == 3
        assert described[names.catalog] == 1
        configs = admin.describe_configs([
            ConfigResource(ConfigResourceType.TOPIC, names.catalog),
            ConfigResource(ConfigResourceType.TOPIC, names.events)])["topic"]
        assert configs[names.catalog]["cleanup.policy"]["value"] == "compact"
        assert configs[names.events]["retention.ms"]["value"] == "-1"
    finally:
        admin.close()
