"""The three channels against their doubles on 127.0.0.1 (real HTTP and SMTP servers): what
each provider answer means to the notifier, and the doubles' idempotency."""

from __future__ import annotations

import asyncio

from lienthong.connectors.citizen import EmailSender, Outgoing, SmsSender, ZaloSender
from lienthong.connectors.citizen.store import NoticeStore
from lienthong.connectors.doubles.messaging import SmsDouble, ZaloDouble
from lienthong.connectors.doubles.smtp import SmtpSink
from lienthong.connectors.http.serving import listening
from lienthong.connectors.notify.service import SmtpSettings


def out(mid: str, channel: str, address: str) -> Outgoing:
    return Outgoing(mid, channel, address, "Hồ sơ đã có kết quả", "Ho so da co ket qua")


async def test_sms_is_taken_once_per_idempotency_key_and_answers_map_to_outcomes() -> None:
    double = SmsDouble(rate_per_second=2, fail_next=1)
    async with listening(double.build_app()) as url:
        sender = SmsSender(url, double.token, "MOTCUA")
        try:
            first = await sender.send(out("m-1", "sms", "84912345678"))
            assert (first.outcome, first.throttled) == ("retry", False)      # the 503
            a = await sender.send(out("m-1", "sms", "84912345678"))
            b = await sender.send(out("m-1", "sms", "84912345678"))           # a repeat
            assert a.outcome == b.outcome == "accepted" and a.provider_id == b.provider_id
            limited = await sender.send(out("m-2", "sms", "84912345679"))
            assert (limited.outcome, limited.throttled, limited.retry_after) == (
                "retry", True, 1.0)
            await asyncio.sleep(1.05)
            wrong = await sender.send(out("m-3", "sms", "123"))
            assert wrong.outcome == "rejected" and "invalid_number" in wrong.detail
        finally:
            await sender.close()
        assert len(double.taken) == 1 and double.requests == 5
        bad = SmsSender(url, "wrong-token", "MOTCUA")
        try:
            assert (await bad.send(out("m-4", "sms", "84912345678"))).outcome == "rejected"
        finally:
            await bad.close()


async def test_zalo_answers_errors_in_the_body_and_its_delivery_is_polled() -> None:
    double = ZaloDouble(followers={"1111111111"}, rate_per_second=1, report_after=0.2)
    async with listening(double.build_app()) as url:
        sender = ZaloSender(url, double.token)
        try:
            ok = await sender.send(out("z-1", "zalo", "1111111111"))
            assert ok.outcome == "accepted" and ok.provider_id
            assert (await sender.status(str(ok.provider_id))).delivered is None   # not yet
            limited = await sender.send(out("z-2", "zalo", "1111111111"))
            assert (limited.outcome, limited.throttled) == ("retry", True)
            await asyncio.sleep(1.05)
            stranger = await sender.send(out("z-3", "zalo", "2222222222"))
            assert stranger.outcome == "rejected" and "-213" in stranger.detail
            assert (await sender.status(str(ok.provider_id))).delivered is True
        finally:
            await sender.close()


async def test_email_goes_through_smtp_and_a_relay_saying_later_is_retried() -> None:
    async with SmtpSink() as sink:
        sender = EmailSender(SmtpSettings("127.0.0.1", sink.port, "thongbao@h99.gov.vn"))
        try:
            result = await sender.send(Outgoing("e-1", "email", "b@example.vn",
                                                "Đã tiếp nhận hồ sơ X", "Hồ sơ X đã tiếp nhận"))
            assert result.outcome == "accepted"
            (mail,) = await sink.wait_for(1)
            assert mail.rcpt_to == ("b@example.vn",)
            assert str(mail.message["Message-ID"]) == "<e-1@lienthong>"
            assert "Hồ sơ X đã tiếp nhận" in mail.text()
            sink.fail_rcpt = True
            later = await sender.send(Outgoing("e-2", "email", "b@example.vn", "s", "t"))
            assert later.outcome == "retry"
        finally:
            await sender.close()


