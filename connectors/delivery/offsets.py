"""Which offset of a partition may be committed when records finish out of order.

Deliveries of different dossiers (and destinations) finish in any order, but a Kafka commit
says "everything before this offset is done". So the committable position is the first
offset still unfinished; everything after it is redone after a crash or rebalance (the
``Idempotency-Key`` makes that harmless). The number of records in flight is what bounds
memory: the shell pauses the partition when it reaches its limit.
"""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """Bookkeeping for one partition: offsets taken, offsets finished, the commit position."""

    def __init__(self, committed: int | None = None) -> None:
        self._pending: deque[int] = deque()  # offsets taken and not yet behind the position
        self._open: set[int] = set()  # taken and not finished
        self._finished: set[int] = set()  # finished but behind an unfinished one
        self._next: int | None = committed  # next offset to commit (Kafka's convention)
        self._committed = committed

    @property
    def in_flight(self) -> int:
        """Records taken and not finished."""
        return len(self._open)

    def take(self, offset: int) -> None:
        """A record was handed out. Offsets must arrive increasing (gaps are fine)."""
        if self._pending and offset <= self._pending[-1]:
            raise ValueError(f"offset {offset} taken after {self._pending[-1]}")
        if not self._pending and self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} is before the commit position {self._next}")
        self._pending.append(offset)
        self._open.add(offset)

    def finish(self, offset: int) -> None:
        """The record at ``offset`` was delivered or parked."""
        if offset not in self._open:
            raise ValueError(f"offset {offset} is not in flight")
        self._open.discard(offset)
        self._finished.add(offset)
        pending = self._pending
        while pending and pending[0] in self._finished:
            done = pending.popleft()
            self._finished.discard(done)
            self._next = done + 1

    def position(self) -> int | None:
        """The offset to commit: everything below it is finished. None before any progress."""
        return self._next

    def to_commit(self) -> int | None:
        """The position, if it moved since the last :meth:`committed` call."""
        if self._next is not None and self._next != self._committed:
            return self._next
        return None

    def committed(self, offset: int) -> None:
        """Kafka acknowledged a commit of ``offset``."""
        self._committed = offset
