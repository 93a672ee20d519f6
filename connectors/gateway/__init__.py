"""The inbound gateway (cổng tiếp nhận): signed HTTP from agency systems into Kafka, with a
durable local spool for when Kafka is unreachable."""

from lienthong.connectors.gateway.app import EventPublisher, build_app
from lienthong.connectors.gateway.intake import Limits
from lienthong.connectors.gateway.publisher import KafkaSink, KafkaUnavailable, Publisher
from lienthong.connectors.gateway.spool import Spool, SpoolFull
from lienthong.connectors.gateway.timeline import InMemoryTimelines, Timeline, TimelineStore

__all__ = [
    "EventPublisher", "InMemoryTimelines", "KafkaSink", "KafkaUnavailable", "Limits",
    "Publisher", "Spool", "SpoolFull", "Timeline", "TimelineStore", "build_app",
]
