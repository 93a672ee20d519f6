"""The in-memory index of open due instants (hạn xử lý) of one worker, per partition.

Holds, for every dossier of an assigned partition, the next instant at which one of its time
alerts may fire (``next_alarm`` of the domain core). The sweeper pops what is due; entries are
replaced, never updated in place: a superseded heap entry is skipped when popped (lazy
deletion), which keeps ``schedule`` O(log n) and memory at one heap tuple plus one dict slot per
dossier. Dossier codes are the table's own key strings, so the index stores no copies.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping


class DeadlineIndex:
    __slots__ = ("_heaps", "_next")

    def __init__(self) -> None:
        # partition -> heap of (epoch seconds, dossier code)
        self._heaps: dict[int, list[tuple[float, str]]] = {}
        # dossier code -> (partition, epoch seconds) of its live entry
        self._next: dict[str, tuple[int, float]] = {}

    @classmethod
    def of(cls, alarms: Mapping[int, list[tuple[float, str]]]) -> DeadlineIndex:
        """An index of these alarms, given per partition as (epoch seconds, dossier code), one
        per dossier; the lists become the heaps (heapified in place, in linear time)."""
        index = cls()
        nexts = index._next
        for partition, heap in alarms.items():
            heapq.heapify(heap)
            index._heaps[partition] = heap
            for at, dossier in heap:
                nexts[dossier] = (partition, at)
        return index

    def __len__(self) -> int:
        return len(self._next)

    def schedule(self, partition: int, dossier: str, at: float | None) -> None:
        """Set (or clear, with ``at=None``) the next alarm of ``dossier``."""
        if at is None:
            self._next.pop(dossier, None)
            return
        current = self._next.get(dossier)
        if current is not None and current == (partition, at):
            return
        self._next[dossier] = (partition, at)
        heapq.heappush(self._heaps.setdefault(partition, []), (at, dossier))

    def pop_due(self, now: float, limit: int = 10_000,
                partitions: Collection[int] | None = None) -> list[tuple[int, str]]:
        """Remove and return (partition, dossier) of alarms at or before ``now``, of the given
        ``partitions`` only (default: all)."""
        due: list[tuple[int, str]] = []
        for partition, heap in self._heaps.items():
            if partitions is not None and partition not in partitions:
                continue
            while heap and heap[0][0] <= now and len(due) < limit:
                at, dossier = heapq.heappop(heap)
                if self._next.get(dossier) == (partition, at):
                    del self._next[dossier]
                    due.append((partition, dossier))
        return due

    def next_instant(self) -> float | None:
        """The earliest live alarm, dropping superseded heap heads on the way."""
        best: float | None = None
        for partition, heap in self._heaps.items():
            while heap and self._next.get(heap[0][1]) != (partition, heap[0][0]):
                heapq.heappop(heap)
            if heap and (best is None or heap[0][0] < best):
                best = heap[0][0]
        return best

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget partitions this worker no longer owns."""
        for partition in partitions:
            for _, dossier in self._heaps.pop(partition, []):
                entry = self._next.get(dossier)
                if entry is not None and entry[0] == partition:
                    del self._next[dossier]

    def partitions(self) -> set[int]:
        return {p for p, heap in self._heaps.items() if heap}