def test_an_opt_out_skips_messages_still_queued_to_that_address(tmp_path: object) -> None:
    from datetime import datetime
    from pathlib import Path

    from lienthong.services.domain.citizen import Message

    store = NoticeStore(Path(str(tmp_path)) / "s.sqlite")
    now = datetime.fromisoformat("2026-11-25T22:00:00+07:00")
    morning = datetime.fromisoformat("2026-11-26T07:00:00+07:00")
    held = Message("m-1", "D", "e", "received", "sms", "84912345678", "s", "t", now, morning,
                   True)
    store.apply("ev", {0: 1}, [], [(held, None)], [], now)
    assert store.opt_out("sms", "84912345678", "sms_reply", now)
    assert not store.opt_out("sms", "84912345678", "sms_reply", now)     # once
    assert store.due(morning) == []
    assert store.messages_of("D")[0]["detail"] == "opted_out"
    assert store.opt_in("sms", "84912345678") and not store.opted_out("sms", "84912345678")
    store.close()


async def test_the_doubles_server_serves_the_sms_and_zalo_providers_too() -> None:
    from lienthong.connectors.doubles.server import Doubles

    doubles = Doubles(["000.00.15.H99"])
    async with listening(doubles.build_app()) as url:
        sms = SmsSender(f"{url}/sms", "sms-token", "MOTCUA")
        zalo = ZaloSender(f"{url}/zalo", "zalo-token")
        try:
            assert (await sms.send(out("d-1", "sms", "84912345678"))).outcome == "accepted"
            assert (await zalo.send(out("d-2", "zalo", "1234567"))).outcome == "accepted"
        finally:
            await sms.close()
            await zalo.close()
    assert len(doubles.sms.taken) == 1 and len(doubles.zalo.taken) == 1


async def test_the_webhooks_refuse_a_wrong_token_and_say_what_is_wrong_with_a_body(
        tmp_path: object) -> None:
    from pathlib import Path

    import httpx

    from lienthong.connectors.citizen import CitizenNotifier, Topics
    from lienthong.services.domain.catalogue import load_catalogue

    catalogue = load_catalogue(Path(__file__).parents[2] / "examples" / "province-h99.yaml")
    store = NoticeStore(Path(str(tmp_path)) / "w.sqlite")
    notifier = CitizenNotifier("unused:9092", catalogue, store, {}, Topics("ev", "cn"),
                               callback_token="s3cret")
    async with listening(notifier.build_app()) as url, httpx.AsyncClient(base_url=url) as c:
        r = await c.post("/v1/citizen/sms/reports", json={"id": "x", "status": "DELIVERED"})
        assert r.status_code == 401 and r.json()["error"] == "bad_token"
        ok = "?token=s3cret"
        r = await c.post(f"/v1/citizen/sms/reports{ok}", content=b"{not json")
        assert r.status_code == 400 and r.json()["error"] == "not_json"
        r = await c.post(f"/v1/citizen/sms/reports{ok}", json={"id": "x", "status": "MAYBE"})
        assert r.status_code == 422 and r.json()["error"] == "unknown_status"
        r = await c.post(f"/v1/citizen/sms/reports{ok}", json={"id": "x", "status": "FAILED"})
        assert r.status_code == 200 and r.json() == {"applied": False}   # no such message
        r = await c.post(f"/v1/citizen/sms/inbound{ok}", json={"from": "12", "text": "STOP"})
        assert r.status_code == 422 and r.json()["error"] == "bad_number"
        r = await c.post(f"/v1/citizen/sms/inbound{ok}",
                         json={"from": "0912345678", "text": "Từ chối"})
        assert r.json() == {"opted_out": True} and store.opted_out("sms", "84912345678")
        r = await c.post(f"/v1/citizen/zalo/events{ok}", json={"event_name": "unfollow"})
        assert r.status_code == 422 and r.json()["fields"] == ["follower.id"]
        assert (await c.get("/healthz")).status_code == 503           # not reading yet
        metrics = (await c.get("/metrics")).text
        assert 'lienthong_citizen_optouts_total{channel="sms"} 1.0' in metrics
    store.close()
