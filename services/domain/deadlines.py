"""Legal clocks (DESIGN section 6, rules 3-10): one for the dossier, one per step.

A :class:`Clock` counts an allotment of working time. It runs in *segments*: it starts (rule 3:
at the next opening), may pause (rule 7: supplement request, financial obligation) and resume
with the remaining working time, or restart from zero. While it runs, ``due`` is
``add_working_time(run_from, left)``; while it is paused, ``due`` is the due in force when the
pause began and ``left`` is the working time that remained then.

The instant the ``due_soon`` alert fires (``soon_at``) is computed at most once per segment,
and only when an alert sweep could reach it: until then a wall-clock floor decides that it
cannot have fired yet, so most events pay for one calendar addition (the due), not two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from .calendar import WorkingCalendar

ZERO = timedelta(0)
Outcome = Literal["early", "on_time", "late", "overdue", "open"]


def due_soon_threshold(allot: timedelta, due_soon: timedelta) -> timedelta:
    """min(due_soon_hours, half the item's full allotment) (Alerts, ``due_soon``)."""
    key = (allot, due_soon)
    threshold = _THRESHOLDS.get(key)
    if threshold is None:
        if len(_THRESHOLDS) >= 4096:  # allotments are few: a catalogue's, and zero
            _THRESHOLDS.clear()
        threshold = _THRESHOLDS[key] = min(due_soon, allot / 2)
    return threshold


_THRESHOLDS: dict[tuple[timedelta, timedelta], timedelta] = {}


@dataclass(slots=True)
class Clock:
    """The legal clock of a dossier or a step."""

    allot: timedelta  # the full allotment
    due: datetime  # the due in force
    run_from: datetime | None  # start of the running segment (rule 3 applies); None: paused
    left: timedelta  # working time left at run_from (running) or when the pause began (paused)
    soon_at: datetime | None = None  # when due_soon fires in this segment (computed lazily)
    armed: bool = True  # due_soon not yet fired since the clock (re)started
    paused_at: datetime | None = None  # when the pause began (an ended item is judged there)
    late_pause: bool = False  # the pause began after the due: the due stays, no new alerts
    waited_after_due: timedelta = ZERO  # paused working time after the due (not an overrun)
    overdue_fired: bool = False  # the overdue alert of the current due has fired
    soon_left: timedelta | None = None  # working time from run_from to due_soon; None: none

    # -- changes ------------------------------------------------------------------------------

    @classmethod
    def start(cls, cal: WorkingCalendar, clock_start: datetime, allot: timedelta,
              due_soon: timedelta, *, paused_at: datetime | None = None) -> Clock:
        """A clock of ``allot`` whose running begins at working instant ``clock_start``.

        With ``paused_at`` it starts paused (a hand-off during a pause): ``due`` is then the
        due it would have if it ran from ``clock_start``.
        """
        due = cal.add_working_time(clock_start, allot) if allot else cal.next_opening(
            clock_start)  # _due, inlined: every receipt and hand-off starts clocks
        if paused_at is not None:
            return cls(allot, due, None, allot, None, True, paused_at)
        # _arm_soon, inlined: a new clock is armed and has its whole allotment left.
        threshold = _THRESHOLDS.get((allot, due_soon)) or due_soon_threshold(allot, due_soon)
        return cls(allot, due, clock_start, allot, None, True, None, False, ZERO, False,
                   allot - threshold if threshold > ZERO else None)

    def _arm_soon(self, due_soon: timedelta) -> None:
        # Fires where the remaining time equals the threshold, if the clock runs there: a
        # segment that starts already below its threshold fires none; a zero allotment none.
        # The instant is computed when first needed (soon_instant): often never.
        self.soon_at = None
        threshold = due_soon_threshold(self.allot, due_soon)
        if not self.armed or threshold <= ZERO or self.left < threshold:
            self.soon_left = None
        else:
            self.soon_left = self.left - threshold

    def soon_instant(self, cal: WorkingCalendar,
                     until: datetime | None = None) -> datetime | None:
        """The running segment's due_soon instant, if it has one still armed.

        With ``until``, None also when the instant surely lies after ``until`` — decided
        without the calendar, since working time never runs faster than the wall clock
        (nor more than a day's length per 24 hours).
        """
        if self.soon_left is None or not self.armed or self.run_from is None:
            return None
        if self.soon_at is None:
            if until is not None:
                # _wall_floor's cache read here: this runs for most events.
                floor = _FLOORS.get((self.soon_left, cal.day_length))
                if floor is None:
                    floor = _wall_floor(self.soon_left, cal.day_length)
                if until < self.run_from + floor:
                    return None
            self.soon_at = _due(cal, self.run_from, self.soon_left)
        return self.soon_at

    def pause(self, cal: WorkingCalendar, at: datetime) -> None:
        """The pause begins at ``at`` (no effect if already paused)."""
        if self.run_from is None:
            return
        if at > self.due:  # rule 7: a pause after the due does not move it
            self.late_pause = True
            self.left = ZERO
        else:
            self.left = cal.working_time_between(max(at, self.run_from), self.due)
        self.run_from = None
        self.soon_at = None
        self.soon_left = None
        self.paused_at = at

    def resume(self, cal: WorkingCalendar, at: datetime, due_soon: timedelta) -> None:
        """Every request answered at ``at``: the remaining working time carries on."""
        if self.run_from is not None or self.paused_at is None:
            return
        self.run_from = at
        if self.late_pause:
            # Still overdue against the same due; the waiting is not the agency's overrun.
            self.waited_after_due += cal.working_time_between(self.paused_at, at)
            self.late_pause = False
            self.armed = False
        else:
            self.due = _due(cal, at, self.left)
            self.overdue_fired = False
            # Resuming above the threshold arms due_soon again. In event order a due_soon
            # fired before the pause leaves no more than the threshold, so this changes
            # nothing there; it matters when the pause arrived late and a due_soon was already
            # raised for the running clock the hub then believed in: the real one must fire.
            if self.left > due_soon_threshold(self.allot, due_soon):
                self.armed = True
            self._arm_soon(due_soon)
        self.paused_at = None

    def restart(self, cal: WorkingCalendar, at: datetime, due_soon: timedelta) -> None:
        """``on_supplement: restart``: the full allotment again from ``at`` (re-arms due_soon)."""
        self.run_from = at
        self.left = self.allot
        self.due = _due(cal, at, self.allot)
        self.overdue_fired = False
        self.armed = True
        self.late_pause = False
        self.paused_at = None
        self.waited_after_due = ZERO
        self._arm_soon(due_soon)

    def recompute(self, cal: WorkingCalendar, at: datetime, due_soon: timedelta) -> bool:
        """The calendar changed at ``at``: move a running, not yet passed due. True if moved."""
        if self.run_from is None or self.due <= at:
            return False
        due = _due(cal, self.run_from, self.left)
        if due == self.due:
            return False
        self.due = due
        self.overdue_fired = False
        self._arm_soon(due_soon)
        return True

    # -- judgement ----------------------------------------------------------------------------

    def judged_end(self, at: datetime) -> datetime:
        """The instant an item ending at ``at`` is judged at: the pause start if paused."""
        return self.paused_at if self.paused_at is not None else at

    def outcome(self, cal: WorkingCalendar, end: datetime | None, now: datetime) -> Outcome:
        """Rule 8 for an item judged at ``end`` (None: not ended) as seen at ``now``."""
        if end is not None:
            if end <= self.due:
                return "early" if cal.local_date(end) < cal.local_date(self.due) else "on_time"
            return "late"
        if self.run_from is None:
            return "overdue" if self.late_pause else "open"
        return "overdue" if now > self.due else "open"

    def overrun(self, cal: WorkingCalendar, end: datetime | None, now: datetime) -> timedelta:
        """Rule 10: working time from the due to the end (or now), minus waiting after it."""
        if end is None:
            if self.run_from is None:
                if not self.late_pause or self.paused_at is None:
                    return ZERO
                end = self.paused_at
            else:
                end = now
        if end <= self.due:
            return ZERO
        return max(ZERO, cal.working_time_between(self.due, end) - self.waited_after_due)

    # -- storage ------------------------------------------------------------------------------

    def to_list(self) -> list[Any]:
        return [_span(self.allot), instant_to_json(self.due), instant_to_json(self.run_from),
                _span(self.left), instant_to_json(self.soon_at), int(self.armed),
                instant_to_json(self.paused_at), int(self.late_pause),
                _span(self.waited_after_due), int(self.overdue_fired),
                None if self.soon_left is None else _span(self.soon_left)]

    @classmethod
    def from_list(cls, data: list[Any],
                  instant: Callable[[Any], datetime | None] | None = None) -> Clock:
        """The clock back from ``to_list()``; ``instant`` reads its stored instants
        (default ``instant_from_json``: UTC)."""
        at = instant or instant_from_json
        due = at(data[1])
        assert due is not None
        soon_left = data[10]
        return cls(span_from_json(data[0]), due, at(data[2]), span_from_json(data[3]),
                   at(data[4]), bool(data[5]), at(data[6]), bool(data[7]),
                   span_from_json(data[8]), bool(data[9]),
                   None if soon_left is None else span_from_json(soon_left))


def _due(cal: WorkingCalendar, start: datetime, amount: timedelta) -> datetime:
    """Rule 3: ``amount`` of working time after ``start``; a zero amount is due at the clock
    start, which is the next opening for a start outside working time or at a window's end."""
    return cal.add_working_time(start, amount) if amount else cal.next_opening(start)


_DAY = timedelta(days=1)
_MARGIN = timedelta(hours=2)  # a daylight-saving shift cannot break the floor


def _wall_floor(working: timedelta, day_length: timedelta) -> timedelta:
    """The least wall-clock time in which ``working`` of working time can pass: at least
    itself, and at most one day's length per 24 hours."""
    key = (working, day_length)
    floor = _FLOORS.get(key)
    if floor is None:
        if len(_FLOORS) >= 4096:  # the amounts are few (allotments less thresholds)
            _FLOORS.clear()
        floor = _FLOORS[key] = max(working, (working / day_length - 1) * _DAY - _MARGIN)
    return floor


_FLOORS: dict[tuple[timedelta, timedelta], timedelta] = {}


def _span(d: timedelta) -> int | float:
    s = d.total_seconds()
    return int(s) if s.is_integer() else s


def span_from_json(seconds: int | float) -> timedelta:
    """A stored span (seconds) as a timedelta; the few spans of a catalogue are made once."""
    span = _SPANS.get(seconds)
    if span is None:
        if len(_SPANS) >= 4096:  # allotments and what is left of them: bounded all the same
            _SPANS.clear()
        span = _SPANS[seconds] = timedelta(seconds=seconds)
    return span


_SPANS: dict[int | float, timedelta] = {}


def instant_to_json(t: datetime | None) -> int | str | None:
    """Whole-second instants as epoch seconds (compact); others as ISO text (exact)."""
    if t is None:
        return None
    known = _STORED.get(id(t))
    if known is not None and known[0] is t:
        return known[1]
    value: int | str = t.isoformat() if t.microsecond else int(t.timestamp())
    if len(_STORED) >= STORED_KEPT:
        _STORED.clear()
    _STORED[id(t)] = (t, value)
    return value


# id(instant) -> (instant, its stored form): a state's instants are the same objects each time
# the state is written. The entry holds the instant, so its id is not reused while the entry
# lives; cleared whole when full.
_STORED: dict[int, tuple[datetime, int | str]] = {}
STORED_KEPT = 1 << 17


def instant_from_json(v: int | str | None) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, str):
        return datetime.fromisoformat(v)
    return datetime.fromtimestamp(v, UTC)
