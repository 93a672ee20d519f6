"""The dashboard's pages, rendered on the server with the escaping builder of ``html``.

Each page is a ``main`` element; the browser re-fetches it (``?fragment=1``) when the event
stream says its topic changed, so the same escaped rendering serves first paint and updates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from lienthong.services.clock import ScaledClock
from lienthong.services.ops.auth import Operator
from lienthong.services.ops.board import (
    AlertRecord,
    BoardRow,
    DailyRate,
    DeadLetterRecord,
    Dossier,
    Indicators,
    OpsBoard,
    Scoreboard,
    Slip,
    Tally,
    TimelineEntry,
)
from lienthong.services.ops.html import Child, Markup, el, esc, join
from lienthong.services.ops.i18n import (
    event_label,
    format_duration,
    format_instant,
    format_number,
    format_percent,
    portal_label,
    t,
)
from lienthong.services.ops.privacy import mask_id, mask_name

BOARD_ROW_LIMIT = 500
LEVEL_CHOICES = ("province", "centre", "department", "district", "commune", "vertical")


@dataclass(frozen=True)
class View:
    """Who is looking, in which language, at which instant."""

    lang: str
    user: Operator | None
    board: OpsBoard
    now: datetime
    path: str = "/"
    query: tuple[tuple[str, str], ...] = ()
    simulated: ScaledClock | None = None  # the demo's accelerated clock, shown in the header

    def t(self, key: str) -> str:
        return t(key, self.lang)

    def when(self, at: datetime | None) -> str:
        return format_instant(at, self.board.calendar.tz, self.lang)

    def duration(self, amount: timedelta) -> str:
        return format_duration(amount, self.board.calendar.day_length, self.lang)

    def num(self, x: int) -> str:
        return format_number(x, self.lang)

    @property
    def personal(self) -> bool:
        return self.user is not None and self.user.may_see_personal_data

    def name(self, d: Dossier) -> str:
        return d.applicant_name if self.personal else mask_name(d.applicant_name)

    def id_number(self, d: Dossier) -> str:
        return d.applicant_id if self.personal else mask_id(d.applicant_id)

    def agency(self, code: str | None) -> Markup:
        if not code:
            return esc("")
        return el("span", {"title": code}, self.board.agency_name(code))

    def url(self, path: str, **params: str | None) -> str:
        q = {k: v for k, v in params.items() if v}
        return path + ("?" + urlencode(q) if q else "")


# -- frame -----------------------------------------------------------------------------------

def _nav(v: View, active: str) -> Markup:
    items = [("/", "board.short"), ("/scoreboard", "scoreboard.short"), ("/alerts", "alerts"),
             ("/deadletters", "deadletters")]
    return el("nav", {"class": "nav", "aria-label": "main"}, [
        el("a", {"href": href, "class": "active" if href == active else None,
                 "aria-current": "page" if href == active else None}, v.t(key))
        for href, key in items])


def _lang_switch(v: View) -> Markup:
    other = "en" if v.lang == "vi" else "vi"
    query = [(k, val) for k, val in v.query if k not in ("lang", "fragment")]
    query.append(("lang", other))
    label = "English" if other == "en" else "Tiếng Việt"
    return el("a", {"class": "lang", "href": v.path + "?" + urlencode(query), "hreflang": other,
                    "lang": other, "id": "lang-switch"}, label)


def _clock_badge(v: View) -> Markup | None:
    """Simulated time, said plainly, so a demo's instants are not taken for real ones; the
    script advances it between redraws from the clock's origin, epoch and speed."""
    c = v.simulated
    if c is None:
        return None
    speed = format_number(c.speed, v.lang, 0 if c.speed == int(c.speed) else 1)
    return el("span", {"class": "clock sim", "id": "sim-clock",
                       "data-origin": str(int(c.origin.timestamp() * 1000)),
                       "data-epoch": str(int(c.epoch * 1000)), "data-speed": repr(c.speed),
                       "data-tz": v.board.calendar.tz.key,
                       "title": v.t("clock.simulated.title").format(
                           speed=speed, origin=v.when(c.origin))},
              el("span", {"class": "clock-label"}, v.t("clock.simulated")), " ",
              el("time", {"id": "sim-now"}, v.when(v.now)), " ",
              el("small", {}, f"×{speed} · ", v.t("clock.since"), " ", v.when(c.origin)))


