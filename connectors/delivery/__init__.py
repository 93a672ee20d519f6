"""Outbound delivery (chuyển hồ sơ đến nơi nhận): consumes ``deliveries`` and POSTs each to its
destination agency's endpoint, in order per dossier, with retry, a circuit breaker per
destination, ``delivery_failing`` alerts and parking in ``deadletter``."""

from lienthong.connectors.delivery.breaker import (
    BreakerConfig,
    CircuitBreaker,
    CircuitState,
    Permit,
)
from lienthong.connectors.delivery.offsets import PartitionOffsets
from lienthong.connectors.delivery.policy import (
    DELIVERY_FAILING,
    DeliveryPolicy,
    FailingDestination,
    FailureStreaks,
    Outcome,
    classify_status,
    delivery_failing_id,
)

__all__ = [
    "DELIVERY_FAILING", "BreakerConfig", "CircuitBreaker", "CircuitState", "DeliveryPolicy",
    "FailingDestination", "FailureStreaks", "Outcome", "PartitionOffsets", "Permit",
    "classify_status", "delivery_failing_id",
]
