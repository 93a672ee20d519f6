"""Replay protection shared by every gateway of a hub: who claimed a nonce first.

Each gateway claims ``(agency, nonce)`` by appending a record to one Kafka partition chosen
from the key alone (:func:`partition_for`), then reads that partition up to its own record.
Every gateway reads the same records in the same order, so they all agree: the first live claim
of a key wins, any later claim of it — from any gateway, however close in time — is a replay.
This module is that decision, as plain Python: the Kafka shell
(``connectors/gateway/shared_nonces.py``) feeds it the partition's records in offset order.

A claim is live until ``until`` (the instant its timestamp stops being acceptable, plus a
second). A claim of a key whose earlier claim expired before the new one was made is a new
first claim, so a nonce reused long after the window is not refused forever.
"""

from __future__ import annotations

import heapq
import json
import zlib
from dataclasses import dataclass

from lienthong.connectors.http.nonces import NonceCacheFull


class LedgerFull(NonceCacheFull):
    """Too many live claims; the request must be retried later (fail closed)."""


@dataclass(frozen=True)
class Claim:
    """One record of the nonce topic: where it is and for how long it holds."""

    partition: int
    offset: int
    at: float      # the claiming gateway's clock when it claimed
    until: float   # no replay of this key can be accepted after this instant


def claim_key(agency: str, nonce: str) -> bytes:
    """The Kafka key of a claim: nonces are per agency."""
    return json.dumps([agency, nonce], separators=(",", ":")).encode("ascii")


def partition_for(key: bytes, partitions: int) -> int:
    """The partition holding every claim of ``key``; computed here, not by a client library's
    partitioner, so gateways built on different clients still meet on one partition."""
    if partitions < 1:
        raise ValueError("a nonce topic has at least one partition")
    return zlib.crc32(key) % partitions


def claim_value(at: float, until: float, gateway: str) -> bytes:
    return json.dumps({"at": at, "until": until, "gateway": gateway},
                      separators=(",", ":")).encode("utf-8")


def parse_value(value: bytes | None) -> tuple[float, float] | None:
    """``(at, until)`` of a claim record; None for a record that is not a claim."""
    try:
        data = json.loads(value or b"")
        return float(data["at"]), float(data["until"])
    except (ValueError, TypeError, KeyError):
        return None


class NonceLedger:
    """The first live claim of each key, built from the nonce topic in offset order."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self.max_entries = max_entries
        self._first: dict[bytes, Claim] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._first)

    def observe(self, key: bytes, claim: Claim) -> bool:
        """Apply one record; True if it is the first live claim of its key."""
        current = self._first.get(key)
        if current is not None and current.until >= claim.at:
            return current == claim  # a record read twice (after a re-seek) is still first
        self._first[key] = claim
        heapq.heappush(self._heap, (claim.until, key))
        return True

    def holds(self, key: bytes, now: float) -> bool:
        """A live claim of ``key`` exists: a new claim of it would be a replay."""
        current = self._first.get(key)
        return current is not None and current.until >= now

    def won(self, key: bytes, partition: int, offset: int) -> bool:
        """After the record at ``(partition, offset)`` was observed: is it the first claim?"""
        current = self._first.get(key)
        return current is not None and (current.partition, current.offset) == (partition,
                                                                               offset)

    def check_room(self) -> None:
        if len(self._first) >= self.max_entries:
            raise LedgerFull(f"{len(self._first)} live nonces")

    def evict(self, now: float) -> int:
        """Forget claims that expired before ``now``; returns how many."""
        heap, first, n = self._heap, self._first, 0
        while heap and heap[0][0] < now:
            until, key = heapq.heappop(heap)
            current = first.get(key)
            if current is not None and current.until == until and until < now:
                del first[key]
                n += 1
        return n