def page(v: View, title: str, active: str, main: Markup, topics: str = "") -> Markup:
    """A whole HTML document around ``main``."""
    user = v.user
    header = el("header", {"class": "top"},
                el("a", {"class": "brand", "href": "/"},
                   el("span", {"class": "logo", "aria-hidden": "true"}, "LT"),
                   el("span", {}, v.t("app"),
                      el("small", {}, v.board.catalogue.province_name))),
                _nav(v, active) if user else None,
                el("div", {"class": "tools"},
                   _clock_badge(v),
                   el("form", {"class": "search", "action": "/search", "method": "get",
                               "role": "search"},
                      el("input", {"type": "search", "name": "q", "placeholder": v.t("search"),
                                   "aria-label": v.t("search")}),
                      el("button", {"type": "submit"}, v.t("search.button"))) if user else None,
                   el("span", {"class": "live", "id": "live-status", "data-on": v.t("live"),
                               "data-off": v.t("offline")}, v.t("offline")) if user else None,
                   _lang_switch(v),
                   el("form", {"action": "/logout", "method": "post", "class": "logout"},
                      el("span", {"class": "who"}, user.username,
                         " · ", (user.agency and v.board.agency_name(user.agency))
                         or v.t("province_wide")),
                      el("button", {"type": "submit"}, v.t("logout"))) if user else None))
    doc = join(
        Markup("<!DOCTYPE html>"),
        el("html", {"lang": v.lang},
           el("head", {},
              el("meta", {"charset": "utf-8"}),
              el("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
              el("title", {}, f"{title} · {v.t('app')}"),
              el("link", {"rel": "stylesheet", "href": "/static/app.css"}),
              el("script", {"src": "/static/app.js", "defer": True})),
           el("body", {},
              header,
              el("main", {"id": "live", "data-topics": topics or None}, main),
              el("footer", {"class": "foot"},
                 el("span", {}, v.t("updated"), " ",
                    el("time", {"id": "updated-at"}, v.when(v.now))))))
    )
    return doc


def _select(name: str, label: str, current: str | None,
            options: Sequence[tuple[str, str]], all_label: str) -> Markup:
    return el("label", {}, el("span", {}, label),
              el("select", {"name": name},
                 el("option", {"value": ""}, all_label),
                 [el("option", {"value": value, "selected": value == current}, text)
                  for value, text in options]))


def _badge(kind: str, v: View) -> Markup:
    return el("span", {"class": f"badge {kind}"}, v.t(kind))


def _table(head: Sequence[Child], rows: Sequence[Markup], cls: str = "grid") -> Markup:
    return el("div", {"class": "scroll"},
              el("table", {"class": cls},
                 el("thead", {}, el("tr", {}, [el("th", {"scope": "col"}, h) for h in head])),
                 el("tbody", {}, rows)))


# -- login -----------------------------------------------------------------------------------

def login_page(v: View, failed: bool = False, next_url: str = "/") -> Markup:
    form = el("form", {"class": "card login", "method": "post", "action": "/login"},
              el("h1", {}, v.t("login")),
              el("p", {"class": "error", "role": "alert"}, v.t("login.failed")) if failed else None,
              el("input", {"type": "hidden", "name": "next", "value": next_url}),
              el("label", {}, el("span", {}, v.t("username")),
                 el("input", {"name": "username", "autocomplete": "username", "required": True,
                              "autofocus": True})),
              el("label", {}, el("span", {}, v.t("password")),
                 el("input", {"name": "password", "type": "password", "required": True,
                              "autocomplete": "current-password"})),
              el("button", {"type": "submit", "class": "primary"}, v.t("login")))
    return page(v, v.t("login"), "", form)


# -- board -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BoardFilters:
    level: str | None = None
    agency: str | None = None
    procedure: str | None = None


def agency_choices(v: View, scope: frozenset[str] | None) -> list[tuple[str, str]]:
    return [(a.code, a.name) for a in v.board.catalogue.agencies.values()
            if a.level != "system" and (scope is None or a.code in scope)]


def procedure_choices(v: View) -> list[tuple[str, str]]:
    out = []
    for code, versions in sorted(v.board.catalogue.procedures.items()):
        name = versions[-1].name
        out.append((code, f"{code} – {name[:70]}{'…' if len(name) > 70 else ''}"))
    return out


def board_main(v: View, rows: Sequence[BoardRow], filters: BoardFilters,
               scope: frozenset[str] | None) -> Markup:
    overdue_d = sum(1 for r in rows if r.urgency == "overdue" and r.scope == "dossier")
    overdue_s = sum(1 for r in rows if r.urgency == "overdue" and r.scope == "step")
    soon = sum(1 for r in rows if r.urgency == "due_soon")
    levels = [(lv, v.t(f"level.{lv}")) for lv in LEVEL_CHOICES]
    form = el("form", {"class": "filters", "method": "get", "action": "/"},
              _select("level", v.t("level"), filters.level, levels, v.t("all")),
              _select("agency", v.t("agency"), filters.agency, agency_choices(v, scope),
                      v.t("all")),
              _select("procedure", v.t("procedure"), filters.procedure, procedure_choices(v),
                      v.t("all")),
              el("button", {"type": "submit"}, v.t("filter")))
    cards = el("div", {"class": "cards"},
               el("div", {"class": "card stat bad"}, el("b", {"id": "count-overdue"},
                                                        v.num(overdue_d)),
                  el("span", {}, v.t("overdue"), " · ", v.t("dossier"))),
               el("div", {"class": "card stat bad"}, el("b", {}, v.num(overdue_s)),
                  el("span", {}, v.t("overdue"), " · ", v.t("step"))),
               el("div", {"class": "card stat warn"}, el("b", {}, v.num(soon)),
                  el("span", {}, v.t("due_soon"))))
    body = []
    for r in rows[:BOARD_ROW_LIMIT]:
        d = r.dossier
        body.append(el(
            "tr", {"class": r.urgency, "data-dossier": d.code},
            el("td", {}, _badge(r.urgency, v),
               el("span", {"class": "scope"}, v.t(r.scope)),
               el("span", {"class": "badge paused"}, v.t("paused")) if r.paused else None),
            el("td", {"class": "code"}, el("a", {"href": f"/dossiers/{d.code}"}, d.code)),
            el("td", {"class": "proc"}, el("span", {"title": d.procedure_name}, d.procedure),
               el("small", {}, d.procedure_name)),
            el("td", {"class": "applicant"}, v.name(d)),
            el("td", {}, v.agency(r.agency), el("small", {}, v.t(f"level.{r.level}"))),
            el("td", {"class": "num"}, v.when(r.due_at)),
            el("td", {"class": "num strong"},
               v.duration(r.late_by) if r.urgency == "overdue" else v.duration(r.remaining))))
    table = (_table([v.t("state"), v.t("dossier"), v.t("procedure"), v.t("applicant"),
                     v.t("holder"), v.t("due_at"), v.t("late_by") + " / " + v.t("remaining")],
                    body, "grid board")
             if body else el("p", {"class": "empty"}, v.t("nothing")))
    more = (el("p", {"class": "note"}, f"+ {v.num(len(rows) - BOARD_ROW_LIMIT)}")
            if len(rows) > BOARD_ROW_LIMIT else None)
    return join(el("h1", {}, v.t("board")), form, cards, table, more)


# -- scoreboard ------------------------------------------------------------------------------

def _tally_cells(v: View, tl: Tally) -> list[Markup]:
    return [el("td", {"class": "num"}, v.num(x)) for x in
            (tl.received, tl.ended, tl.early, tl.on_time, tl.late)] + [
        el("td", {"class": "num strong rate"}, format_percent(tl.on_time_rate, v.lang)),
        el("td", {"class": "num" + (" bad-text" if tl.overdue else "")}, v.num(tl.overdue)),
        el("td", {"class": "num muted"}, v.num(tl.withdrawn)),
        el("td", {"class": "num muted"}, v.num(tl.stopped))]


def rate_chart(v: View, series: Sequence[DailyRate], width: int = 720,
               height: int = 180) -> Markup:
    """A small inline SVG line of the daily early-and-on-time rate (days with nothing judged
    leave a gap)."""
    pad_l, pad_r, pad_t, pad_b = 44, 10, 10, 24
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    n = max(1, len(series) - 1)

    def x(i: int) -> float:
        return pad_l + w * i / n

    def y(rate: float) -> float:
        return pad_t + h * (1 - rate)

    grid = []
    for pct in (0, 50, 80, 100):
        grid.append(el("line", {"x1": pad_l, "x2": pad_l + w, "y1": f"{y(pct / 100):.1f}",
                                "y2": f"{y(pct / 100):.1f}", "class": "grid-line"}))
        grid.append(el("text", {"x": pad_l - 6, "y": f"{y(pct / 100) + 4:.1f}",
                                "text-anchor": "end", "class": "axis"}, f"{pct}%"))
    lines, points, segment = [], [], []
    for i, r in enumerate(series):
        rate = r.tally.on_time_rate
        if rate is None:
            if len(segment) > 1:
                lines.append(segment)
            segment = []
            continue
        segment.append(f"{x(i):.1f},{y(rate):.1f}")
        points.append(el("circle", {"cx": f"{x(i):.1f}", "cy": f"{y(rate):.1f}", "r": 3,
                                    "class": "dot"},
                         el("title", {}, f"{r.day:%d/%m}: {format_percent(rate, v.lang)} "
                                         f"({v.num(r.tally.judged)})")))
    if len(segment) > 1:
        lines.append(segment)
    labels = []
    step = max(1, len(series) // 8)
    last = len(series) - 1
    for i, r in enumerate(series):
        if (i % step == 0 and (last - i >= step / 2 or i == last)) or i == last:
            labels.append(el("text", {"x": f"{x(i):.1f}", "y": height - 6,
                                      "text-anchor": "middle", "class": "axis"},
                             f"{r.day:%d/%m}"))
    return el("svg", {"class": "chart", "viewBox": f"0 0 {width} {height}", "role": "img",
                      "aria-label": v.t("daily_rate")},
              grid, [el("polyline", {"points": " ".join(seg), "class": "rate-line",
                                     "fill": "none"}) for seg in lines],
              points, labels)


def scoreboard_main(v: View, board: Scoreboard, series: Sequence[DailyRate],
                    ind: Indicators, level: str | None) -> Markup:
    p = board.period
    levels = [(lv, v.t(f"level.{lv}")) for lv in LEVEL_CHOICES]
    form = el("form", {"class": "filters", "method": "get", "action": "/scoreboard"},
              el("label", {}, el("span", {}, v.t("from")),
                 el("input", {"type": "date", "name": "from", "value": p.first.isoformat()})),
              el("label", {}, el("span", {}, v.t("to")),
                 el("input", {"type": "date", "name": "to", "value": p.last.isoformat()})),
              _select("basis", v.t("basis"), board.basis,
                      [("dossier", v.t("basis.dossier")), ("step", v.t("basis.step"))],
                      v.t("basis.dossier")),
              _select("level", v.t("level"), level, levels, v.t("all")),
              el("button", {"type": "submit"}, v.t("show")))
    query = {"from": p.first.isoformat(), "to": p.last.isoformat(), "basis": board.basis,
             "level": level}
    downloads = el("p", {"class": "downloads no-print", "id": "downloads"},
                   el("span", {}, v.t("report.download"), ": "),
                   join(*[join(el("a", {"href": v.url(f"/{table}.{fmt}", **query),
                                        "download": True, "class": f"dl {fmt}"},
                                     f"{v.t(f'report.sheet.{table}')} ({fmt.upper()})"), " ")
                          for table in ("scoreboard", "indicators") for fmt in ("xlsx", "csv")]))
    indicators = el("section", {"class": "cards"},
                    el("div", {"class": "card stat good"},
                       el("b", {"id": "rate-total"}, format_percent(ind.on_time_rate, v.lang)),
                       el("span", {}, v.t("ind.rate"))),
                    el("div", {"class": "card stat"},
                       el("b", {}, format_percent(ind.portal_synced_rate, v.lang)),
                       el("span", {}, v.t("ind.portal"),
                          f" ({v.num(ind.portal_synced)}/{v.num(ind.received)})")),
                    el("div", {"class": "card stat bad"}, el("b", {}, v.num(board.total.overdue)),
                       el("span", {}, v.t("overdue_now"))))
    head = [v.t("agency"), v.t("received"), v.t("ended"), v.t("early"), v.t("on_time"),
            v.t("late"), v.t("rate"), v.t("overdue_now"), v.t("withdrawn"), v.t("stopped")]
    rows: list[Markup] = []
    for lv, tally in board.levels:
        rows.append(el("tr", {"class": "level"},
                       el("th", {"scope": "row"}, v.t(f"level.{lv}")), _tally_cells(v, tally)))
        for r in board.rows:
            if r.level == lv:
                rows.append(el("tr", {}, el("td", {"class": "indent", "title": r.agency}, r.name),
                               _tally_cells(v, r.tally)))
    rows.append(el("tr", {"class": "total"}, el("th", {"scope": "row"}, v.t("total")),
                   _tally_cells(v, board.total)))
    return join(
        el("h1", {}, v.t("scoreboard")), form, downloads,
        el("h2", {}, v.t("ind.766")), indicators,
        el("section", {"class": "card"}, el("h2", {}, v.t("daily_rate")), rate_chart(v, series)),
        _table(head, rows, "grid score"))


# -- tracking slip ---------------------------------------------------------------------------

def _note(v: View, note: str | None) -> str:
    if not note:
        return ""
    if len(note) == 36 and note.count("-") == 4:  # a void names the event it voids
        return f"{v.t('note.voids')} {note[:8]}…"
    return v.t(f"note.{note}")


def _void_form(v: View, code: str, entry: TimelineEntry, csrf: str) -> Markup:
    """Hủy sự kiện: a reason, then a POST; the worker replays the dossier without it."""
    return el("details", {"class": "void no-print"},
              el("summary", {}, v.t("void")),
              el("form", {"method": "post", "action": f"/dossiers/{code}/void",
                          "class": "void-form"},
                 el("input", {"type": "hidden", "name": "csrf", "value": csrf}),
                 el("input", {"type": "hidden", "name": "event_id", "value": entry.event_id}),
                 el("label", {}, v.t("void.reason"),
                    el("textarea", {"name": "reason", "required": "required",
                                    "maxlength": "2000", "rows": "2"}, "")),
                 el("button", {"type": "submit", "class": "danger small"},
                    v.t("void.submit"))))


def _correct_form(v: View, code: str, entry: TimelineEntry, csrf: str) -> Markup:
    """Đính chính a hand-off sent to the wrong agency: the right recipient and a reason."""
    options = [el("option", {"value": a.code, "selected": a.code == entry.to_agency},
                  f"{a.name} ({a.code})")
               for a in sorted(v.board.catalogue.agencies.values(), key=lambda a: a.name)]
    return el("details", {"class": "correct no-print"},
              el("summary", {}, v.t("correct")),
              el("form", {"method": "post", "action": f"/dossiers/{code}/correct",
                          "class": "void-form"},
                 el("input", {"type": "hidden", "name": "csrf", "value": csrf}),
                 el("input", {"type": "hidden", "name": "event_id", "value": entry.event_id}),
                 el("label", {}, v.t("correct.to_agency"),
                    el("select", {"name": "to_agency", "required": "required"}, options)),
                 el("label", {}, v.t("correct.reason"),
                    el("textarea", {"name": "reason", "required": "required",
                                    "maxlength": "2000", "rows": "2"}, "")),
                 el("button", {"type": "submit", "class": "primary small"},
                    v.t("correct.submit"))))


def slip_main(v: View, slip: Slip, *, csrf: str | None = None,
              flash: str | None = None) -> Markup:
    """The tracking slip; with ``csrf`` (an operator allowed to void) each event that can be
    voided has its form."""
    d = slip.dossier
    facts = [
        (v.t("dossier"), el("b", {"class": "code"}, d.code)),
        (v.t("procedure"), join(d.procedure, " – ", d.procedure_name)),
        (v.t("applicant"), el("span", {"id": "applicant-name"}, v.name(d))),
        (v.t("id_number"), v.id_number(d)),
        (v.t("receiving"), v.agency(d.receiving_agency)),
        (v.t("channel"), v.t(f"channel.{d.channel}") if d.channel else ""),
        (v.t("received_at"), v.when(d.received_at)),
        (v.t("appointment"), v.when(d.due_at)),
        (v.t("holder"), v.agency(d.holder)),
        (v.t("state"), v.t(f"state.{d.state}")),
        (v.t("outcome"), join(_badge(slip.outcome, v),
                             f" {v.duration(slip.late_by)}" if slip.late_by else "")),
        (v.t("ended_at"), v.when(d.ended_at)),
    ]
    info = el("dl", {"class": "facts"},
              [join(el("dt", {}, k), el("dd", {}, val)) for k, val in facts])
    hand = [el("tr", {},
               el("td", {"class": "num"}, str(i + 1)),
               el("td", {}, v.agency(h.giver) if h.giver else v.t("desk")),
               el("td", {}, v.agency(h.receiver)),
               el("td", {"class": "num"}, v.when(h.at)),
               el("td", {"class": "num"}, v.when(h.due_at)),
               el("td", {"class": "num"}, v.when(h.ended_at)),
               el("td", {}, _badge(h.outcome, v)),
               el("td", {"class": "num"}, v.duration(h.overrun) if h.overrun else ""))
            for i, h in enumerate(slip.handoffs)]
    sections = [
        el("h1", {}, v.t("slip")),
        el("p", {"class": "actions no-print"},
           el("button", {"type": "button", "data-action": "print"}, v.t("print"))),
        info,
        el("h2", {}, v.t("handoffs")),
        _table(["#", v.t("giver"), v.t("receiver"), v.t("handed_at"), v.t("step_due"),
                v.t("step_ended"), v.t("outcome"), v.t("overrun")], hand, "grid slip"),
    ]
    sections += [el("h2", {}, v.t("receipts")), _table(
        [v.t("receiver"), v.t("receipt.kind"), v.t("receipt.received_at"), v.t("receipt.key"),
         v.t("receipt.signature")],
        [el("tr", {"class": "receipt"}, el("td", {}, v.agency(r.receiver)),
            el("td", {}, r.kind), el("td", {"class": "num"}, v.when(r.received_at)),
            el("td", {}, r.key_id),
            el("td", {}, el("code", {"title": r.signature}, r.signature[:16] + "…")))
         for r in slip.receipts], "grid receipts") if slip.receipts else
        el("p", {"class": "receipts-none"}, v.t("receipt.none"))]
    if d.pauses:
        sections += [el("h2", {}, v.t("pauses")), _table(
            [v.t("kind"), v.t("requested_by"), v.t("from"), v.t("to"), v.t("reason")],
            [el("tr", {}, el("td", {}, v.t(f"pause.{p.kind}")), el("td", {},
                v.agency(p.requested_by)), el("td", {"class": "num"}, v.when(p.start)),
                el("td", {"class": "num"}, v.when(p.end)), el("td", {}, p.reason))
             for p in d.pauses])]
    if d.apologies:
        sections += [el("h2", {}, v.t("apologies")), _table(
            [v.t("agency"), v.t("at"), v.t("new_due"), v.t("reason")],
            [el("tr", {}, el("td", {}, v.agency(a.agency)),
                el("td", {"class": "num"}, v.when(a.at)),
                el("td", {"class": "num"}, v.when(a.new_due_at)), el("td", {}, a.reason))
             for a in d.apologies])]
    if d.postal:
        sections += [el("h2", {}, v.t("postal")), _table(
            [v.t("kind"), v.t("tracking"), v.t("state"), v.t("at")],
            [el("tr", {}, el("td", {}, p.leg), el("td", {}, p.tracking_number or ""),
                el("td", {}, p.status), el("td", {"class": "num"}, v.when(p.at)))
             for p in d.postal])]
    if slip.citizen_notices:
        def detail(text: str) -> str:
            word = v.t(f"citizen.detail.{text}")
            if not word.startswith("citizen.detail."):
                return word
            try:                    # a held message's detail is the end of the quiet hours
                until = datetime.fromisoformat(text)
            except ValueError:
                return text
            return f"{v.t('citizen.until')} {v.when(until)}" if until.tzinfo else text

        sections += [el("h2", {}, v.t("citizen")), _table(
            [v.t("at"), v.t("kind"), v.t("citizen.channel"), v.t("citizen.to"),
             v.t("citizen.status"), v.t("detail")],
            [el("tr", {"data-status": n.status},
                el("td", {"class": "num"}, v.when(n.at)),
                el("td", {}, v.t(f"citizen.kind.{n.kind}")),
                el("td", {}, v.t(f"citizen.channel.{n.channel}")),
                el("td", {}, n.to or ""),
                el("td", {}, v.t(f"citizen.status.{n.status}")),
                el("td", {}, detail(n.detail)))
             for n in slip.citizen_notices], "grid citizen")]
    in_step = d.portal_in_step
    sections += [
        el("h2", {}, v.t("portal")),
        el("p", {"class": "portal"}, portal_label(d.portal_status, v.lang), " ",
           el("span", {"class": "badge " + ("on_time" if in_step else "late")},
              v.t("portal.in_step") if in_step else
              v.t("portal.none") if d.portal_status is None else v.t("portal.drift"))),
    ]
    if d.timeline:
        def voidable(i: int, e: TimelineEntry) -> bool:
            return (csrf is not None and i > 0 and bool(e.event_id)
                    and e.note != "voided" and e.type != "event_voided")

        sections += [el("h2", {}, v.t("timeline")), _table(
            [v.t("at"), v.t("event"), v.t("agency"), v.t("receiver"), v.t("detail"),
             v.t("note"), ""],
            [el("tr", {"data-event": e.event_id or "",
                       "class": "voided" if e.note == "voided" else None},
                el("td", {"class": "num"}, v.when(e.at)),
                el("td", {}, event_label(e.type, v.lang)),
                el("td", {}, v.agency(e.agency)), el("td", {}, v.agency(e.to_agency)),
                el("td", {}, e.detail), el("td", {"class": "note"}, _note(v, e.note)),
                el("td", {}, (_void_form(v, d.code, e, csrf),
                              _correct_form(v, d.code, e, csrf) if e.type == "handoff"
                              else None) if voidable(i, e) and csrf else None))
             for i, e in enumerate(d.timeline)])]
    if flash:
        sections.insert(1, el("p", {"class": "flash", "role": "status"}, flash))
    return join(*sections)


def not_found_main(v: View, message_key: str = "not_found") -> Markup:
    return el("p", {"class": "empty"}, v.t(message_key))


def search_main(v: View, query: str, found: Sequence[Dossier],
                note: str | None = None) -> Markup:
    rows = [el("tr", {}, el("td", {}, el("a", {"href": f"/dossiers/{d.code}"}, d.code)),
               el("td", {}, v.name(d)), el("td", {}, d.procedure),
               el("td", {}, v.agency(d.holder)),
               el("td", {"class": "num"}, v.when(d.received_at)),
               el("td", {}, v.t(f"state.{d.state}"))) for d in found]
    return join(el("h1", {}, v.t("search.button"), ": ", query),
                el("p", {"class": "note", "role": "status"}, v.t(note)) if note else None,
                _table([v.t("dossier"), v.t("applicant"), v.t("procedure"), v.t("holder"),
                        v.t("received_at"), v.t("state")], rows) if rows
                else not_found_main(v))


# -- alerts and dead letters -----------------------------------------------------------------

def alerts_main(v: View, alerts: Sequence[AlertRecord]) -> Markup:
    rows = [el("tr", {"class": a.kind, "data-alert": a.alert_id},
               el("td", {"class": "num"}, v.when(a.fired_at)),
               el("td", {}, el("span", {"class": f"badge {a.kind}"},
                               v.t(f"cause.{a.cause}") if a.cause else v.t(f"alert.{a.kind}"))),
               el("td", {"class": "code"},
                  el("a", {"href": f"/dossiers/{a.dossier}"}, a.dossier) if a.dossier else ""),
               el("td", {}, v.agency(a.agency) if a.agency else a.destination or ""),
               el("td", {"class": "num"}, v.when(a.due_at)),
               el("td", {}, a.detail)) for a in alerts]
    return join(el("h1", {}, v.t("alerts")),
                _table([v.t("fired_at"), v.t("kind"), v.t("dossier"), v.t("agency"),
                        v.t("due_at"), v.t("detail")], rows, "grid alerts")
                if rows else el("p", {"class": "empty"}, v.t("nothing")))


def deadletters_main(v: View, records: Sequence[DeadLetterRecord], csrf: str,
                     flash: str | None = None, may_resend: bool = False) -> Markup:
    def button(r: DeadLetterRecord) -> Markup | None:
        if not may_resend:
            return None
        return el("form", {"method": "post", "action": f"/deadletters/{r.offset}/resend"},
                  el("input", {"type": "hidden", "name": "csrf", "value": csrf}),
                  el("input", {"type": "hidden", "name": "partition", "value": r.partition}),
                  el("button", {"type": "submit", "class": "primary small"}, v.t("resend")))

    rows = [el("tr", {"data-offset": r.offset},
               el("td", {"class": "num"}, f"{r.partition}:{r.offset}"),
               el("td", {"class": "num"}, v.when(r.at)),
               el("td", {}, el("code", {}, r.reason)),
               el("td", {}, r.detail),
               el("td", {}, f"{r.source_topic}/{r.source_partition}@{r.source_offset}"),
               el("td", {"class": "code"}, r.key or ""),
               el("td", {"class": "num"}, v.num(r.size)),
               el("td", {}, button(r))) for r in records]
    return join(el("h1", {}, v.t("deadletters")),
                el("p", {"class": "flash", "role": "status"}, flash) if flash else None,
                _table(["#", v.t("at"), v.t("reason"), v.t("detail"), v.t("source"),
                        v.t("dossier"), v.t("size"), ""], rows, "grid dead")
                if rows else el("p", {"class": "empty"}, v.t("nothing")))


Renderer = Callable[[View], Markup]


def default_period(today: date) -> tuple[date, date]:
    """From the first of the month to today (how monthly reports are read mid-month)."""
    return today.replace(day=1), today
