"""Operator corrections (hủy, đính chính sự kiện): a void or a correcting event, replayed.

An authorised operator voids a wrong event of a dossier (``event_voided``: wrong agency, wrong
time, entered twice) or enters a correcting event that takes a wrong one's place (any type,
with ``corrects_event_id``). Both are new events; the original stays in the log. The dossier is
then recomputed *as if the wrong event had not been there*: its applied events are replayed
from the start through ``apply_event`` — the same state machine and deadline engine, no second
copy of the rules — without the voided event, or with the correction in its place.

``correct(state, event, history, catalogue, now)`` returns what ``apply_event`` returns:

- :class:`Applied` with the recomputed state, the deliveries and the alerts that are new to the
  outside world;
- :class:`Rejected` with a reason (the dossier is untouched): ``unknown_event`` (no such event on
  the dossier's timeline), ``already_voided``, ``invalid_correction`` (the receipt cannot be
  voided, a void cannot be voided or corrected), ``history_incomplete`` (an applied event is
  missing from ``history``), ``correction_conflict`` (without the wrong event a later event
  would have been refused: the detail names it — void or correct that one first),
  ``future_event``;
- :data:`SKIPPED` for a repeated event id.

``history`` maps event ids to the dossier's events as read from the log (events the dossier
never applied may be in it and are ignored).

What the outside world already saw stays as it was (choices)
------------------------------------------------------------
1. *Replayed events.* Only the events the dossier applied are replayed (its timeline, in order);
   events refused at the time stay refused (they are in the dead-letter list and may be re-sent).
   The catalogue in force now is used; calendar recomputations on the timeline stay listed.
2. *Deliveries* already made are not unsent, and not sent again. A correcting event makes the
   deliveries it would make as a new event (a corrected hand-off goes to the right agency), but
   no second shipment order; the portal (DVCQG) gets the recomputed status if it differs from
   the one last synced.
3. *Alerts* already fired stay fired: the alert feed is append-only and keyed by id, and there is
   no retraction. Time alerts of the recomputed dossier that were never fired are raised now (a
   voided early result leaves the dossier overdue: its ``overdue`` comes now); event alerts are
   raised only for the correcting event itself.
4. *Timeline.* The voided (or corrected) event stays on the timeline, marked ``voided``; the
   void is listed with the voided event's id; a correction stands where the event it corrects
   stood. The dossier's last instant is the replay's, so a late event no longer has to be later
   than the voided one.
5. *What cannot be voided.* The receipt (enter a corrected receipt instead), a void, and an
   event already voided.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from .alerts import Alert, uuid5_text
from .catalogue import Catalogue
from .dossier import (
    FUTURE_TOLERANCE,
    SKIPPED,
    Applied,
    Decision,
    DossierState,
    Rejected,
    _key,
    apply_event,
    mark_fired,
    time_alerts,
)
from .events import VOIDED, Event
from .routing import PORTAL, PORTAL_CHANNEL, Delivery, delivery

VOIDED_NOTE = "voided"
CORRECTION_NOTE = "correction"
TIME_KINDS = frozenset({"due_soon", "overdue"})


def is_correction(event: Event) -> bool:
    """A void or a correcting event: applied by ``correct``, not by ``apply_event``."""
    return event.type == VOIDED or event.corrects_event_id is not None


def voided_ids(state: DossierState) -> set[str]:
    """Ids of the dossier's events that are voided (by a void or a correction)."""
    return {i for i, _t, _a, _g, note in state.timeline if note == VOIDED_NOTE}


def target_problem(dossier: str, timeline: Sequence[tuple[str | None, str, str | None]],
                   target: str, *, void: bool) -> tuple[str, str] | None:
    """Why the event ``target`` of a dossier's timeline — (event id, type, note) entries in
    order — cannot be voided (``void``) or corrected: (reason, sentence), or None."""
    target = target.lower()
    position = next((i for i, (event_id, _t, _n) in enumerate(timeline)
                     if event_id is not None and event_id.lower() == target), None)
    if position is None:
        return "unknown_event", f"no event {target} on the timeline of dossier {dossier}"
    _id, target_type, note = timeline[position]
    what = "voided" if void else "corrected"
    if note == VOIDED_NOTE:
        return "already_voided", f"event {target} of dossier {dossier} is already voided"
    if target_type == VOIDED:
        return ("invalid_correction", f"event {target} is a void; it cannot be {what} (enter "
                "the voided event again instead)")
    if void and position == 0:
        return ("invalid_correction", "the receipt of a dossier cannot be voided; enter a "
                "corrected receipt (corrects_event_id) or stop the dossier")
    return None


