"""Prometheus metrics of the delivery service, in a registry of its own (so two services in
one process — tests — do not collide) served on a port of their choosing."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from lienthong.connectors.delivery.breaker import CircuitState


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.attempts = Counter(
            "lienthong_delivery_attempts", "HTTP delivery attempts, by destination and outcome "
            "(delivered, rejected, retry).", ["destination", "outcome"], registry=r)
        self.failures = Counter(
            "lienthong_delivery_failures", "Failed delivery attempts, by destination and cause "
            "(http_4xx, http_5xx, timeout, connection).", ["destination", "cause"], registry=r)
        self.delivered = Counter(
            "lienthong_deliveries_delivered", "Deliveries the destination accepted (2xx).",
            ["destination"], registry=r)
        self.parked = Counter(
            "lienthong_deliveries_parked", "Deliveries parked in deadletter, by reason.",
            ["destination", "reason"], registry=r)
        self.alerts = Counter(
            "lienthong_delivery_failing_alerts", "delivery_failing alerts emitted.",
            ["destination"], registry=r)
        self.receipts = Counter(
            "lienthong_delivery_receipts", "Signed receipts in destinations' answers, by what "
            "became of them: recorded, refused (bad signature, wrong body…) or absent.",
            ["destination", "result"], registry=r)
        self.in_flight = Gauge(
            "lienthong_delivery_in_flight", "Records read from deliveries and not yet delivered "
            "or parked.", registry=r)
        self.receipts_awaited = Gauge(
            "lienthong_delivery_receipts_awaited", "Signed receipts awaited from destinations, "
            "not yet recorded nor alerted as missing (the watch kept in receipts.expected).",
            registry=r)
        self.paused_partitions = Gauge(
            "lienthong_delivery_paused_partitions", "Partitions paused because their in-flight "
            "limit is reached.", registry=r)
        self.circuit = Gauge(
            "lienthong_delivery_circuit_state", "Circuit breaker per destination: 0 closed, "
            "1 half-open, 2 open.", ["destination"], registry=r)
        self.latency = Histogram(
            "lienthong_delivery_seconds", "From reading a delivery to the destination's 2xx.",
            ["destination"], registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800))

    def circuit_state(self, destination: str, state: CircuitState) -> None:
        self.circuit.labels(destination).set(int(state))

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``host:port`` from a background thread."""
        start_http_server(port, addr=host, registry=self.registry)
