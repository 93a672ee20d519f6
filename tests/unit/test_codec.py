"""The one codec: canonical dicts <-> Avro single-object bytes, every version, clear errors."""

from __future__ import annotations

import contextlib
import unicodedata
from datetime import timedelta, timezone
from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from lienthong.schemas import codec, registry
from lienthong.schemas.codec import CorruptRecord, InvalidRecord, UnknownSchema
from lienthong.schemas.compiled import from_avro_datum, to_avro_datum

EID = "5b1e7c1e-0d4e-4c9a-9d3e-2f1a0b9c8d7e"
DOSSIER = "G09.20-20260609-0092637"
BASE = {"event_id": EID, "dossier": DOSSIER, "at": "2026-06-09T09:15:00+07:00",
        "agency": "G09.20"}

# One event of every type of DESIGN section 4, optional fields filled where the type has them.
EVENTS: list[dict[str, Any]] = [
    {**BASE, "type": "received", "procedure": "1.001193", "channel": "desk",
     "applicant": {"name": "Nguyễn Văn A", "id_number": "001099012345"},
     "appointment_at": "2026-06-16T17:00:00+07:00"},
    {**BASE, "type": "received", "procedure": "2.000986", "channel": "online",
     "applicant": {"name": "Trần Thị B"}},
    {**BASE, "type": "handoff", "to_agency": "000.00.15.H99", "note": "Chuyển Sở Tư pháp"},
    {**BASE, "type": "handoff", "to_agency": "000.00.15.H99"},
    {**BASE, "type": "supplement_requested", "reason": "Thiếu bản sao giấy khai sinh"},
    {**BASE, "type": "supplement_received"},
    {**BASE, "type": "obligation_requested", "amount_vnd": 150_000},
    {**BASE, "type": "obligation_paid", "amount_vnd": 150_000},
    {**BASE, "type": "apology_issued", "new_due_at": "2026-06-20T10:00:00+07:00",
     "reason": "Xin lỗi vì chậm trễ"},
    {**BASE, "type": "result_ready", "decision": "approved"},
    {**BASE, "type": "result_ready", "decision": "refused"},
    {**BASE, "type": "returned", "channel": "postal"},
    {**BASE, "type": "withdrawn", "reason": "Công dân rút hồ sơ"},
    {**BASE, "type": "stopped", "reason": "Hồ sơ giả mạo"},
    {**BASE, "type": "postal_update", "agency": "VNPOST", "tracking_number": "EB123456789VN",
     "leg": "result_out", "status": "in_transit"},
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e["type"])
def test_every_event_type_round_trips_to_the_same_canonical_dict(event: dict[str, Any]) -> None:
    data = codec.encode_event(event)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == registry.latest("event").fingerprint
    assert codec.decode_event(data) == event


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e["type"])
def test_generated_bytes_equal_fastavro_bytes_both_ways(event: dict[str, Any]) -> None:
    v = registry.latest("event")
    flat = {"payload": "type"}
    buf = BytesIO()
    schemaless_writer(buf, v.parsed, to_avro_datum(v.schema, event, flat))
    data = codec.encode_event(event)
    assert data[10:] == buf.getvalue()
    fast = schemaless_reader(BytesIO(data[10:]), v.parsed)
    assert from_avro_datum(v.schema, fast, flat, omit_null=True) == event


def test_vietnamese_text_keeps_its_unicode_form_byte_for_byte() -> None:
    name = "Nguyễn Thị Hồng Nhung"
    for form in ("NFC", "NFD"):
        text = unicodedata.normalize(form, name)
        event = {**EVENTS[0], "applicant": {"name": text}, "appointment_at": None}
        back = codec.decode_event(codec.encode_event(event))
        assert back["applicant"]["name"] == text
        assert back["applicant"]["name"].encode() == text.encode()
    assert unicodedata.normalize("NFC", name) != unicodedata.normalize("NFD", name)


def test_null_optional_fields_are_left_out_when_decoded() -> None:
    event = {**EVENTS[3], "note": None, "procedure": None}
    assert codec.decode_event(codec.encode_event(event)) == EVENTS[3]


