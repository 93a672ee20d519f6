"""The operations read model: what the dashboard shows, built from what the hub publishes.

Pure Python (no Kafka, no HTTP): the shell feeds it ``dossier.status`` snapshots (plain dicts,
the JSON of one dossier), alerts and dead letters (decoded dicts), and asks it questions at an
instant ``now``. Lateness is measured in working time of the catalogue's calendar, as the law
counts it (DESIGN section 6), never in wall-clock hours.

Questions it answers:

- ``overdue_board(now, ...)``: open dossiers and open steps past their due (quá hạn) or near it
  (sắp đến hạn), most urgent first;
- ``scoreboard(period, now, ...)``: per agency and level, as provincial reports show it:
  received, ended, early / on time / late, "trước hạn và đúng hạn" %, overdue now, withdrawn and
  stopped apart; ``daily_rates`` for the chart;
- ``indicators(period, now)``: the Decision 766/QĐ-TTg indicators (on-time rate, share of
  dossiers whose status is in step with the national portal);
- ``slip(code)``: the tracking slip (phiếu kiểm soát quá trình giải quyết hồ sơ).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Literal

from lienthong.services.domain.catalogue import Catalogue
from lienthong.services.domain.routing import (
    PORTAL_NEW,
    PORTAL_OBLIGATION,
    PORTAL_PROCESSED,
    PORTAL_PROCESSING,
    PORTAL_RECEIVED,
    PORTAL_RETURNED,
    PORTAL_STOPPED,
    PORTAL_SUPPLEMENT,
    PORTAL_WITHDRAWN,
)

OPEN_STATES = ("processing", "paused")
END_STATES = ("ended", "withdrawn", "stopped")
STATES = OPEN_STATES + END_STATES
Urgency = Literal["overdue", "due_soon"]
Basis = Literal["dossier", "step"]

# Portal (DVCQG) statuses that agree with each hub state.
EXPECTED_PORTAL: Mapping[str, frozenset[int]] = {
    "processing": frozenset({PORTAL_NEW, PORTAL_RECEIVED, PORTAL_PROCESSING}),
    "paused": frozenset({PORTAL_SUPPLEMENT, PORTAL_OBLIGATION}),
    "ended": frozenset({PORTAL_PROCESSED, PORTAL_RETURNED}),
    "withdrawn": frozenset({PORTAL_WITHDRAWN}),
    "stopped": frozenset({PORTAL_STOPPED}),
}


class SnapshotError(ValueError):
    """A ``dossier.status`` value that is not a usable snapshot (the field is named)."""


# -- parsed records -------------------------------------------------------------------------


def _instant(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise SnapshotError(f"{name}: expected an ISO-8601 instant, got {value!r}")
    try:
        t = datetime.fromisoformat(value)
    except ValueError as exc:
        raise SnapshotError(f"{name}: not an ISO-8601 instant: {value!r}") from exc
    if t.tzinfo is None:
        raise SnapshotError(f"{name}: instant without a UTC offset: {value!r}")
    return t


def _maybe_instant(value: Any, name: str) -> datetime | None:
    return None if value is None else _instant(value, name)


def _text(d: Mapping[str, Any], key: str, where: str = "") -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise SnapshotError(f"{where}{key}: expected a non-empty string, got {value!r}")
    return value


def _opt_text(d: Mapping[str, Any], key: str) -> str | None:
    value = d.get(key)
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class Step:
    """One step (bước): the agency holding the dossier from ``started_at`` to ``ended_at``."""

    agency: str
    started_at: datetime
    due_at: datetime
    ended_at: datetime | None
    outcome: str
    overrun_minutes: float = 0


@dataclass(frozen=True, slots=True)
class Pause:
    """A supplement request (yêu cầu bổ sung) or financial obligation (nghĩa vụ tài chính)."""

    kind: str
    requested_by: str | None
    start: datetime
    end: datetime | None
    reason: str


@dataclass(frozen=True, slots=True)
class Apology:
    """Apology and new date (văn bản xin lỗi và hẹn lại ngày trả)."""

    agency: str | None
    at: datetime
    new_due_at: datetime | None
    reason: str


@dataclass(frozen=True, slots=True)
class PostalLeg:
    """A leg carried by the public postal service (bưu chính công ích)."""

    leg: str
    tracking_number: str | None
    status: str
    at: datetime | None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    event_id: str | None
    type: str
    at: datetime
    agency: str | None
    to_agency: str | None
    detail: str
    note: str | None = None  # the core's: after_end, unexpected_recipient, voided, correction…


@dataclass(frozen=True, slots=True)
class Dossier:
    """One dossier (hồ sơ) as last published on ``dossier.status``."""

    code: str
    procedure: str
    procedure_name: str
    receiving_agency: str
    receiving_level: str | None
    channel: str | None
    applicant_name: str
    applicant_id: str
    holder: str
    holder_level: str | None
    state: str
    received_at: datetime
    due_at: datetime
    ended_at: datetime | None
    outcome: str
    late_agencies: tuple[str, ...]
    repeat_supplement: bool
    steps: tuple[Step, ...]
    pauses: tuple[Pause, ...]
    apologies: tuple[Apology, ...]
    postal: tuple[PostalLeg, ...]
    portal_status: int | None
    timeline: tuple[TimelineEntry, ...]
    updated_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def open_step(self) -> Step | None:
        if not self.is_open or not self.steps or self.steps[-1].ended_at is not None:
            return None
        return self.steps[-1]

    @property
    def open_pause(self) -> Pause | None:
        """The earliest pause still open (clocks stop at the first open request)."""
        open_ = [p for p in self.pauses if p.end is None]
        return min(open_, key=lambda p: p.start) if open_ else None

    @property
    def agencies(self) -> frozenset[str]:
        """Every agency that took part: receiving desk, holder, each step."""
        return frozenset({self.receiving_agency, self.holder, *(s.agency for s in self.steps)})

    @property
    def portal_in_step(self) -> bool:
        """Whether the status last synced to the national portal agrees with the hub's state."""
        return (self.portal_status is not None
                and self.portal_status in EXPECTED_PORTAL.get(self.state, frozenset()))


