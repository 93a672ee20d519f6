import unicodedata
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lienthong.services.domain.events import (
    Applicant,
    InvalidEvent,
    event_to_json,
    parse_event,
)

ICT = timezone(timedelta(hours=7))
RECEIVED: dict[str, Any] = {
    "event_id": "5b1e7c1e-0d4e-4c9a-9d3e-2f1a0b9c8d7e", "type": "received",
    "dossier": "000.00.15.H99-261125-0007", "at": "2026-11-25T09:15:00+07:00",
    "agency": "000.00.15.H99", "procedure": "1.001193", "channel": "desk",
    "applicant": {"name": "Nguyễn Văn A", "id_number": "001099012345"},
}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(base)
    for k, v in changes.items():
        if v is ...:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def test_the_design_example_parses_into_an_event() -> None:
    e = parse_event(RECEIVED)
    assert e.type == "received"
    assert e.at == datetime(2026, 11, 25, 9, 15, tzinfo=ICT)
    assert e.applicant == Applicant("Nguyễn Văn A", "001099012345")
    assert e.procedure == "1.001193" and e.channel == "desk" and e.to_agency is None


def test_event_to_json_gives_back_the_canonical_object() -> None:
    assert event_to_json(parse_event(RECEIVED)) == RECEIVED


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"type": "arrived"}, "type"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"event_id": ...}, "event_id"),
        ({"at": "2026-11-25T09:15:00"}, "at"),
        ({"at": "25/11/2026"}, "at"),
        ({"at": 1764036900}, "at"),
        ({"dossier": "H99-2026-1"}, "dossier"),
        ({"agency": "000.00.15.H99.EXTRA"}, "agency"),
        ({"procedure": "1001193"}, "procedure"),
        ({"procedure": ...}, "procedure"),
        ({"channel": "fax"}, "channel"),
        ({"applicant": "Nguyễn Văn A"}, "applicant"),
        ({"applicant": {"id_number": "1"}}, "applicant.name"),
        ({"to_agency": "000.02.10.H99"}, "to_agency"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_malformed_received_events_name_the_faulty_field(changes: dict[str, Any],
                                                          field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(with_(RECEIVED, **changes))
    assert info.value.field == field
    assert info.value.problem


def test_fields_of_other_types_are_accepted_when_null_as_a_flat_avro_record_carries_them() -> None:
    e = parse_event(with_(RECEIVED, to_agency=None, amount_vnd=None, decision=None))
    assert e.to_agency is None


@pytest.mark.parametrize(
    ("etype", "fields", "missing"),
    [
        ("handoff", {"to_agency": "000.02.10.H99"}, "to_agency"),
        ("supplement_requested", {"reason": "thiếu giấy chứng sinh"}, "reason"),
        ("obligation_requested", {"amount_vnd": 250000}, "amount_vnd"),
        ("obligation_paid", {"amount_vnd": 250000}, "amount_vnd"),
        ("apology_issued", {"new_due_at": "2026-12-01T17:00:00+07:00", "reason": "quá tải"},
         "new_due_at"),
        ("result_ready", {"decision": "approved"}, "decision"),
        ("returned", {"channel": "postal"}, "channel"),
        ("withdrawn", {"reason": "không có nhu cầu"}, "reason"),
        ("stopped", {"reason": "giả mạo giấy tờ"}, "reason"),
        ("postal_update", {"tracking_number": "EB123456789VN", "leg": "result_out",
                           "status": "delivered"}, "status"),
    ],
)
def test_every_type_parses_and_requires_its_fields(etype: str, fields: dict[str, Any],
                                                   missing: str) -> None:
    base = {k: RECEIVED[k] for k in ("event_id", "dossier", "at", "agency")}
    good = {**base, "type": etype, **fields}
    assert event_to_json(parse_event(good)) == good
    with pytest.raises(InvalidEvent) as info:
        parse_event(with_(good, **{missing: ...}))
    assert info.value.field == missing


def test_enums_and_amounts_are_checked() -> None:
    base = {k: RECEIVED[k] for k in ("event_id", "dossier", "at", "agency")}
    with pytest.raises(InvalidEvent, match="decision"):
        parse_event({**base, "type": "result_ready", "decision": "maybe"})
    with pytest.raises(InvalidEvent, match="channel"):
        parse_event({**base, "type": "returned", "channel": "online"})
    for bad in (-1, 1.5, True, "250000"):
        with pytest.raises(InvalidEvent, match="amount_vnd"):
            parse_event({**base, "type": "obligation_paid", "amount_vnd": bad})


def test_an_nfd_vietnamese_name_is_stored_in_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "Nguyễn Văn A")
    e = parse_event(with_(RECEIVED, applicant={"name": nfd}))
    assert e.applicant is not None and e.applicant.name == "Nguyễn Văn A"


def test_a_non_object_is_refused() -> None:
    with pytest.raises(InvalidEvent):
        parse_event([1, 2])  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(
    ["event_id", "type", "dossier", "at", "agency", "procedure", "channel", "applicant",
     "to_agency", "reason", "amount_vnd", "x"]),
    st.one_of(st.none(), st.integers(), st.text(max_size=20), st.booleans())))
