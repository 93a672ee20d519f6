"""Parsed events are ordinary frozen Events, and hostile identifiers are refused, not crashed on."""

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from lienthong.services.domain.events import (
    Applicant,
    Event,
    InvalidEvent,
    event_to_json,
    parse_event,
)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
HANDOFF: dict[str, Any] = {
    "event_id": "5B1E7C1E-0D4E-4C9A-9D3E-2F1A0B9C8D7E", "type": "handoff",
    "dossier": "000.00.15.H99-20261125-0000007", "at": "2026-11-25T09:15:00.250000+07:00",
    "agency": "000.00.15.H99", "to_agency": "000.02.10.H99", "note": "chuyển phòng",
}


def test_a_parsed_event_equals_the_dataclass_built_one_field_by_field() -> None:
    e = parse_event(HANDOFF, TZ)
    expected = Event(
        event_id=HANDOFF["event_id"].lower(), type="handoff", dossier=HANDOFF["dossier"],
        at=datetime(2026, 11, 25, 9, 15, 0, 250000, tzinfo=TZ), agency="000.00.15.H99",
        to_agency="000.02.10.H99", note="chuyển phòng")
    assert type(e) is Event
    assert e == expected and hash(e) == hash(expected)
    assert dataclasses.astuple(e) == dataclasses.astuple(expected)
    assert e.at.tzinfo is TZ
    assert repr(e) == repr(expected)
    assert dataclasses.replace(e, note=None).note is None


def test_a_parsed_event_is_frozen() -> None:
    e = parse_event(HANDOFF)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.agency = "000.00.16.H99"  # type: ignore[misc]
    assert e.at == datetime(2026, 11, 25, 9, 15, 0, 250000, tzinfo=timezone(timedelta(hours=7)))


def test_every_field_not_of_the_type_is_none() -> None:
    received = {
        "event_id": "5b1e7c1e-0d4e-4c9a-9d3e-2f1a0b9c8d7e", "type": "received",
        "dossier": "000.00.15.H99-261125-0007", "at": "2026-11-25T09:15:00Z",
        "agency": "000.00.15.H99", "procedure": "1.001193", "channel": "online",
        "applicant": {"name": "Trần Thị B"}, "appointment_at": "2026-12-01T17:00:00+07:00",
        "to_agency": None,
    }
    e = parse_event(received, TZ)
    assert e.applicant == Applicant("Trần Thị B")
    assert e.appointment_at == datetime(2026, 12, 1, 17, tzinfo=TZ)
    assert e.at == datetime(2026, 11, 25, 16, 15, tzinfo=TZ)
    for name in ("to_agency", "note", "reason", "amount_vnd", "new_due_at", "decision",
                 "tracking_number", "leg", "status"):
        assert getattr(e, name) is None
    assert parse_event(event_to_json(e), TZ) == e


@pytest.mark.parametrize("field", ["dossier", "agency", "to_agency"])
@pytest.mark.parametrize("value", [["000.00.15.H99"], {"code": "000.00.15.H99"}, 7])
def test_an_identifier_that_is_not_a_string_is_an_invalid_event(field: str, value: Any) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event({**HANDOFF, field: value})
    assert caught.value.field == field
    assert caught.value.problem == "must be a string"


@pytest.mark.parametrize("at, problem", [
    ("2026-11-25T09:15:00", "has no UTC offset"),
    ("25/11/2026 09:15", "is not an ISO-8601 instant"),
    (20261125, "must be an ISO-8601 instant string"),
])
def test_a_bad_instant_names_its_problem(at: Any, problem: str) -> None:
    with pytest.raises(InvalidEvent, match=problem) as caught:
        parse_event({**HANDOFF, "at": at}, TZ)
    assert caught.value.field == "at"