def test_unknown_fingerprint_is_refused_with_unknown_schema() -> None:
    data = bytearray(codec.encode_event(EVENTS[0]))
    data[2:10] = b"\x00" * 8
    with pytest.raises(UnknownSchema, match="0000000000000000") as err:
        codec.decode_event(bytes(data))
    assert err.value.reason == "unknown_schema"


def test_bytes_of_another_kind_are_named_in_the_error() -> None:
    alert = codec.encode_alert(ALERT)
    with pytest.raises(UnknownSchema, match="alert v2, not a event"):
        codec.decode_event(alert)


@pytest.mark.parametrize("cut", [1, 9, 10, 11, 40, -1])
def test_truncated_bytes_are_a_corrupt_record(cut: int) -> None:
    data = codec.encode_event(EVENTS[0])
    with pytest.raises(CorruptRecord) as err:
        codec.decode_event(data[:cut])
    assert err.value.reason == "corrupt_record"


def test_junk_after_the_record_is_a_corrupt_record() -> None:
    with pytest.raises(CorruptRecord, match="junk"):
        codec.decode_event(codec.encode_event(EVENTS[5]) + b"\x00")


def test_invalid_utf8_is_a_corrupt_record() -> None:
    data = bytearray(codec.encode_event(EVENTS[4]))
    data[data.index("Thiếu".encode()) + 1] = 0xFF  # inside the reason text
    with pytest.raises(CorruptRecord, match="UTF-8"):
        codec.decode_event(bytes(data))


def test_a_payload_that_does_not_match_the_type_is_a_corrupt_record() -> None:
    # ... payload index 3, then five null optional fields (correlation_id and version 3's four)
    data = bytearray(codec.encode_event(EVENTS[5]))
    assert data[-6:] == b"\x06\x00\x00\x00\x00\x00"
    data[-6] = 0  # payload index 0 (Received) under type supplement_received
    with pytest.raises(CorruptRecord, match="does not match"):
        codec.decode_event(bytes(data))


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"dossier": "H99-1"}, "dossier", "AGENCY-yymmdd"),
    ({"dossier": "G09.20-20261345-0092637"}, "dossier", "impossible date"),
    ({"agency": "H99!"}, "agency", "letters, digits and dots"),
    ({"agency": None}, "agency", "required"),
    ({"at": "2026-06-09T09:15:00"}, "at", "offset"),
    ({"at": "tomorrow"}, "at", "ISO-8601"),
    ({"event_id": "e-1"}, "event_id", "UUID"),
    ({"type": "approved"}, "type", "not one of"),
    ({"procedure": "1001193"}, "procedure", "1.001193"),
    ({"channel": "fax"}, "channel", "not one of desk, online, postal"),
    ({"applicant": {"name": " "}}, "applicant.name", "empty"),
    ({"applicant": {"name": "A", "fax": "0912"}}, "applicant.fax", "not a field"),
    ({"applicant": {"name": "A", "phone": "0912"}}, "applicant.phone", "telephone number"),
    ({"applicant": {"name": "A", "email": "a.vn"}}, "applicant.email", "name@example.vn"),
    ({"operator": ""}, "operator", "non-empty"),
    ({"corrects_event_id": EID.replace("5b", "6c")}, "operator", "with corrects_event_id"),
    ({"applicant": "Nguyễn Văn A"}, "applicant", "object"),
    ({"appointment_at": "2026-06-16"}, "appointment_at", "offset"),
    ({"to_agency": "G09.20"}, "to_agency", "not a field of a received event"),
    ({"colour": "red"}, "colour", "not a field of any"),
])
def test_validation_errors_name_the_field(change: dict[str, Any], field: str,
                                          words: str) -> None:
    with pytest.raises(InvalidRecord, match=words) as err:
        codec.encode_event({**EVENTS[0], **change})
    assert err.value.field == field
    assert err.value.reason == "invalid_record"