def parse_snapshot(data: Mapping[str, Any]) -> Dossier:
    """A ``dossier.status`` value (decoded JSON) as a ``Dossier``; ``SnapshotError`` if unusable."""
    if not isinstance(data, Mapping):
        raise SnapshotError(f"snapshot: expected a JSON object, got {type(data).__name__}")
    state = _text(data, "state")
    if state not in STATES:
        raise SnapshotError(f"state: expected one of {', '.join(STATES)}, got {state!r}")
    applicant = data.get("applicant") or {}
    if not isinstance(applicant, Mapping):
        raise SnapshotError("applicant: expected an object")
    steps = []
    for i, s in enumerate(data.get("steps") or ()):
        where = f"steps[{i}]."
        steps.append(Step(
            agency=_text(s, "agency", where),
            started_at=_instant(s.get("started_at"), where + "started_at"),
            due_at=_instant(s.get("due_at"), where + "due_at"),
            ended_at=_maybe_instant(s.get("ended_at"), where + "ended_at"),
            outcome=str(s.get("outcome") or "open"),
            overrun_minutes=float(s.get("overrun_minutes") or 0),
        ))
    pauses = tuple(Pause(
        kind=str(p.get("kind") or ""), requested_by=_opt_text(p, "requested_by"),
        start=_instant(p.get("from"), f"pauses[{i}].from"),
        end=_maybe_instant(p.get("to"), f"pauses[{i}].to"), reason=str(p.get("reason") or ""),
    ) for i, p in enumerate(data.get("pauses") or ()))
    apologies = tuple(Apology(
        agency=_opt_text(a, "agency"), at=_instant(a.get("at"), f"apologies[{i}].at"),
        new_due_at=_maybe_instant(a.get("new_due_at"), f"apologies[{i}].new_due_at"),
        reason=str(a.get("reason") or ""),
    ) for i, a in enumerate(data.get("apologies") or ()))
    postal = tuple(PostalLeg(
        leg=str(p.get("leg") or ""), tracking_number=_opt_text(p, "tracking_number"),
        status=str(p.get("status") or ""), at=_maybe_instant(p.get("at"), f"postal[{i}].at"),
    ) for i, p in enumerate(data.get("postal") or ()))
    timeline = tuple(TimelineEntry(
        event_id=_opt_text(e, "event_id"), type=str(e.get("type") or ""),
        at=_instant(e.get("at"), f"timeline[{i}].at"), agency=_opt_text(e, "agency"),
        to_agency=_opt_text(e, "to_agency"), detail=str(e.get("detail") or ""),
        note=_opt_text(e, "note"),
    ) for i, e in enumerate(data.get("timeline") or ()))
    portal = data.get("portal_status")
    if portal is not None and (not isinstance(portal, int) or isinstance(portal, bool)):
        raise SnapshotError(f"portal_status: expected an integer or null, got {portal!r}")
    return Dossier(
        code=_text(data, "dossier"),
        procedure=_text(data, "procedure"),
        procedure_name=str(data.get("procedure_name") or ""),
        receiving_agency=_text(data, "receiving_agency"),
        receiving_level=_opt_text(data, "receiving_level"),
        channel=_opt_text(data, "channel"),
        applicant_name=str(applicant.get("name") or ""),
        applicant_id=str(applicant.get("id_number") or ""),
        holder=_opt_text(data, "holder") or _text(data, "receiving_agency"),
        holder_level=_opt_text(data, "holder_level"),
        state=state,
        received_at=_instant(data.get("received_at"), "received_at"),
        due_at=_instant(data.get("due_at"), "due_at"),
        ended_at=_maybe_instant(data.get("ended_at"), "ended_at"),
        outcome=str(data.get("outcome") or "open"),
        late_agencies=tuple(str(a) for a in data.get("late_agencies") or ()),
        repeat_supplement=bool(data.get("repeat_supplement")),
        steps=tuple(steps), pauses=pauses, apologies=apologies, postal=postal,
        portal_status=portal, timeline=timeline,
        updated_at=_maybe_instant(data.get("updated_at"), "updated_at"),
    )


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert of the feed (decoded from ``alerts``), kept once per ``alert_id``."""

    alert_id: str
    kind: str
    scope: str
    dossier: str | None
    agency: str | None
    destination: str | None
    due_at: datetime | None
    fired_at: datetime
    detail: str
    cause: str | None = None  # a finer reason within kind, e.g. receipt_missing

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlertRecord:
        return cls(
            alert_id=_text(d, "alert_id"), kind=_text(d, "kind"), scope=str(d.get("scope") or ""),
            dossier=_opt_text(d, "dossier"), agency=_opt_text(d, "agency"),
            destination=_opt_text(d, "destination"),
            due_at=_maybe_instant(d.get("due_at"), "due_at"),
            fired_at=_instant(d.get("fired_at"), "fired_at"), detail=str(d.get("detail") or ""),
            cause=_opt_text(d, "cause"),
        )


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    """A destination's signed receipt of one delivery (biên nhận), as the hub checked it."""

    receipt_id: str
    delivery_id: str
    kind: str
    dossier: str
    receiver: str
    received_at: datetime
    key_id: str
    signature: str
    body_sha256: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReceiptRecord:
        return cls(receipt_id=_text(d, "receipt_id"), delivery_id=_text(d, "delivery_id"),
                   kind=_text(d, "kind"), dossier=_text(d, "dossier"),
                   receiver=_text(d, "receiver"),
                   received_at=_instant(d.get("received_at"), "received_at"),
                   key_id=_text(d, "key_id"), signature=_text(d, "signature"),
                   body_sha256=_text(d, "body_sha256"))


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A parked message (``deadletter``), named by its own partition and offset there."""

    partition: int
    offset: int
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    at: datetime | None
    key: str | None
    size: int

    @classmethod
    def from_dict(cls, partition: int, offset: int, d: Mapping[str, Any]) -> DeadLetterRecord:
        raw_key = d.get("key")
        key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else raw_key
        at_text = d.get("at")
        try:
            at = _maybe_instant(at_text, "at")
        except SnapshotError:
            at = None
        return cls(
            partition=partition, offset=offset, reason=str(d.get("reason") or ""),
            detail=str(d.get("detail") or ""), source_topic=str(d.get("source_topic") or ""),
            source_partition=int(d.get("partition", -1)), source_offset=int(d.get("offset", -1)),
            at=at, key=key if isinstance(key, str) else None,
            size=len(d.get("original") or b""),
        )


# -- answers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardRow:
    """One line of the overdue / due-soon board: a dossier or one of its steps."""

    urgency: Urgency
    scope: Literal["dossier", "step"]
    dossier: Dossier
    agency: str                 # the step's agency, or the dossier's holder
    agency_name: str
    level: str
    due_at: datetime
    late_by: timedelta          # working time past due (overdue), else zero
    remaining: timedelta        # working time left (due soon), else zero
    paused: bool

    def sort_key(self) -> tuple[int, float, datetime, str]:
        if self.urgency == "overdue":
            return (0, -self.late_by.total_seconds(), self.due_at, self.dossier.code)
        return (1, self.remaining.total_seconds(), self.due_at, self.dossier.code)


@dataclass(frozen=True, slots=True)
class Period:
    """A reporting period of local calendar days, ``first`` to ``last`` inclusive."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"period ends ({self.last}) before it starts ({self.first})")

    def days(self) -> Iterator[date]:
        d = self.first
        while d <= self.last:
            yield d
            d += timedelta(days=1)


