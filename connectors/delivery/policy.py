"""What a delivery attempt's answer means, and when a failing destination is reported.

Pure: no HTTP or Kafka here, only decisions the service shell acts on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from lienthong.connectors.delivery.breaker import BreakerConfig
from lienthong.connectors.http import RetryPolicy
from lienthong.connectors.national_portal.mapping import to_portal_request
from lienthong.services.domain.alerts import destination_alert_id
from lienthong.services.domain.routing import PORTAL

#: Client errors that say "not now" rather than "never".
RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})

DELIVERY_FAILING = "delivery_failing"


class Outcome(Enum):
    DELIVERED = "delivered"  # 2xx: the destination has it
    PERMANENT = "permanent"  # 4xx other than 408/425/429: retrying cannot help; park now
    RETRY = "retry"  # 5xx, 408/425/429, timeout, connection error


def classify_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS:
        return Outcome.PERMANENT
    # 5xx, the retryable 4xx, and anything unexpected (1xx/3xx: redirects are not followed,
    # a moved endpoint is a catalogue fix, and the message should not be lost meanwhile).
    return Outcome.RETRY


#: A destination's own request shape, built from the canonical delivery (``{"delivery_id",
#: "destination", "kind", "dossier", "event_id", "at", "payload": {...}}``). It raises
#: ``ValueError`` for a delivery it cannot shape; such a delivery is parked, never sent.
RequestBuilder = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def default_request_builders() -> dict[str, RequestBuilder]:
    """Destinations that do not take the generic envelope: the national portal takes its
    status-sync shape (``national_portal.mapping``). Every other destination gets the
    canonical delivery as it is."""
    return {PORTAL: to_portal_request}


@dataclass(frozen=True)
class DeliveryPolicy:
    """Tunables of the delivery service, with production defaults.

    ``retry.attempts`` is the number of tries of one delivery (the first included); the pauses
    between them are ``retry.delays()`` (exponential, full jitter, capped). A delivery waiting
    for an open circuit uses no attempts, but never waits past ``max_wait_seconds`` from when it
    was read: then it is parked as ``destination_unavailable`` so the partition keeps moving.
    ``request_builders`` maps a destination code to its request shape (see
    :data:`RequestBuilder`); destinations not listed get the canonical delivery.
    """

    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(attempts=8, base_delay=0.5, max_delay=60.0))
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    alert_after_failures: int = 5  # consecutive failed attempts before delivery_failing
    request_timeout: float = 10.0
    max_in_flight_per_partition: int = 1000
    max_concurrency_per_destination: int = 16
    max_wait_seconds: float = 6 * 3600.0
    request_builders: Mapping[str, RequestBuilder] = field(
        default_factory=default_request_builders, hash=False)

    def __post_init__(self) -> None:
        if self.retry.attempts < 1:
            raise ValueError("retry.attempts must be at least 1")
        if self.max_in_flight_per_partition < 1 or self.max_concurrency_per_destination < 1:
            raise ValueError("in-flight and concurrency limits must be at least 1")


def delivery_failing_id(destination: str, kind: str, first_failure: datetime) -> str:
    """Deterministic alert id from (destination, kind, first failure instant) (DESIGN §6)."""
    return destination_alert_id(destination, kind, first_failure)


@dataclass(frozen=True)
class FailingDestination:
    """A destination that failed ``failures`` times in a row since ``first_failure``."""

    destination: str
    first_failure: datetime
    failures: int
    last_error: str

    @property
    def alert_id(self) -> str:
        return delivery_failing_id(self.destination, DELIVERY_FAILING, self.first_failure)


class FailureStreaks:
    """Consecutive failed attempts per destination; reports a streak once, at the threshold.

    Any answer from the destination (2xx or a permanent 4xx) ends the streak; the next streak
    has a new first-failure instant and so a new alert id.
    """

    def __init__(self, threshold: int) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.threshold = threshold
        self._streaks: dict[str, tuple[datetime, int]] = {}

    def failure(self, destination: str, at: datetime, error: str) -> FailingDestination | None:
        first, count = self._streaks.get(destination, (at, 0))
        count += 1
        self._streaks[destination] = (first, count)
        if count == self.threshold:
            return FailingDestination(destination, first, count, error)
        return None

    def success(self, destination: str) -> None:
        self._streaks.pop(destination, None)

    def failing(self, destination: str) -> int:
        return self._streaks.get(destination, (None, 0))[1]
