"""The operations dashboard: an aiohttp application over the read model (``OpsBoard``).

Build it with ``create_app(board, users, ...)``; every dependency is a parameter (the resend
callable, the audit log, the clock), so tests run it with fixtures and no Kafka. Pages:

=====================  ================================================================
``/``                  overdue and due-soon board (filters: level, agency, procedure)
``/scoreboard``        agency scoreboard for a period, Decision 766 indicators, chart
``/scoreboard.csv``    the scoreboard as CSV (also ``.xlsx``); same period query
``/indicators.csv``    the Decision 766 indicator table as CSV (also ``.xlsx``)
``/dossiers/{code}``   tracking slip (printable)
``/alerts``            alert feed
``/deadletters``       parked messages, with a re-send button
``/events``            server-sent events: ``board``, ``alerts``, ``deadletters``
``/api/...``           the same answers as JSON
``/metrics``           Prometheus
=====================  ================================================================

Applicants' names and ID numbers are masked unless the operator may see personal data; such
views, sign-ins, re-sends and report downloads go to the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from lienthong.services.clock import ScaledClock
from lienthong.services.ops.audit import AuditLog
from lienthong.services.ops.auth import Operator, SessionSigner, hash_password, verify_password
from lienthong.services.ops.board import (
    AlertRecord,
    BoardRow,
    Change,
    DeadLetterRecord,
    Dossier,
    OpsBoard,
    Period,
    Slip,
    Tally,
)
from lienthong.services.ops.html import el, join
from lienthong.services.ops.i18n import pick_lang
from lienthong.services.ops.metrics import DashboardMetrics
from lienthong.services.ops.pages import (
    BoardFilters,
    View,
    alerts_main,
    board_main,
    deadletters_main,
    default_period,
    login_page,
    not_found_main,
    page,
    scoreboard_main,
    search_main,
    slip_main,
)
from lienthong.services.ops.privacy import mask_id, mask_name
from lienthong.services.ops.reports import (
    CSV_MEDIA_TYPE,
    FORMATS,
    TABLES,
    XLSX_MEDIA_TYPE,
    indicators_table,
    render,
    scoreboard_table,
)
from lienthong.services.ratelimit import TokenBuckets

STATIC = Path(__file__).parent / "static"
# Citizen identity numbers: 12 digits (CCCD), or 9 on the old identity card (CMND).
ID_NUMBER = re.compile(r"^(?:\d{9}|\d{12})$")
SESSION_COOKIE = "lt_session"
LANG_COOKIE = "lt_lang"
KEEPALIVE_SECONDS = 15.0
TICK_SECONDS = 30.0
PUBLIC = ("/login", "/static/", "/metrics", "/healthz")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class Resend(Protocol):
    """Re-publish the dead letter at ``offset`` of the dead-letter topic to where it came from.

    May be a plain function (run in a thread) or a coroutine function; raising means it failed.
    """

    def __call__(self, offset: int) -> Awaitable[object] | object: ...


class Publish(Protocol):
    """Write an operator's void or correction (canonical JSON) to ``dossier.events``.

    May be a plain function (run in a thread) or a coroutine function; raising means it failed
    (the codec's ``InvalidRecord`` names the field).
    """

    def __call__(self, event: Mapping[str, Any]) -> Awaitable[object] | object: ...


@dataclass(eq=False)
class _Client:
    scope: frozenset[str] | None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pending: set[str] = field(default_factory=set)
    closed: bool = False


class LiveHub:
    """Fans read-model changes out to every connected browser, coalesced per client."""

    def __init__(self) -> None:
        self.clients: set[_Client] = set()
        self.version = 0
        self.last_change = time.monotonic()

    def publish(self, change: Change) -> None:
        self.version += 1
        self.last_change = time.monotonic()
        for c in self.clients:
            if (change.topic == "board" and c.scope is not None and change.agencies
                    and change.agencies.isdisjoint(c.scope)):
                continue
            c.pending.add(change.topic)
            c.wake.set()

    def tick(self) -> None:
        """Due instants passed: every board is to be redrawn, with no new record."""
        self.publish(Change("board"))

    def close(self) -> None:
        for c in self.clients:
            c.closed = True
            c.wake.set()


@dataclass
class LoginLimits:
    """Failed sign-ins allowed per username and per remote address (per dashboard process):
    by default 5 per username then one a minute, 30 per address then one every 2 s. Checked
    before the password, so guessing costs the guesser time, not our CPU; a correct password
    costs no token."""

    per_user: TokenBuckets = field(default_factory=lambda: TokenBuckets(1 / 60, 5))
    per_address: TokenBuckets = field(default_factory=lambda: TokenBuckets(0.5, 30))


@dataclass
class Dashboard:
    """Everything the handlers share (one per application)."""

    board: OpsBoard
    users: Mapping[str, Operator]
    signer: SessionSigner
    audit: AuditLog
    resend: Resend | None
    clock: Callable[[], datetime]
    metrics: DashboardMetrics
    hub: LiveHub
    cookie_secure: bool = False
    simulated: ScaledClock | None = None
    login_limits: LoginLimits = field(default_factory=lambda: LoginLimits())
    wake_ticker: asyncio.Event | None = None
    correct: Publish | None = None
    board_cache: dict[tuple[object, ...], list[BoardRow]] = field(default_factory=dict)

    def notify(self, change: Change | None) -> None:
        """Call after each record applied to the board (from the event loop's thread)."""
        if change is None:
            return
        self.hub.publish(change)
        if change.topic == "board" and self.wake_ticker is not None:
            self.wake_ticker.set()


DASHBOARD = web.AppKey("dashboard", Dashboard)
USER: web.RequestKey[Operator | None] = web.RequestKey("user")
LANG: web.RequestKey[str] = web.RequestKey("lang", str)
_DUMMY_HASH = hash_password(secrets.token_hex(8))


def create_app(board: OpsBoard, users: Mapping[str, Operator], *,
               resend: Resend | None = None, audit: AuditLog | None = None,
               clock: Callable[[], datetime] | None = None, secret: bytes | None = None,
               metrics: DashboardMetrics | None = None,
               cookie_secure: bool = False,
               simulated: ScaledClock | None = None,
               login_limits: LoginLimits | None = None,
               correct: Publish | None = None) -> web.Application:
    """The dashboard application. ``secret`` signs session cookies (random when None: every
    restart signs everyone out). ``simulated``: the demo's accelerated clock (``clock`` should
    be its ``now``), named in every page's header so demo time is not taken for real time."""
    tz = board.calendar.tz
    clock = clock or (lambda: datetime.now(tz))
    dash = Dashboard(board=board, users=users,
                     signer=SessionSigner(secret or secrets.token_bytes(32)),
                     audit=audit or AuditLog(None), resend=resend, clock=clock,
                     metrics=metrics or DashboardMetrics(board, clock), hub=LiveHub(),
                     cookie_secure=cookie_secure, simulated=simulated,
                     login_limits=login_limits or LoginLimits(), correct=correct)
    app = web.Application(middlewares=[_headers, _session])
    app[DASHBOARD] = dash
    r = app.router
    r.add_get("/login", login_form)
    r.add_post("/login", login_submit)
    r.add_post("/logout", logout)
    r.add_get("/", board_page)
    r.add_get("/scoreboard", scoreboard_page)
    for table in TABLES:
        for fmt in FORMATS:
            r.add_get(f"/{table}.{fmt}", _report_handler(table, fmt))
    r.add_get("/dossiers/{code}", slip_page)
    r.add_post("/dossiers/{code}/void", void_submit)
    r.add_post("/dossiers/{code}/correct", correct_submit)
    r.add_get("/search", search_page)
    r.add_get("/alerts", alerts_page)
    r.add_get("/deadletters", deadletters_page)
    r.add_post("/deadletters/{offset}/resend", resend_submit)
    r.add_get("/events", events)
    r.add_get("/api/board", api_board)
    r.add_get("/api/scoreboard", api_scoreboard)
    r.add_get("/api/dossiers/{code}", api_slip)
    r.add_get("/api/alerts", api_alerts)
    r.add_get("/api/deadletters", api_deadletters)
    r.add_post("/api/deadletters/{offset}/resend", api_resend)
    r.add_get("/metrics", metrics_endpoint)
    r.add_get("/healthz", healthz)
    r.add_static("/static/", STATIC)
    app.cleanup_ctx.append(_ticker)
    app.on_shutdown.append(_close_streams)
    return app


# -- middleware ------------------------------------------------------------------------------

@web.middleware
async def _headers(request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    lang = request.query.get("lang")
    if lang in ("vi", "en") and not response.prepared:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="Lax",
                            httponly=True)
    return response


@web.middleware
async def _session(request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    request[LANG] = pick_lang(request.query.get("lang") or request.cookies.get(LANG_COOKIE))
    name = dash.signer.verify(request.cookies.get(SESSION_COOKIE))
    user = dash.users.get(name) if name else None
    request[USER] = user
    if user is None and not request.path.startswith(PUBLIC):
        if request.path.startswith(("/api/", "/events")):
            return web.json_response({"error": "login required"}, status=401)
        target = request.path_qs
        raise web.HTTPSeeOther("/login?" + _q({"next": target, "lang": request.query.get(
            "lang")}))
    return await handler(request)


def _q(params: Mapping[str, str | None]) -> str:
    from urllib.parse import urlencode
    return urlencode({k: v for k, v in params.items() if v})


# -- helpers ---------------------------------------------------------------------------------

def _user(request: web.Request) -> Operator:
    user = request[USER]
    assert isinstance(user, Operator)
    return user


def _scope(request: web.Request) -> frozenset[str] | None:
    user = _user(request)
    return request.app[DASHBOARD].board.subtree(user.agency) if user.agency else None


def _view(request: web.Request) -> View:
    dash = request.app[DASHBOARD]
    return View(lang=request[LANG], user=request[USER], board=dash.board, now=dash.clock(),
                path=request.path, query=tuple(request.query.items()),
                simulated=dash.simulated)


def _html(request: web.Request, v: View, title: str, active: str, main: Any,
          topics: str = "", status: int = 200) -> web.Response:
    fragment = bool(request.query.get("fragment"))
    body = str(main) if fragment else str(page(v, title, active, main, topics))
    return web.Response(text=body, content_type="text/html", charset="utf-8", status=status)


def _board_filters(request: web.Request) -> BoardFilters:
    q = request.query
    scope = _scope(request)
    agency = q.get("agency") or None
    if agency is not None and scope is not None and agency not in scope:
        agency = None
    return BoardFilters(level=q.get("level") or None, agency=agency,
                        procedure=q.get("procedure") or None)


def _board_rows(request: web.Request, filters: BoardFilters) -> list[BoardRow]:
    """The board for these filters, shared by every browser asking between two changes (a wall
    screen and ten laptops cost one computation); lateness shown to the minute stays fresh
    because the key also turns over every 15 s."""
    dash = request.app[DASHBOARD]
    now = dash.clock()
    scope = _scope(request)
    key = (dash.board.version, dash.hub.version, int(now.timestamp() // 15), filters,
           scope)
    rows = dash.board_cache.get(key)
    if rows is None:
        rows = dash.board.overdue_board(now, scope=scope, level=filters.level,
                                        agency=filters.agency, procedure=filters.procedure)
        if len(dash.board_cache) >= 64:
            dash.board_cache.clear()
        dash.board_cache[key] = rows
    return rows


def _audit_personal(request: web.Request, what: str, dossiers: list[str]) -> None:
    user = _user(request)
    if user.may_see_personal_data and dossiers and not request.query.get("fragment"):
        request.app[DASHBOARD].audit.record(
            "view_personal_data", user.username, page=what, dossiers=dossiers[:50],
            count=len(dossiers), remote=request.remote)


def _parse_day(text: str | None, default: date) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"not a date: {text!r}") from exc


def _period(request: web.Request) -> Period:
    dash = request.app[DASHBOARD]
    first, last = default_period(dash.board.calendar.local_date(dash.clock()))
    a = _parse_day(request.query.get("from"), first)
    b = _parse_day(request.query.get("to"), last)
    if b < a:
        a, b = b, a
    if (b - a).days > 366:
        raise web.HTTPBadRequest(text="a period is at most one year")
    return Period(a, b)


def _may_view(request: web.Request, d: Dossier | None) -> bool:
    return d is not None and request.app[DASHBOARD].board.visible(d, _scope(request))


# -- login -----------------------------------------------------------------------------------

def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def login_form(request: web.Request) -> web.Response:
    v = _view(request)
    return _html(request, v, v.t("login"), "",
                 login_page(v, next_url=_safe_next(request.query.get("next"))))


async def login_submit(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    form = await request.post()
    username = str(form.get("username", ""))[:64]
    password = str(form.get("password", ""))[:256]
    now = time.monotonic()
    limits = (("address", dash.login_limits.per_address, request.remote or "?"),
              ("username", dash.login_limits.per_user, username))
    for by, buckets, key in limits:
        decision = buckets.check(key, now)
        if not decision.allowed:
            dash.metrics.login_rate_limited.labels(by).inc()
            dash.audit.record("login_rate_limited", username, remote=request.remote, by=by)
            v = _view(request)
            return web.json_response(
                {"error": "rate_limited", "by": by, "retry_after": decision.retry_after,
                 "detail": v.t("login.rate_limited").format(seconds=decision.retry_after)},
                status=429, headers={"Retry-After": str(decision.retry_after)})
    user = dash.users.get(username)
    ok = await asyncio.to_thread(verify_password, password,
                                 user.password_hash if user else _DUMMY_HASH)
    ok = ok and user is not None
    dash.audit.record("login" if ok else "login_failed", username, remote=request.remote)
    dash.metrics.logins.labels("ok" if ok else "failed").inc()
    if not ok:
        for _, buckets, key in limits:
            buckets.take(key, now)
        v = _view(request)
        body = str(login_page(v, failed=True,
                              next_url=_safe_next(str(form.get("next", "/")))))
        return web.Response(text=body, content_type="text/html", charset="utf-8", status=401)
    response = web.HTTPSeeOther(_safe_next(str(form.get("next", "/"))))
    response.set_cookie(SESSION_COOKIE, dash.signer.issue(username), httponly=True,
                        samesite="Strict", secure=dash.cookie_secure, max_age=dash.signer.ttl)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    if request[USER] is not None:
        dash.audit.record("logout", request[USER].username, remote=request.remote)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE)
    raise response


# -- pages -----------------------------------------------------------------------------------

async def board_page(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    started = time.perf_counter()
    v = _view(request)
    filters = _board_filters(request)
    rows = _board_rows(request, filters)
    _audit_personal(request, "board", [r.dossier.code for r in rows[:500]])
    response = _html(request, v, v.t("board"), "/", board_main(v, rows, filters, _scope(request)),
                     topics="board")
    dash.metrics.render.labels("board").observe(time.perf_counter() - started)
    return response


async def scoreboard_page(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    v = _view(request)
    period = _period(request)
    basis = "step" if request.query.get("basis") == "step" else "dossier"
    level = request.query.get("level") or None
    scope = _scope(request)
    board = dash.board.scoreboard(period, v.now, basis=basis, scope=scope, level=level)
    series = dash.board.daily_rates(period, v.now, basis=basis, scope=scope)
    ind = dash.board.indicators(period, v.now, scope=scope)
    return _html(request, v, v.t("scoreboard"), "/scoreboard",
                 scoreboard_main(v, board, series, ind, level), topics="board")


def _report_handler(table: str, fmt: str
                    ) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        dash = request.app[DASHBOARD]
        period = _period(request)
        lang = request[LANG]
        scope = _scope(request)
        now = dash.clock()
        if table == "scoreboard":
            basis = "step" if request.query.get("basis") == "step" else "dossier"
            board = dash.board.scoreboard(period, now, basis=basis, scope=scope,
                                          level=request.query.get("level") or None)
            tab = scoreboard_table(board, province=dash.board.catalogue.province_name,
                                   lang=lang)
        else:
            tab = indicators_table(dash.board, period, now, scope=scope, lang=lang)
        # Building a workbook takes tens of milliseconds: off the loop that serves live pages.
        body = await asyncio.to_thread(render, [tab], fmt)
        user = _user(request)
        dash.audit.record("download_report", user.username, table=table, format=fmt,
                          period_from=period.first.isoformat(),
                          period_to=period.last.isoformat(), rows=len(tab.rows),
                          remote=request.remote)
        name = f"lienthong-{table}-{period.first.isoformat()}_{period.last.isoformat()}.{fmt}"
        return web.Response(body=body, headers={
            "Content-Type": CSV_MEDIA_TYPE if fmt == "csv" else XLSX_MEDIA_TYPE,
            "Content-Disposition": f'attachment; filename="{name}"'})

    return handler


async def slip_page(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    v = _view(request)
    code = request.match_info["code"]
    d = dash.board.dossier(code)
    if not _may_view(request, d):
        # Not found and forbidden look the same: codes of other agencies are not disclosed.
        return _html(request, v, v.t("slip"), "", not_found_main(v), status=404)
    slip = dash.board.slip(code, v.now)
    assert slip is not None
    _audit_personal(request, "slip", [code])
    user = _user(request)
    csrf = (dash.signer.csrf(request.cookies.get(SESSION_COOKIE, ""))
            if user.may_void and dash.correct is not None else None)
    flash = (v.t("void.sent") if request.query.get("voided") else
             v.t("correct.sent") if request.query.get("corrected") else None)
    return _html(request, v, v.t("slip"), "", slip_main(v, slip, csrf=csrf, flash=flash),
                 topics="board")


async def void_submit(request: web.Request) -> web.Response:
    """Hủy sự kiện: checks, publishes the void, audits; 4xx with what is wrong otherwise."""
    return await _correction_submit(request, void=True)


async def correct_submit(request: web.Request) -> web.Response:
    """Đính chính a hand-off: the same hand-off to the right agency, in the wrong one's place."""
    return await _correction_submit(request, void=False)


async def _correction_submit(request: web.Request, *, void: bool) -> web.Response:
    from lienthong.schemas.codec import InvalidRecord
    from lienthong.services.domain.corrections import (
        correction_event,
        target_problem,
        void_event,
    )

    dash = request.app[DASHBOARD]
    v = _view(request)
    user = _user(request)
    code = request.match_info["code"]
    form = await request.post()
    d = dash.board.dossier(code)
    if not _may_view(request, d):
        return _html(request, v, v.t("slip"), "", not_found_main(v), status=404)
    assert d is not None
    event_id = str(form.get("event_id", "")).strip().lower()
    reason = str(form.get("reason", "")).strip()
    action = "event_voided" if void else "event_corrected"

    def refuse(status: int, message: str) -> web.Response:
        slip = dash.board.slip(code, v.now)
        assert slip is not None
        failed = v.t("void.failed" if void else "correct.failed")
        body = join(el("p", {"class": "flash error", "role": "alert"}, f"{failed}: {message}"),
                    slip_main(v, slip))
        return _html(request, v, v.t("slip"), "", body, status=status)

    token = request.cookies.get(SESSION_COOKIE, "")
    if not secrets.compare_digest(str(form.get("csrf", "")), dash.signer.csrf(token)):
        return refuse(403, "bad form token")
    if not user.may_void:
        dash.audit.record(f"{action}_forbidden", user.username, dossier=code,
                          target=event_id, remote=request.remote)
        return refuse(403, v.t("void.forbidden"))
    if not reason:
        return refuse(400, v.t("void.reason_required"))
    if len(reason) > 2000:
        return refuse(400, "reason: at most 2000 characters")
    problem = target_problem(code, [(e.event_id, e.type, e.note) for e in d.timeline],
                             event_id, void=void)
    if problem is not None:
        return refuse(409 if problem[0] == "already_voided" else 422,
                      f"{problem[0]}: {problem[1]}")
    entry = next(e for e in d.timeline if (e.event_id or "").lower() == event_id)
    if dash.correct is None:
        return refuse(503, "corrections are not configured on this dashboard")
    if void:
        event = void_event(code, event_id, reason, user.username, entry.agency or d.holder,
                           dash.clock())
    else:
        to_agency = str(form.get("to_agency", "")).strip()
        if entry.type != "handoff":
            return refuse(422, "only a hand-off can be corrected here; use lienthong correct "
                          "replace for other events")
        if dash.board.catalogue.agency(to_agency) is None:
            return refuse(400, f"to_agency: {to_agency!r} is not an agency of the catalogue")
        if to_agency in (entry.to_agency, entry.agency):
            return refuse(400, "to_agency: choose another agency than the wrong recipient and "
                          "the sender")
        event = correction_event(
            {"type": "handoff", "dossier": code, "at": entry.at.isoformat(),
             "agency": entry.agency, "to_agency": to_agency}, event_id, reason, user.username)
    try:
        if inspect.iscoroutinefunction(dash.correct):
            await dash.correct(event)
        else:
            result = await asyncio.to_thread(dash.correct, event)
            if inspect.isawaitable(result):
                await result
    except InvalidRecord as exc:
        return refuse(400, str(exc))
    except Exception as exc:
        dash.audit.record(f"{action}_failed", user.username, dossier=code, target=event_id,
                          error=str(exc)[:300], remote=request.remote)
        return refuse(502, f"could not publish: {exc}")
    dash.audit.record(action, user.username, dossier=code, target=event_id,
                      event_id=event["event_id"], reason=reason, remote=request.remote,
                      **({} if void else {"to_agency": event["to_agency"]}))
    raise web.HTTPSeeOther(f"/dossiers/{code}?" + _q({"voided" if void else "corrected":
                                                      event_id}))


async def search_page(request: web.Request) -> web.StreamResponse:
    """By dossier code (whole or part) for everyone; by applicant ID number only for operators
    allowed personal data, and each such search is audited with what it showed."""
    dash = request.app[DASHBOARD]
    v = _view(request)
    user = _user(request)
    scope = _scope(request)
    q = request.query.get("q", "").strip()[:64]
    d = dash.board.dossier(q) or dash.board.dossier(q.upper())
    if d is not None and _may_view(request, d):
        raise web.HTTPSeeOther(f"/dossiers/{d.code}")
    found: list[Dossier] = []
    by_id = bool(ID_NUMBER.match(q))
    if by_id and user.may_see_personal_data:
        found = dash.board.find_by_applicant_id(q, scope)
        dash.audit.record("search_id_number", user.username, id_number=mask_id(q),
                          dossiers=[x.code for x in found[:50]], count=len(found),
                          remote=request.remote)
    elif len(q) >= 3:
        found = dash.board.find_by_code(q, scope)
        _audit_personal(request, "search", [x.code for x in found])
    if len(found) == 1 and not by_id:
        raise web.HTTPSeeOther(f"/dossiers/{found[0].code}")
    note = "search.id_forbidden" if by_id and not user.may_see_personal_data else None
    return _html(request, v, v.t("search.button"), "", search_main(v, q, found, note))


async def alerts_page(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    v = _view(request)
    alerts = dash.board.alerts(scope=_scope(request), kind=request.query.get("kind") or None)
    return _html(request, v, v.t("alerts"), "/alerts", alerts_main(v, alerts), topics="alerts")


async def deadletters_page(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    v = _view(request)
    user = _user(request)
    if user.agency is not None:
        # Parked messages are not tied to one agency's subtree: province-wide operators only.
        return _html(request, v, v.t("deadletters"), "/deadletters",
                     not_found_main(v, "forbidden"), status=403)
    flash = None
    if request.query.get("resent"):
        flash = f"{v.t('resent')}: {request.query['resent']}"
    elif request.query.get("failed"):
        flash = f"{v.t('resend.failed')}: {request.query['failed']}"
    token = request.cookies.get(SESSION_COOKIE, "")
    return _html(request, v, v.t("deadletters"), "/deadletters",
                 deadletters_main(v, dash.board.deadletters(), dash.signer.csrf(token), flash,
                                  user.may_resend),
                 topics="deadletters")


async def _do_resend(request: web.Request, offset_text: str, partition_text: str,
                     csrf: str) -> tuple[int, str]:
    """Checks, re-sends, audits; returns (HTTP status, message)."""
    dash = request.app[DASHBOARD]
    user = _user(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    if not secrets.compare_digest(csrf, dash.signer.csrf(token)):
        return 403, "bad form token"
    if not user.may_resend or user.agency is not None:
        return 403, "not allowed to re-send"
    try:
        offset, partition = int(offset_text), int(partition_text or 0)
    except ValueError:
        return 400, "offset and partition are integers"
    record = dash.board.deadletter(partition, offset)
    if record is None:
        return 404, f"no dead letter at {partition}:{offset}"
    if dash.resend is None:
        return 503, "re-send is not configured"
    try:
        if inspect.iscoroutinefunction(dash.resend):
            await dash.resend(offset)  # type: ignore[misc]
        else:
            result = await asyncio.to_thread(dash.resend, offset)
            if inspect.isawaitable(result):
                await result
    except Exception as exc:
        dash.audit.record("resend_failed", user.username, partition=partition, offset=offset,
                          reason=record.reason, error=str(exc)[:300], remote=request.remote)
        dash.metrics.resends.labels("failed").inc()
        return 502, f"re-send failed: {exc}"
    dash.audit.record("resend", user.username, partition=partition, offset=offset,
                      reason=record.reason, source_topic=record.source_topic,
                      remote=request.remote)
    dash.metrics.resends.labels("ok").inc()
    return 200, f"{partition}:{offset}"


async def resend_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    status, message = await _do_resend(request, request.match_info["offset"],
                                       str(form.get("partition", "0")), str(form.get("csrf", "")))
    if status in (400, 403, 503):
        raise web.HTTPForbidden(text=message) if status == 403 else \
            web.HTTPBadRequest(text=message) if status == 400 else \
            web.HTTPServiceUnavailable(text=message)
    key = "resent" if status == 200 else "failed"
    raise web.HTTPSeeOther("/deadletters?" + _q({key: message if status == 200 else
                                                 f"{request.match_info['offset']}"}))


# -- live ------------------------------------------------------------------------------------

async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``event: TOPIC`` line per change, coalesced; a comment every
    15 s keeps proxies from closing the stream."""
    dash = request.app[DASHBOARD]
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    client = _Client(scope=_scope(request))
    dash.hub.clients.add(client)
    dash.metrics.sse_clients.set(len(dash.hub.clients))
    try:
        await response.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
        while not client.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.wake.wait(), KEEPALIVE_SECONDS)
            client.wake.clear()
            if client.closed:
                break
            if not client.pending:
                await response.write(b": keepalive\n\n")
                continue
            topics, client.pending = client.pending, set()
            data = json.dumps({"version": dash.hub.version})
            chunk = "".join(f"event: {t}\ndata: {data}\n\n" for t in sorted(topics))
            await response.write(chunk.encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        dash.hub.clients.discard(client)
        dash.metrics.sse_clients.set(len(dash.hub.clients))
    return response


async def _ticker(app: web.Application) -> AsyncIterator[None]:
    """Redraw boards when a due instant passes (no record arrives then) and every 30 s."""
    dash = app[DASHBOARD]
    dash.wake_ticker = asyncio.Event()

    async def loop() -> None:
        assert dash.wake_ticker is not None
        while True:
            now = dash.clock()
            nxt = dash.board.next_due(now)
            delay = TICK_SECONDS
            if nxt is not None:
                delay = min(delay, max(0.05, (nxt - now).total_seconds() + 0.05))
            woke = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dash.wake_ticker.wait(), delay)
                woke = True
            dash.wake_ticker.clear()
            if not woke:
                dash.hub.tick()

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _close_streams(app: web.Application) -> None:
    app[DASHBOARD].hub.close()


# -- JSON ------------------------------------------------------------------------------------

def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _applicant(request: web.Request, d: Dossier) -> dict[str, str]:
    if _user(request).may_see_personal_data:
        return {"name": d.applicant_name, "id_number": d.applicant_id}
    return {"name": mask_name(d.applicant_name), "id_number": mask_id(d.applicant_id)}


def _minutes(x: timedelta) -> float:
    return round(x.total_seconds() / 60, 2)


def _tally(t: Tally) -> dict[str, Any]:
    return {"received": t.received, "ended": t.ended, "early": t.early, "on_time": t.on_time,
            "late": t.late, "overdue": t.overdue, "withdrawn": t.withdrawn,
            "stopped": t.stopped, "open": t.open, "on_time_rate": t.on_time_rate}


async def api_board(request: web.Request) -> web.Response:
    rows = _board_rows(request, _board_filters(request))
    limit = min(int(request.query.get("limit", "1000") or 1000), 10000)
    _audit_personal(request, "api_board", [r.dossier.code for r in rows[:limit]])
    dash = request.app[DASHBOARD]
    sim = dash.simulated
    return web.json_response({
        "now": _iso(dash.clock()),
        "clock": {"simulated": False} if sim is None else {
            "simulated": True, "speed": sim.speed, "origin": _iso(sim.origin)},
        "count": len(rows), "rows": [{
        "urgency": r.urgency, "scope": r.scope, "dossier": r.dossier.code,
        "procedure": r.dossier.procedure, "agency": r.agency, "agency_name": r.agency_name,
        "level": r.level, "due_at": _iso(r.due_at), "late_by_minutes": _minutes(r.late_by),
        "remaining_minutes": _minutes(r.remaining), "paused": r.paused,
        "applicant": _applicant(request, r.dossier)} for r in rows[:limit]]},
        dumps=_dumps)


async def api_scoreboard(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    period = _period(request)
    now = dash.clock()
    basis = "step" if request.query.get("basis") == "step" else "dossier"
    scope = _scope(request)
    board = dash.board.scoreboard(period, now, basis=basis, scope=scope,
                                  level=request.query.get("level") or None)
    ind = dash.board.indicators(period, now, scope=scope)
    return web.json_response({
        "period": {"from": period.first.isoformat(), "to": period.last.isoformat()},
        "basis": basis,
        "rows": [{"agency": r.agency, "name": r.name, "level": r.level, **_tally(r.tally)}
                 for r in board.rows],
        "levels": [{"level": lv, **_tally(t)} for lv, t in board.levels],
        "total": _tally(board.total),
        "daily": [{"day": d.day.isoformat(), **_tally(d.tally)}
                  for d in dash.board.daily_rates(period, now, basis=basis, scope=scope)],
        "indicators_766": {"on_time_rate": ind.on_time_rate, "judged": ind.judged,
                           "received": ind.received, "portal_synced": ind.portal_synced,
                           "portal_synced_rate": ind.portal_synced_rate},
    }, dumps=_dumps)


def _slip_json(request: web.Request, slip: Slip) -> dict[str, Any]:
    d = slip.dossier
    return {
        "dossier": d.code, "procedure": d.procedure, "procedure_name": d.procedure_name,
        "applicant": _applicant(request, d), "receiving_agency": d.receiving_agency,
        "channel": d.channel, "holder": d.holder, "state": d.state,
        "received_at": _iso(d.received_at), "due_at": _iso(d.due_at),
        "ended_at": _iso(d.ended_at), "outcome": slip.outcome,
        "late_by_minutes": _minutes(slip.late_by),
        "handoffs": [{"giver": h.giver, "receiver": h.receiver, "at": _iso(h.at),
                      "step_due_at": _iso(h.due_at), "ended_at": _iso(h.ended_at),
                      "outcome": h.outcome, "overrun_minutes": _minutes(h.overrun)}
                     for h in slip.handoffs],
        "pauses": [{"kind": p.kind, "requested_by": p.requested_by, "from": _iso(p.start),
                    "to": _iso(p.end), "reason": p.reason} for p in d.pauses],
        "apologies": [{"agency": a.agency, "at": _iso(a.at), "new_due_at": _iso(a.new_due_at),
                       "reason": a.reason} for a in d.apologies],
        "postal": [{"leg": p.leg, "tracking_number": p.tracking_number, "status": p.status,
                    "at": _iso(p.at)} for p in d.postal],
        "portal": {"status": d.portal_status, "in_step": d.portal_in_step},
        "receipts": [{"receipt_id": r.receipt_id, "delivery_id": r.delivery_id,
                      "kind": r.kind, "receiver": r.receiver,
                      "received_at": _iso(r.received_at), "key_id": r.key_id,
                      "signature": r.signature, "body_sha256": r.body_sha256}
                     for r in slip.receipts],
        "timeline": [{"event_id": e.event_id, "type": e.type, "at": _iso(e.at),
                      "agency": e.agency, "to_agency": e.to_agency, "detail": e.detail}
                     for e in d.timeline],
    }


async def api_slip(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    code = request.match_info["code"]
    if not _may_view(request, dash.board.dossier(code)):
        return web.json_response({"error": "not found"}, status=404)
    slip = dash.board.slip(code, dash.clock())
    assert slip is not None
    _audit_personal(request, "api_slip", [code])
    return web.json_response(_slip_json(request, slip), dumps=_dumps)


def _alert_json(a: AlertRecord) -> dict[str, Any]:
    return {"alert_id": a.alert_id, "kind": a.kind, "scope": a.scope, "dossier": a.dossier,
            "agency": a.agency, "destination": a.destination, "due_at": _iso(a.due_at),
            "fired_at": _iso(a.fired_at), "detail": a.detail,
            **({"cause": a.cause} if a.cause else {})}


async def api_alerts(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    alerts = dash.board.alerts(scope=_scope(request), kind=request.query.get("kind") or None)
    return web.json_response({"alerts": [_alert_json(a) for a in alerts]}, dumps=_dumps)


def _deadletter_json(r: DeadLetterRecord) -> dict[str, Any]:
    return {"partition": r.partition, "offset": r.offset, "reason": r.reason,
            "detail": r.detail, "source_topic": r.source_topic,
            "source_partition": r.source_partition, "source_offset": r.source_offset,
            "at": _iso(r.at), "key": r.key, "size": r.size}


async def api_deadletters(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    if _user(request).agency is not None:
        return web.json_response({"error": "province-wide operators only"}, status=403)
    return web.json_response({"deadletters": [_deadletter_json(r)
                                              for r in dash.board.deadletters()]},
                             dumps=_dumps)


async def api_resend(request: web.Request) -> web.Response:
    status, message = await _do_resend(request, request.match_info["offset"],
                                       request.query.get("partition", "0"),
                                       request.headers.get("X-CSRF-Token", ""))
    return web.json_response({"ok": status == 200, "message": message}, status=status)


async def metrics_endpoint(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    # In the loop's thread: the read model is only ever touched from there.
    body = dash.metrics.render_text()
    return web.Response(body=body, headers={"Content-Type": dash.metrics.content_type})


async def healthz(request: web.Request) -> web.Response:
    dash = request.app[DASHBOARD]
    return web.json_response({"ok": True, "dossiers": len(dash.board)})


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)
