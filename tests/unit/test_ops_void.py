"""The dashboard's void form over real HTTP on 127.0.0.1: who may void, what is refused (4xx
with the reason), what is published and audited."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from lienthong.schemas import codec
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.ops.audit import AuditLog
from lienthong.services.ops.auth import Operator, hash_password, parse_users
from lienthong.services.ops.board import OpsBoard
from lienthong.services.ops.web import DASHBOARD, create_app

CATALOGUE = load_catalogue(Path(__file__).parents[2] / "examples" / "province-h99.yaml")
COMMUNE, POLICE = "000.00.15.H99", "000.02.10.H99"
CODE = "000.00.15.H99-20261130-0000001"
NOW = datetime.fromisoformat("2026-12-02T09:00:00+07:00")
PASSWORD = "correct horse battery staple"
HASH = hash_password(PASSWORD, n=2**10)
RECEIVED = "11111111-1111-4111-8111-111111111111"
HANDOFF = "22222222-2222-4222-8222-222222222222"
RESULT = "33333333-3333-4333-8333-333333333333"


def snapshot(timeline: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "dossier": CODE, "procedure": "1.001193", "procedure_name": "Liên thông khai sinh",
        "receiving_agency": COMMUNE, "receiving_level": "commune", "channel": "desk",
        "applicant": {"name": "Nguyễn Văn A"}, "holder": POLICE, "state": "ended",
        "received_at": "2026-11-30T08:00:00+07:00", "due_at": "2026-12-07T08:00:00+07:00",
        "ended_at": "2026-12-01T09:00:00+07:00", "outcome": "early", "late_agencies": [],
        "repeat_supplement": False,
        "steps": [{"agency": COMMUNE, "started_at": "2026-11-30T08:00:00+07:00",
                   "due_at": "2026-11-30T13:00:00+07:00",
                   "ended_at": "2026-11-30T09:00:00+07:00", "outcome": "early"}],
        "pauses": [], "apologies": [], "postal": [], "portal_status": 9,
        "timeline": timeline, "updated_at": "2026-12-01T09:00:00+07:00"}


TIMELINE = [
    {"event_id": RECEIVED, "type": "received", "at": "2026-11-30T08:00:00+07:00",
     "agency": COMMUNE, "note": None},
    {"event_id": HANDOFF, "type": "handoff", "at": "2026-11-30T09:00:00+07:00",
     "agency": COMMUNE, "note": None},
    {"event_id": RESULT, "type": "result_ready", "at": "2026-12-01T09:00:00+07:00",
     "agency": POLICE, "note": None},
]


@dataclass
class Site:
    base: str
    board: OpsBoard
    audit: AuditLog
    published: list[Mapping[str, Any]]
    app: web.Application

    @contextlib.asynccontextmanager
    async def login(self, username: str) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(base_url=self.base, timeout=10,
                                     follow_redirects=False) as c:
            r = await c.post("/login", data={"username": username, "password": PASSWORD,
                                             "next": "/"})
            assert r.status_code == 303, r.text
            yield c


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    board = OpsBoard(CATALOGUE)
    board.apply_snapshot(snapshot(TIMELINE))
    users = {u.username: u for u in (
        Operator("admin", HASH, "admin"),
        Operator("lan", HASH, "operator", may_correct=True),
        Operator("plain", HASH, "operator"),
        Operator("district", HASH, "operator", "000.00.20.H99", may_correct=True),
    )}
    published: list[Mapping[str, Any]] = []
    audit = AuditLog(None)
    app = create_app(board, users, audit=audit, clock=lambda: NOW,
                     secret=b"0123456789abcdef0123456789abcdef", correct=published.append)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield Site(f"http://127.0.0.1:{port}", board, audit, published, app)
    await runner.cleanup()


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no void form on the page"
    return m.group(1)


async def test_an_allowed_operator_voids_an_event_with_a_reason(site: Site) -> None:
    async with site.login("lan") as c:
        page = (await c.get(f"/dossiers/{CODE}")).text
        assert "Hủy sự kiện này" in page and "Lý do hủy" in page
        # the receipt has no form; the result has the void form, the hand-off both
        assert page.count('action="/dossiers/' + CODE + '/void"') == 2
        assert page.count('action="/dossiers/' + CODE + '/correct"') == 1
        r = await c.post(f"/dossiers/{CODE}/void", data={
            "csrf": csrf_of(page), "event_id": RESULT, "reason": "Nhập kết quả nhầm hồ sơ"})
        assert r.status_code == 303 and f"voided={RESULT}" in r.headers["location"]
        after = (await c.get(r.headers["location"])).text
        assert "Đã gửi yêu cầu hủy sự kiện" in after
    [event] = site.published
    assert (event["type"], event["voided_event_id"], event["operator"], event["agency"]) == (
        "event_voided", RESULT, "lan", POLICE)
    codec.encode_event(event)  # a valid event of the contract
    entries = [e for e in site.audit.entries if e["action"] == "event_voided"]
    assert [(e["user"], e["target"], e["reason"]) for e in entries] == [
        ("lan", RESULT, "Nhập kết quả nhầm hồ sơ")]


@pytest.mark.parametrize(("form", "status", "words"), [
    ({"event_id": RESULT, "reason": "  "}, 400, "Cần ghi lý do hủy"),
    ({"event_id": RECEIVED, "reason": "x"}, 422, "receipt"),
    ({"event_id": "44444444-4444-4444-8444-444444444444", "reason": "x"}, 422,
     "unknown_event"),
    ({"event_id": RESULT, "reason": "x", "csrf": "forged"}, 403, "bad form token"),
])
async def test_a_void_that_cannot_be_done_gets_a_4xx_saying_why(
        site: Site, form: dict[str, str], status: int, words: str) -> None:
    async with site.login("admin") as c:
        token = csrf_of((await c.get(f"/dossiers/{CODE}")).text)
        r = await c.post(f"/dossiers/{CODE}/void", data={"csrf": token, **form})
        assert r.status_code == status and words in r.text, r.text
    assert site.published == []


async def test_an_already_voided_event_is_a_conflict(site: Site) -> None:
    voided = [dict(TIMELINE[0]), dict(TIMELINE[1]), {**TIMELINE[2], "note": "voided"},
              {"event_id": "55555555-5555-4555-8555-555555555555", "type": "event_voided",
               "at": "2026-12-02T08:00:00+07:00", "agency": POLICE, "note": RESULT}]
    site.board.apply_snapshot({**snapshot(voided), "updated_at": "2026-12-02T08:00:00+07:00"})
    async with site.login("admin") as c:
        page = (await c.get(f"/dossiers/{CODE}")).text
        assert "Đã hủy" in page and 'class="voided"' in page
        # only the hand-off is left to void (or correct)
        assert page.count('action="/dossiers/' + CODE + '/void"') == 1
        r = await c.post(f"/dossiers/{CODE}/void", data={
            "csrf": csrf_of(page), "event_id": RESULT, "reason": "again"})
        assert r.status_code == 409 and "already_voided" in r.text


async def test_an_operator_without_the_right_sees_no_form_and_is_refused(site: Site) -> None:
    async with site.login("plain") as c:
        page = (await c.get(f"/dossiers/{CODE}")).text
        assert 'name="event_id"' not in page
        token = site.app[DASHBOARD].signer.csrf(c.cookies["lt_session"])
        r = await c.post(f"/dossiers/{CODE}/void", data={
            "csrf": token, "event_id": RESULT, "reason": "x"})
        assert r.status_code == 403 and "không được hủy" in r.text
    assert [e["user"] for e in site.audit.entries
            if e["action"] == "event_voided_forbidden"] == ["plain"]
    async with site.login("district") as c:  # another agency's dossier: not even seen
        r = await c.post(f"/dossiers/{CODE}/void", data={"event_id": RESULT, "reason": "x"})
        assert r.status_code == 404
    assert site.published == []


def test_a_viewer_cannot_be_given_the_right_to_correct() -> None:
    with pytest.raises(ValueError, match="viewer may not correct"):
        parse_users({"users": [{"username": "v", "password_hash": "scrypt$1$1$1$a$b",
                                "role": "viewer", "may_correct": True}]})
    users = parse_users({"users": [{"username": "o", "password_hash": "scrypt$1$1$1$a$b",
                                    "role": "operator", "may_correct": True}]})
    assert users["o"].may_void


async def test_a_hand_off_to_the_wrong_agency_is_corrected_from_the_slip(site: Site) -> None:
    async with site.login("lan") as c:
        page = (await c.get(f"/dossiers/{CODE}")).text
        assert "Đính chính…" in page and "Cơ quan nhận đúng" in page
        token = csrf_of(page)
        same = await c.post(f"/dossiers/{CODE}/correct", data={
            "csrf": token, "event_id": HANDOFF, "to_agency": COMMUNE, "reason": "nhầm"})
        assert same.status_code == 400 and "to_agency" in same.text
        unknown = await c.post(f"/dossiers/{CODE}/correct", data={
            "csrf": token, "event_id": HANDOFF, "to_agency": "999.99.99.H99", "reason": "x"})
        assert unknown.status_code == 400 and "not an agency" in unknown.text
        not_handoff = await c.post(f"/dossiers/{CODE}/correct", data={
            "csrf": token, "event_id": RESULT, "to_agency": "000.03.10.H99", "reason": "x"})
        assert not_handoff.status_code == 422 and "hand-off" in not_handoff.text
        r = await c.post(f"/dossiers/{CODE}/correct", data={
            "csrf": token, "event_id": HANDOFF, "to_agency": "000.03.10.H99",
            "reason": "Chuyển nhầm cơ quan"})
        assert r.status_code == 303 and "corrected=" in r.headers["location"]
        assert "Đã gửi đính chính" in (await c.get(r.headers["location"])).text
    [event] = site.published
    assert (event["type"], event["corrects_event_id"], event["to_agency"], event["agency"],
            event["at"], event["operator"]) == (
        "handoff", HANDOFF, "000.03.10.H99", COMMUNE, "2026-11-30T09:00:00+07:00", "lan")
    codec.encode_event(event)
    assert [(e["action"], e["to_agency"]) for e in site.audit.entries
            if e["action"] == "event_corrected"] == [("event_corrected", "000.03.10.H99")]
