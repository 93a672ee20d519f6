"""Prometheus metrics of the worker (names in deploy/prometheus/METRICS.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("lienthong_events_total", "Events applied, by type and agency",
                 ["type", "agency"])
REJECTED = Counter("lienthong_rejected_events_total", "Events rejected by the state machine",
                   ["reason"])
DUPLICATES = Counter("lienthong_duplicate_events_total", "Repeated event ids skipped")
DEADLETTERS = Counter("lienthong_deadletters_total", "Records sent to the dead-letter topic",
                      ["reason"])
ALERTS = Counter("lienthong_alerts_total", "Alerts raised, by kind", ["kind"])
INDEXED = Gauge("lienthong_deadline_index_size", "Dossiers in the in-memory deadline index")
BATCH_SECONDS = Histogram("lienthong_processing_seconds",
                          "Time to apply one batch of events and write its outputs",
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                   2.5))
OPEN_DOSSIERS = Gauge("lienthong_open_dossiers", "Open dossiers held, by agency and level",
                      ["agency", "level"])
OVERDUE_DOSSIERS = Gauge("lienthong_overdue_dossiers", "Overdue open dossiers, by agency and level",
                         ["agency", "level"])
CONSUMER_LAG = Gauge("lienthong_consumer_lag", "Records behind the partition's end",
                     ["consumer", "topic", "partition"])