@dataclass(slots=True)
class Tally:
    """Counts of one scoreboard row (one agency, one level, or the whole province)."""

    received: int = 0
    ended: int = 0
    early: int = 0
    on_time: int = 0
    late: int = 0
    overdue: int = 0            # open now and past due (counts as late in the rate)
    withdrawn: int = 0
    stopped: int = 0
    open: int = 0

    def add(self, other: Tally) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def judged(self) -> int:
        """The rate's denominator: ended early/on time/late, plus overdue now."""
        return self.early + self.on_time + self.late + self.overdue

    @property
    def on_time_rate(self) -> float | None:
        """Share "trước hạn và đúng hạn" (0..1); None when nothing was judged."""
        return (self.early + self.on_time) / self.judged if self.judged else None


@dataclass(frozen=True, slots=True)
class ScoreRow:
    agency: str
    name: str
    level: str
    tally: Tally


@dataclass(frozen=True, slots=True)
class Scoreboard:
    period: Period
    basis: Basis
    rows: tuple[ScoreRow, ...]                 # per agency, by level then code
    levels: tuple[tuple[str, Tally], ...]      # subtotal per level, in catalogue level order
    total: Tally


@dataclass(frozen=True, slots=True)
class DailyRate:
    day: date
    tally: Tally


@dataclass(frozen=True, slots=True)
class Indicators:
    """Decision 766/QĐ-TTg indicators for a period."""

    on_time_rate: float | None
    judged: int
    received: int
    portal_synced: int
    portal_synced_rate: float | None


