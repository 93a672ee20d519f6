"""Where the worker group starts reading ``dossier.events``: an explicit committed offset for
every partition, from its first start on.

faust-streaming 0.15.3 starts fetching while it recovers the table and drops what it fetched
with its flow paused; afterwards it seeks each partition to the group's committed offset. A
partition with no committed offset is not moved back, so the records fetched and dropped during
recovery are never applied (seen here: a fresh worker started at offset 78 of a partition whose
first 78 records were never committed by a worker killed early). Committing the log's start for
every uncommitted partition before the worker joins makes that seek go where it must.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


def commit_start_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Commit the earliest offset for each partition of ``topic`` the ``group`` has no
    committed offset for; returns what it committed. A group with active members cannot be
    changed, and then already has its offsets: nothing is done."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    servers = bootstrap.split(",")
    admin = KafkaAdminClient(bootstrap_servers=servers, client_id=f"{group}-start")
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    try:
        committed = with_coordinator(lambda: admin.list_group_offsets(group).get(group, {}))
        parts = consumer.partitions_for_topic(topic) or set()
        missing = [TopicPartition(topic, p) for p in sorted(parts)
                   if TopicPartition(topic, p) not in committed
                   or committed[TopicPartition(topic, p)].offset < 0]
        if not missing:
            return {}
        earliest = consumer.beginning_offsets(missing)
        offsets = {tp: OffsetAndMetadata(earliest[tp], "", -1) for tp in missing}
        errors = with_coordinator(lambda: admin.alter_group_offsets(group, offsets))
        done = {tp.partition: offsets[tp].offset for tp, error in errors.items()
                if getattr(error, "errno", 0) == 0}
        if len(done) < len(missing):
            log.info("group %s is active; its offsets stay as they are", group)
        return done
    finally:
        consumer.close()
        admin.close()


def with_coordinator(call: Callable[[], T], timeout: float = 30.0) -> T:
    """``call``, retried while the broker has no group coordinator yet (a new cluster creates
    its offsets topic on the first group request)."""
    from kafka.errors import CoordinatorNotAvailableError, NotCoordinatorError

    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except (CoordinatorNotAvailableError, NotCoordinatorError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)

