"""A province day that unfolds now: when the demo's day starts, and which of the planned events
the hub must already know when it does.

A hub connected to a province at the morning's office opening does not meet an empty province:
the dossiers received on earlier working days and still being processed are pushed to it by the
agency systems first (the backlog), then each new event arrives when it happens. So the demo
plans receipts from ``backlog_days`` working days before its start, leaves out the dossiers that
were finished before the start (the hub never hears of them), sends the events up to the start
of the others at once, and plays the rest as the shared accelerated clock reaches them.

Pure: no I/O, no clock of its own; every instant is an argument.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lienthong.services.domain.calendar import WorkingCalendar

#: Simulated seconds per real second of ``lienthong up``: a working hour a minute, so a step
#: allotted half a day turns due soon and then overdue while the viewer watches, and the first
#: minute already moves the board.
DEFAULT_SPEED = 60.0
#: Working days of receipts before the start whose open dossiers form the morning's backlog.
DEFAULT_BACKLOG_DAYS = 8
#: Working days of receipts planned after the start (the day itself and the next one).
DEFAULT_LIVE_DAYS = 2


def demo_start(calendar: WorkingCalendar, now: datetime) -> datetime:
    """This morning's office opening, or the last working morning's if this one has not come
    (a weekend, a holiday, or before opening time)."""
    day = calendar.local_date(now)
    for back in range(0, 60):  # Tết and its bridging days are the longest break: ~9 days
        d = day - timedelta(days=back)
        windows = calendar.windows_on(d)
        if windows and windows[0][0] <= now:
            return windows[0][0]
    raise ValueError(f"no working day in the 60 days before {now.isoformat()}")


def working_days_before(calendar: WorkingCalendar, start: datetime, days: int) -> datetime:
    """The opening of the working day ``days`` working days before ``start``'s local day."""
    if days < 0:
        raise ValueError("days must not be negative")
    d = calendar.local_date(start)
    found = 0
    while found < days:
        d -= timedelta(days=1)
        if calendar.is_working_day(d):
            found += 1
    windows = calendar.windows_on(d)
    return windows[0][0] if windows else calendar.next_opening(
        datetime.combine(d, datetime.min.time(), tzinfo=calendar.tz))


def planned_dossiers(per_working_hour: float, calendar: WorkingCalendar, *,
                     backlog_days: int, live_days: int) -> int:
    """How many dossiers a plan receiving ``per_working_hour`` needs to cover the backlog days
    and ``live_days`` working days from the start."""
    hours = calendar.day_length / timedelta(hours=1)
    return max(1, round(per_working_hour * hours * (backlog_days + live_days)))


@dataclass(frozen=True)
class DayPlan:
    """The events the hub gets at once when the day starts, and those it gets as they happen."""

    start: datetime
    backlog: list[dict[str, Any]]  # events at or before ``start`` of dossiers open at ``start``
    live: list[dict[str, Any]]  # events after ``start``, in order
    finished_before: int  # dossiers left out: ended before ``start``

    def open_at_start(self) -> int:
        return len({e["dossier"] for e in self.backlog})


def split_at(events: Sequence[dict[str, Any]], start: datetime) -> DayPlan:
    """Split a plan (ordered by ``at``) at ``start``: a dossier whose every event is at or before
    ``start`` is left out; the events at or before ``start`` of the others are the backlog (their
    order kept), the rest the live part."""
    last: dict[str, datetime] = {}
    for e in events:
        last[e["dossier"]] = datetime.fromisoformat(e["at"])
    backlog: list[dict[str, Any]] = []
    live: list[dict[str, Any]] = []
    for e in events:
        if datetime.fromisoformat(e["at"]) > start:
            live.append(e)
        elif last[e["dossier"]] > start:
            backlog.append(e)
    finished = sum(1 for at in last.values() if at <= start)
    return DayPlan(start=start, backlog=backlog, live=live, finished_before=finished)


def day_prefix(start: datetime, plan: str = "") -> str:
    """The topic prefix of one demo day (``demo20261203-1a2b3c.``): a demo started on another
    day, or with another plan (``plan`` names its parameters), gets topics and worker state of
    its own, so dossiers whose later events will never be sent do not turn the board red."""
    digest = hashlib.sha256(f"{start.isoformat()}|{plan}".encode()).hexdigest()[:6]
    return f"demo{start:%Y%m%d}-{digest}."


def resumed_origin(saved: Mapping[str, Any] | None, start: datetime) -> datetime:
    """Where the clock of a restarted demo day begins: the simulated instant the last run of the
    same day reached (kept in ``saved`` as ``{"start": ISO, "reached": ISO}``), else ``start``.
    Starting again at the morning would show dossiers from the later hours already there."""
    if not saved:
        return start
    try:
        same = datetime.fromisoformat(str(saved["start"])) == start
        reached = datetime.fromisoformat(str(saved["reached"]))
        later = reached > start  # TypeError for an instant without offset
    except (KeyError, ValueError, TypeError):
        return start
    return reached if same and later else start
