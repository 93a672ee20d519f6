"""The gateway's Prometheus metrics, in a registry of its own (one per app, so tests can build
several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("lienthong_gateway_requests_total",
                                "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.latency = Histogram("lienthong_gateway_request_seconds",
                                 "HTTP request duration by route", ["route"], registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5))
        self.accepted = Counter("lienthong_gateway_events_accepted_total",
                                "Events accepted, by type and agency", ["type", "agency"],
                                registry=r)
        self.rejected = Counter("lienthong_gateway_events_rejected_total",
                                "Events refused, by reason", ["reason"], registry=r)
        self.auth_failures = Counter("lienthong_gateway_auth_failures_total",
                                     "Requests refused before reading events, by reason",
                                     ["reason"], registry=r)
        self.spooled = Gauge("lienthong_gateway_spooled_events",
                             "Accepted events waiting in the local spool for Kafka", registry=r)
        self.rate_limited = Counter("lienthong_gateway_rate_limited_total",
                                    "Signed requests refused with 429, by agency", ["agency"],
                                    registry=r)
        self.nonce_claims = Counter("lienthong_gateway_nonce_claims_total",
                                    "Nonce claims by result: first, replay_known (refused from "
                                    "this gateway's view), replay_raced (another claim came "
                                    "first on the shared topic), local (Kafka could not confirm; "
                                    "decided alone), unavailable", ["result"], registry=r)
        self.published = Counter("lienthong_gateway_events_published_total",
                                 "Accepted events by where they went first (kafka or spool)",
                                 ["path"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
