"""Where a dossier goes next (DESIGN rule 6) and what is delivered to whom (section 7).

Route following: a hand-off to the next step's agency moves the dossier to that step; a
hand-off to any other agency is flagged ``unexpected_recipient`` and takes the allotment of the
first later route step of that agency (the route continues from there), else zero.

Deliveries: the tracker turns applied events into messages for the ``deliveries`` topic; each
has a deterministic ``delivery_id`` (uuid5 of event id, destination and kind) that travels as
the ``Idempotency-Key``, so a re-sent delivery is applied once by its destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from .alerts import uuid5_text

ZERO = timedelta(0)
PORTAL = "DVCQG"  # Cổng Dịch vụ công quốc gia
POSTAL = "VNPOST"  # Bưu chính công ích

DeliveryKind = Literal["handoff", "portal_status", "shipment", "result"]

# DVCQG status codes (section 7).
PORTAL_NEW = 1
PORTAL_RECEIVED = 2
PORTAL_NOT_RECEIVED = 3
PORTAL_PROCESSING = 4
PORTAL_SUPPLEMENT = 5
PORTAL_OBLIGATION = 6
PORTAL_WITHDRAWN = 7
PORTAL_STOPPED = 8
PORTAL_PROCESSED = 9
PORTAL_RETURNED = 10
PORTAL_CHANNEL = {"desk": 1, "online": 2, "postal": 3}
END_STATUS = {"result_ready": PORTAL_PROCESSED, "returned": PORTAL_RETURNED,
              "withdrawn": PORTAL_WITHDRAWN, "stopped": PORTAL_STOPPED}

Route = tuple[tuple[str, timedelta], ...]


@dataclass(frozen=True, slots=True)
class Move:
    """Where a hand-off takes the dossier on its route."""

    position: int  # the route step the new step stands for (unchanged if off the route)
    allot: timedelta
    expected: bool


def follow(route: Sequence[tuple[str, timedelta]], position: int, to_agency: str) -> Move:
    """The route step a hand-off from route ``position`` to ``to_agency`` leads to."""
    nxt = position + 1
    if nxt < len(route) and route[nxt][0] == to_agency:
        return _move(nxt, route[nxt][1], True)
    for j in range(nxt + 1, len(route)):
        if route[j][0] == to_agency:
            return _move(j, route[j][1], False)
    return _move(position, ZERO, False)


_MOVES: dict[tuple[int, timedelta, bool], Move] = {}


def _move(position: int, allot: timedelta, expected: bool) -> Move:
    """A shared Move (they are immutable and few: route positions times allotments)."""
    key = (position, allot, expected)
    move = _MOVES.get(key)
    if move is None:
        if len(_MOVES) >= 4096:
            _MOVES.clear()
        move = _MOVES[key] = Move(position, allot, expected)
    return move


def delivery_id(event_id: str, destination: str, kind: str) -> str:
    return uuid5_text(f"{event_id}|{destination}|{kind}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message for a destination system; ``delivery_id`` is its Idempotency-Key."""

    delivery_id: str
    destination: str  # an agency code, "DVCQG" or "VNPOST"
    kind: str
    dossier: str
    event_id: str
    payload: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"delivery_id": self.delivery_id, "destination": self.destination,
                "kind": self.kind, "dossier": self.dossier, "event_id": self.event_id,
                "payload": self.payload}


def delivery(event_id: str, destination: str, kind: str, dossier: str,
             payload: dict[str, Any]) -> Delivery:
    return Delivery(delivery_id(event_id, destination, kind), destination, kind, dossier,
                    event_id, payload)
