"""The operations dashboard over real HTTP on 127.0.0.1, with a hand-made read model: sign-in,
agency scope, masking, escaping, language, re-send, live events, metrics, JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.ops.audit import AuditLog
from lienthong.services.ops.auth import (
    Operator,
    SessionSigner,
    UsersFileError,
    hash_password,
    load_users,
    parse_users,
    save_users,
    verify_password,
)
from lienthong.services.ops.board import OpsBoard
from lienthong.services.ops.web import create_app

CATALOGUE = load_catalogue(Path(__file__).parents[2] / "examples" / "province-h99.yaml")
COMMUNE = "000.00.15.H99"
DISTRICT = "000.00.20.H99"
DISTRICT_COMMUNE = "000.01.20.H99"
NOW = datetime.fromisoformat("2026-12-02T09:00:00+07:00")
HOSTILE = "<script>alert(1)</script>"
PASSWORD = "correct horse battery staple"
HASH = hash_password(PASSWORD, n=2**10)


def snap(code: str, receiving: str = COMMUNE, name: str = "Nguyễn Văn A",
         due: str = "2026-12-01T09:00:00+07:00", **extra: Any) -> dict[str, Any]:
    data = {
        "dossier": code, "procedure": "1.001193", "procedure_name": "Liên thông khai sinh",
        "receiving_agency": receiving, "receiving_level": "commune", "channel": "desk",
        "applicant": {"name": name, "id_number": "001099012345"}, "holder": receiving,
        "state": "processing", "received_at": "2026-11-30T08:00:00+07:00", "due_at": due,
        "ended_at": None, "outcome": "overdue", "late_agencies": [receiving],
        "repeat_supplement": False,
        "steps": [{"agency": receiving, "started_at": "2026-11-30T08:00:00+07:00",
                   "due_at": due, "ended_at": None, "outcome": "overdue"}],
        "pauses": [], "apologies": [], "postal": [], "portal_status": 4, "timeline": [],
        "updated_at": "2026-11-30T08:00:00+07:00"}
    data.update(extra)
    return data


@dataclass
class Site:
    base: str
    board: OpsBoard
    app: web.Application
    audit: AuditLog
    resent: list[int]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, timeout=10, follow_redirects=False)

    @contextlib.asynccontextmanager
    async def login(self, username: str,
                    password: str = PASSWORD) -> AsyncIterator[httpx.AsyncClient]:
        async with self.client() as c:
            r = await c.post("/login", data={"username": username, "password": password,
                                             "next": "/"})
            assert r.status_code == 303, r.text
            yield c


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    board = OpsBoard(CATALOGUE)
    board.apply_snapshot(snap("D-COMMUNE", name=HOSTILE))
    board.apply_snapshot(snap("D-DISTRICT", receiving=DISTRICT_COMMUNE, name="Trần Thị Bích"))
    board.add_deadletter(0, 7, {"original": b"{}", "key": b"D-COMMUNE",
                                "reason": "delivery_exhausted", "detail": "HTTP 503",
                                "source_topic": "deliveries", "partition": 1, "offset": 99,
                                "at": "2026-12-02T08:00:00+07:00"})
    users = {u.username: u for u in (
        Operator("province", HASH, "operator", None, False),
        Operator("privileged", HASH, "admin", None, True),
        Operator("district", HASH, "operator", DISTRICT, False),
        Operator("viewer", HASH, "viewer", None, False),
    )}
    resent: list[int] = []
    audit = AuditLog(None)
    app = create_app(board, users, resend=resent.append, audit=audit, clock=lambda: NOW,
                     secret=b"0123456789abcdef0123456789abcdef")
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield Site(f"http://127.0.0.1:{port}", board, app, audit, resent)
    await runner.cleanup()


async def test_pages_ask_for_a_login_and_the_api_answers_401(site: Site) -> None:
    async with site.client() as c:
        r = await c.get("/scoreboard")
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        assert (await c.get("/api/board")).status_code == 401
        assert (await c.get("/events")).status_code == 401
        assert (await c.get("/static/app.css")).status_code == 200


async def test_a_wrong_password_is_refused_and_audited(site: Site) -> None:
    async with site.client() as c:
        r = await c.post("/login", data={"username": "province", "password": "guess"})
        assert r.status_code == 401 and "Sai tên đăng nhập" in r.text
        r = await c.post("/login", data={"username": "nobody", "password": "guess"})
        assert r.status_code == 401
    assert [e["action"] for e in site.audit.entries] == ["login_failed", "login_failed"]


async def test_a_forged_session_cookie_is_not_a_login(site: Site) -> None:
    forged = SessionSigner(b"another-secret-of-32-bytes-000000").issue("privileged")
    async with site.client() as c:
        c.cookies.set("lt_session", forged)
        assert (await c.get("/api/board")).status_code == 401


async def test_the_board_is_vietnamese_escaped_and_masked(site: Site) -> None:
    async with site.login("province") as c:
        r = await c.get("/")
        assert r.status_code == 200
        html = r.text
        assert '<html lang="vi">' in html and "Hồ sơ quá hạn, sắp đến hạn" in html
        assert "<script>alert" not in html
        assert "&lt;**" in html                # one word: masked to its initial, escaped
        assert "Trần T** B**" in html and "Trần Thị Bích" not in html
        assert "1 ngày" in html                 # 09:00 -> 09:00 next day, one working day
        assert "default-src 'self'" in r.headers["content-security-policy"]


async def test_a_hostile_name_renders_as_text_for_an_operator_allowed_personal_data(
        site: Site) -> None:
    async with site.login("privileged") as c:
        r = await c.get("/dossiers/D-COMMUNE")
        assert r.status_code == 200
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
        assert HOSTILE not in r.text and "001099012345" in r.text
        api = (await c.get("/api/dossiers/D-COMMUNE")).json()
        assert api["applicant"]["name"] == HOSTILE     # JSON carries it as data
    views = [e for e in site.audit.entries if e["action"] == "view_personal_data"]
    assert views and views[-1]["dossiers"] == ["D-COMMUNE"]


async def test_an_operator_scoped_to_a_district_sees_only_its_subtree(site: Site) -> None:
    async with site.login("district") as c:
        rows = (await c.get("/api/board")).json()["rows"]
        assert {r["dossier"] for r in rows} == {"D-DISTRICT"}
        assert (await c.get("/dossiers/D-COMMUNE")).status_code == 404
        assert (await c.get("/api/dossiers/D-COMMUNE")).status_code == 404
        assert (await c.get("/dossiers/D-DISTRICT")).status_code == 200
        # an agency outside the scope in the filter is ignored, not obeyed
        rows = (await c.get("/api/board", params={"agency": COMMUNE})).json()["rows"]
        assert {r["dossier"] for r in rows} == {"D-DISTRICT"}
        assert (await c.get("/deadletters")).status_code == 403


async def test_english_switch_sets_a_cookie_and_keeps_diacritics_in_names(site: Site) -> None:
    async with site.login("province") as c:
        r = await c.get("/", params={"lang": "en"})
        assert '<html lang="en">' in r.text and "Overdue and due soon" in r.text
        assert "Ủy ban nhân dân xã Hòa Bình" in r.text
        r = await c.get("/")
        assert '<html lang="en">' in r.text


async def test_scoreboard_shows_vietnamese_rates_and_a_chart(site: Site) -> None:
    site.board.apply_snapshot(snap("E1", state="ended", outcome="early", due=
                                   "2026-12-03T09:00:00+07:00",
                                   ended_at="2026-12-01T10:00:00+07:00"))
    async with site.login("province") as c:
        r = await c.get("/scoreboard", params={"from": "2026-12-01", "to": "2026-12-02"})
        assert r.status_code == 200 and "<svg" in r.text
        # 1 early of (1 ended + 2 overdue now) = 33,33 %
        assert "33,33%" in r.text
        data = (await c.get("/api/scoreboard", params={"from": "2026-12-01",
                                                        "to": "2026-12-02"})).json()
        assert data["total"]["early"] == 1 and data["total"]["overdue"] == 2
        assert [d["day"] for d in data["daily"]] == ["2026-12-01", "2026-12-02"]


async def test_resend_calls_the_injected_function_checks_the_form_token_and_audits(
        site: Site) -> None:
    async with site.login("province") as c:
        page = (await c.get("/deadletters")).text
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        bad = await c.post("/deadletters/7/resend", data={"csrf": "x", "partition": "0"})
        assert bad.status_code == 403 and site.resent == []
        r = await c.post("/deadletters/7/resend", data={"csrf": token, "partition": "0"})
        assert r.status_code == 303 and "resent=" in r.headers["location"]
        assert site.resent == [7]
        missing = await c.post("/deadletters/8/resend", data={"csrf": token, "partition": "0"})
        assert missing.status_code == 303 and "failed=" in missing.headers["location"]
    assert [e["offset"] for e in site.audit.entries if e["action"] == "resend"] == [7]


async def test_a_viewer_cannot_resend(site: Site) -> None:
    async with site.login("viewer") as c:
        page = (await c.get("/deadletters")).text
        assert 'name="csrf"' not in page
        from lienthong.services.ops.web import DASHBOARD
        token = site.app[DASHBOARD].signer.csrf(c.cookies["lt_session"])
        r = await c.post("/api/deadletters/7/resend", headers={"X-CSRF-Token": token})
        assert r.status_code == 403 and "not allowed" in r.json()["message"]
        assert site.resent == []


async def test_the_event_stream_announces_a_board_change(site: Site) -> None:
    async with site.login("province") as c, c.stream("GET", "/events") as stream:
        lines = stream.aiter_lines()
        assert (await anext(lines)).startswith("retry:")

        async def next_event() -> str:
            async for line in lines:
                if line.startswith("event: ") and line != "event: hello":
                    return line
            return ""

        waiting = asyncio.ensure_future(next_event())
        await asyncio.sleep(0.05)
        from lienthong.services.ops.web import DASHBOARD
        dash = site.app[DASHBOARD]
        dash.notify(dash.board.apply_snapshot(snap("D-NEW")))
        assert await asyncio.wait_for(waiting, 5) == "event: board"


async def test_the_event_stream_skips_changes_outside_the_scope(site: Site) -> None:
    from lienthong.services.ops.web import DASHBOARD
    dash = site.app[DASHBOARD]
    async with site.login("district") as c, c.stream("GET", "/events") as stream:
        lines = stream.aiter_lines()
        await anext(lines)
        await asyncio.sleep(0.05)
        client = next(iter(dash.hub.clients))
        dash.notify(dash.board.apply_snapshot(snap("D-OTHER")))       # commune: not theirs
        assert client.pending == set()
        dash.notify(dash.board.apply_snapshot(snap("D-MINE", receiving=DISTRICT_COMMUNE)))
        assert client.pending == {"board"}


async def test_metrics_count_overdue_dossiers_per_agency(site: Site) -> None:
    async with site.client() as c:
        text = (await c.get("/metrics")).text
    assert f'lienthong_dashboard_overdue_dossiers{{agency="{COMMUNE}",level="commune"}} 1.0' in text
    assert "lienthong_dashboard_sse_clients" in text


async def test_search_by_code_redirects_and_by_id_number_needs_the_right(site: Site) -> None:
    async with site.login("province") as c:
        r = await c.get("/search", params={"q": "D-COMMUNE"})
        assert r.status_code == 303 and r.headers["location"] == "/dossiers/D-COMMUNE"
        r = await c.get("/search", params={"q": "001099012345"})
        assert "D-COMMUNE" not in r.text
    async with site.login("privileged") as c:
        r = await c.get("/search", params={"q": "001099012345"})
        assert "D-COMMUNE" in r.text and "D-DISTRICT" in r.text


async def test_login_redirect_only_goes_to_local_paths(site: Site) -> None:
    async with site.client() as c:
        r = await c.post("/login", data={"username": "province", "password": PASSWORD,
                                         "next": "//evil.example/"})
        assert r.headers["location"] == "/"


# -- users file ------------------------------------------------------------------------------

def test_password_hashes_verify_only_the_right_password() -> None:
    h = hash_password("mật khẩu", n=2**10)
    assert verify_password("mật khẩu", h) and not verify_password("mat khau", h)
    assert not verify_password("x", "plain-text")


def test_users_file_round_trips_and_rejects_mistakes(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    save_users(path, [Operator("lan", HASH, "admin", COMMUNE, True)])
    assert load_users(path)["lan"].agency == COMMUNE
    assert path.stat().st_mode & 0o077 == 0
    with pytest.raises(UsersFileError, match=r"users\[0\]\.role"):
        parse_users({"users": [{"username": "a", "password_hash": HASH, "role": "root"}]})
    with pytest.raises(UsersFileError, match="password_hash"):
        parse_users({"users": [{"username": "a", "password_hash": "secret"}]})
    assert json.loads(json.dumps({"users": []})) == {"users": []}


# -- reports ---------------------------------------------------------------------------------

async def test_scoreboard_downloads_as_csv_and_excel_and_each_download_is_audited(
        site: Site) -> None:
    import csv
    import io

    import openpyxl
    async with site.login("province") as c:
        page = (await c.get("/scoreboard", params={"from": "2026-11-01",
                                                   "to": "2026-12-31"})).text
        assert 'href="/scoreboard.xlsx?from=2026-11-01&amp;to=2026-12-31' in page
        r = await c.get("/scoreboard.csv", params={"from": "2026-11-01", "to": "2026-12-31"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert rows[0][4] == "Tiếp nhận"
        by_code = {row[1]: row for row in rows if row[1]}
        # Both dossiers were received on 30 November, due 1 December, overdue now.
        assert by_code[COMMUNE][4] == "1" and by_code[COMMUNE][10] == "1"
        assert by_code[DISTRICT_COMMUNE][4] == "1"
        r = await c.get("/indicators.xlsx", params={"from": "2026-11-01", "to": "2026-12-31"})
        wb = openpyxl.load_workbook(io.BytesIO(r.content))
        last = list(wb.active.iter_rows(min_row=4, values_only=True))[-1]
        assert last[6] == 2  # received in the period
    downloads = [e for e in site.audit.entries if e["action"] == "download_report"]
    assert [(e["user"], e["table"], e["format"]) for e in downloads] == [
        ("province", "scoreboard", "csv"), ("province", "indicators", "xlsx")]
    assert downloads[0]["period_from"] == "2026-11-01"


async def test_a_scoped_operator_downloads_only_its_subtree(site: Site) -> None:
    async with site.login("district") as c:
        r = await c.get("/scoreboard.csv", params={"from": "2026-11-01", "to": "2026-12-31"})
    text = r.content.decode("utf-8-sig")
    assert DISTRICT_COMMUNE in text and COMMUNE not in text


async def test_a_report_needs_a_login(site: Site) -> None:
    async with site.client() as c:
        r = await c.get("/scoreboard.xlsx")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


# -- search ----------------------------------------------------------------------------------

async def test_search_by_part_of_a_code_lists_matches_and_one_match_opens_its_slip(
        site: Site) -> None:
    site.board.apply_snapshot(snap("D-COMMUNE-2"))
    async with site.login("viewer") as c:
        r = await c.get("/search", params={"q": "d-commune"})
        assert r.status_code == 303 and r.headers["location"] == "/dossiers/D-COMMUNE"
        r = await c.get("/search", params={"q": "commune"})
        assert r.status_code == 200
        assert 'href="/dossiers/D-COMMUNE"' in r.text
        assert 'href="/dossiers/D-COMMUNE-2"' in r.text
        assert HOSTILE not in r.text  # names stay masked for a viewer
        r = await c.get("/search", params={"q": "DISTR"})
        assert r.headers["location"] == "/dossiers/D-DISTRICT"


async def test_search_never_reveals_a_dossier_outside_the_operators_scope(site: Site) -> None:
    async with site.login("district") as c:
        r = await c.get("/search", params={"q": "D-COMMUNE"})
        assert r.status_code == 200 and "/dossiers/D-COMMUNE" not in r.text
        r = await c.get("/search", params={"q": "d-c"})
        assert r.status_code == 200 and "/dossiers/D-COMMUNE" not in r.text
        r = await c.get("/search", params={"q": "ISTRI"})
        assert r.status_code == 303 and r.headers["location"] == "/dossiers/D-DISTRICT"


async def test_search_by_id_number_is_audited_with_the_number_masked(site: Site) -> None:
    async with site.login("province") as c:
        r = await c.get("/search", params={"q": "001099012345"})
        assert "D-COMMUNE" not in r.text
        assert "không được tra cứu theo số định danh" in r.text
    assert not [e for e in site.audit.entries if e["action"] == "search_id_number"]
    async with site.login("privileged") as c:
        r = await c.get("/search", params={"q": "001099012345"})
        assert "&lt;script&gt;" in r.text and HOSTILE not in r.text
    [entry] = [e for e in site.audit.entries if e["action"] == "search_id_number"]
    assert entry["user"] == "privileged" and entry["id_number"] == "0010******45"
    assert sorted(entry["dossiers"]) == ["D-COMMUNE", "D-DISTRICT"]
    assert "001099012345" not in json.dumps(entry)


async def test_every_page_has_the_search_box_in_its_header(site: Site) -> None:
    async with site.login("viewer") as c:
        for path in ("/", "/scoreboard", "/alerts", "/dossiers/D-COMMUNE"):
            text = (await c.get(path)).text
            header = text[text.index("<header"):text.index("</header>")]
            assert 'action="/search"' in header and 'name="q"' in header, path


async def test_a_simulated_clock_is_named_in_the_header_in_both_languages() -> None:
    from lienthong.services.clock import ScaledClock

    origin = datetime.fromisoformat("2026-12-03T07:30:00+07:00")
    sim = ScaledClock(origin=origin, speed=60.0, epoch=1796298855.5)
    board = OpsBoard(CATALOGUE)
    board.apply_snapshot(snap("D-COMMUNE"))
    app = create_app(board, {"privileged": Operator("privileged", HASH, "admin", None, True)},
                     clock=lambda: NOW, secret=b"0123456789abcdef0123456789abcdef",
                     simulated=sim)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        site = Site(f"http://127.0.0.1:{port}", board, app, AuditLog(None), [])
        async with site.login("privileged") as c:
            vi = (await c.get("/")).text
            badge = re.search(r'<span class="clock sim"[^>]*>.*?</span></span>|'
                              r'<span class="clock sim".*?</small></span>', vi, re.S)
            assert badge is not None, vi[:2000]
            text = re.sub(r"<[^>]+>", "", badge.group(0))
            # the board's instant (NOW) and the origin, as the footer and slips write them
            assert "Giờ mô phỏng" in text and "09:00 02/12/2026" in text
            assert "×60" in text and "07:30 03/12/2026" in text
            assert 'data-speed="60.0"' in badge.group(0)
            en = (await c.get("/?lang=en")).text
            assert "Simulated time" in en and "2026-12-03 07:30" in en
            data = (await c.get("/api/board")).json()
            assert data["clock"] == {"simulated": True, "speed": 60.0,
                                     "origin": "2026-12-03T07:30:00+07:00"}
            assert data["now"] == NOW.isoformat()
    finally:
        await runner.cleanup()


async def test_the_wall_clock_shows_no_simulation_badge(site: Site) -> None:
    async with site.login("province") as c:
        assert 'id="sim-clock"' not in (await c.get("/")).text
        assert (await c.get("/api/board")).json()["clock"] == {"simulated": False}


async def test_repeated_wrong_passwords_get_429_with_retry_after_and_are_counted(
        site: Site) -> None:
    # Five failures per username are allowed, then one a minute: the 6th waits 60 s.
    async with site.client() as c:
        codes = [(await c.post("/login", data={"username": "province", "password": "guess"})
                  ).status_code for _ in range(5)]
        assert codes == [401] * 5
        r = await c.post("/login", data={"username": "province", "password": PASSWORD})
        assert r.status_code == 429, "not even the right password while the bucket is empty"
        assert r.headers["Retry-After"] == "60"
        body = r.json()
        assert (body["error"], body["by"], body["retry_after"]) == ("rate_limited", "username",
                                                                   60)
        assert "60 giây" in body["detail"]  # Vietnamese by default
        # Another operator is not locked out by someone guessing this one's password.
        r = await c.post("/login", data={"username": "viewer", "password": PASSWORD})
        assert r.status_code == 303
        metrics = (await c.get("/metrics")).text
    assert 'lienthong_dashboard_login_rate_limited_total{by="username"} 1.0' in metrics
    assert [e["action"] for e in site.audit.entries][-2:] == ["login_rate_limited", "login"]


async def test_a_correct_password_costs_no_token(site: Site) -> None:
    for _ in range(8):
        async with site.login("province"):
            pass


def test_each_audit_line_is_handed_to_the_sink_as_written(tmp_path: Path) -> None:
    handed: list[tuple[bytes, str | None]] = []
    audit = AuditLog(tmp_path / "audit.jsonl", sink=lambda line, user: handed.append((line,
                                                                                       user)))
    audit.record("resend", "dieuhanh", offset=7)
    [(line, user)] = handed
    assert user == "dieuhanh"
    assert line.decode() + "\n" == (tmp_path / "audit.jsonl").read_text()
    assert json.loads(line)["action"] == "resend"
