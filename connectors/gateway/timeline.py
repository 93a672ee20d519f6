"""Where the gateway reads a dossier's timeline (the tracking slip) from.

The stream processor owns the dossier state; it plugs a store in here. Until one is wired the
gateway answers 501 for timeline reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Timeline:
    """A dossier's events in order, and the agencies involved (who may read it)."""

    dossier: str
    events: Sequence[Mapping[str, Any]]
    agencies: frozenset[str] = field(default_factory=frozenset)

    def to_json(self) -> dict[str, Any]:
        return {"dossier": self.dossier, "agencies": sorted(self.agencies),
                "events": list(self.events)}


class TimelineStore(Protocol):
    async def timeline(self, dossier: str) -> Timeline | None:
        """The dossier's timeline, or None if the hub has never seen it."""
        ...


class InMemoryTimelines:
    """A store over a dict, for tests and the demo."""

    def __init__(self, timelines: Mapping[str, Timeline] | None = None) -> None:
        self._timelines = dict(timelines or {})

    def put(self, timeline: Timeline) -> None:
        self._timelines[timeline.dossier] = timeline

    async def timeline(self, dossier: str) -> Timeline | None:
        return self._timelines.get(dossier)
