"""Alerts told to the agency responsible and the daily digest, over real loopback servers: an
aiohttp webhook receiver and an SMTP sink on 127.0.0.1.

Calendar of the sample province: Monday-Friday 07:30-11:30 and 13:00-17:00; 2 December 2026 is
a Wednesday, 5-6 December a weekend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from lienthong.connectors.doubles.smtp import SmtpSink
from lienthong.connectors.http import RetryPolicy
from lienthong.connectors.notify import (
    AlertRouter,
    Contact,
    Dispatcher,
    MailSender,
    NotifyService,
    SentLog,
    SmtpSettings,
    WebhookSender,
    contact_for,
)
from lienthong.services.domain.catalogue import (
    Catalogue,
    CatalogueError,
    load_catalogue,
    parse_catalogue,
)
from lienthong.services.ops.board import AlertRecord

SAMPLE = Path(__file__).parents[2] / "examples" / "province-h99.yaml"
PROVINCE = "000.00.00.H99"
COMMUNE = "000.00.15.H99"          # has a mailbox
OTHER_COMMUNE = "000.00.16.H99"    # none: falls to the province people's committee
POLICE = "000.02.10.H99"           # a webhook
NOW = datetime.fromisoformat("2026-12-02T09:00:00+07:00")
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)


def catalogue_with_contacts(webhook: str = "http://127.0.0.1:9/alerts") -> Catalogue:
    data = load_catalogue(SAMPLE).to_dict()
    for a in data["agencies"]:
        if a["code"] == COMMUNE:
            a["alert_email"] = "motcua@hoabinh.h99.gov.vn"
        elif a["code"] == POLICE:
            a["alert_webhook"] = webhook
        elif a["code"] == PROVINCE:
            a["alert_email"] = "dieuhanh@h99.gov.vn"
    return parse_catalogue(data)


def alert(alert_id: str = "a-1", *, agency: str | None = COMMUNE, kind: str = "overdue",
          fired: datetime = NOW, **extra: Any) -> AlertRecord:
    data = {"alert_id": alert_id, "kind": kind, "scope": "dossier",
            "dossier": "000.00.15.H99-20261201-0000001", "agency": agency,
            "destination": None, "due_at": "2026-12-02T08:00:00+07:00",
            "fired_at": fired.isoformat(), "detail": "quá hạn 1 giờ"}
    data.update(extra)
    return AlertRecord.from_dict(data)


def snapshot(code: str, agency: str, due: str) -> dict[str, Any]:
    return {"dossier": code, "procedure": "1.001193", "procedure_name": "Khai sinh",
            "receiving_agency": agency, "channel": "desk",
            "applicant": {"name": "Lê Thị Mai", "id_number": "001199000001"},
            "holder": agency, "state": "processing",
            "received_at": "2026-11-30T08:00:00+07:00", "due_at": due, "ended_at": None,
            "outcome": "open", "steps": [], "pauses": [], "apologies": [], "postal": [],
            "portal_status": 4, "timeline": [], "updated_at": "2026-11-30T08:00:00+07:00"}


# -- catalogue contacts ----------------------------------------------------------------------

def test_agency_alert_contacts_are_read_checked_and_written_back() -> None:
    cat = catalogue_with_contacts("https://cong-an.h99.gov.vn/lienthong/alerts")
    assert cat.agency(COMMUNE).alert_email == "motcua@hoabinh.h99.gov.vn"  # type: ignore[union-attr]
    assert cat.agency(POLICE).alert_webhook.startswith("https://")  # type: ignore[union-attr]
    again = parse_catalogue(cat.to_dict())
    assert again.agency(COMMUNE) == cat.agency(COMMUNE)
    data = cat.to_dict()
    data["agencies"][0]["alert_email"] = "not an address"
    data["agencies"][1]["alert_webhook"] = "ftp://x"
    with pytest.raises(CatalogueError) as err:
        parse_catalogue(data)
    paths = [p.path for p in err.value.problems]
    assert paths == ["agencies[0].alert_email", "agencies[1].alert_webhook"]


def test_an_agency_without_a_contact_is_reported_to_its_nearest_ancestor() -> None:
    cat = catalogue_with_contacts()
    assert contact_for(cat, COMMUNE).email == "motcua@hoabinh.h99.gov.vn"  # type: ignore[union-attr]
    up = contact_for(cat, OTHER_COMMUNE)
    assert up is not None and up.agency == PROVINCE
    # Tax has no parent and no contact: only the fallback answers for it.
    assert contact_for(cat, "000.04.10.H99") is None
    fallback = Contact("*", "fallback", None, "ttcntt@h99.gov.vn")
    assert contact_for(cat, "000.04.10.H99", fallback) is fallback


# -- routing ---------------------------------------------------------------------------------

def test_one_alert_id_gives_one_notice_and_old_or_unrouted_alerts_none() -> None:
    router = AlertRouter(catalogue_with_contacts(), kinds=["overdue", "delivery_failing"],
                         max_age=timedelta(hours=6))
    notice = router.route(alert("a-1"), NOW)
    assert notice is not None and notice.contact.email == "motcua@hoabinh.h99.gov.vn"
    assert notice.subject.startswith("[Quá hạn] 000.00.15.H99-20261201-0000001 – "
                                     "Ủy ban nhân dân xã Hòa Bình")
    assert router.route(alert("a-1"), NOW) is None
    assert router.route(alert("a-2", fired=NOW - timedelta(hours=7)), NOW) is None
    assert router.route(alert("a-3", kind="due_soon"), NOW) is None
    assert router.route(alert("a-4", agency="000.04.10.H99"), NOW) is None
    assert router.skipped == {"duplicate": 1, "stale": 1, "kind": 1, "no_contact": 1}


def test_a_destination_alert_goes_to_the_destination_agency() -> None:
    router = AlertRouter(catalogue_with_contacts())
    notice = router.route(alert("d-1", kind="delivery_failing", scope="destination",
                                dossier=None, agency=None, destination=POLICE, due_at=None),
                          NOW)
    assert notice is not None and notice.agency == POLICE
    assert notice.contact.webhook == "http://127.0.0.1:9/alerts"
    assert "Gửi liên thông lỗi" in notice.subject


# -- sending over loopback servers -----------------------------------------------------------

@dataclass
class Receiver:
    url: str
    posts: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    fail_next: int = 0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver("")

    async def alerts(request: web.Request) -> web.Response:
        if rec.fail_next > 0:
            rec.fail_next -= 1
            return web.Response(status=503)
        rec.posts.append((dict(request.headers), await request.json()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/alerts", alerts)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/alerts"
    yield rec
    await runner.cleanup()


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as s:
        yield s


def service(cat: Catalogue, sink: SmtpSink, sent: SentLog, **kw: Any) -> NotifyService:
    router = AlertRouter(cat, dashboard_url="https://dieuhanh.h99.gov.vn")
    mail = MailSender(SmtpSettings("127.0.0.1", sink.port, "canhbao@h99.gov.vn"))
    return NotifyService(router, Dispatcher(WebhookSender(), mail, retry=FAST), sent,
                         lambda: NOW, **kw)


async def test_an_alert_is_mailed_once_to_the_agency_with_vietnamese_intact(
        sink: SmtpSink, receiver: Receiver, tmp_path: Path) -> None:
    svc = service(catalogue_with_contacts(receiver.url), sink, SentLog(tmp_path / "sent.log"))
    assert await svc.handle(alert("a-1")) is not None
    assert await svc.handle(alert("a-1")) is None          # the topic's repeat
    [mail] = await sink.wait_for(1)
    assert mail.rcpt_to == ("motcua@hoabinh.h99.gov.vn",)
    assert mail.mail_from == "canhbao@h99.gov.vn"
    assert mail.message["Subject"] == ("[Quá hạn] 000.00.15.H99-20261201-0000001 – "
                                       "Ủy ban nhân dân xã Hòa Bình")
    body = mail.text()
    assert "Hạn xử lý: 08:00 02/12/2026" in body and "quá hạn 1 giờ" in body
    assert "https://dieuhanh.h99.gov.vn/dossiers/000.00.15.H99-20261201-0000001" in body
    assert receiver.posts == []                              # the commune has no webhook
    assert (tmp_path / "sent.log").read_text() == "a-1\n"


async def test_a_restarted_router_does_not_send_an_alert_twice(
        sink: SmtpSink, receiver: Receiver, tmp_path: Path) -> None:
    cat = catalogue_with_contacts(receiver.url)
    await service(cat, sink, SentLog(tmp_path / "sent.log")).handle(alert("a-1"))
    again = service(cat, sink, SentLog(tmp_path / "sent.log"))
    assert await again.handle(alert("a-1")) is None
    assert await again.handle(alert("a-2")) is not None
    assert len(await sink.wait_for(2)) == 2


async def test_a_webhook_gets_the_alert_json_with_its_id_as_idempotency_key_after_retries(
        sink: SmtpSink, receiver: Receiver, tmp_path: Path) -> None:
    receiver.fail_next = 2                                   # 503 twice, then accepted
    svc = service(catalogue_with_contacts(receiver.url), sink, SentLog(None))
    notice = await svc.handle(alert("p-1", agency=POLICE))
    assert notice is not None
    [(headers, body)] = receiver.posts
    assert headers["Idempotency-Key"] == "p-1"
    assert body["type"] == "alert" and body["agency"] == POLICE
    assert body["alert"]["alert_id"] == "p-1" and body["agency_name"] == "Công an tỉnh Mẫu"
    assert svc.dispatcher.counts == {("webhook", "retried"): 2, ("webhook", "sent"): 1}
    assert svc.sent.keys == ["p-1"]


async def test_a_relay_that_keeps_refusing_leaves_the_alert_unsent_and_retryable(
        tmp_path: Path) -> None:
    async with SmtpSink(fail_rcpt=True) as down:
        svc = service(catalogue_with_contacts(), down, SentLog(tmp_path / "sent.log"))
        await svc.handle(alert("a-1"))
        assert down.messages == [] and svc.sent.keys == []
        assert svc.dispatcher.counts[("email", "failed")] == 1
        down.fail_rcpt = False
        assert await svc.handle(alert("a-1")) is not None   # a repeat may now go out
        assert len(await down.wait_for(1)) == 1


# -- the daily digest ------------------------------------------------------------------------

async def test_the_daily_digest_counts_and_lists_each_agencys_overdue_and_due_soon(
        sink: SmtpSink, receiver: Receiver) -> None:
    svc = service(catalogue_with_contacts(receiver.url), sink, SentLog(None))
    for s in (snapshot("C-LATE", COMMUNE, "2026-12-01T09:00:00+07:00"),   # 8 h late
              snapshot("C-SOON", COMMUNE, "2026-12-02T11:00:00+07:00"),   # 2 h left
              snapshot("C-FAR", COMMUNE, "2026-12-09T11:00:00+07:00"),    # not yet
              snapshot("P-LATE", POLICE, "2026-12-01T16:00:00+07:00"),
              snapshot("O-LATE", OTHER_COMMUNE, "2026-12-02T08:00:00+07:00")):
        svc.board.apply_snapshot(s)
    sent = await svc.send_digests(NOW)
    assert sorted(n.key for n in sent) == [f"digest:{PROVINCE}:2026-12-02",
                                           f"digest:{COMMUNE}:2026-12-02",
                                           f"digest:{POLICE}:2026-12-02"]
    mails = {m.rcpt_to[0]: m for m in await sink.wait_for(2)}
    commune = mails["motcua@hoabinh.h99.gov.vn"]
    assert commune.message["Subject"] == ("[Tổng hợp 02/12/2026] Ủy ban nhân dân xã Hòa Bình: "
                                          "1 hồ sơ quá hạn, 0 bước quá hạn, 1 sắp đến hạn")
    text = commune.text()
    assert "C-LATE" in text and "trễ 1 ngày" in text and "C-SOON" in text
    assert "còn 2 giờ" in text and "C-FAR" not in text
    # The other commune has no mailbox: its row reaches the province's.
    assert "O-LATE" in mails["dieuhanh@h99.gov.vn"].text()
    [(headers, body)] = receiver.posts
    assert headers["Idempotency-Key"] == f"digest:{POLICE}:2026-12-02"
    assert body["counts"] == {"overdue_dossiers": 1, "overdue_steps": 0, "due_soon": 0}
    assert [r["dossier"] for r in body["rows"]] == ["P-LATE"]
    assert await svc.send_digests(NOW + timedelta(minutes=5)) == []   # once a day


def test_the_digest_time_skips_days_off_and_catches_up_a_late_start(
        sink: SmtpSink) -> None:
    svc = service(catalogue_with_contacts(), sink, SentLog(None), digest_at=time(7, 30))
    friday_noon = datetime.fromisoformat("2026-12-04T12:00:00+07:00")
    assert svc.next_digest(friday_noon).isoformat() == "2026-12-07T07:30:00+07:00"
    started_late = datetime.fromisoformat("2026-12-02T08:15:00+07:00")
    assert svc.next_digest(started_late, grace=timedelta(hours=2)).isoformat() == \
        "2026-12-02T07:30:00+07:00"
    assert svc.next_digest(started_late).isoformat() == "2026-12-03T07:30:00+07:00"
    every_day = service(catalogue_with_contacts(), sink, SentLog(None), digest_days="all")
    assert every_day.next_digest(friday_noon).isoformat() == "2026-12-05T07:30:00+07:00"


def test_the_notify_command_needs_a_way_to_send(capsys: pytest.CaptureFixture[str]) -> None:
    from lienthong.services.cli import main
    assert main(["notify", "--bootstrap", "127.0.0.1:9", "--no-webhooks"]) == 2
    assert "nothing to send with" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["notify", "--digest-at", "7h30"])
    assert "expected HH:MM" in capsys.readouterr().err
