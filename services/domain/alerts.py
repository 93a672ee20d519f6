"""Alerts (DESIGN section 6, "Alerts") and their deterministic ids.

Time alerts (``due_soon``, ``overdue``) are identified by (dossier, scope, kind, due instant);
event alerts (``unexpected_recipient``, ``repeat_supplement``, ``appointment_mismatch``) by
(dossier, kind, triggering event id). The same alert computed twice — by a restarted worker,
by ``replay`` — has the same id, so every consumer of the alert feed deduplicates on it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

AlertKind = Literal["due_soon", "overdue", "unexpected_recipient", "repeat_supplement",
                    "appointment_mismatch", "delivery_failing", "portal_drift"]
AlertScope = Literal["step", "dossier", "destination"]

# The namespace of every deterministic id the domain core makes (alerts and deliveries).
ID_NAMESPACE = uuid.UUID("6f3c2a56-1b0e-5d8e-9a43-7c1d2e4f8a90")


_NS = ID_NAMESPACE.bytes


def uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(ID_NAMESPACE, name))``, without the UUID object (a hot path)."""
    h = bytearray(hashlib.sha1(_NS + name.encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def instant_key(t: datetime) -> str:
    """A compact, exact, zone-independent spelling of an instant, for ids."""
    key = _INSTANT_KEYS.get(t)
    if key is None:
        # Many alerts share due instants (a window's close); equal instants, equal keys.
        if len(_INSTANT_KEYS) >= 65536:
            _INSTANT_KEYS.clear()
        seconds = int(t.timestamp()) if not t.microsecond else t.timestamp()
        key = _INSTANT_KEYS[t] = str(seconds)
    return key


_INSTANT_KEYS: dict[datetime, str] = {}


def time_alert_id(dossier: str, scope: str, kind: str, due: datetime) -> str:
    return uuid5_text(f"{dossier}|{scope}|{kind}|{instant_key(due)}")


def event_alert_id(dossier: str, kind: str, event_id: str) -> str:
    return uuid5_text(f"{dossier}|{kind}|{event_id}")


def destination_alert_id(destination: str, kind: str, first_failure: datetime) -> str:
    """(destination, kind, first failure): for ``delivery_failing`` and ``portal_drift``."""
    return uuid5_text(f"{destination}|{kind}|{instant_key(first_failure)}")


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert for the feed, the dashboard and Alertmanager.

    ``agency``: for step alerts the step's agency; for dossier time alerts the agency holding
    the dossier at the firing instant; see the Alerts section for the others. ``due_at`` is the
    due in force when it fired (None for the event alerts that have none). ``at`` is the firing
    instant (a time alert) or the triggering event's instant. ``alert_id`` is derived from
    ``id_name`` when asked for (``replay`` never needs it).
    """

    id_name: str  # what the deterministic id is made of, e.g. "dossier|step|overdue|1767686400"
    kind: str
    scope: str
    dossier: str
    agency: str
    due_at: datetime | None
    at: datetime
    procedure: str | None = None
    step: int | None = None  # index of the step in the dossier's steps (scope step)
    event_id: str | None = None  # the triggering event (event alerts)

    @property
    def alert_id(self) -> str:
        return uuid5_text(self.id_name)

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id, "kind": self.kind, "scope": self.scope,
            "dossier": self.dossier, "agency": self.agency,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "at": self.at.isoformat(), "procedure": self.procedure, "step": self.step,
            "event_id": self.event_id,
        }


class _Draft:
    """Builds an :class:`Alert` without the frozen dataclass's ``__init__`` (ten
    ``object.__setattr__`` calls; a replay raises an alert every other event or so): the same
    slots, then ``__class__`` assignment."""

    __slots__ = ("agency", "at", "dossier", "due_at", "event_id", "id_name", "kind",
                 "procedure", "scope", "step")

    def __init__(self, id_name: str, kind: str, scope: str, dossier: str, agency: str,
                 due_at: datetime | None, at: datetime, procedure: str | None,
                 step: int | None, event_id: str | None) -> None:
        self.id_name = id_name
        self.kind = kind
        self.scope = scope
        self.dossier = dossier
        self.agency = agency
        self.due_at = due_at
        self.at = at
        self.procedure = procedure
        self.step = step
        self.event_id = event_id

    def done(self) -> Alert:
        self.__class__ = Alert  # type: ignore[assignment]
        return self  # type: ignore[return-value]


def time_alert(kind: str, scope: str, dossier: str, agency: str, due: datetime,
               at: datetime, procedure: str, step: int | None,
               due_key: str | None = None) -> Alert:
    """A due_soon/overdue alert about the due instant ``due``, firing at ``at``."""
    name = f"{dossier}|{scope}|{kind}|{due_key or instant_key(due)}"
    draft = _Draft(name, kind, scope, dossier, agency, due, at, procedure, step, None)
    draft.__class__ = Alert  # type: ignore[assignment]  # done(), inlined: a hot path
    return draft  # type: ignore[return-value]


def event_alert(kind: str, dossier: str, agency: str, event_id: str, at: datetime,
                procedure: str, due_at: datetime | None = None) -> Alert:
    return _Draft(f"{dossier}|{kind}|{event_id}", kind, "dossier", dossier, agency,
                  due_at, at, procedure, None, event_id).done()
