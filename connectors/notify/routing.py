"""Who is told about an alert, and what they read (thông báo cảnh báo đến cơ quan chịu trách
nhiệm). No I/O: the service hands alerts and the read model in and sends what comes out.

The agency responsible for an alert is the agency it names (the step's or dossier's holder);
for a destination alert (a destination system not taking deliveries) it is that destination.
Its contact is its own ``alert_webhook`` / ``alert_email`` in the catalogue, or, when it has
none, the nearest ancestor's (a commune without a mailbox is reported to its district); with
none up the chain, the fallback contact (the province service centre) if one is given.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from lienthong.services.domain.catalogue import Catalogue
from lienthong.services.ops.board import AlertRecord, BoardRow, OpsBoard
from lienthong.services.ops.i18n import format_duration, format_instant, t

DIGEST_LIST_LIMIT = 200
"""Rows listed in a digest's text (the webhook payload carries them all)."""


@dataclass(frozen=True)
class Contact:
    """Where an agency is told: a webhook, a mailbox, or both."""

    agency: str                 # whose contact this is (the agency itself or an ancestor)
    agency_name: str
    webhook: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Notice:
    """One message to one contact: an alert, or a daily digest (bản tin tổng hợp hằng ngày)."""

    key: str                    # alert id, or digest:<agency>:<day>; the Idempotency-Key too
    kind: Literal["alert", "digest"]
    agency: str                 # the agency responsible (what the notice is about)
    contact: Contact
    subject: str
    text: str
    payload: Mapping[str, Any] = field(default_factory=dict)


def contact_for(catalogue: Catalogue, code: str | None,
                fallback: Contact | None = None) -> Contact | None:
    """The contact of ``code`` or of its nearest ancestor that has one; else ``fallback``."""
    seen: set[str] = set()
    current = code
    while current is not None and current not in seen:
        seen.add(current)
        agency = catalogue.agency(current)
        if agency is None:
            break
        if agency.alert_webhook or agency.alert_email:
            return Contact(agency.code, agency.name, agency.alert_webhook, agency.alert_email)
        current = agency.parent
    return fallback


def _link(base: str | None, path: str) -> str | None:
    return base.rstrip("/") + path if base else None


def alert_json(a: AlertRecord) -> dict[str, Any]:
    def iso(x: datetime | None) -> str | None:
        return None if x is None else x.isoformat()
    return {"alert_id": a.alert_id, "kind": a.kind, "scope": a.scope, "dossier": a.dossier,
            "agency": a.agency, "destination": a.destination, "due_at": iso(a.due_at),
            "fired_at": iso(a.fired_at), "detail": a.detail}