@pytest.mark.parametrize(("event", "field"), [
    ({**BASE, "type": "handoff"}, "to_agency"),
    ({**BASE, "type": "obligation_paid", "amount_vnd": -1}, "amount_vnd"),
    ({**BASE, "type": "obligation_paid", "amount_vnd": True}, "amount_vnd"),
    ({**BASE, "type": "returned", "channel": "online"}, "channel"),
    ({**BASE, "type": "postal_update", "tracking_number": "X", "leg": "out",
      "status": "failed"}, "leg"),
    ({**BASE, "type": "withdrawn", "reason": ""}, "reason"),
    ({**BASE, "type": "withdrawn", "reason": ["a"]}, "reason"),
])
def test_type_specific_fields_are_checked(event: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecord) as err:
        codec.encode_event(event)
    assert err.value.field == field


def test_decode_can_check_records_from_foreign_producers() -> None:
    bad = {**EVENTS[5], "dossier": "nonsense"}
    data = codec.encode_event(bad, validate=False)
    assert codec.decode_event(data)["dossier"] == "nonsense"
    with pytest.raises(InvalidRecord, match="dossier"):
        codec.decode_event(data, validate=True)


# -- schema versions ----------------------------------------------------------------------

VOID = {**BASE, "event_id": EID.replace("5b1e", "7a2f"), "type": "event_voided",
        "voided_event_id": EID, "reason": "Nhập trùng hai lần", "operator": "lan.nguyen"}
CORRECTION = {**EVENTS[2], "event_id": EID.replace("5b1e", "8c3d"), "corrects_event_id": EID,
              "correction_reason": "Chuyển nhầm cơ quan", "operator": "lan.nguyen"}
CONTACT = {**EVENTS[0], "applicant": {"name": "Nguyễn Văn A", "phone": "+84 912 345 678",
                                      "email": "a.nguyen@example.vn", "zalo_user_id": "z-991"}}


@pytest.mark.parametrize("event", [VOID, CORRECTION, CONTACT], ids=["void", "correction",
                                                                     "contact"])
def test_version_3_events_round_trip_and_match_fastavro(event: dict[str, Any]) -> None:
    data = codec.encode_event(event)
    assert data[2:10] == registry.versions("event")[2].fingerprint
    assert codec.decode_event(data, validate=True) == event
    v = registry.latest("event")
    value = schemaless_reader(BytesIO(data[10:]), v.parsed, v.parsed)
    buf = BytesIO()
    schemaless_writer(buf, v.parsed, value)
    assert buf.getvalue() == data[10:]


def test_a_void_travels_as_a_received_that_an_older_reader_refuses() -> None:
    # An Avro enum cannot grow under FULL_TRANSITIVE compatibility: the void is the record
    # with voided_event_id set, a received with an empty payload on the wire.
    data = codec.encode_event(VOID)
    v = registry.latest("event")
    raw = schemaless_reader(BytesIO(data[10:]), v.parsed, v.parsed)
    assert raw["type"] == "received" and raw["voided_event_id"] == EID
    assert raw["correction_reason"] == "Nhập trùng hai lần"
    for version in (1, 2):
        older = codec.codec_for("event", reader_version=version)
        seen = older.decode(data)
        assert seen["type"] == "received" and "voided_event_id" not in seen
        with pytest.raises(InvalidRecord, match="procedure"):
            older.validate(seen)


def test_a_void_needs_its_operator_and_cannot_be_a_correction() -> None:
    with pytest.raises(InvalidRecord, match="operator") as err:
        codec.encode_event({k: v for k, v in VOID.items() if k != "operator"})
    assert err.value.field == "operator"
    with pytest.raises(InvalidRecord) as err:
        codec.encode_event({**VOID, "corrects_event_id": EID})
    assert err.value.field == "corrects_event_id"
    with pytest.raises(InvalidRecord) as err:
        codec.encode_event({k: v for k, v in VOID.items() if k != "reason"})
    assert err.value.field == "reason"
    with pytest.raises(InvalidRecord) as err:  # a void's fields on another type
        codec.encode_event({**EVENTS[2], "voided_event_id": EID})
    assert err.value.field == "voided_event_id"