def correct(state: DossierState, event: Event, history: Mapping[str, Event],
            catalogue: Catalogue, now: datetime | None = None) -> Decision:
    """Apply a void or a correcting event to a dossier by replaying it (module docstring)."""
    if event.event_id in state.seen:
        return SKIPPED
    if event.dossier != state.code:
        raise ValueError(f"event for {event.dossier} applied to dossier {state.code}")
    if now is not None and event.at - now > FUTURE_TOLERANCE:
        return Rejected("future_event", f"{event.type} at {event.at.isoformat()} is more than "
                        f"5 minutes ahead of the hub's clock ({now.isoformat()})")
    void = event.type == VOIDED
    target = event.voided_event_id if void else event.corrects_event_id
    assert target is not None
    what = "voided" if void else "corrected"
    problem = target_problem(state.code, [(e[0], e[1], e[4]) for e in state.timeline], target,
                             void=void)
    if problem is not None:
        return Rejected(*problem)

    # The events to replay: the applied ones, in timeline order, the wrong one left out or
    # replaced by the correction.
    gone = voided_ids(state) | {target}
    replayed: list[Event] = []
    for event_id, etype, _a, _g, n in state.timeline:
        if not event_id or etype == VOIDED or n == VOIDED_NOTE:
            continue  # a calendar recomputation, a void, a voided event
        if event_id == target:
            if not void:
                replayed.append(replace(event, corrects_event_id=None))
            continue
        found = history.get(event_id)
        if found is None:
            return Rejected("history_incomplete", f"event {event_id} of dossier {state.code} "
                            "was not found in the log; nothing was changed")
        replayed.append(found)

    fresh: DossierState | None = None
    raised: list[Alert] = []
    made: list[Delivery] = []
    for e in replayed:
        decision = apply_event(fresh, e, catalogue,
                               with_deliveries=e.event_id == event.event_id)
        if isinstance(decision, Rejected):
            return Rejected("correction_conflict", f"with event {target} {what}, "
                            f"{e.type} {e.event_id} at {e.at.isoformat()} would have been "
                            f"refused ({decision.reason}: {decision.detail}); void or correct "
                            "that event first")
        if isinstance(decision, Applied):
            fresh = decision.state
            raised += decision.alerts
            if e.event_id == event.event_id:
                made += decision.deliveries
    assert fresh is not None  # the receipt is always replayed

    if now is not None:
        due = time_alerts(fresh, catalogue, now)
        mark_fired(fresh, due)
        raised += due
    alerts = [a for a in raised
              if (a.kind in TIME_KINDS and a.due_at is not None
                  and _key(a.scope, a.kind, a.due_at) not in state.fired)
              or (a.kind not in TIME_KINDS and a.event_id == event.event_id)]
    deliveries = [d for d in made if d.kind not in ("portal_status", "shipment")
                  or (d.kind == "shipment" and not state.shipped)]
    fresh.fired |= state.fired
    fresh.shipped = fresh.shipped or state.shipped
    if fresh.portal_status != state.portal_status:
        deliveries.append(delivery(event.event_id, PORTAL, "portal_status", fresh.code, {
            "dossier": fresh.code, "procedure": fresh.procedure, "status": fresh.portal_status,
            "channel": PORTAL_CHANNEL[fresh.channel], "agency": event.agency,
            "at": event.at.isoformat(), "event_id": event.event_id}))
    _merge_timeline(state, fresh, event, target, gone)
    return Applied(fresh, deliveries, alerts)


def _merge_timeline(old: DossierState, fresh: DossierState, event: Event, target: str,
                    gone: set[str]) -> None:
    """The recomputed timeline keeps every entry of the old one: voided entries marked, the
    correction where the corrected event stood, the void at the end."""
    replayed = {entry[0]: entry for entry in fresh.timeline}
    timeline: list[tuple[str, str, datetime, str, str | None]] = []
    for entry in old.timeline:
        event_id, etype, at, agency, _note = entry
        if event_id in gone:
            timeline.append((event_id, etype, at, agency, VOIDED_NOTE))
            if event_id == target and event.type != VOIDED:
                c = replayed[event.event_id]
                timeline.append((c[0], c[1], c[2], c[3], c[4] or CORRECTION_NOTE))
        elif event_id and etype != VOIDED and event_id in replayed:
            timeline.append(replayed[event_id])
        else:
            timeline.append(entry)  # a void, a calendar recomputation
    if event.type == VOIDED:
        timeline.append((event.event_id, VOIDED, event.at, event.agency, target))
    fresh.timeline = timeline
    fresh.seen = {entry[0] for entry in timeline if entry[0]}


# -- what an operator enters ------------------------------------------------------------------

def void_event_id(dossier: str, voided_event_id: str) -> str:
    """The same void entered twice (a double click, a retried command) has one id."""
    return uuid5_text(f"{dossier}|event_voided|{voided_event_id.lower()}")


def void_event(dossier: str, voided_event_id: str, reason: str, operator: str, agency: str,
               at: datetime) -> dict[str, Any]:
    """The canonical JSON of a void (hủy sự kiện); ``agency`` is the voided event's."""
    return {"event_id": void_event_id(dossier, voided_event_id), "type": VOIDED,
            "dossier": dossier, "at": at.isoformat(), "agency": agency,
            "voided_event_id": voided_event_id.lower(), "reason": reason,
            "operator": operator}


def correction_event(event: Mapping[str, Any], corrects_event_id: str, reason: str,
                     operator: str) -> dict[str, Any]:
    """A correcting event (đính chính): ``event`` (canonical JSON of any type) entered in
    the place of ``corrects_event_id``. Without its own ``event_id`` it gets a fresh one."""
    out = dict(event)
    out.setdefault("event_id", str(uuid.uuid4()))
    out.update(corrects_event_id=corrects_event_id.lower(), correction_reason=reason,
               operator=operator)
    return out
