"""Prometheus metrics of the dashboard process (names in deploy/prometheus/METRICS.md).

Open and overdue dossiers per agency are computed from the read model at scrape time, so the
figures are as fresh as the last snapshot and the due instants that passed since. They carry a
``dashboard_`` prefix: the workers export ``lienthong_overdue_dossiers`` for their own
partitions, which the alert rules sum; the dashboard's whole-province copy is a cross-check.
"""

from __future__ import annotations

from collections import Counter as Tallies
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from lienthong.services.ops.board import OpsBoard


class _BoardCollector(Collector):
    def __init__(self, board: OpsBoard, clock: Callable[[], datetime]) -> None:
        self.board = board
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock()
        open_ = GaugeMetricFamily("lienthong_dashboard_open_dossiers",
                                  "Dossiers not ended, by holding agency and its level.",
                                  labels=["agency", "level"])
        overdue = GaugeMetricFamily("lienthong_dashboard_overdue_dossiers",
                                    "Open dossiers past their due instant, by holding agency "
                                    "and its level.", labels=["agency", "level"])
        opened: Tallies[tuple[str, str]] = Tallies()
        late: Tallies[tuple[str, str]] = Tallies()
        for row in self.board.overdue_board(now, include_due_soon=False):
            if row.scope == "dossier":
                late[(row.agency, row.level)] += 1
        for d in self.board.dossiers():
            if d.is_open:
                opened[(d.holder, self.board.level_of(d.holder, d.holder_level))] += 1
        for (agency, level), n in sorted(opened.items()):
            open_.add_metric([agency, level], n)
            overdue.add_metric([agency, level], late.get((agency, level), 0))
        yield open_
        yield overdue


class DashboardMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, board: OpsBoard, clock: Callable[[], datetime],
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        r.register(_BoardCollector(board, clock))
        self.records = Counter("lienthong_dashboard_records",
                               "Records read by the dashboard, by topic and result "
                               "(applied, duplicate, rejected).", ["topic", "result"],
                               registry=r)
        self.sse_clients = Gauge("lienthong_dashboard_sse_clients",
                                 "Browsers connected to the live event stream.", registry=r)
        self.render = Histogram("lienthong_dashboard_render_seconds",
                                "Time to build a page or API answer.", ["page"], registry=r,
                                buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.lag = Gauge("lienthong_consumer_lag",
                         "Records behind the end of each partition, per consumer.",
                         ["consumer", "topic", "partition"], registry=r)
        self.resends = Counter("lienthong_dashboard_resends",
                               "Dead-letter re-sends asked from the dashboard, by result.",
                               ["result"], registry=r)
        self.logins = Counter("lienthong_dashboard_logins", "Sign-in attempts, by result.",
                              ["result"], registry=r)
        self.login_rate_limited = Counter(
            "lienthong_dashboard_login_rate_limited",
            "Sign-in attempts refused with 429 before the password was checked, by what ran "
            "out (username or address).", ["by"], registry=r)

    def render_text(self) -> bytes:
        return generate_latest(self.registry)