@dataclass(frozen=True, slots=True)
class HandOff:
    """One line of the tracking slip: who gave, who received, when, the step's due, outcome."""

    giver: str | None           # None: the applicant at the desk (first step)
    receiver: str
    at: datetime
    due_at: datetime
    ended_at: datetime | None
    outcome: str
    overrun: timedelta


@dataclass(frozen=True, slots=True)
class Slip:
    """Tracking slip (phiếu kiểm soát quá trình giải quyết hồ sơ) of one dossier."""

    dossier: Dossier
    handoffs: tuple[HandOff, ...]
    outcome: str                # as of ``now``: open becomes overdue once the due passes
    late_by: timedelta
    portal_expected: frozenset[int]
    citizen_notices: tuple[CitizenNotice, ...] = ()
    receipts: tuple[ReceiptRecord, ...] = ()  # signed receipts of its deliveries, in time order


@dataclass(frozen=True, slots=True)
class CitizenNotice:
    """What the applicant was told (``citizen.notifications``): one message, latest status."""

    message_id: str
    kind: str
    channel: str
    to: str | None
    status: str
    at: datetime
    detail: str

    # A repeat of an earlier status (the notifier re-publishes after a crash) never moves a
    # message back: queued/held < sent < delivered/failed/skipped.
    RANK: ClassVar[Mapping[str, int]] = {"queued": 0, "held": 0, "sent": 1, "delivered": 2,
                                         "failed": 2, "skipped": 2}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CitizenNotice:
        at = _instant(data.get("at"), "at")
        return cls(_text(data, "message_id"), _text(data, "kind"), _text(data, "channel"),
                   _opt_text(data, "to"), _text(data, "status"), at,
                   _opt_text(data, "detail") or "")


@dataclass(frozen=True, slots=True)
class Change:
    """What one ingested record changed, for live updates."""

    topic: Literal["board", "alerts", "deadletters"]
    dossier: str | None = None
    agencies: frozenset[str] = field(default_factory=frozenset)


# -- the read model -------------------------------------------------------------------------


