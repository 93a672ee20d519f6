"""Voids and corrections come from the hub's operators, never through the gateway."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from lienthong.connectors.gateway.intake import Limits, check_events
from lienthong.schemas.codec import encode_event

A = "000.00.15.H99"
DOSSIER = "000.00.15.H99-261125-0007"


def handoff(**over: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "handoff", "dossier": DOSSIER,
            "at": "2026-11-25T10:00:00+07:00", "agency": A, "to_agency": "000.02.10.H99",
            **over}


@pytest.mark.parametrize(("make", "field"), [
    (lambda: {"event_id": str(uuid.uuid4()), "type": "event_voided", "dossier": DOSSIER,
              "at": "2026-11-25T10:00:00+07:00", "agency": A,
              "voided_event_id": str(uuid.uuid4()), "reason": "x", "operator": "me"},
     "operator"),
    (lambda: handoff(corrects_event_id=str(uuid.uuid4()), operator="me",
                     correction_reason="nhầm"), "operator"),
    (lambda: handoff(operator="me"), "operator"),
])
def test_an_agency_cannot_send_a_void_or_a_correction(make: Callable[[], dict[str, Any]],
                                                      field: str) -> None:
    mine = handoff()
    accepted, rejected = check_events([mine, make()], A, encode_event, Limits())
    assert [a.event_id for a in accepted] == [mine["event_id"]]
    assert [(r.index, r.reason, r.field, r.status) for r in rejected] == [
        (1, "operator_only", field, 403)]
    assert "operator" in rejected[0].problem