def test_version_3_bytes_decode_with_a_version_2_reader_without_the_new_fields() -> None:
    v2 = codec.codec_for("event", reader_version=2)
    assert v2.decode(codec.encode_event(CONTACT)) == EVENTS[0] | {
        "applicant": {"name": "Nguyễn Văn A"}}
    older = {k: v for k, v in CORRECTION.items()
             if k not in ("corrects_event_id", "correction_reason", "operator")}
    assert v2.decode(codec.encode_event(CORRECTION)) == older

def test_version_1_bytes_decode_with_the_latest_reader() -> None:
    v1 = codec.codec_for("event", reader_version=1)
    assert v1.version == 1 and codec.EVENTS.version == len(registry.VERSIONS["event"])
    for event in EVENTS:
        data = v1.encode(event)
        assert data[2:10] == registry.versions("event")[0].fingerprint
        assert codec.decode_event(data) == event


def test_version_2_bytes_decode_with_a_version_1_reader() -> None:
    v1 = codec.codec_for("event", reader_version=1)
    event = {**EVENTS[2], "correlation_id": "req-42"}
    data = codec.encode_event(event)
    assert codec.decode_event(data) == event
    older = dict(event)
    del older["correlation_id"]  # a version 1 reader has no such field
    assert v1.decode(data) == older


def test_identify_names_the_writer_version() -> None:
    found = codec.identify(codec.encode_event(EVENTS[0]))
    assert found is not None and (found.kind, found.version) == ("event", 3)
    assert codec.identify(b"{}") is None


def test_rabin_fingerprint_matches_the_avro_specification() -> None:
    # Java's SchemaNormalization.parsingFingerprint64 of "int" (little-endian on the wire).
    assert registry.rabin_fingerprint(b'"int"').to_bytes(8, "little").hex() == "8f5c393f1ad57572"


# -- deliveries, alerts, dead letters -----------------------------------------------------

DELIVERY = {"delivery_id": f"{EID}:000.00.15.H99", "destination": "000.00.15.H99",
            "kind": "handoff", "dossier": DOSSIER, "event_id": EID,
            "at": "2026-06-09T09:15:01+07:00",
            "payload": {"dossier": DOSSIER, "từ": "G09.20", "n": [1, 2.5, None]}}
ALERT = {"alert_id": "a1", "kind": "overdue", "scope": "step", "dossier": DOSSIER,
         "agency": "G09.20", "destination": None, "due_at": "2026-06-16T17:00:00+07:00",
         "fired_at": "2026-06-16T17:00:00+07:00", "detail": "Quá hạn"}
DEADLETTER = {"original": b"\xc3\x01garbage", "key": DOSSIER.encode(),
              "reason": "unknown_schema", "detail": "fingerprint 0000", "source_topic":
              "dossier.events", "partition": 3, "offset": 12345678901,
              "at": "2026-06-09T09:15:02+07:00"}


@pytest.mark.parametrize(("kind", "record"), [
    ("delivery", DELIVERY), ("alert", ALERT), ("deadletter", DEADLETTER),
    ("alert", {**ALERT, "scope": "destination", "kind": "delivery_failing", "dossier": None,
               "agency": None, "destination": "DVCQG", "due_at": None}),
    ("deadletter", {**DEADLETTER, "key": None, "partition": -1, "offset": -1}),
])
def test_other_kinds_round_trip(kind: str, record: dict[str, Any]) -> None:
    c = codec.codec_for(kind)
    assert c.decode(c.encode(record)) == record


def test_alert_detail_defaults_to_empty_and_nullable_fields_to_null() -> None:
    short = {k: v for k, v in ALERT.items() if k not in ("detail", "destination")}
    assert codec.decode_alert(codec.encode_alert(short)) == {**ALERT, "detail": ""}