class AlertRouter:
    """Turns alerts into notices for the agency responsible, each ``alert_id`` once.

    ``kinds``: the alert kinds routed (None: all). ``max_age``: an alert fired longer ago than
    this is not sent (a router started after a long stop does not flood mailboxes with the
    alert topic's 90 days). ``remember``: how many ids are kept to recognise repeats.
    """

    def __init__(self, catalogue: Catalogue, *, kinds: Iterable[str] | None = None,
                 max_age: timedelta = timedelta(hours=6), remember: int = 200_000,
                 fallback: Contact | None = None, dashboard_url: str | None = None,
                 lang: str = "vi") -> None:
        self.catalogue = catalogue
        self.kinds = frozenset(kinds) if kinds is not None else None
        self.max_age = max_age
        self.remember = remember
        self.fallback = fallback
        self.dashboard_url = dashboard_url
        self.lang = lang
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.skipped: dict[str, int] = {}

    def _skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def seen(self, key: str) -> bool:
        return key in self._seen

    def remember_key(self, key: str) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self.remember:
            self._seen.popitem(last=False)

    def forget_key(self, key: str) -> None:
        """A notice that could not be sent: a repeat of its alert may try again."""
        self._seen.pop(key, None)

    def responsible(self, alert: AlertRecord) -> str | None:
        return alert.agency or (alert.destination if alert.scope == "destination" else None)

    def route(self, alert: AlertRecord, now: datetime) -> Notice | None:
        """The notice for ``alert``; None (and counted in ``skipped``) for a repeat, a stale
        alert, a kind not routed, or an agency with no contact."""
        if alert.alert_id in self._seen:
            self._skip("duplicate")
            return None
        if self.kinds is not None and alert.kind not in self.kinds:
            self._skip("kind")
            return None
        if now - alert.fired_at > self.max_age:
            self._skip("stale")
            return None
        agency = self.responsible(alert)
        contact = contact_for(self.catalogue, agency, self.fallback)
        if agency is None or contact is None:
            self._skip("no_contact")
            return None
        self.remember_key(alert.alert_id)
        return self._alert_notice(alert, agency, contact)

    def _alert_notice(self, a: AlertRecord, agency: str, contact: Contact) -> Notice:
        lang, tz = self.lang, self.catalogue.calendar.tz
        label = t(f"alert.{a.kind}", lang)
        agency_name = self.catalogue.agency(agency).name  # type: ignore[union-attr]
        about = a.dossier or a.destination or agency
        subject = f"[{label}] {about} – {agency_name}"
        link = _link(self.dashboard_url, f"/dossiers/{a.dossier}") if a.dossier else \
            _link(self.dashboard_url, "/alerts")
        def w(vi: str, en: str) -> str:
            return vi if lang == "vi" else en

        lines = [
            f"{w('Cảnh báo', 'Alert')}: {label}",
            f"{w('Hồ sơ', 'Dossier')}: {a.dossier}" if a.dossier else
            f"{w('Hệ thống nhận', 'Destination')}: {a.destination}",
            f"{w('Cơ quan', 'Agency')}: {agency_name} ({agency})",
        ]
        if a.due_at is not None:
            lines.append(f"{w('Hạn xử lý', 'Due')}: {format_instant(a.due_at, tz, lang)}")
        lines.append(f"{w('Thời điểm cảnh báo', 'Fired at')}: "
                     f"{format_instant(a.fired_at, tz, lang)}")
        if a.detail:
            lines.append(f"{w('Chi tiết', 'Detail')}: {a.detail}")
        if contact.agency != agency:
            lines.append(w(f"(Gửi tới {contact.agency_name} vì {agency_name} chưa khai báo "
                           "địa chỉ nhận cảnh báo.)",
                           f"(Sent to {contact.agency_name}: {agency_name} has no alert "
                           "contact.)"))
        if link:
            lines.append(f"{w('Xem', 'Open')}: {link}")
        payload = {"type": "alert", "agency": agency, "agency_name": agency_name,
                   "contact_agency": contact.agency, "subject": subject, "link": link,
                   "alert": alert_json(a)}
        return Notice(a.alert_id, "alert", agency, contact, subject, "\n".join(lines) + "\n",
                      payload)

    # -- the daily digest ----------------------------------------------------------------------

    def digests(self, board: OpsBoard, now: datetime, *,
                include_empty: bool = False) -> list[Notice]:
        """One digest per contact: overdue and due-soon counts and the list of rows, for the
        agencies that contact answers for. With ``include_empty``, contacts with nothing
        pending get a digest saying so (proof the service is alive)."""
        day = self.catalogue.calendar.local_date(now)
        groups: dict[str, tuple[Contact, list[BoardRow]]] = {}
        if include_empty:
            for a in self.catalogue.agencies.values():
                c = contact_for(self.catalogue, a.code)
                if c is not None and c.agency == a.code:
                    groups.setdefault(c.agency, (c, []))
        for row in board.overdue_board(now):
            c = contact_for(self.catalogue, row.agency, self.fallback)
            if c is None:
                self._skip("digest_no_contact")
                continue
            groups.setdefault(c.agency, (c, []))[1].append(row)
        return [self._digest(contact, rows, day, now)
                for _, (contact, rows) in sorted(groups.items())]

    def digest_key(self, agency: str, day: date) -> str:
        return f"digest:{agency}:{day.isoformat()}"

    def _digest(self, contact: Contact, rows: list[BoardRow], day: date,
                now: datetime) -> Notice:
        lang, cal = self.lang, self.catalogue.calendar
        def w(vi: str, en: str) -> str:
            return vi if lang == "vi" else en

        overdue_d = sum(1 for r in rows if r.urgency == "overdue" and r.scope == "dossier")
        overdue_s = sum(1 for r in rows if r.urgency == "overdue" and r.scope == "step")
        soon = sum(1 for r in rows if r.urgency == "due_soon")
        subject = w(f"[Tổng hợp {day:%d/%m/%Y}] {contact.agency_name}: {overdue_d} hồ sơ quá "
                    f"hạn, {overdue_s} bước quá hạn, {soon} sắp đến hạn",
                    f"[Digest {day:%Y-%m-%d}] {contact.agency_name}: {overdue_d} overdue "
                    f"dossiers, {overdue_s} overdue steps, {soon} due soon")
        lines = [subject, ""]
        for r in rows[:DIGEST_LIST_LIMIT]:
            late = r.urgency == "overdue"
            amount = r.late_by if late else r.remaining
            how = w("trễ", "late") if late else w("còn", "left")
            lines.append(
                f"- {t(r.urgency, lang)} · {t(r.scope, lang)} · {r.dossier.code} · "
                f"{r.dossier.procedure} · {r.agency_name} · "
                f"{w('hạn', 'due')} {format_instant(r.due_at, cal.tz, lang)} · "
                f"{how} {format_duration(amount, cal.day_length, lang)}")
        if len(rows) > DIGEST_LIST_LIMIT:
            lines.append(f"… +{len(rows) - DIGEST_LIST_LIMIT}")
        if not rows:
            lines.append(w("Không có hồ sơ quá hạn hoặc sắp đến hạn.",
                           "Nothing overdue or due soon."))
        link = _link(self.dashboard_url, f"/?agency={contact.agency}")
        if link:
            lines += ["", f"{w('Xem', 'Open')}: {link}"]
        payload = {
            "type": "digest", "day": day.isoformat(), "agency": contact.agency,
            "agency_name": contact.agency_name, "subject": subject, "link": link,
            "counts": {"overdue_dossiers": overdue_d, "overdue_steps": overdue_s,
                       "due_soon": soon},
            "rows": [{"urgency": r.urgency, "scope": r.scope, "dossier": r.dossier.code,
                      "procedure": r.dossier.procedure, "agency": r.agency,
                      "due_at": r.due_at.isoformat(),
                      "late_by_minutes": round(r.late_by.total_seconds() / 60, 2),
                      "remaining_minutes": round(r.remaining.total_seconds() / 60, 2)}
                     for r in rows],
        }
        return Notice(self.digest_key(contact.agency, day), "digest", contact.agency, contact,
                      subject, "\n".join(lines) + "\n", payload)