class OpsBoard:
    """The dashboard's state: latest snapshot per dossier, alerts (once each), dead letters."""

    def __init__(self, catalogue: Catalogue, *, max_alerts: int = 20_000,
                 max_deadletters: int = 20_000) -> None:
        self.catalogue = catalogue
        self.calendar = catalogue.calendar
        self._dossiers: dict[str, Dossier] = {}
        self._alerts: OrderedDict[str, AlertRecord] = OrderedDict()
        self._deadletters: OrderedDict[tuple[int, int], DeadLetterRecord] = OrderedDict()
        self._receipts: dict[str, dict[str, ReceiptRecord]] = {}  # dossier -> id -> receipt
        self._max_alerts = max_alerts
        self._max_deadletters = max_deadletters
        self._children: dict[str, list[str]] = {}
        for a in catalogue.agencies.values():
            if a.parent is not None:
                self._children.setdefault(a.parent, []).append(a.code)
        self._subtrees: dict[str, frozenset[str]] = {}
        self._notices: OrderedDict[str, dict[str, CitizenNotice]] = OrderedDict()
        self._max_notice_dossiers = max_alerts * 5
        self.version = 0
        self.rejected = 0

    # ingest ----------------------------------------------------------------------------------

    def apply_snapshot(self, data: Mapping[str, Any]) -> Change:
        """Take the newest snapshot of a dossier; an older one (by ``updated_at``) is ignored."""
        d = parse_snapshot(data)
        old = self._dossiers.get(d.code)
        if (old is not None and old.updated_at is not None and d.updated_at is not None
                and d.updated_at < old.updated_at):
            return Change("board", d.code, frozenset())
        self._dossiers[d.code] = d
        self.version += 1
        touched = d.agencies | (old.agencies if old is not None else frozenset())
        return Change("board", d.code, touched)

    def forget(self, code: str) -> Change:
        """A tombstone on the compacted topic: the dossier is gone from the read model."""
        old = self._dossiers.pop(code, None)
        self.version += 1
        return Change("board", code, old.agencies if old else frozenset())

    def add_alert(self, data: Mapping[str, Any]) -> Change | None:
        """Record an alert; None when its ``alert_id`` was seen already (one alert, once)."""
        alert = AlertRecord.from_dict(data)
        if alert.alert_id in self._alerts:
            return None
        self._alerts[alert.alert_id] = alert
        while len(self._alerts) > self._max_alerts:
            self._alerts.popitem(last=False)
        self.version += 1
        agencies = frozenset(a for a in (alert.agency,) if a)
        return Change("alerts", alert.dossier, agencies)

    def add_citizen_notice(self, data: Mapping[str, Any]) -> Change | None:
        """A message's new status from ``citizen.notifications``; None for a repeat."""
        dossier = _text(data, "dossier")
        notice = CitizenNotice.from_dict(data)
        messages = self._notices.setdefault(dossier, {})
        old = messages.get(notice.message_id)
        rank = CitizenNotice.RANK
        if old is not None and rank.get(notice.status, 0) <= rank.get(old.status, 0):
            return None
        messages[notice.message_id] = notice
        self._notices.move_to_end(dossier)
        while len(self._notices) > self._max_notice_dossiers:
            self._notices.popitem(last=False)
        self.version += 1
        return Change("board", dossier, frozenset())

    def citizen_notices(self, code: str) -> tuple[CitizenNotice, ...]:
        """What the applicant of ``code`` was told, in the order the messages were planned."""
        return tuple(self._notices.get(code, {}).values())

    def add_receipt(self, data: Mapping[str, Any]) -> Change | None:
        """Record a signed receipt on its dossier's slip; None when seen already."""
        receipt = ReceiptRecord.from_dict(data)
        mine = self._receipts.setdefault(receipt.dossier, {})
        if receipt.receipt_id in mine:
            return None
        mine[receipt.receipt_id] = receipt
        self.version += 1
        return Change("board", receipt.dossier, frozenset({receipt.receiver}))

    def receipts(self, code: str) -> tuple[ReceiptRecord, ...]:
        return tuple(sorted(self._receipts.get(code, {}).values(),
                            key=lambda r: (r.received_at, r.receipt_id)))

    def add_deadletter(self, partition: int, offset: int, data: Mapping[str, Any]) -> Change:
        record = DeadLetterRecord.from_dict(partition, offset, data)
        self._deadletters[(partition, offset)] = record
        while len(self._deadletters) > self._max_deadletters:
            self._deadletters.popitem(last=False)
        self.version += 1
        return Change("deadletters")

    # lookups ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._dossiers)

    def dossier(self, code: str) -> Dossier | None:
        return self._dossiers.get(code)

    def dossiers(self) -> Iterable[Dossier]:
        return self._dossiers.values()

    def agency_name(self, code: str | None) -> str:
        if code is None:
            return ""
        a = self.catalogue.agency(code)
        return a.name if a is not None else code

    def level_of(self, code: str, fallback: str | None = None) -> str:
        a = self.catalogue.agency(code)
        return a.level if a is not None else (fallback or "unknown")

    def subtree(self, code: str) -> frozenset[str]:
        """The agency and every agency below it in the catalogue's hierarchy."""
        found = self._subtrees.get(code)
        if found is None:
            seen: set[str] = set()
            todo = [code]
            while todo:
                c = todo.pop()
                if c not in seen:
                    seen.add(c)
                    todo.extend(self._children.get(c, ()))
            found = self._subtrees[code] = frozenset(seen)
        return found

    def visible(self, d: Dossier, scope: frozenset[str] | None) -> bool:
        """Whether an operator limited to ``scope`` (None: the whole province) may see ``d``."""
        return scope is None or not d.agencies.isdisjoint(scope)

    def find_by_code(self, text: str, scope: frozenset[str] | None = None,
                     limit: int = 50) -> list[Dossier]:
        """Dossiers whose code contains ``text`` (any case), newest first, at most ``limit``:
        staff often have only the tail of a code from a receipt or a phone call."""
        wanted = text.strip().upper()
        if not wanted:
            return []
        found = [d for d in self._dossiers.values()
                 if wanted in d.code.upper() and self.visible(d, scope)]
        found.sort(key=lambda d: (d.received_at, d.code), reverse=True)
        return found[:limit]

    def find_by_applicant_id(self, id_number: str,
                             scope: frozenset[str] | None = None) -> list[Dossier]:
        wanted = id_number.strip()
        return sorted((d for d in self._dossiers.values()
                       if wanted and d.applicant_id == wanted and self.visible(d, scope)),
                      key=lambda d: d.received_at, reverse=True)

    def alerts(self, *, scope: frozenset[str] | None = None, kind: str | None = None,
               limit: int = 200) -> list[AlertRecord]:
        """Newest first. Destination alerts have no agency: they show to province-wide users."""
        out: list[AlertRecord] = []
        for a in reversed(self._alerts.values()):
            if kind and a.kind != kind:
                continue
            if scope is not None:
                d = self._dossiers.get(a.dossier) if a.dossier else None
                if not ((a.agency in scope) or (d is not None and self.visible(d, scope))):
                    continue
            out.append(a)
            if len(out) >= limit:
                break
        return out

    def deadletters(self) -> list[DeadLetterRecord]:
        return list(reversed(self._deadletters.values()))

    def deadletter(self, partition: int, offset: int) -> DeadLetterRecord | None:
        return self._deadletters.get((partition, offset))

    # the overdue / due-soon board -------------------------------------------------------------

    def _lateness(self, due: datetime, now: datetime, pause: Pause | None) -> timedelta | None:
        """Working time past ``due`` at ``now`` (None if not past due); a clock paused after
        its due stops counting at the pause (DESIGN 6.7)."""
        if pause is not None and pause.start <= due:
            return None
        until = pause.start if pause is not None else now
        if due >= until:
            return None
        return self.calendar.working_time_between(due, until)

    def overdue_board(
        self, now: datetime, *, scope: frozenset[str] | None = None, level: str | None = None,
        agency: str | None = None, procedure: str | None = None,
        due_soon: timedelta | None = None, include_due_soon: bool = True,
    ) -> list[BoardRow]:
        """Open dossiers and steps past (or within ``due_soon`` working time of) their due.

        ``agency`` filters on the row's agency and its subtree; ``level`` on the row agency's
        level; ``scope`` limits to dossiers an operator may see. Most urgent first: overdue by
        working time late (largest first), then due soon by working time left.
        """
        window = self.catalogue.due_soon if due_soon is None else due_soon
        wanted = self.subtree(agency) if agency else None
        rows: list[BoardRow] = []
        cal = self.calendar
        for d in self._dossiers.values():
            if not d.is_open or (procedure and d.procedure != procedure):
                continue
            if scope is not None and not self.visible(d, scope):
                continue
            pause = d.open_pause
            items: list[tuple[Literal["dossier", "step"], str, datetime, str | None]] = [
                ("dossier", d.holder, d.due_at, d.holder_level)]
            step = d.open_step
            if step is not None:
                items.append(("step", step.agency, step.due_at, None))
            for kind, code, due, level_hint in items:
                if wanted is not None and code not in wanted:
                    continue
                row_level = self.level_of(code, level_hint)
                if level and row_level != level:
                    continue
                late = self._lateness(due, now, pause)
                if late is not None:
                    urgency: Urgency = "overdue"
                    remaining = timedelta(0)
                elif pause is None and due > now and include_due_soon:
                    remaining = cal.working_time_between(now, due)
                    if remaining > window:
                        continue
                    urgency, late = "due_soon", timedelta(0)
                else:
                    continue
                rows.append(BoardRow(urgency, kind, d, code, self.agency_name(code), row_level,
                                     due, late, remaining, pause is not None))
        rows.sort(key=BoardRow.sort_key)
        return rows

    def next_due(self, now: datetime) -> datetime | None:
        """The earliest due instant after ``now`` among running clocks: when the board next
        changes with no new event."""
        best: datetime | None = None
        for d in self._dossiers.values():
            if not d.is_open or d.open_pause is not None:
                continue
            step = d.open_step
            for due in (d.due_at, step.due_at if step else None):
                if due is not None and due > now and (best is None or due < best):
                    best = due
        return best

    # statistics ------------------------------------------------------------------------------

    def _local_day(self, t: datetime) -> date:
        return self.calendar.local_date(t)

    def _judge_dossier(self, d: Dossier, period: Period, now: datetime) -> Tally:
        """One dossier's contribution to its receiving agency's row."""
        t = Tally()
        day = self._local_day
        if period.first <= day(d.received_at) <= period.last:
            t.received = 1
        if d.ended_at is not None and period.first <= day(d.ended_at) <= period.last:
            if d.state == "withdrawn":
                t.withdrawn = 1
            elif d.state == "stopped":
                t.stopped = 1
            else:
                t.ended = 1
                outcome = "late" if d.repeat_supplement else d.outcome
                if outcome == "early":
                    t.early = 1
                elif outcome == "on_time":
                    t.on_time = 1
                else:
                    t.late = 1
        elif d.is_open:
            if day(d.received_at) <= period.last:
                t.open = 1
            if (period.first <= day(d.due_at) <= period.last
                    and self._lateness(d.due_at, now, d.open_pause) is not None):
                t.overdue = 1
        return t

    def _judge_step(self, d: Dossier, s: Step, period: Period, now: datetime) -> Tally:
        t = Tally()
        day = self._local_day
        if period.first <= day(s.started_at) <= period.last:
            t.received = 1
        if s.ended_at is not None:
            if not period.first <= day(s.ended_at) <= period.last:
                return t
            if d.state in ("withdrawn", "stopped") and d.ended_at == s.ended_at:
                if d.state == "withdrawn":
                    t.withdrawn = 1
                else:
                    t.stopped = 1
                return t
            t.ended = 1
            if s.outcome == "early":
                t.early = 1
            elif s.outcome == "on_time":
                t.on_time = 1
            else:
                t.late = 1
        elif d.is_open:
            if day(s.started_at) <= period.last:
                t.open = 1
            pause = d.open_pause
            if (period.first <= day(s.due_at) <= period.last
                    and self._lateness(s.due_at, now, pause) is not None):
                t.overdue = 1
        return t

    def _contributions(self, period: Period, now: datetime, basis: Basis,
                       scope: frozenset[str] | None,
                       procedure: str | None) -> Iterator[tuple[str, str | None, Tally, Dossier]]:
        for d in self._dossiers.values():
            if procedure and d.procedure != procedure:
                continue
            if basis == "dossier":
                if scope is None or d.receiving_agency in scope:
                    yield d.receiving_agency, d.receiving_level, \
                        self._judge_dossier(d, period, now), d
            else:
                for s in d.steps:
                    if scope is None or s.agency in scope:
                        yield s.agency, None, self._judge_step(d, s, period, now), d

    def scoreboard(self, period: Period, now: datetime, *, basis: Basis = "dossier",
                   scope: frozenset[str] | None = None, level: str | None = None,
                   procedure: str | None = None) -> Scoreboard:
        """Per-agency counts for ``period`` as provincial reports show them.

        ``basis="dossier"``: each dossier counts for its receiving agency, its outcome the whole
        dossier's (a repeated supplement request counts late, Decision 766). ``basis="step"``:
        each step counts for the agency that held it (how vertical agencies are judged).
        Ended = ended in the period; overdue = open now, past due, with the due in the period.
        Withdrawn and stopped are counted apart and left out of the rate.
        """
        by_agency: dict[str, Tally] = {}
        levels: dict[str, str] = {}
        for code, level_hint, t, _ in self._contributions(period, now, basis, scope, procedure):
            row_level = self.level_of(code, level_hint)
            if level and row_level != level:
                continue
            by_agency.setdefault(code, Tally()).add(t)
            levels[code] = row_level
        order = {name: i for i, name in enumerate(_LEVEL_ORDER)}
        rows = tuple(sorted(
            (ScoreRow(code, self.agency_name(code), levels[code], t)
             for code, t in by_agency.items()),
            key=lambda r: (order.get(r.level, len(order)), r.agency)))
        per_level: dict[str, Tally] = {}
        total = Tally()
        for r in rows:
            per_level.setdefault(r.level, Tally()).add(r.tally)
            total.add(r.tally)
        level_rows = tuple(sorted(per_level.items(),
                                  key=lambda kv: order.get(kv[0], len(order))))
        return Scoreboard(period, basis, rows, level_rows, total)

    def daily_rates(self, period: Period, now: datetime, *, basis: Basis = "dossier",
                    scope: frozenset[str] | None = None, agency: str | None = None,
                    procedure: str | None = None) -> list[DailyRate]:
        """Per local day of ``period``: what ended that day (and what fell overdue that day)."""
        wanted = self.subtree(agency) if agency else None
        days = {day: Tally() for day in period.days()}
        for code, _, _, d in self._contributions(period, now, basis, scope, procedure):
            if wanted is not None and code not in wanted:
                continue
            items: Sequence[Dossier | Step] = [d] if basis == "dossier" else \
                [s for s in d.steps if s.agency == code]
            for item in items:
                one_day = self._one_day_tally(d, item, now)
                if one_day is not None:
                    day, t = one_day
                    if day in days:
                        days[day].add(t)
        return [DailyRate(day, t) for day, t in days.items()]

    def _one_day_tally(self, d: Dossier, item: Dossier | Step,
                       now: datetime) -> tuple[date, Tally] | None:
        if item.ended_at is not None:
            day = self._local_day(item.ended_at)
            t = (self._judge_dossier(d, Period(day, day), now) if isinstance(item, Dossier)
                 else self._judge_step(d, item, Period(day, day), now))
            t.received = t.open = 0
            return day, t
        day = self._local_day(item.due_at)
        if d.is_open and self._lateness(item.due_at, now, d.open_pause) is not None:
            return day, Tally(overdue=1)
        return None

    def indicators(self, period: Period, now: datetime, *,
                   scope: frozenset[str] | None = None) -> Indicators:
        """Decision 766: on-time rate of the period; share of dossiers received in the period
        whose portal status agrees with the hub's state."""
        board = self.scoreboard(period, now, scope=scope)
        received = synced = 0
        for d in self._dossiers.values():
            if scope is not None and d.receiving_agency not in scope:
                continue
            if period.first <= self._local_day(d.received_at) <= period.last:
                received += 1
                synced += d.portal_in_step
        return Indicators(board.total.on_time_rate, board.total.judged, received, synced,
                          synced / received if received else None)

    # the tracking slip -----------------------------------------------------------------------

    def slip(self, code: str, now: datetime) -> Slip | None:
        d = self._dossiers.get(code)
        if d is None:
            return None
        handoffs = []
        previous: str | None = None
        pause = d.open_pause
        for s in d.steps:
            if s.ended_at is not None:
                overrun = timedelta(minutes=s.overrun_minutes)
            else:
                overrun = self._lateness(s.due_at, now, pause) or timedelta(0)
            outcome = s.outcome
            if s.ended_at is None and d.is_open and overrun > timedelta(0):
                outcome = "overdue"
            handoffs.append(HandOff(previous, s.agency, s.started_at, s.due_at, s.ended_at,
                                    outcome, overrun))
            previous = s.agency
        outcome = d.outcome
        late_by = timedelta(0)
        if d.is_open:
            lateness = self._lateness(d.due_at, now, pause)
            if lateness is not None:
                outcome, late_by = "overdue", lateness
            elif outcome == "overdue":
                outcome = "open"
        return Slip(d, tuple(handoffs), outcome, late_by,
                    EXPECTED_PORTAL.get(d.state, frozenset()),
                    citizen_notices=self.citizen_notices(code), receipts=self.receipts(code))


_LEVEL_ORDER = ("province", "centre", "department", "district", "commune", "vertical", "system",
                "unknown")