@pytest.mark.parametrize(("kind", "record", "field"), [
    ("alert", {**ALERT, "kind": "late"}, "kind"),
    ("alert", {**ALERT, "scope": "destination"}, "destination"),
    ("alert", {**ALERT, "agency": None}, "agency"),
    ("alert", {**ALERT, "fired_at": "now"}, "fired_at"),
    ("delivery", {**DELIVERY, "payload": "text"}, "payload"),
    ("delivery", {**DELIVERY, "payload": {"x": object()}}, "payload"),
    ("delivery", {**DELIVERY, "kind": "parcel"}, "kind"),
    ("deadletter", {**DEADLETTER, "original": "text"}, "original"),
    ("deadletter", {**DEADLETTER, "reason": "Bad Reason"}, "reason"),
    ("deadletter", {**DEADLETTER, "partition": 2**31}, "partition"),
])
def test_other_kinds_name_the_bad_field(kind: str, record: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecord) as err:
        codec.codec_for(kind).encode(record)
    assert err.value.field == field


# -- properties ---------------------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60).filter(
    str.strip)
_instant = st.datetimes(timezones=st.sampled_from(
    [timezone(timedelta(hours=h)) for h in (7, 0, -5)])).map(lambda t: t.isoformat())


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    base = {"event_id": str(draw(st.uuids())), "dossier": DOSSIER, "at": draw(_instant),
            "agency": draw(st.sampled_from(["G09.20", "000.00.15.H99", "VNPOST"]))}
    kind = draw(st.sampled_from([e["type"] for e in EVENTS]))
    extra: dict[str, Any] = {"received": lambda: {
        "procedure": "1.001193", "channel": draw(st.sampled_from(["desk", "online", "postal"])),
        "applicant": {"name": draw(_text),
                      **({"id_number": draw(_text)} if draw(st.booleans()) else {})},
        **({"appointment_at": draw(_instant)} if draw(st.booleans()) else {})},
        "handoff": lambda: {"to_agency": "G09.20",
                            **({"note": draw(st.text(max_size=300))} if draw(st.booleans())
                               else {})},
        "obligation_requested": lambda: {"amount_vnd": draw(st.integers(0, 2**63 - 1))},
        "obligation_paid": lambda: {"amount_vnd": draw(st.integers(0, 2**63 - 1))},
        "apology_issued": lambda: {"new_due_at": draw(_instant), "reason": draw(_text)},
        "result_ready": lambda: {"decision": draw(st.sampled_from(["approved", "refused"]))},
        "returned": lambda: {"channel": draw(st.sampled_from(["desk", "postal"]))},
        "postal_update": lambda: {"tracking_number": draw(_text), "leg": "dossier_in",
                                  "status": "delivered"},
    }.get(kind, lambda: {"reason": draw(_text)} if kind in (
        "supplement_requested", "withdrawn", "stopped") else {})()
    event = {**base, "type": kind, **extra}
    if draw(st.booleans()):
        event["correlation_id"] = draw(st.text(min_size=1, max_size=40).filter(str.strip))
    return event


@settings(max_examples=300, deadline=None)
@given(events())
def test_any_valid_event_round_trips_and_matches_fastavro(event: dict[str, Any]) -> None:
    data = codec.encode_event(event)
    assert codec.decode_event(data) == event
    v = registry.latest("event")
    buf = BytesIO()
    schemaless_writer(buf, v.parsed, to_avro_datum(v.schema, event, {"payload": "type"}))
    assert data[10:] == buf.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_anything_but_codec_errors(junk: bytes) -> None:
    header = b"\xc3\x01" + registry.latest("event").fingerprint
    for data in (junk, header + junk):
        with contextlib.suppress(codec.CodecError):  # anything else fails the test
            codec.decode_event(data)


def test_a_string_cut_short_at_the_very_end_is_truncated_not_shortened() -> None:
    data = codec.encode_event(VOID)  # voided_event_id is the last field
    assert data.endswith(VOID["voided_event_id"].encode())
    with pytest.raises(CorruptRecord, match="truncated"):
        codec.decode_event(data[:-2])


def test_a_generated_check_covers_nested_records_and_the_instant_inline() -> None:
    with pytest.raises(InvalidRecord) as err:
        codec.encode_event({**EVENTS[0], "applicant": {"name": "A", "id_number": 12}})
    assert (err.value.field, err.value.problem) == ("applicant.id_number", "must be a string")
    with pytest.raises(InvalidRecord, match="offset") as err:
        codec.encode_event({**EVENTS[0], "at": "2026-06-09T09:15:00"})
    assert err.value.field == "at"
