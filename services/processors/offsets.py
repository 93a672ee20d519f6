"""Every record of ``dossier.events``, in order, exactly once into the tracker.

faust-streaming 0.15.3 silently drops records it fetched while its flow control was paused or
under an older group generation (``Stream._py_aiter`` turns them into skipped values) and
relies on seeking back to committed offsets; around a rebalance with a backlog that seek can
come before the drop, and the dropped offsets are then never delivered (seen here after a
worker takeover: offsets 24-54 of a partition never reached the agent). Losing a ``received``
loses a dossier, so the worker checks the offsets itself: each partition's records must follow
on from the last one applied. On a gap the worker seeks the partition back and ignores its
records until the missing offset arrives. A real hole in the log (transaction markers,
compaction; neither is used on ``dossier.events``) is accepted after ``hole_after`` seconds of
seeing nothing but later offsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Positioned(Protocol):
    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=Positioned)


@dataclass
class _Resync:
    offset: int  # the offset awaited
    since: float  # when the gap was first seen


class OffsetGuard:
    """Admits records that follow on from the last admitted offset of their partition."""

    def __init__(self, hole_after: float = 10.0) -> None:
        self.hole_after = hole_after
        self._next: dict[int, int] = {}
        self._resync: dict[int, _Resync] = {}

    def start(self, positions: Mapping[int, int | None]) -> None:
        """Partitions (re)assigned, with the offset each resumes from (None: unknown, the first
        record seen sets it)."""
        for partition, offset in positions.items():
            self._resync.pop(partition, None)
            if offset is None:
                self._next.pop(partition, None)
            else:
                self._next[partition] = offset

    def admit(self, records: Iterable[R], now: float) -> tuple[list[R], dict[int, int]]:
        """The records to apply, in order, and the partitions to seek back (to that offset)."""
        admitted: list[R] = []
        seeks: dict[int, int] = {}
        for record in records:
            p, offset = record.partition, record.offset
            if p in seeks:
                continue  # the rest of this partition comes again after the seek
            expected = self._next.get(p)
            if expected is None or offset == expected:
                self._resync.pop(p, None)
            elif offset < expected:
                continue  # fetched again after a seek: already applied
            else:
                waiting = self._resync.get(p)
                if waiting is None or waiting.offset != expected:
                    self._resync[p] = _Resync(expected, now)
                    seeks[p] = expected
                    continue
                if now - waiting.since < self.hole_after:
                    continue  # stale prefetched records; the seek has not taken effect yet
                del self._resync[p]  # nothing but later offsets for a while: a real hole
            self._next[p] = offset + 1
            admitted.append(record)
        return admitted, seeks

    def known(self) -> set[int]:
        """Partitions whose next offset is known."""
        return set(self._next)

    def forget(self) -> None:
        """Partitions moved (a rebalance): positions are learnt again from the committed
        offsets."""
        self._next.clear()
        self._resync.clear()

    def waiting(self) -> dict[int, int]:
        """Partitions waiting for a missing offset (partition -> offset)."""
        return {p: r.offset for p, r in self._resync.items()}
