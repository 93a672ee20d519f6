"""The dossier state machine and deadline engine (DESIGN section 6, rules 1-11, and Alerts).

``apply_event(state, event, catalogue, now=None)`` is the one entry point for events: it returns
:class:`Applied` (the new state, the deliveries to make, the alerts to raise), :class:`Rejected`
(a reason code and a sentence; the state is untouched) or :data:`SKIPPED` (a repeated event id).
The state is updated in place and returned in ``Applied`` (no copy per event); a rejected or
skipped event leaves it exactly as it was. Before an event is applied, the time alerts that fire
strictly before its instant are raised (and recorded as fired), so the holder they name is the
holder at their instant; an event at exactly an alert's instant counts as done before it.

``time_alerts(state, catalogue, until)`` gives the due_soon/overdue alerts firing at or before
``until`` that were not yet recorded; ``mark_fired(state, alerts)`` records them (the tracker
calls it after sending). ``next_alarm(state, catalogue)`` is the next instant one may fire
(for the deadline index). Both may fill the state's cache of due_soon instants, nothing else.
``recompute(state, catalogue, at)`` moves open deadlines after a calendar change (a day off
announced late) and writes the change into the dossier's timeline. ``report(state, catalogue,
now)`` is the dossier's row of the ``replay`` report. ``DossierState.to_dict()`` and
``DossierState.from_dict(data, tz)`` store a dossier as plain JSON values (a Kafka table).

Rejection reasons: ``unknown_dossier``, ``duplicate_dossier``, ``out_of_order``,
``future_event``, ``not_holder`` (rule 11), ``invalid_correction`` (a void or a correction,
which only ``corrections.correct`` applies) and ``unknown_agency`` (sender of a ``received`` or
recipient of a hand-off not in the catalogue), ``unknown_procedure`` (no version in force at
receipt), ``invalid_route`` (``@parent`` without a parent), ``no_open_request`` (an answer with
no open request of its kind), ``invalid_handoff`` (to oneself), ``invalid_apology`` (a new date
not after the apology).

Choices
-------
Where the rules leave room, the engine decides as follows.

1. *Same instant.* An event at exactly a time alert's instant is applied first: a result at
   17:00 for a 17:00 due is on time and raises no ``overdue``; a pause at exactly the instant
   stops that alert (and a hand-off at that instant names the new holder, as the rules say).
2. *Cut-off and the first step.* With ``same_day_cutoff``, the first step's clock starts with
   the dossier's (the next working day's opening), not at the receipt instant.
3. *A route not starting at the receiving agency.* The first step is still the receiving
   agency's (it holds the dossier), off the route with a zero allotment; a hand-off to the
   route's first agency is then the expected one. An empty route is one step of the receiving
   agency with the whole ``total``.
4. *Unexpected recipient without a later route step* gets a zero allotment and the route
   position stays where it was, so a hand-off back onto the route's next step is expected.
5. *Pause at exactly the due* is not "after the due": the remaining time is zero, and on resume
   the item is due at the resumed clock start (where its ``overdue`` then fires). A pause that
   begins after the due keeps the due; the working time spent paused after the due is not
   counted in the item's overrun (rule 10), as the waiting is the applicant's.
6. *Requests.* At most one open request of each kind (supplement, obligation); a second request
   of an open kind needs no second answer. An answer without an open request of its kind is
   rejected (``no_open_request``). ``repeat_supplement`` is raised at the second
   ``supplement_requested`` of the dossier (whether or not the first was answered), once.
7. *Restart and nesting.* With ``on_supplement: restart`` the dossier's and the current step's
   clocks restart from zero when the clocks resume (at ``supplement_received``, or at the later
   answer when an obligation is still open), at the next opening (rule 3; cut-off ignored).
   Only supplements restart; an obligation always pauses.
8. *A step that starts paused* (hand-off during a pause) reports as ``due_at`` the due it would
   have had running from its start; if it ends still paused it is judged at its start.
9. *Apology dates.* An apology's ``overdue`` alert fires at its new date if the dossier has not
   ended and is not paused then; if the dossier is paused then, it fires when the clocks resume.
   Its ``due_at`` is the apology's new date (the due the alert is about); the dossier's own
   ``due_at`` never changes (rule 9). An apology date equal to the original due is the same
   alert. Apologies come from the holder.
10. *Same id, same alert.* Alert ids follow DESIGN exactly — (dossier, scope, kind, due
   instant) — so two steps of one dossier with the same due instant share one ``due_soon``
   (and one ``overdue``) alert.
11. *After the end* (first ``result_ready``/``returned``/``stopped``/``withdrawn``), events
   are still checked (duplicates, order, authority against the holder at the end) and kept on
   the timeline; they make no step, pause or alert, but still make deliveries (a ``returned``
   after ``result_ready`` syncs status 10 to the portal and may order a shipment).
12. *Lateness attribution ties* are broken by the order in which the agencies first held the
   dossier (the route order as travelled).
13. *Outcome of withdrawn/stopped dossiers* is the plain time comparison like any other; the
   statistics leave them out of the rates (``DossierState.end_type`` says how it ended).
   ``late_for_statistics`` is True for a late/overdue dossier or one with a repeat
   supplement request (Decision 766).
14. *Portal status* (DVCQG): 2 at receipt, 5/6 while a supplement/obligation request is open
   (5 wins when both are), 4 after a hand-off or an answer, 9/10/7/8 at the end; a delivery is
   made only when the status changes. Channel code from the receipt channel.
15. *Post.* A shipment order goes to VNPOST at ``result_ready`` of a dossier received by post,
   or at ``returned`` with channel ``postal``, once per dossier.
16. *Postal updates* are accepted only from ``VNPOST`` and only for a dossier already received.
17. *Calendar changes* (``recompute``) move only running deadlines not yet passed at the
   change; a passed due stays (its alert has fired); a paused item's remaining time is applied
   with the new calendar when it resumes.
18. *Receipt.* The receiving agency must be in the catalogue; the procedure version is the one
   in force on the receipt's local date, and the dossier keeps its route and allotments. The
   agency prefix of the dossier code is not checked against the receiving agency.
19. *Event ids* are compared case-insensitively (stored lower-case); an event's fields of
   other types must be null or absent, unknown fields are refused (``events.py``).
20. *Timeline.* Applied events, and deadline recomputations, are kept in the dossier's
   timeline; rejected events are not (they go to the dead-letter topic with their reason).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, Final

from .alerts import Alert, event_alert, instant_key, time_alert
from .calendar import WorkingCalendar
from .catalogue import Catalogue
from .deadlines import (
    ZERO,
    Clock,
    Outcome,
    instant_from_json,
    instant_to_json,
    span_from_json,
)
from .events import VOIDED, Event, event_to_json
from .routing import (
    END_STATUS,
    PORTAL,
    PORTAL_CHANNEL,
    PORTAL_OBLIGATION,
    PORTAL_PROCESSING,
    PORTAL_RECEIVED,
    PORTAL_RETURNED,
    PORTAL_SUPPLEMENT,
    POSTAL,
    Delivery,
    delivery,
    follow,
)

FUTURE_TOLERANCE = timedelta(minutes=5)  # rule 11: "more than 5 minutes ahead"
ENDING = frozenset({"result_ready", "returned", "stopped", "withdrawn"})
FROM_HOLDER = frozenset({"handoff", "supplement_requested", "obligation_requested", "stopped",
                         "apology_issued", "result_ready"})
FROM_HOLDER_OR_DESK = frozenset({"supplement_received", "obligation_paid", "returned",
                                 "withdrawn"})
SUPPLEMENT, OBLIGATION = "supplement", "obligation"
STATE_VERSION = 1
# DossierState.alarm_cache before next_alarm ran (compared by identity: never an alarm)
_NOT_COMPUTED: Final = datetime.min.replace(tzinfo=UTC)


# -- decisions --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Applied:
    state: DossierState
    deliveries: list[Delivery]
    alerts: list[Alert]


@dataclass(frozen=True, slots=True)
class Rejected:
    """Not applied; ``reason`` is a code (``not_holder``, …), ``detail`` a sentence."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A repeated event id: skipped silently."""


