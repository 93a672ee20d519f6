"""Token buckets (giới hạn tần suất): how many requests a caller may make, decided in plain
Python so the gateway and the dashboard's login share one rule and tests need no clock.

Each key (an agency, a username, an address) has a bucket of ``burst`` tokens refilled at
``rate`` tokens per second; a request takes one token or is refused with the seconds until the
next token. Memory is bounded: at most ``max_keys`` buckets; beyond that the least recently
used bucket is dropped (it has had the longest to refill: forgetting it is the least lenient).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """``allowed``, or refused with ``retry_after`` seconds (at least 1, whole seconds, as the
    ``Retry-After`` header wants)."""

    allowed: bool
    retry_after: int = 0


ALLOWED = Decision(True)


class TokenBuckets:
    """One token bucket per key; ``rate <= 0`` means no limit."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000) -> None:
        if rate > 0 and burst < 1:
            raise ValueError("a limited bucket holds at least one token")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, stamp

    def __len__(self) -> int:
        return len(self._buckets)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _level(self, key: str, now: float) -> float:
        tokens, stamp = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - stamp) * self.rate)

    def take(self, key: str, now: float, cost: float = 1.0) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket at ``now`` (seconds, any monotonic
        origin), or say how long to wait."""
        if not self.enabled:
            return ALLOWED
        tokens = self._level(key, now)
        if tokens >= cost:
            self._store(key, tokens - cost, now)
            return ALLOWED
        self._store(key, tokens, now)
        return Decision(False, max(1, math.ceil((cost - tokens) / self.rate)))

    def check(self, key: str, now: float, cost: float = 1.0) -> Decision:
        """Would :meth:`take` allow it? Takes nothing (to charge only failures, say)."""
        if not self.enabled:
            return ALLOWED
        tokens = self._level(key, now)
        if tokens >= cost:
            return ALLOWED
        return Decision(False, max(1, math.ceil((cost - tokens) / self.rate)))

    def _store(self, key: str, tokens: float, now: float) -> None:
        buckets = self._buckets
        buckets[key] = (tokens, now)
        buckets.move_to_end(key)
        while len(buckets) > self.max_keys:
            buckets.popitem(last=False)
