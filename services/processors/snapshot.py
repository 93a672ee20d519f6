"""The dossier snapshot published to ``dossier.status`` for read models (dashboard, gateway).

A compacted topic keyed by dossier code: the newest snapshot of every dossier is always there,
so a dashboard started at any time rebuilds its view by reading the topic from the beginning.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from lienthong.services.domain.catalogue import Catalogue
from lienthong.services.domain.corrections import VOIDED_NOTE
from lienthong.services.domain.dossier import DossierState, report

PAUSE_OPEN = {"supplement_requested": "supplement", "obligation_requested": "obligation"}
PAUSE_CLOSE = {"supplement_received": "supplement", "obligation_paid": "obligation"}


def _state_name(state: DossierState) -> str:
    if state.end_type in ("withdrawn", "stopped"):
        return state.end_type
    if state.end_type is not None:
        return "ended"
    return "paused" if state.paused else "processing"


def snapshot_dict(state: DossierState, catalogue: Catalogue, now: datetime) -> dict[str, Any]:
    row = report(state, catalogue, now)
    cal = catalogue.calendar
    fmt = cal.format_local  # local text to the second, from cached pieces

    def iso(t: datetime | None) -> str | None:
        return None if t is None else fmt(t)

    for step, raw in zip(row["steps"], state.steps, strict=True):
        overrun = raw.clock.overrun(cal, raw.judged_at, now)
        step["overrun_minutes"] = int(overrun.total_seconds() // 60)
        step["unexpected"] = bool(raw.unexpected)
    pauses: list[dict[str, Any]] = []
    open_pause: dict[str, dict[str, Any]] = {}
    timeline = []
    postal = []
    for event_id, etype, at, agency, note in state.timeline:
        at_text = fmt(at)
        timeline.append({"event_id": event_id, "type": etype, "at": at_text, "agency": agency,
                         "note": note})
        if note == VOIDED_NOTE:
            continue  # voided by an operator: on the timeline, and nothing more
        if etype in PAUSE_OPEN:
            if PAUSE_OPEN[etype] not in open_pause:
                pause = {"kind": PAUSE_OPEN[etype], "requested_by": agency, "from": at_text,
                         "to": None}
                open_pause[PAUSE_OPEN[etype]] = pause
                pauses.append(pause)
        elif etype in PAUSE_CLOSE:
            if PAUSE_CLOSE[etype] in open_pause:
                open_pause.pop(PAUSE_CLOSE[etype])["to"] = at_text
        elif etype == "postal_update":
            postal.append({"at": at_text, "note": note})
    receiving = catalogue.agency(state.receiving)
    holder = catalogue.agency(state.holder)
    procedure = catalogue.procedure(state.procedure, state.received_at)
    row.update({
        "procedure_name": procedure.name if procedure else state.procedure,
        "receiving_agency": state.receiving,
        "receiving_level": receiving.level if receiving else None,
        "channel": state.channel,
        "applicant": state.applicant,
        "holder": state.holder,
        "holder_level": holder.level if holder else None,
        "state": _state_name(state),
        "end_type": state.end_type,
        "repeat_supplement": state.supplements >= 2,
        "pauses": pauses,
        "apologies": [{"agency": a.agency, "at": iso(a.at), "new_due_at": iso(a.new_due_at)}
                      for a in state.apologies],
        "postal": postal,
        "portal_status": state.portal_status,
        "timeline": timeline,
        "updated_at": iso(now),
    })
    return row


def snapshot(state: DossierState, catalogue: Catalogue, now: datetime) -> bytes:
    return orjson.dumps(snapshot_dict(state, catalogue, now))