SKIPPED: Final = Skipped()
Decision = Applied | Rejected | Skipped


class _AppliedDraft:
    """Builds an :class:`Applied` without the frozen dataclass's ``__init__`` (one per event):
    the same slots, then ``__class__`` assignment, as ``events._Draft`` does for events."""

    __slots__ = ("alerts", "deliveries", "state")

    def __init__(self, state: DossierState, deliveries: list[Delivery],
                 alerts: list[Alert]) -> None:
        self.state = state
        self.deliveries = deliveries
        self.alerts = alerts


def _applied(state: DossierState, deliveries: list[Delivery], alerts: list[Alert]) -> Applied:
    draft = _AppliedDraft(state, deliveries, alerts)
    draft.__class__ = Applied  # type: ignore[assignment]
    return draft  # type: ignore[return-value]


# -- state ------------------------------------------------------------------------------------

@dataclass(slots=True)
class Step:
    """One agency's part (bước, khâu): a line of the tracking slip."""

    agency: str
    started_at: datetime  # the hand-off (or receipt) instant
    clock: Clock
    position: int  # route step it stands for (-1: before the route)
    unexpected: bool = False
    ended_at: datetime | None = None
    judged_at: datetime | None = None  # rule 8: the pause start if it ended while paused

    def to_list(self) -> list[Any]:
        return [self.agency, instant_to_json(self.started_at), self.clock.to_list(),
                self.position, int(self.unexpected), instant_to_json(self.ended_at),
                instant_to_json(self.judged_at)]

    @classmethod
    def from_list(cls, d: list[Any],
                  instant: Callable[[Any], datetime | None] = instant_from_json) -> Step:
        """The step back from ``to_list()``; ``instant`` reads its stored instants."""
        started = instant(d[1])
        assert started is not None
        return cls(d[0], started, Clock.from_list(d[2], instant), d[3], bool(d[4]),
                   instant(d[5]), instant(d[6]))


