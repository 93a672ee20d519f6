"""Replay protection: every nonce seen with a valid signature, for as long as its timestamp
could still be accepted.

A request with timestamp ``t`` is accepted only while ``|now - t| <= window``, so its nonce
must be remembered until ``t + window`` and no longer: memory is bounded by the request rate
times the window. A hard ``max_entries`` cap fails closed: when full of live nonces the cache
refuses new requests (the caller answers 503) instead of forgetting one, which would re-open
the replay it guards against.
"""

from __future__ import annotations

import heapq
import threading
from typing import Protocol


class NonceCacheFull(RuntimeError):
    """Too many live nonces; the request must be retried later."""


class NonceStore(Protocol):
    """Where a gateway claims nonces: this process's :class:`NonceCache`, or the hub-wide
    store every gateway shares (``connectors.gateway.shared_nonces.KafkaNonceStore``)."""

    async def claim(self, agency: str, nonce: str, timestamp: float, now: float) -> bool:
        """True if this is the first use of the nonce inside the window; False for a replay.
        Raises :class:`NonceCacheFull` (or a subclass) when the store cannot take more."""
        ...


class NonceCache:
    """The nonces this process has seen (one gateway alone, or tests)."""

    def __init__(self, window_seconds: float = 300.0, max_entries: int = 500_000) -> None:
        self.window = window_seconds
        self.max_entries = max_entries
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def _evict(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] < now:
            _, key = heapq.heappop(heap)
            if key in expiry and expiry[key] < now:
                del expiry[key]

    def check_and_remember(self, agency: str, nonce: str, timestamp: float, now: float) -> bool:
        """Record the nonce; False if this agency already used it inside the window.

        Nonces are per agency: one agency's nonce never blocks another's.
        """
        key = (agency, nonce)
        # Keep it slightly past the acceptance horizon so clock jitter cannot reopen it.
        until = max(timestamp, now) + self.window + 1.0
        with self._lock:
            self._evict(now)
            if key in self._expiry:
                return False
            if len(self._expiry) >= self.max_entries:
                raise NonceCacheFull(f"{len(self._expiry)} live nonces")
            self._expiry[key] = until
            heapq.heappush(self._heap, (until, key))
            return True

    async def claim(self, agency: str, nonce: str, timestamp: float, now: float) -> bool:
        """:class:`NonceStore` interface over :meth:`check_and_remember`."""
        return self.check_and_remember(agency, nonce, timestamp, now)
