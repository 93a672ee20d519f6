"""A circuit breaker per destination (cầu dao theo nơi nhận): after a run of consecutive
failures the destination is left alone for a while, then a few probe deliveries test it.

Pure and clock-free: every call takes ``now`` (monotonic seconds), so tests drive time.

Each permit carries the breaker's *generation*, bumped on every state change. A result is
only counted if it belongs to the current generation: a slow request started while the
circuit was closed cannot close (or re-open) a circuit that has moved on since.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class CircuitState(IntEnum):
    """Numeric so the Prometheus gauge reads 0 closed, 1 half-open, 2 open."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = 5  # consecutive failures that open the circuit
    open_seconds: float = 5.0  # first pause before a probe
    max_open_seconds: float = 120.0  # the pause doubles after each failed probe, up to this
    half_open_probes: int = 1  # requests let through at once while half-open

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.half_open_probes < 1:
            raise ValueError("failure_threshold and half_open_probes must be at least 1")
        if not 0 < self.open_seconds <= self.max_open_seconds:
            raise ValueError("need 0 < open_seconds <= max_open_seconds")


@dataclass(frozen=True)
class Permit:
    generation: int
    probe: bool


class CircuitBreaker:
    def __init__(self, config: BreakerConfig = BreakerConfig()) -> None:
        self.config = config
        self.generation = 0
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._open_for = config.open_seconds
        self._probes = 0  # probes in flight while half-open

    def state(self, now: float) -> CircuitState:
        """The state as a caller would see it at ``now`` (an elapsed open pause reads half-open)."""
        if self._state is CircuitState.OPEN and now >= self._opened_at + self._open_for:
            return CircuitState.HALF_OPEN
        return self._state

    def _move(self, state: CircuitState, now: float) -> None:
        self._state = state
        self.generation += 1
        self._probes = 0
        if state is CircuitState.OPEN:
            self._opened_at = now
        if state is CircuitState.CLOSED:
            self._failures = 0
            self._open_for = self.config.open_seconds

    def acquire(self, now: float) -> Permit | None:
        """A permit to send one request now, or None (ask again after :meth:`wait_hint`)."""
        if self._state is CircuitState.OPEN:
            if now < self._opened_at + self._open_for:
                return None
            self._move(CircuitState.HALF_OPEN, now)
        if self._state is CircuitState.HALF_OPEN:
            if self._probes >= self.config.half_open_probes:
                return None
            self._probes += 1
            return Permit(self.generation, probe=True)
        return Permit(self.generation, probe=False)

    def wait_hint(self, now: float) -> float | None:
        """Seconds until :meth:`acquire` may succeed; None when waiting on a probe's verdict."""
        if self._state is CircuitState.OPEN:
            return max(0.0, self._opened_at + self._open_for - now)
        if self._state is CircuitState.HALF_OPEN and self._probes >= self.config.half_open_probes:
            return None
        return 0.0

    def record_success(self, permit: Permit, now: float) -> bool:
        """The destination answered (2xx, or a 4xx that proves it is alive). True if the state
        changed."""
        if permit.generation != self.generation:
            return False
        if self._state is CircuitState.HALF_OPEN:
            self._move(CircuitState.CLOSED, now)
            return True
        self._failures = 0
        return False

    def record_failure(self, permit: Permit, now: float) -> bool:
        """A 5xx, timeout or connection error. True if the state changed."""
        if permit.generation != self.generation:
            return False
        if self._state is CircuitState.HALF_OPEN:
            self._open_for = min(self.config.max_open_seconds, self._open_for * 2)
            self._move(CircuitState.OPEN, now)
            return True
        self._failures += 1
        if self._failures >= self.config.failure_threshold:
            self._move(CircuitState.OPEN, now)
            return True
        return False

    def release(self, permit: Permit) -> None:
        """Give back a probe permit that produced no verdict (the request was cancelled)."""
        if permit.probe and permit.generation == self.generation and self._probes > 0:
            self._probes -= 1