def test_arbitrary_objects_either_parse_or_raise_invalid_event(data: dict[str, Any]) -> None:
    try:
        parse_event(data)
    except InvalidEvent as exc:
        assert str(exc)


def test_a_v2_event_with_a_correlation_id_is_accepted() -> None:
    # Avro event schema v2 adds the optional correlation_id; the engine carries on without it.
    from lienthong.schemas import codec
    from lienthong.services.domain.events import parse_event as parse

    raw = {"event_id": "5b1e7c1e-0d4e-4c9a-9d3e-2f1a0b9c8d7e", "type": "handoff",
           "dossier": "000.00.15.H99-20261125-0000007", "at": "2026-11-25T10:00:00+07:00",
           "agency": "000.00.15.H99", "to_agency": "000.02.10.H99",
           "correlation_id": "vendor-7f3a"}
    event = parse(codec.EVENTS.decode(codec.EVENTS.encode(raw)))
    assert event.to_agency == "000.02.10.H99"


# -- contract version 3: contacts, operator, corrections, voids ---------------------------

V3_BASE = {"dossier": "000.00.15.H99-20261125-0000007", "at": "2026-11-25T10:00:00+07:00",
           "agency": "000.00.15.H99"}
WRONG = "5b1e7c1e-0d4e-4c9a-9d3e-2f1a0b9c8d7e"


def test_a_void_names_the_voided_event_its_reason_and_the_operator() -> None:
    from lienthong.schemas import codec

    raw = {**V3_BASE, "event_id": "6c2f8d2f-1e5f-4dab-8e4f-3a2b1cad9e8f", "type": "event_voided",
           "voided_event_id": WRONG.upper(), "reason": "Nhập trùng", "operator": "lan.nguyen"}
    event = parse_event(codec.EVENTS.decode(codec.EVENTS.encode(raw)))
    assert (event.type, event.voided_event_id, event.reason, event.operator) == (
        "event_voided", WRONG, "Nhập trùng", "lan.nguyen")
    assert event_to_json(event)["voided_event_id"] == WRONG
    with pytest.raises(InvalidEvent) as err:
        parse_event({k: v for k, v in raw.items() if k != "operator"})
    assert err.value.field == "operator"
    with pytest.raises(InvalidEvent) as err:
        parse_event({**raw, "voided_event_id": "e-1"})
    assert err.value.field == "voided_event_id"


def test_a_correcting_event_needs_an_operator_and_a_reason() -> None:
    raw = {**V3_BASE, "event_id": "6c2f8d2f-1e5f-4dab-8e4f-3a2b1cad9e8f", "type": "handoff",
           "to_agency": "000.02.10.H99", "corrects_event_id": WRONG, "operator": "lan.nguyen",
           "correction_reason": "Chuyển nhầm cơ quan"}
    event = parse_event(raw)
    assert (event.corrects_event_id, event.operator) == (WRONG, "lan.nguyen")
    assert event_to_json(event)["correction_reason"] == "Chuyển nhầm cơ quan"
    for missing in ("operator", "correction_reason"):
        with pytest.raises(InvalidEvent) as err:
            parse_event({k: v for k, v in raw.items() if k != missing})
        assert err.value.field == missing


def test_an_applicant_may_carry_contacts_for_notifications() -> None:
    raw = {**V3_BASE, "event_id": WRONG, "type": "received", "procedure": "1.001193",
           "channel": "desk", "applicant": {"name": "Nguyễn Văn A", "phone": "0912 345 678",
                                            "email": "a@example.vn", "zalo_user_id": "z1"}}
    event = parse_event(raw)
    assert event.applicant is not None and event.applicant.phone == "0912 345 678"
    assert event_to_json(event)["applicant"] == raw["applicant"]
    with pytest.raises(InvalidEvent) as err:
        parse_event({**raw, "applicant": {"name": "A", "email": "not-an-address"}})
    assert err.value.field == "applicant.email"