@dataclass(slots=True)
class Apology:
    """Xin lỗi và hẹn lại ngày trả."""

    at: datetime
    agency: str
    new_due_at: datetime
    event_id: str


@dataclass(slots=True)
class DossierState:
    """Everything the hub knows of one dossier (hồ sơ); JSON-able through to_dict()."""

    code: str
    procedure: str
    receiving: str
    channel: str
    received_at: datetime
    route: tuple[tuple[str, timedelta], ...]  # as in force at receipt, placeholders resolved
    on_supplement: str
    clock: Clock  # the dossier's (the appointment)
    steps: list[Step]
    position: int
    holder: str
    last_at: datetime
    timeline: list[tuple[str, str, datetime, str, str | None]]  # (id, type, at, agency, note)
    seen: set[str]  # ids in the timeline, for the duplicate check
    open_requests: list[str] = field(default_factory=list)
    paused_since: datetime | None = None
    resumed_at: datetime | None = None
    supplements: int = 0
    restart_pending: bool = False  # a supplement was answered under on_supplement: restart
    apologies: list[Apology] = field(default_factory=list)
    end_type: str | None = None
    ended_at: datetime | None = None
    judged_at: datetime | None = None
    fired: set[str] = field(default_factory=set)  # time alerts already raised
    portal_status: int = PORTAL_RECEIVED
    shipped: bool = False
    # Người nộp: name and ID number only (what operators search by; contacts stay in the
    # event). Personal data: masked in logs and shown only to operators allowed to see it.
    applicant: dict[str, str] | None = None
    # next_alarm's answer for the state as it is now; every change resets it. Not stored:
    # it is derived, and recomputed after the state is read back.
    alarm_cache: datetime | None = field(default=_NOT_COMPUTED, init=False, repr=False,
                                         compare=False)

    @property
    def ended(self) -> bool:
        return self.end_type is not None

    @property
    def paused(self) -> bool:
        return bool(self.open_requests)

    @property
    def due_at(self) -> datetime:
        return self.clock.due

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, compact: instants as epoch seconds, spans as seconds."""
        return {
            "v": STATE_VERSION, "code": self.code, "procedure": self.procedure,
            "receiving": self.receiving, "channel": self.channel,
            "received_at": instant_to_json(self.received_at),
            "route": [[a, _seconds(t)] for a, t in self.route],
            "on_supplement": self.on_supplement, "clock": self.clock.to_list(),
            "steps": [s.to_list() for s in self.steps], "position": self.position,
            "holder": self.holder, "last_at": instant_to_json(self.last_at),
            "timeline": [[i, t, instant_to_json(at), a, n] for i, t, at, a, n in self.timeline],
            "open": self.open_requests, "paused_since": instant_to_json(self.paused_since),
            "resumed_at": instant_to_json(self.resumed_at), "supplements": self.supplements,
            "restart": self.restart_pending,
            "apologies": [[instant_to_json(a.at), a.agency, instant_to_json(a.new_due_at),
                           a.event_id] for a in self.apologies],
            "end": None if self.end_type is None else [
                self.end_type, instant_to_json(self.ended_at), instant_to_json(self.judged_at)],
            "fired": sorted(self.fired), "portal": self.portal_status,
            "shipped": self.shipped, "applicant": self.applicant,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], tz: tzinfo | None = None) -> DossierState:
        """The state back from ``to_dict()``; instants in ``tz`` (UTC if None).

        This runs for every state a worker recovers from its changelog after a restart: each
        stored instant becomes a datetime of ``tz`` in one call.
        """
        zone = tz or UTC
        from_epoch = datetime.fromtimestamp

        def ot(v: Any) -> datetime | None:
            if v is None:
                return None
            if type(v) is int:
                return from_epoch(v, zone)
            x = instant_from_json(v)  # text: an instant with a fraction of a second
            assert x is not None
            return x.astimezone(tz) if tz is not None else x

        def t(v: Any) -> datetime:
            x = ot(v)
            assert x is not None
            return x

        end = d["end"]
        timeline = [(i, ty, t(at), a, n) for i, ty, at, a, n in d["timeline"]]
        return cls(
            code=d["code"], procedure=d["procedure"], receiving=d["receiving"],
            channel=d["channel"], received_at=t(d["received_at"]),
            route=tuple((a, span_from_json(s)) for a, s in d["route"]),
            on_supplement=d["on_supplement"], clock=Clock.from_list(d["clock"], ot),
            steps=[Step.from_list(s, ot) for s in d["steps"]], position=d["position"],
            holder=d["holder"], last_at=t(d["last_at"]), timeline=timeline,
            seen={e[0] for e in timeline if e[0]}, open_requests=list(d["open"]),
            paused_since=ot(d["paused_since"]), resumed_at=ot(d["resumed_at"]),
            supplements=d["supplements"], restart_pending=d["restart"],
            apologies=[Apology(t(a), ag, t(n), e) for a, ag, n, e in d["apologies"]],
            end_type=end[0] if end else None, ended_at=ot(end[1]) if end else None,
            judged_at=ot(end[2]) if end else None, fired=set(d["fired"]),
            portal_status=d["portal"], shipped=d["shipped"], applicant=d.get("applicant"),
        )


def _applicant_of(event: Event) -> dict[str, str] | None:
    a = event.applicant
    if a is None:
        return None
    return {"name": a.name, "id_number": a.id_number or ""}


def _seconds(d: timedelta) -> int | float:
    s = d.total_seconds()
    return int(s) if s.is_integer() else s


# -- applying events --------------------------------------------------------------------------

def apply_event(state: DossierState | None, event: Event, catalogue: Catalogue,
                now: datetime | None = None, *, with_deliveries: bool = True) -> Decision:
    """Apply one event to a dossier (None: not seen yet). See the module docstring.

    ``now`` (the hub's clock) enables the ``future_event`` check. ``with_deliveries=False``
    skips building deliveries (``replay`` has no use for them); the state is the same.
    """
    if state is None:
        if event.type != "received":
            return Rejected("unknown_dossier",
                            f"no dossier {event.dossier} has been received before this "
                            f"{event.type}")
        if now is not None and event.at - now > FUTURE_TOLERANCE:
            return _future(event, now)
        return _receive(event, catalogue, with_deliveries)
    if event.event_id in state.seen:
        return SKIPPED
    if event.dossier != state.code:
        raise ValueError(f"event for {event.dossier} applied to dossier {state.code}")
    if event.type == VOIDED or event.corrects_event_id is not None:
        # A void or a correction changes the past: the dossier is replayed without the wrong
        # event (``corrections.correct``), never applied as one more event.
        return Rejected("invalid_correction", f"a {event.type} entered as a void or a "
                        "correction is applied by replaying the dossier's events, not on its "
                        "current state")
    if event.type == "received":
        return Rejected("duplicate_dossier", f"dossier {state.code} was already received at "
                        f"{state.received_at.isoformat()}")
    if event.at < state.last_at:
        return Rejected("out_of_order", f"{event.type} at {event.at.isoformat()} is earlier "
                        f"than the dossier's last event at {state.last_at.isoformat()}")
    if now is not None and event.at - now > FUTURE_TOLERANCE:
        return _future(event, now)
    problem = _check(state, event, catalogue)
    if problem is not None:
        return problem
    state.alarm_cache = _NOT_COMPUTED  # from here on the event changes the state

    cal = catalogue.calendar
    after_end = state.end_type is not None
    alerts = [] if after_end else _pending(state, cal, event.at, True, True)  # _fire
    deliveries: list[Delivery] = []
    note: str | None = None
    etype = event.type
    if etype == "handoff":
        note = _handoff(state, event, catalogue, deliveries, alerts, with_deliveries)
    elif after_end:
        note = "after_end"
    elif etype in ("supplement_requested", "obligation_requested"):
        _request(state, event, cal, alerts)
    elif etype in ("supplement_received", "obligation_paid"):
        _answer(state, event, catalogue)
    elif etype == "apology_issued":
        assert event.new_due_at is not None
        state.apologies.append(Apology(event.at, event.agency, event.new_due_at,
                                       event.event_id))
    elif etype in ENDING:
        _end(state, event)
    if after_end and etype == "handoff":
        note = "after_end"

    # Deliveries other than hand-offs.
    if not with_deliveries:
        if (etype == "result_ready" and state.channel == "postal") or (
                etype == "returned" and event.channel == "postal"):
            state.shipped = True
        state.portal_status = _portal_status(state, etype, after_end)
    elif etype == "result_ready":
        deliveries.append(delivery(event.event_id, state.receiving, "result", state.code, {
            "event": event_to_json(event), "procedure": state.procedure}))
        if state.channel == "postal" and not state.shipped:
            _ship(state, event, deliveries)
    elif etype == "returned" and event.channel == "postal" and not state.shipped:
        _ship(state, event, deliveries)
    status = _portal_status(state, etype, after_end)
    if with_deliveries and status != state.portal_status:
        state.portal_status = status
        deliveries.append(delivery(event.event_id, PORTAL, "portal_status", state.code, {
            "dossier": state.code, "procedure": state.procedure, "status": status,
            "channel": PORTAL_CHANNEL[state.channel], "agency": event.agency,
            "at": event.at.isoformat(), "event_id": event.event_id}))

    state.last_at = event.at
    state.timeline.append((event.event_id, etype, event.at, event.agency, note))
    state.seen.add(event.event_id)
    applied = _AppliedDraft(state, deliveries, alerts)  # _applied, inlined: every event
    applied.__class__ = Applied  # type: ignore[assignment]
    return applied  # type: ignore[return-value]


def _future(event: Event, now: datetime) -> Rejected:
    return Rejected("future_event", f"{event.type} at {event.at.isoformat()} is more than "
                    f"5 minutes ahead of the hub's clock ({now.isoformat()})")


def _check(state: DossierState, event: Event, catalogue: Catalogue) -> Rejected | None:
    """Authority (rule 11) and the state machine's preconditions."""
    etype, agency = event.type, event.agency
    if etype == "postal_update":
        if agency != POSTAL:
            return Rejected("not_holder", f"postal updates come from {POSTAL}, not {agency}")
        return None
    if agency != state.holder and not (
            etype in FROM_HOLDER_OR_DESK and agency == state.receiving):
        who = "the holder or the receiving desk" if etype in FROM_HOLDER_OR_DESK else "the holder"
        return Rejected("not_holder", f"{etype} must come from {who}; {agency} does not hold "
                        f"dossier {state.code} (holder {state.holder})")
    if etype == "handoff":
        to = event.to_agency
        assert to is not None
        if to == agency:
            return Rejected("invalid_handoff", f"{agency} cannot hand the dossier to itself")
        if catalogue.agency(to) is None:
            return Rejected("unknown_agency", f"{to} is not an agency of the catalogue")
        return None
    if state.ended:
        return None
    if etype == "supplement_received" and SUPPLEMENT not in state.open_requests:
        return Rejected("no_open_request", "supplement_received without an open supplement "
                        "request")
    if etype == "obligation_paid" and OBLIGATION not in state.open_requests:
        return Rejected("no_open_request", "obligation_paid without an open financial "
                        "obligation")
    if etype == "apology_issued":
        assert event.new_due_at is not None
        if event.new_due_at <= event.at:
            return Rejected("invalid_apology", f"the new date {event.new_due_at.isoformat()} "
                            "is not after the apology")
    return None


def _receive(event: Event, catalogue: Catalogue, with_deliveries: bool) -> Applied | Rejected:
    """Tiếp nhận hồ sơ: the dossier's and the first step's clocks start (rules 3-5)."""
    agency = event.agency
    if catalogue.agency(agency) is None:
        return Rejected("unknown_agency", f"{agency} is not an agency of the catalogue")
    assert event.procedure is not None and event.channel is not None
    procedure = catalogue.procedure(event.procedure, event.at)
    if procedure is None:
        return Rejected("unknown_procedure", f"procedure {event.procedure} is not in the "
                        f"catalogue in force on {catalogue.calendar.local_date(event.at)}")
    try:
        route = catalogue.route(procedure, agency)
    except ValueError as exc:
        return Rejected("invalid_route", str(exc))
    if not route:
        route = ((agency, procedure.total),)
    cal, due_soon = catalogue.calendar, catalogue.due_soon
    clock_start = _clock_start(cal, event.at, procedure.same_day_cutoff)
    if route[0][0] == agency:
        position, allot = 0, route[0][1]
    else:
        position, allot = -1, ZERO
    state = DossierState(
        code=event.dossier, procedure=procedure.code, receiving=agency, channel=event.channel,
        received_at=event.at, route=route, on_supplement=procedure.on_supplement,
        clock=Clock.start(cal, clock_start, procedure.total, due_soon),
        steps=[Step(agency, event.at, Clock.start(cal, clock_start, allot, due_soon),
                    position)],
        position=position, holder=agency, last_at=event.at,
        timeline=[(event.event_id, "received", event.at, agency, None)],
        seen={event.event_id},
        applicant=_applicant_of(event),
    )
    alerts: list[Alert] = []
    if event.appointment_at is not None and (
            cal.local_date(event.appointment_at) != cal.local_date(state.clock.due)):
        alerts.append(event_alert("appointment_mismatch", state.code, agency, event.event_id,
                                  event.at, state.procedure, state.clock.due))
    deliveries = [delivery(event.event_id, PORTAL, "portal_status", state.code, {
        "dossier": state.code, "procedure": state.procedure, "status": PORTAL_RECEIVED,
        "channel": PORTAL_CHANNEL[state.channel], "agency": agency,
        "at": event.at.isoformat(), "event_id": event.event_id})] if with_deliveries else []
    return _applied(state, deliveries, alerts)


def _clock_start(cal: WorkingCalendar, at: datetime, cutoff: time | None) -> datetime:
    """Rules 3 and 4: the next opening; at/after the cut-off, the next working day's."""
    if cutoff is not None:
        local = at.astimezone(cal.tz)
        if local.time() >= cutoff:
            return cal.first_opening_after(local.date())
    return at  # rule 3 (the next opening) is applied when the clock counts


def _handoff(state: DossierState, event: Event, catalogue: Catalogue,
             deliveries: list[Delivery], alerts: list[Alert], with_deliveries: bool) -> str | None:
    """Chuyển hồ sơ: the sender's step ends, the receiver's starts (paused during a pause)."""
    to = event.to_agency
    assert to is not None
    state.holder = to
    ended = state.end_type is not None
    payload: dict[str, Any] = {}
    tz = catalogue.calendar.tz
    if with_deliveries:
        payload = {"event": event_to_json(event), "procedure": state.procedure,
                   "received_at": state.received_at.astimezone(tz).isoformat(),
                   "dossier_due_at": state.clock.due.astimezone(tz).isoformat()}
    if not ended:
        cal = catalogue.calendar
        current = state.steps[-1]
        current.ended_at = event.at
        current.judged_at = current.clock.judged_end(event.at)
        move = follow(state.route, state.position, to)
        state.position = move.position
        clock = Clock.start(cal, event.at, move.allot, catalogue.due_soon,
                            paused_at=event.at if state.open_requests else None)
        state.steps.append(Step(to, event.at, clock, move.position, not move.expected))
        if with_deliveries:
            payload["step_due_at"] = clock.due.astimezone(tz).isoformat()
            payload["unexpected"] = not move.expected
        if not move.expected:
            alerts.append(event_alert("unexpected_recipient", state.code, to, event.event_id,
                                      event.at, state.procedure))
    if with_deliveries:
        deliveries.append(delivery(event.event_id, to, "handoff", state.code, payload))
    if ended:
        return "after_end"
    return "unexpected_recipient" if not move.expected else None


def _request(state: DossierState, event: Event, cal: WorkingCalendar,
             alerts: list[Alert]) -> None:
    """Yêu cầu bổ sung / nghĩa vụ tài chính: the clocks pause (they nest)."""
    kind = SUPPLEMENT if event.type == "supplement_requested" else OBLIGATION
    if kind == SUPPLEMENT:
        state.supplements += 1
        if state.supplements == 2:
            alerts.append(event_alert("repeat_supplement", state.code, event.agency,
                                      event.event_id, event.at, state.procedure))
    if kind in state.open_requests:
        return
    if not state.open_requests:
        state.paused_since = event.at
        state.clock.pause(cal, event.at)
        state.steps[-1].clock.pause(cal, event.at)
    state.open_requests.append(kind)


def _answer(state: DossierState, event: Event, catalogue: Catalogue) -> None:
    """Bổ sung đã nhận / đã nộp nghĩa vụ: the clocks resume when every request is answered."""
    kind = SUPPLEMENT if event.type == "supplement_received" else OBLIGATION
    state.open_requests.remove(kind)
    if kind == SUPPLEMENT and state.on_supplement == "restart":
        state.restart_pending = True
    if state.open_requests:
        return
    cal, due_soon = catalogue.calendar, catalogue.due_soon
    state.paused_since = None
    state.resumed_at = event.at
    restart, state.restart_pending = state.restart_pending, False
    for clock in (state.clock, state.steps[-1].clock):
        if restart:
            clock.restart(cal, event.at, due_soon)
        else:
            clock.resume(cal, event.at, due_soon)


def _end(state: DossierState, event: Event) -> None:
    """Rule 8: the dossier and the step holding it end (judged at the pause start if paused)."""
    state.end_type = event.type
    state.ended_at = event.at
    state.judged_at = state.clock.judged_end(event.at)
    step = state.steps[-1]
    step.ended_at = event.at
    step.judged_at = step.clock.judged_end(event.at)


def _ship(state: DossierState, event: Event, deliveries: list[Delivery]) -> None:
    """A shipment order for VNPost to carry the result to the applicant."""
    state.shipped = True
    deliveries.append(delivery(event.event_id, POSTAL, "shipment", state.code, {
        "dossier": state.code, "procedure": state.procedure, "leg": "result_out",
        "pickup_agency": event.agency, "receiving_agency": state.receiving,
        "at": event.at.isoformat(), "event_id": event.event_id}))


def _portal_status(state: DossierState, etype: str, after_end: bool) -> int:
    """The DVCQG status after an event (choice 14)."""
    if after_end:
        return PORTAL_RETURNED if etype == "returned" else state.portal_status
    if state.end_type is not None:
        return END_STATUS[state.end_type]
    if state.open_requests:
        return PORTAL_SUPPLEMENT if SUPPLEMENT in state.open_requests else PORTAL_OBLIGATION
    if etype in ("handoff", "supplement_received", "obligation_paid"):
        return PORTAL_PROCESSING
    return state.portal_status


# -- time alerts ------------------------------------------------------------------------------

def _key(scope: str, kind: str, due: datetime, due_key: str | None = None) -> str:
    """The fired-set entry of a time alert: scope, kind and due instant, compactly."""
    return f"{scope[0]}{kind[0]}{due_key or instant_key(due)}"


def _pending(state: DossierState, cal: WorkingCalendar, until: datetime, strict: bool,
             record: bool = False) -> list[Alert]:
    """Time alerts firing before ``until`` (or at it, unless ``strict``) not yet fired, in
    firing order. With ``record`` each is recorded as fired as it is found (``_record``, for
    the clock it is about), which changes nothing the rest of the search looks at."""
    if state.end_type is not None or state.open_requests:
        return []  # no time alert after the end or while the clocks are paused
    out: list[Alert] = []
    found: list[str] = []  # the fired-set entries of ``out``
    fired = state.fired
    code, procedure = state.code, state.procedure
    index = len(state.steps) - 1
    step = state.steps[index]
    # The fired-set entries' prefixes (``_key``) are spelled out: this runs before every event.
    for scope, soon_prefix, overdue_prefix, clock, agency, idx in (
            ("dossier", "dd", "do", state.clock, state.holder, None),
            ("step", "sd", "so", step.clock, step.agency, index)):
        run_from = clock.run_from
        if run_from is None:
            continue  # paused: no time alert (an item paused while the dossier runs)
        due = clock.due
        due_key: str | None = None
        # soon_instant's own guard and cache first: most clocks have no due_soon left to
        # fire, or know its instant already.
        soon = (None if clock.soon_left is None or not clock.armed
                else clock.soon_at or clock.soon_instant(cal, until))
        if soon is not None and (soon < until or (not strict and soon == until)):
            due_key = instant_key(due)
            key = soon_prefix + due_key
            if key not in fired:
                out.append(time_alert("due_soon", scope, code, agency, due, soon, procedure,
                                      idx, due_key))
                found.append(key)
                if record:
                    fired.add(key)
                    clock.armed = False
        if not clock.overdue_fired and (due < until or (not strict and due == until)):
            due_key = due_key or instant_key(due)
            key = overdue_prefix + due_key
            if key not in fired:
                out.append(time_alert("overdue", scope, code, agency, due, due, procedure,
                                      idx, due_key))
                found.append(key)
                if record:
                    fired.add(key)
                    clock.overdue_fired = True
    for apology in state.apologies:
        at = _apology_fires_at(state, apology)
        if at < until or (not strict and at == until):
            key = _key("dossier", "overdue", apology.new_due_at)
            # Two apologies with one date, or a date equal to the due: one alert (one id).
            if key not in fired and key not in found:
                out.append(time_alert("overdue", "dossier", code, state.holder,
                                      apology.new_due_at, at, procedure, None))
                found.append(key)
                if record:
                    fired.add(key)
                    if apology.new_due_at == state.clock.due:
                        state.clock.overdue_fired = True
    if len(out) > 1:
        if len(out) == 2:  # the common pair (due_soon and overdue, or dossier and step)
            if out[1].at < out[0].at:
                out.reverse()
        else:
            out.sort(key=lambda alert: alert.at)
    if record and out:
        state.alarm_cache = _NOT_COMPUTED
    return out


def _apology_fires_at(state: DossierState, apology: Apology) -> datetime:
    # Not yet fired yet passed before the last resume: it passed during a pause (choice 9).
    resumed = state.resumed_at
    if resumed is not None and apology.new_due_at < resumed:
        return resumed
    return apology.new_due_at


def _fire(state: DossierState, cal: WorkingCalendar, until: datetime,
          strict: bool) -> list[Alert]:
    return _pending(state, cal, until, strict, record=True)


def time_alerts(state: DossierState, catalogue: Catalogue, until: datetime) -> list[Alert]:
    """due_soon/overdue alerts firing at or before ``until`` not yet recorded as fired.

    Pure: record them with ``mark_fired`` once sent. Dossier alerts name the current holder,
    which is the holder at their instant as long as every event before ``until`` is applied.
    """
    return _pending(state, catalogue.calendar, until, strict=False)


def mark_fired(state: DossierState, alerts: list[Alert]) -> None:
    """Record time alerts as raised, so they are never raised again for this dossier."""
    for alert in alerts:
        if alert.kind in ("due_soon", "overdue") and alert.due_at is not None:
            _record(state, alert, _key(alert.scope, alert.kind, alert.due_at))


def _record(state: DossierState, alert: Alert, key: str) -> None:
    state.fired.add(key)
    state.alarm_cache = _NOT_COMPUTED
    if alert.scope == "dossier":
        clock = state.clock
    elif alert.step is not None and alert.step < len(state.steps):
        clock = state.steps[alert.step].clock
    else:
        return
    if alert.kind == "due_soon":
        clock.armed = False
    elif alert.due_at == clock.due:
        clock.overdue_fired = True


def next_alarm(state: DossierState, catalogue: Catalogue) -> datetime | None:
    """The earliest instant a time alert of this dossier may fire (None: none can now).

    It may lie in the past when an alert is due but not yet recorded as fired. The answer is
    kept in the state until the state changes (an applied event, an alert recorded as fired, a
    recomputation), so asking again, as the deadline index does after a rebalance, is free.
    """
    alarm = state.alarm_cache
    if alarm is _NOT_COMPUTED:
        alarm = state.alarm_cache = _next_alarm(state, catalogue.calendar)
    return alarm


def _next_alarm(state: DossierState, cal: WorkingCalendar) -> datetime | None:
    if state.end_type is not None or state.open_requests:
        return None
    fired = state.fired
    best: datetime | None = None
    # The fired-set entries are spelled only when something was fired at all: most open
    # dossiers have fired nothing yet.
    for scope, clock in (("dossier", state.clock), ("step", state.steps[-1].clock)):
        soon = clock.soon_instant(cal)
        if soon is not None and (not fired or _key(scope, "due_soon", clock.due) not in fired):
            best = soon if best is None or soon < best else best
        if (not clock.overdue_fired and clock.run_from is not None
                and (not fired or _key(scope, "overdue", clock.due) not in fired)):
            due = clock.due
            best = due if best is None or due < best else best
    for apology in state.apologies:
        if not fired or _key("dossier", "overdue", apology.new_due_at) not in fired:
            at = _apology_fires_at(state, apology)
            best = at if best is None or at < best else best
    return best


# -- calendar changes -------------------------------------------------------------------------

def recompute(state: DossierState, catalogue: Catalogue, at: datetime) -> Applied:
    """The catalogue's calendar changed at ``at`` (e.g. a day off announced late).

    Open, running deadlines not yet passed move to the new calendar; the change is written
    into the dossier's timeline (type ``deadline_recomputed``). Alerts due before ``at`` under
    the old deadlines are raised first.
    """
    if state.end_type is not None:
        return Applied(state, [], [])
    state.alarm_cache = _NOT_COMPUTED
    cal = catalogue.calendar
    alerts = _fire(state, cal, at, strict=True)
    changes: list[str] = []
    step = state.steps[-1]
    for label, clock in (("dossier", state.clock), (f"step {step.agency}", step.clock)):
        before = clock.due
        if clock.recompute(cal, at, catalogue.due_soon):
            changes.append(f"{label} due {_fmt(before, cal.tz)} -> {_fmt(clock.due, cal.tz)}")
    if changes:
        state.timeline.append(("", "deadline_recomputed", at, "", "; ".join(changes)))
    return Applied(state, [], alerts)


# -- outcomes and the report ------------------------------------------------------------------

def _fmt(t: datetime, tz: tzinfo) -> str:
    """YYYY-MM-DDTHH:MM:SS+07:00: local, whole seconds."""
    if t.tzinfo is not tz:
        t = t.astimezone(tz)
    return t.isoformat("T", "seconds")


def dossier_outcome(state: DossierState, catalogue: Catalogue, now: datetime) -> Outcome:
    return state.clock.outcome(catalogue.calendar, state.judged_at, now)


def late_agencies(state: DossierState, catalogue: Catalogue, now: datetime,
                  outcome: Outcome | None = None) -> list[str]:
    """Rule 10: agencies with overrun, largest first (ties: first held first); else the
    holder at the due instant. Empty unless the dossier is late or overdue."""
    cal = catalogue.calendar
    if (outcome or dossier_outcome(state, catalogue, now)) not in ("late", "overdue"):
        return []
    totals: dict[str, timedelta] = {}
    for step in state.steps:
        overrun = step.clock.overrun(cal, step.judged_at, now)
        totals[step.agency] = totals.get(step.agency, ZERO) + overrun
    late = [a for a, t in totals.items() if t > ZERO]
    if late:
        late.sort(key=lambda a: -totals[a])
        return late
    due = state.clock.due
    for step in state.steps:
        if step.started_at <= due and (step.ended_at is None or step.ended_at > due):
            return [step.agency]
    return [state.holder]


def late_for_statistics(state: DossierState, catalogue: Catalogue, now: datetime) -> bool:
    """Decision 766: late/overdue, or a repeated supplement request (rule 7)."""
    return (dossier_outcome(state, catalogue, now) in ("late", "overdue")
            or state.supplements >= 2)


def report(state: DossierState, catalogue: Catalogue, now: datetime) -> dict[str, Any]:
    """The dossier's row of the replay report (DESIGN section 9), as seen at ``now``."""
    cal = catalogue.calendar
    fmt = cal.format_local
    # A step starts at the instant the one before ended (the same object), the first at the
    # receipt, and the dossier ends when its last step does: each is formatted once.
    steps: list[dict[str, Any]] = []
    last: datetime | None = None
    last_text = ""
    received_text = ""
    for s in state.steps:
        started, ended, clock = s.started_at, s.ended_at, s.clock
        started_text = last_text if started is last else fmt(started)
        if not steps:
            received_text = started_text
        ended_text = None
        if ended is not None:
            ended_text = last_text = fmt(ended)
            last = ended
        steps.append({"agency": s.agency, "started_at": started_text, "due_at": fmt(clock.due),
                      "ended_at": ended_text, "outcome": clock.outcome(cal, s.judged_at, now)})
    received = state.received_at
    ended = state.ended_at
    outcome = dossier_outcome(state, catalogue, now)
    return {
        "dossier": state.code, "procedure": state.procedure,
        "received_at": (received_text if steps and received is state.steps[0].started_at
                        else fmt(received)),
        "due_at": fmt(state.clock.due),
        "ended_at": None if ended is None else last_text if ended is last else fmt(ended),
        "outcome": outcome,
        "late_agencies": late_agencies(state, catalogue, now, outcome),
        "steps": steps,
    }


def appointment_of(catalogue: Catalogue, procedure_code: str, at: datetime) -> datetime | None:
    """The hub's appointment (ngày hẹn trả kết quả) of a dossier of ``procedure_code`` received
    at ``at``: what the receipt says and the applicant is told; None for an unknown procedure."""
    procedure = catalogue.procedure(procedure_code, at)
    if procedure is None:
        return None
    cal = catalogue.calendar
    return Clock.start(cal, _clock_start(cal, at, procedure.same_day_cutoff), procedure.total,
                       catalogue.due_soon).due
