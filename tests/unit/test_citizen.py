"""Citizen notifications, the pure core: which notice an event is, on which channel, when
(quiet hours), under which id, in which words; and the store's once-only bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lienthong.connectors.citizen.service import wording_for
from lienthong.connectors.citizen.store import NoticeStore
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.domain.citizen import (
    DEFAULT_TEMPLATES,
    Contacts,
    Message,
    Policy,
    QuietHours,
    RetryRule,
    Skip,
    classify_http,
    contacts_of,
    facts_of,
    is_opt_out,
    mask,
    message_id,
    normalise_phone,
    plain_text,
    plan,
    sms_fallback,
    template_problem,
)

SAMPLE = Path(__file__).parents[2] / "examples" / "province-h99.yaml"
CATALOGUE = load_catalogue(SAMPLE)
WORDING = wording_for(CATALOGUE)
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DOSSIER = "000.00.15.H99-20261125-0000007"
COMMUNE = "000.00.15.H99"
POLICE = "000.02.10.H99"


def received(**applicant: str) -> dict[str, Any]:
    return {"event_id": "11111111-1111-4111-8111-111111111111", "type": "received",
            "dossier": DOSSIER, "at": "2026-11-25T09:15:00+07:00", "agency": COMMUNE,
            "procedure": "1.001193", "channel": "desk",
            "applicant": {"name": "Nguyễn Văn A", "id_number": "001099012345", **applicant}}


def event(etype: str, at: str = "2026-11-25T10:00:00+07:00", **fields: Any) -> dict[str, Any]:
    return {"event_id": f"22222222-2222-4222-8222-{abs(hash((etype, at))) % 10**12:012d}",
            "type": etype, "dossier": DOSSIER, "at": at, "agency": COMMUNE, **fields}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


FACTS = facts_of(received(phone="0912 345 678", email="A.Nguyen@Example.vn"))


def test_a_receipt_tells_the_appointment_by_sms_and_email_without_the_applicant_name() -> None:
    p = plan(received(phone="0912345678", email="a@example.vn"), None,
             now=at("2026-11-25T09:15:02+07:00"), wording=WORDING,
             appointment=at("2026-12-02T09:15:00+07:00"))
    assert p.facts is not None and p.facts.contacts.phone == "84912345678"
    assert [m.channel for m in p.messages] == ["sms", "email"]
    sms, mail = p.messages
    # SMS goes unaccented (brandname SMS); e-mail keeps the Vietnamese.
    assert "Ngay hen tra ket qua: 09:15 ngay 02/12/2026" in sms.text
    assert "Ủy ban nhân dân xã Hòa Bình đã tiếp nhận hồ sơ " + DOSSIER in mail.text
    assert "Nguyễn Văn A" not in mail.text and "001099012345" not in mail.text
    assert mail.subject == f"Đã tiếp nhận hồ sơ {DOSSIER}"
    assert not sms.held and sms.not_before == at("2026-11-25T09:15:02+07:00")


def test_zalo_replaces_sms_when_the_applicant_gave_a_zalo_id() -> None:
    facts = facts_of(received(phone="0912345678", zalo_user_id="1234567890123"))
    assert facts is not None
    p = plan(event("handoff", to_agency=POLICE), facts, now=at("2026-11-25T10:00:01+07:00"),
             wording=WORDING)
    assert [(m.channel, m.address) for m in p.messages] == [("zalo", "1234567890123")]
    assert "đã được chuyển đến Công an tỉnh Mẫu" in p.messages[0].text


def test_a_handback_to_the_receiving_desk_is_not_told() -> None:
    p = plan(event("handoff", to_agency=COMMUNE), FACTS, now=at("2026-11-25T10:00:01+07:00"),
             wording=WORDING)
    assert p.messages == () and p.skipped == ()


@pytest.mark.parametrize(("etype", "fields", "kind", "words"), [
    ("supplement_requested", {"reason": "Thiếu bản sao giấy chứng sinh"}, "supplement",
     "Thiếu bản sao giấy chứng sinh"),
    ("apology_issued", {"reason": "Chờ xác minh", "new_due_at": "2026-12-09T16:00:00+07:00"},
     "apology", "Ngày hẹn trả kết quả mới: 16:00 ngày 09/12/2026"),
    ("result_ready", {"decision": "approved"}, "result_ready", "được chấp thuận"),
    ("postal_update", {"tracking_number": "EL123456789VN", "leg": "result_out",
                       "status": "picked_up"}, "result_posted", "EL123456789VN"),
])
def test_each_moment_of_a_dossier_has_its_vietnamese_message(
        etype: str, fields: dict[str, Any], kind: str, words: str) -> None:
    p = plan(event(etype, **fields), FACTS, now=at("2026-11-25T10:00:01+07:00"),
             wording=WORDING)
    mail = next(m for m in p.messages if m.channel == "email")
    assert mail.kind == kind and words in mail.text


def test_postal_updates_other_than_the_result_pickup_are_not_told() -> None:
    for leg, status in (("result_out", "in_transit"), ("dossier_in", "picked_up")):
        p = plan(event("postal_update", tracking_number="EL1VN", leg=leg, status=status),
                 FACTS, now=at("2026-11-25T10:00:01+07:00"), wording=WORDING)
        assert p.messages == ()


def test_a_procedure_of_the_catalogue_words_its_result_its_own_way() -> None:
    facts = facts_of({**received(email="a@example.vn"), "procedure": "2.000488"})
    p = plan(event("result_ready", decision="approved"), facts,
             now=at("2026-11-25T10:00:01+07:00"), wording=WORDING)
    assert "mang căn cước" in p.messages[0].text
    assert DEFAULT_TEMPLATES["result_ready"] != CATALOGUE.procedure(
        "2.000488", at("2026-11-25T10:00:00+07:00")).citizen_template("result_ready")


def test_message_ids_are_the_same_every_time_and_differ_per_channel() -> None:
    ev = event("result_ready", decision="refused")
    a = plan(ev, FACTS, now=at("2026-11-25T10:00:01+07:00"), wording=WORDING)
    b = plan(ev, FACTS, now=at("2026-11-25T11:00:00+07:00"), wording=WORDING)
    assert [m.message_id for m in a.messages] == [m.message_id for m in b.messages]
    assert len({m.message_id for m in a.messages}) == 2
    assert a.messages[0].message_id == message_id(DOSSIER, ev["event_id"], "sms")


def test_an_sms_at_night_waits_for_seven_in_the_morning_local_time() -> None:
    # 22:30 in Hà Nội is 15:30 UTC; the SMS waits for 07:00 the next day, e-mail goes at once.
    ev = event("supplement_requested", at="2026-11-25T22:30:00+07:00", reason="Thiếu ảnh")
    p = plan(ev, FACTS, now=at("2026-11-25T15:30:05+00:00"), wording=WORDING)
    sms = next(m for m in p.messages if m.channel == "sms")
    mail = next(m for m in p.messages if m.channel == "email")
    assert sms.held and sms.not_before == at("2026-11-26T07:00:00+07:00")
    assert not mail.held and mail.not_before == at("2026-11-25T15:30:05+00:00")


def test_opted_out_and_stale_messages_are_skipped_with_their_reason() -> None:
    ev = event("result_ready", decision="approved")
    p = plan(ev, FACTS, now=at("2026-11-25T10:00:01+07:00"), wording=WORDING,
             opted_out=lambda channel, address: channel == "sms" and address == "84912345678")
    assert [m.channel for m in p.messages] == ["email"]
    assert [(s.channel, s.reason) for s in p.skipped] == [("sms", "opted_out")]
    late = plan(ev, FACTS, now=at("2026-11-29T10:00:00+07:00"), wording=WORDING,
                policy=Policy(max_age=timedelta(days=2)))
    assert late.messages == () and {s.reason for s in late.skipped} == {"stale"}


def test_an_applicant_without_contacts_is_recorded_as_no_contact() -> None:
    p = plan(received(), None, now=at("2026-11-25T09:15:02+07:00"), wording=WORDING)
    assert p.messages == () and [s.reason for s in p.skipped] == ["no_contact"]


def test_events_of_a_dossier_never_seen_received_tell_nobody() -> None:
    assert plan(event("result_ready", decision="approved"), None,
                now=at("2026-11-25T10:00:01+07:00"), wording=WORDING).messages == ()


def test_contacts_are_normalised_and_unusable_ones_dropped() -> None:
    assert normalise_phone("+84 912.345.678") == "84912345678"
    assert normalise_phone("0912-345-678") == "84912345678"
    assert normalise_phone("12345") is None
    c = contacts_of({"name": "x", "phone": "024 3825", "email": "not-mail", "zalo_user_id": "x"})
    assert c == Contacts()


def test_logs_see_contacts_masked() -> None:
    assert mask("sms", "84912345678") == "849****5678"
    assert mask("email", "nguyenvana@gmail.com") == "n********a@gmail.com"
    assert mask("zalo", "1234567890123") == "…0123"


def test_templates_with_unknown_placeholders_are_refused() -> None:
    assert template_problem("Hồ sơ {dossier}") is None
    assert "unknown placeholder {name}" in str(template_problem("Kính gửi {name}"))
    assert template_problem("{dossier") is not None
    assert template_problem("") is not None


def test_replies_that_mean_stop() -> None:
    assert is_opt_out("Từ chối") and is_opt_out(" tu  choi ") and is_opt_out("STOP")
    assert not is_opt_out("cam on")


def test_provider_answers_and_backoff() -> None:
    assert [classify_http(s) for s in (200, 202, 429, 503, 400, 401)] == [
        "accepted", "accepted", "retry", "retry", "rejected", "rejected"]
    rule = RetryRule(attempts=3, base=timedelta(seconds=1), cap=timedelta(seconds=10))
    now = datetime(2026, 11, 25, tzinfo=UTC)
    assert rule.next_try(1, now) == now + timedelta(seconds=1)
    assert rule.next_try(2, now, retry_after=5) == now + timedelta(seconds=5)
    assert rule.next_try(3, now) is None


def test_plain_text_drops_every_vietnamese_mark() -> None:
    assert plain_text("Đã tiếp nhận hồ sơ, ngày hẹn trả") == "Da tiep nhan ho so, ngay hen tra"


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1),
                    timezones=st.just(UTC)),
       st.sampled_from([(time(21), time(7)), (time(22, 30), time(6)), (time(12), time(13, 30))]))
def test_quiet_hours_release_is_never_inside_them_and_never_earlier(
        t: datetime, window: tuple[time, time]) -> None:
    quiet = QuietHours(*window)
    released = quiet.release(t, TZ)
    assert released >= t
    assert not quiet.holds(released.astimezone(TZ).time())
    assert released - t <= timedelta(hours=24)
    if not quiet.holds(t.astimezone(TZ).time()):
        assert released == t


def test_the_store_plans_each_message_once_and_keeps_the_offset(tmp_path: Path) -> None:
    store = NoticeStore(tmp_path / "n.sqlite")
    now = at("2026-11-25T10:00:01+07:00")
    p = plan(event("result_ready", decision="approved"), FACTS, now=now, wording=WORDING)
    first = store.apply("ev", {0: 5}, [FACTS], [(m, None) for m in p.messages], p.skipped, now)
    again = store.apply("ev", {0: 5}, [FACTS], [(m, None) for m in p.messages], p.skipped, now)
    assert len(first) == 2 and again == []
    assert store.offsets("ev") == {0: 5}
    assert store.facts(DOSSIER) == FACTS
    due = store.due(now)
    assert len(due) == 2
    store.handed(due[0], "p-1", now)
    store.handed(due[0], "p-1", now)                  # a repeat changes nothing
    assert store.delivery_report(due[0].channel, "p-1", True, "delivered", now)
    statuses = [r.body["status"] for r in store.reports()]
    assert statuses == ["queued", "queued", "sent", "delivered"]
    assert all("84912345678" not in str(r.body) for r in store.reports())
    assert store.opt_out("email", "a.nguyen@example.vn", "operator", now)
    assert store.opted_out("email", "a.nguyen@example.vn")
    assert [m["status"] for m in store.messages_of(DOSSIER)] == ["delivered", "skipped"]
    # 30 days on, the addresses and texts are gone; the ids stay, so nothing is sent again.
    assert store.purge(now + timedelta(days=30)) == 2
    assert {m["to"] for m in store.messages_of(DOSSIER)} == {"-"}
    assert store.apply("ev", {0: 5}, [], [(m, None) for m in p.messages], [], now) == []
    assert store.facts(DOSSIER) == FACTS            # still open: its contacts are kept
    store.apply("ev", {0: 6}, [], [], [], now, ended=[DOSSIER])
    store.purge(now + timedelta(days=30))
    assert store.facts(DOSSIER) is None             # ended 30 days ago: forgotten
    store.close()


def test_a_zalo_message_refused_for_good_falls_back_to_an_unaccented_sms_once() -> None:
    facts = facts_of(received(phone="0912345678", zalo_user_id="1234567890123"))
    assert facts is not None
    ev = event("result_ready", decision="approved")
    (zalo,) = plan(ev, facts, now=at("2026-11-25T10:00:01+07:00"), wording=WORDING).messages
    sms = sms_fallback(zalo, facts, now=at("2026-11-25T10:00:03+07:00"), tz=TZ)
    assert isinstance(sms, Message)
    assert (sms.channel, sms.address) == ("sms", "84912345678")
    assert sms.message_id == message_id(DOSSIER, ev["event_id"], "sms")
    assert sms.text == plain_text(zalo.text) and not sms.held
    night = sms_fallback(zalo, facts, now=at("2026-11-25T23:00:00+07:00"), tz=TZ)
    assert isinstance(night, Message) and night.not_before == at("2026-11-26T07:00:00+07:00")
    refused = sms_fallback(zalo, facts, now=at("2026-11-25T10:00:03+07:00"), tz=TZ,
                           opted_out=lambda channel, address: True)
    assert isinstance(refused, Skip) and refused.reason == "opted_out"
    no_phone = facts_of(received(zalo_user_id="1234567890123"))
    assert no_phone is not None and sms_fallback(
        zalo, no_phone, now=at("2026-11-25T10:00:03+07:00"), tz=TZ) is None


def test_an_event_stamped_a_little_ahead_is_told_at_once_not_at_its_stamp() -> None:
    # The source system's clock runs 2 minutes fast: the message goes when it is planned.
    ev = event("result_ready", at="2026-11-25T10:02:00+07:00", decision="approved")
    p = plan(ev, FACTS, now=at("2026-11-25T10:00:00+07:00"), wording=WORDING)
    assert {m.not_before for m in p.messages} == {at("2026-11-25T10:00:00+07:00")}
    assert not any(m.held for m in p.messages)
