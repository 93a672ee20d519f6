"""Replay: the domain core over events in canonical JSON, no broker (DESIGN section 9).

Events apply per dossier in input order. Every alert that fires up to ``now`` is listed once;
``now`` defaults to the greatest event instant. The report::

    {"dossiers": [{"dossier", "procedure", "received_at", "due_at", "ended_at", "outcome",
                   "late_agencies", "steps": [{"agency", "started_at", "due_at", "ended_at",
                                               "outcome"}]}],
     "alerts": [{"kind", "scope", "dossier", "agency", "due_at"}]}

dossiers sorted by code, alerts by (due_at with nulls first, dossier, kind, scope, agency),
instants as ``YYYY-MM-DDTHH:MM:SS+07:00`` (the province's offset), no fractions.

Voids and corrections (``event_voided``, ``corrects_event_id``) replay their dossier without the
wrong event (``corrections.correct``); they need the dossier's earlier events, which ``Replay``
keeps only when built with ``keep_history=True`` (the ``replay`` command does so when its input
holds a void or a correction). Without it they are rejected (``invalid_correction``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from .alerts import Alert
from .catalogue import Catalogue
from .corrections import correct, is_correction
from .dossier import (
    Applied,
    Decision,
    DossierState,
    Rejected,
    apply_event,
    mark_fired,
    report,
    time_alerts,
)
from .events import Event, InvalidEvent, parse_event


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector for a batch run (restored afterwards).

    A replay builds millions of long-lived objects and no reference cycles (dossier states are
    trees, freed by reference counting), so the collector's repeated passes over them find
    nothing and cost about a third of the run. Memory use is the same.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class NowBeforeEvent(ValueError):
    """``--now`` is earlier than an event of the input (a usage error)."""


@dataclass(frozen=True, slots=True)
class RejectedLine:
    line: int
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.detail}"


@dataclass
class Replay:
    """The dossiers and alerts after running a sequence of events."""

    catalogue: Catalogue
    states: dict[str, DossierState] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    rejected: list[RejectedLine] = field(default_factory=list)
    events: int = 0
    latest: datetime | None = None
    keep_history: bool = False
    history: dict[str, dict[str, Event]] = field(default_factory=dict)

    def feed(self, lines: Iterable[str | bytes], now: datetime | None = None) -> None:
        """Apply JSONL lines (blank lines are ignored). With ``now``, an event later than
        ``now`` raises NowBeforeEvent."""
        states, catalogue = self.states, self.catalogue
        alerts, rejected = self.alerts, self.rejected
        latest = self.latest
        loads = orjson.loads
        tz = catalogue.calendar.tz
        count = 0
        for number, line in enumerate(lines, 1):
            if not line or line.isspace():
                continue
            count += 1
            try:
                event = parse_event(loads(line), tz)
            except InvalidEvent as exc:
                rejected.append(RejectedLine(number, "invalid_event", str(exc)))
                continue
            except ValueError as exc:  # orjson.JSONDecodeError (bad JSON or UTF-8)
                rejected.append(RejectedLine(number, "invalid_json", str(exc)))
                continue
            at = event.at
            if latest is None or at > latest:
                latest = at
                if now is not None and at > now:
                    raise NowBeforeEvent(f"--now {now.isoformat()} is earlier than the event "
                                         f"at {at.isoformat()} on line {number}")
            if self.keep_history:
                decision = self._with_history(event)
            else:
                decision = apply_event(states.get(event.dossier), event, catalogue,
                                       with_deliveries=False)
            if type(decision) is Applied:
                states[event.dossier] = decision.state
                if decision.alerts:
                    alerts.extend(decision.alerts)
            elif isinstance(decision, Rejected):
                rejected.append(RejectedLine(number, decision.reason, decision.detail))
        self.events += count
        self.latest = latest

    def _with_history(self, event: Event) -> Decision:
        state = self.states.get(event.dossier)
        if state is not None and is_correction(event):
            decision = correct(state, event, self.history.get(event.dossier, {}),
                               self.catalogue)
        else:
            decision = apply_event(state, event, self.catalogue, with_deliveries=False)
        if isinstance(decision, Applied):
            self.history.setdefault(event.dossier, {}).setdefault(event.event_id, event)
        return decision

    def finish(self, now: datetime | None = None) -> datetime | None:
        """Raise the time alerts due up to ``now`` (default: the latest event). Returns it."""
        now = now or self.latest
        if now is None:
            return None
        for state in self.states.values():
            due = time_alerts(state, self.catalogue, now)
            if due:
                mark_fired(state, due)
                self.alerts.extend(due)
        return now

    def report(self, now: datetime | None) -> dict[str, Any]:
        fmt = self.catalogue.calendar.format_local
        when = now or self.latest
        dossiers = [] if when is None else [
            report(self.states[code], self.catalogue, when) for code in sorted(self.states)]
        rows = []
        for a in self.alerts:
            due = None if a.due_at is None else fmt(a.due_at)
            rows.append({"kind": a.kind, "scope": a.scope, "dossier": a.dossier,
                         "agency": a.agency, "due_at": due})
        rows.sort(key=lambda r: (r["due_at"] is not None, r["due_at"] or "", r["dossier"],
                                 r["kind"], r["scope"], r["agency"]))
        return {"dossiers": dossiers, "alerts": rows}


def replay(lines: Iterable[str | bytes], catalogue: Catalogue,
           now: datetime | None = None) -> tuple[dict[str, Any], list[RejectedLine]]:
    """Run ``lines`` (JSONL) through the core; the report and the rejected lines."""
    with collector_paused():
        run = Replay(catalogue)
        run.feed(lines, now)
        when = run.finish(now)
        return run.report(when), run.rejected
