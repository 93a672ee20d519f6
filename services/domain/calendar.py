"""The working calendar of a province (lịch làm việc): when the legal clock runs.

DESIGN section 6, rules 1-3:

1. Working time is Monday-Friday inside the office hours, minus Vietnam's public holidays (the
   ``holidays`` package: Tết, Hùng Kings, substituted days off; its swapped working Saturdays are
   working days, ``HolidayBase.is_working_day``), minus the catalogue's ``extra_days_off``, plus
   its ``extra_working_days``.
2. A working day is the total length of one day's office hours (``day_length``, 8 h by default).
3. A clock that starts outside working time, or exactly at a window's end, starts at the next
   opening. Windows are [open, close) for starts and (open, close] for dues: a due landing exactly
   on a close is that close (17:00), never the next opening.

Every event goes through this arithmetic, so it is table-driven: for each local calendar year the
working windows are computed once (lazily, on first use), as epoch microseconds with the
cumulative working time at each window's close. An instant's *position* in the year (working
time since the year began) is one bisect; adding working time is the inverse, one more bisect.
Microseconds keep ``timedelta`` arithmetic exact, so adding an amount and measuring it back
always gives the same amount.

The fast path: consecutive years in which the zone keeps one UTC offset (Việt Nam has kept
+07:00 since 1975) form a *span* whose windows are aware datetimes in the province's zone, with
the cumulative working time at each close. Datetimes sharing one ``tzinfo`` compare and
subtract by their wall clocks without asking the zone for offsets, which is exact where the
offset is constant, so an instant in the span costs one or two bisects and a few ``timedelta``
operations, with no conversion to epoch numbers and back. Instants outside a span (a year with
a daylight-saving change, or an offset different from the span's) take the epoch-microsecond
tables.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

DEFAULT_OFFICE_HOURS: tuple[tuple[time, time], ...] = (
    (time(7, 30), time(11, 30)),
    (time(13, 0), time(17, 0)),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ZERO = timedelta(0)
_HALF_HOUR = timedelta(minutes=30)
# The span grows year by year; an instant more years than this away from it takes the epoch
# tables (one year built) rather than build every year in between.
_MAX_SPAN_GAP = 5
# A calendar whose every day is off would make add_working_time search forever.
_MAX_EMPTY_YEARS = 20
TEXTS_KEPT = 1 << 17  # instants whose local text format_local remembers (about 20 MB at most)


@dataclass(frozen=True, slots=True)
class _National:
    """One year of a country's public calendar, as the ``holidays`` package knows it."""

    working: frozenset[date]
    names: dict[date, str]


@lru_cache(maxsize=256)
def _national_year(country: str, year: int) -> _National:
    # Neighbouring years are populated too: a swapped working day may be announced in the
    # previous year's decision (e.g. Saturday 5 January 2019 for Monday 31 December 2018).
    calendar = holidays.country_holidays(
        country, years=(year - 1, year, year + 1), expand=False, language="vi"
    )
    first = date(year, 1, 1)
    days = (first + timedelta(days=i) for i in range((date(year + 1, 1, 1) - first).days))
    working = frozenset(d for d in days if calendar.is_working_day(d))
    names = {d: str(name) for d, name in calendar.items() if d.year == year}
    return _National(working, names)


@dataclass(frozen=True, slots=True)
class _Year:
    """Working windows of one local calendar year, in epoch microseconds."""

    opens: list[int]
    closes: list[int]
    cum_after: list[int]  # working time from the year's start to each window's close
    total: int

    def position(self, t: int) -> int:
        """Working microseconds from the year's start up to instant ``t`` (in this year)."""
        j = bisect_right(self.opens, t) - 1
        if j < 0:
            return 0
        length = self.closes[j] - self.opens[j]
        return self.cum_after[j] - length + min(t - self.opens[j], length)


def _to_us(t: datetime) -> int:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"instant {t.isoformat()} has no time zone")
    return (t - _EPOCH) // _US


class WorkingCalendar:
    """Lịch làm việc of a province: office hours, holidays, extra days off and working days.

    ``years`` names years to precompute now; any other year is computed on first use.
    Instants passed in must be timezone-aware (any zone); instants returned are in ``tz``.
    """

    tz: ZoneInfo
    day_length: timedelta
    office_hours: tuple[tuple[time, time], ...]
    extra_days_off: frozenset[date]
    extra_working_days: frozenset[date]
    country: str

    def __init__(
        self,
        *,
        timezone: str = "Asia/Ho_Chi_Minh",
        office_hours: Sequence[tuple[time, time]] = DEFAULT_OFFICE_HOURS,
        extra_days_off: Iterable[date] = (),
        extra_working_days: Iterable[date] = (),
        years: range | None = None,
        country: str = "VN",
    ) -> None:
        self.tz = ZoneInfo(timezone)
        self.office_hours = tuple((o, c) for o, c in office_hours)
        if not self.office_hours:
            raise ValueError("office hours must hold at least one window")
        previous_close: time | None = None
        for o, c in self.office_hours:
            if o.tzinfo is not None or c.tzinfo is not None:
                raise ValueError("office hours are local times of day, without a time zone")
            if o >= c:
                raise ValueError(f"office window {o:%H:%M}-{c:%H:%M} closes before it opens")
            if previous_close is not None and o < previous_close:
                raise ValueError(f"office window {o:%H:%M}-{c:%H:%M} overlaps the one before")
            previous_close = c
        self.day_length = sum(
            (datetime.combine(date.min, c) - datetime.combine(date.min, o)
             for o, c in self.office_hours),
            timedelta(0),
        )
        self.extra_days_off = frozenset(extra_days_off)
        self.extra_working_days = frozenset(extra_working_days)
        both = self.extra_days_off & self.extra_working_days
        if both:
            listed = ", ".join(sorted(d.isoformat() for d in both))
            raise ValueError(f"dates both extra days off and extra working days: {listed}")
        self.country = country
        self._timezone_name = timezone
        self._years: dict[int, _Year] = {}
        # The span (fast path, see the module docstring): years _first.._last, local
        # instants [_lo, _hi), windows and cumulative working time from _lo at each close.
        self._offsets: dict[int, timedelta | None] = {}
        self._first: int | None = None
        self._last: int | None = None
        self._offset: timedelta | None = None
        self._lo = self._hi = datetime(2000, 1, 1, tzinfo=self.tz)
        self._opens: list[datetime] = []
        self._closes: list[datetime] = []
        self._cum: list[timedelta] = []
        self._empty_tail = 0  # empty years at the span's end
        self._day_texts: dict[int, str] = {}  # ordinal -> "YYYY-MM-DDT" (format_local)
        self._clock_texts: dict[int, str] = {}  # second of the day -> "HH:MM:SS+07:00"
        # id(instant) -> (instant, its text): a state's instants are the same objects from
        # one report of it to the next. The entry holds the instant, so its id is not reused
        # while the entry lives; cleared whole when full.
        self._texts: dict[int, tuple[datetime, str]] = {}
        self._suffix = ""  # the span's offset as ISO text
        for year in years or ():
            self._year(year)
            self._reach(year)

    def __repr__(self) -> str:
        hours = ", ".join(f"{o:%H:%M}-{c:%H:%M}" for o, c in self.office_hours)
        return (f"WorkingCalendar({self._timezone_name}, [{hours}], "
                f"{len(self.extra_days_off)} extra days off, "
                f"{len(self.extra_working_days)} extra working days)")

    # -- days ---------------------------------------------------------------------------------

    def is_working_day(self, d: date) -> bool:
        """Whether ``d`` is a working day (rule 1)."""
        if d in self.extra_working_days:
            return True
        if d in self.extra_days_off:
            return False
        return d in _national_year(self.country, d.year).working

    def holiday_name(self, d: date) -> str | None:
        """The public holiday's Vietnamese name on ``d``, or None (extra days off have none)."""
        return _national_year(self.country, d.year).names.get(d)

    def local_date(self, t: datetime) -> date:
        """The province's calendar date at instant ``t``."""
        return (t if t.tzinfo is self.tz else t.astimezone(self.tz)).date()

    def windows_on(self, d: date) -> tuple[tuple[datetime, datetime], ...]:
        """The working windows of day ``d`` as (open, close) instants; empty on a day off."""
        if not self.is_working_day(d):
            return ()
        return tuple(
            (datetime.combine(d, o, tzinfo=self.tz), datetime.combine(d, c, tzinfo=self.tz))
            for o, c in self.office_hours
        )

    def first_opening_after(self, d: date) -> datetime:
        """The opening of the first working day after date ``d`` (the same-day cut-off, rule 4)."""
        return self.next_opening(datetime.combine(d + timedelta(days=1), time(0), tzinfo=self.tz))

    # -- instants -----------------------------------------------------------------------------

    def is_working_instant(self, t: datetime) -> bool:
        """Whether ``t`` lies inside a working window [open, close)."""
        local = self._local(t)
        if self._covers(local):
            j = bisect_right(self._opens, local) - 1
            return j >= 0 and local < self._closes[j]
        table = self._year(local.year)
        us = _to_us(t)
        j = bisect_right(table.opens, us) - 1
        return j >= 0 and us < table.closes[j]

    def next_opening(self, t: datetime) -> datetime:
        """``t`` itself if inside [open, close); else the next window's opening."""
        local = t if t.tzinfo is self.tz else self._local(t)
        if self._lo <= local < self._hi or self._covers(local):
            closes = self._closes
            j = bisect_right(closes, local)
            if j < len(closes) or self._grow_past(j):
                opening = self._opens[j]
                return t if opening <= local else opening
        year = local.year
        us = _to_us(t)
        table = self._year(year)
        j = bisect_right(table.closes, us)
        if j < len(table.opens) and table.opens[j] <= us:
            return t
        return self._from_us(self._next_opening_us(year, us)[1])

    def add_working_time(self, start: datetime, amount: timedelta) -> datetime:
        """The instant ``amount`` of working time after ``start`` (a due instant, rule 3).

        A start outside working time, or exactly at a window's end, first moves to the next
        opening. A due landing exactly on a window's end is that end. A zero amount returns
        ``start`` unchanged (the caller decides whether that start moves, rule 3).
        """
        if amount < _ZERO:
            raise ValueError(f"cannot add a negative working time ({amount})")
        if not amount:
            return start
        local = start if start.tzinfo is self.tz else self._local(start)
        if self._lo <= local < self._hi or self._covers(local):
            closes, cum = self._closes, self._cum
            j = bisect_right(closes, local)
            if j < len(closes) or self._grow_past(j):
                opening, close = self._opens[j], closes[j]
                # The working time from the span's start to the clock start, plus the amount.
                target = cum[j] - (close - (local if local > opening else opening)) + amount
                while target > cum[-1]:
                    if not self._grow():
                        break
                else:
                    i = bisect_left(cum, target)
                    return closes[i] - (cum[i] - target)
        return self._add_slow(start, amount)

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time from ``a`` to ``b``; zero if ``b`` is not after ``a``."""
        tz = self.tz
        la = a if a.tzinfo is tz else self._local(a)
        lb = b if b.tzinfo is tz else self._local(b)
        lo, hi = self._lo, self._hi
        if (lo <= la < hi or self._covers(la)) and (lo <= lb < hi or self._covers(lb)):
            if lb <= la:
                return _ZERO
            return self._position(lb) - self._position(la)
        a_us, b_us = _to_us(a), _to_us(b)
        if b_us <= a_us:
            return _ZERO
        ya, yb = la.year, lb.year
        if ya == yb:
            table = self._year(ya)
            return timedelta(microseconds=table.position(b_us) - table.position(a_us))
        first = self._year(ya)
        total = first.total - first.position(a_us)
        total += sum(self._year(y).total for y in range(ya + 1, yb))
        total += self._year(yb).position(b_us)
        return timedelta(microseconds=total)

    def format_local(self, t: datetime) -> str:
        """``t`` as local ISO text to the second, ``YYYY-MM-DDTHH:MM:SS+07:00`` (fractions cut).

        The same text as ``t.astimezone(tz).isoformat("T", "seconds")``, from cached pieces
        (the date, the time of day with the span's offset): reports format every instant.
        """
        known = self._texts.get(id(t))
        if known is not None and known[0] is t:
            return known[1]
        text = self._format_local(t)
        texts = self._texts
        if len(texts) >= TEXTS_KEPT:
            texts.clear()
        texts[id(t)] = (t, text)
        return text

    def _format_local(self, t: datetime) -> str:
        local = t if t.tzinfo is self.tz else self._local(t)
        if not self._lo <= local < self._hi and not self._covers(local):
            return local.isoformat("T", "seconds")
        day = self._day_texts.get(local.toordinal())
        if day is None:
            day = self._day_texts[local.toordinal()] = local.date().isoformat() + "T"
        hour, minute, second = local.hour, local.minute, local.second
        key = hour * 3600 + minute * 60 + second
        clock = self._clock_texts.get(key)
        if clock is None:
            clock = self._clock_texts[key] = f"{hour:02d}:{minute:02d}:{second:02d}{self._suffix}"
        return day + clock

    def _add_slow(self, start: datetime, amount: timedelta) -> datetime:
        """add_working_time over the epoch-microsecond tables (any zone, any year)."""
        year, opening = self._next_opening_us(start.astimezone(self.tz).year, _to_us(start))
        table = self._year(year)
        target = table.position(opening) + amount // _US
        empty = 0
        while target > table.total:
            target -= table.total
            empty = 0 if table.total else empty + 1
            if empty > _MAX_EMPTY_YEARS:
                raise ValueError(f"no working time in the {_MAX_EMPTY_YEARS} years before {year}")
            year += 1
            table = self._year(year)
        i = bisect_left(table.cum_after, target)
        return self._from_us(table.closes[i] - (table.cum_after[i] - target))

    def _local(self, t: datetime) -> datetime:
        """``t`` in the province's zone (itself when already there); naive instants refused."""
        tz = t.tzinfo
        if tz is self.tz:
            return t
        if tz is None or t.utcoffset() is None:
            raise ValueError(f"instant {t.isoformat()} has no time zone")
        return t.astimezone(self.tz)

    # -- the span (fast path) -----------------------------------------------------------------

    def _covers(self, local: datetime) -> bool:
        """Whether local instant ``local`` (in ``tz``) lies in the span, growing it if need be."""
        if self._lo <= local < self._hi:
            return True
        return self._reach(local.year)

    def _position(self, local: datetime) -> timedelta:
        """Working time from the span's start to ``local`` (inside the span)."""
        j = bisect_right(self._opens, local) - 1
        if j < 0:
            return _ZERO
        close = self._closes[j]
        cum = self._cum[j]
        return cum if local >= close else cum - (close - local)

    def _reach(self, year: int) -> bool:
        """Grow the span to take in ``year``; False if that year cannot join it."""
        if self._first is None or self._last is None:
            offset = self._fixed_offset(year)
            if offset is None:
                return False
            self._offset = offset
            self._first, self._last = year, year - 1
            self._lo = self._hi = datetime(year, 1, 1, tzinfo=self.tz)
            self._suffix = self._lo.isoformat()[19:]  # the offset as ISO text: "+07:00"
        if year > self._last:
            if year - self._last > _MAX_SPAN_GAP:
                return False
            while self._last < year:
                if not self._grow():
                    return False
            return True
        if self._first - year > _MAX_SPAN_GAP or any(
                self._fixed_offset(y) != self._offset for y in range(year, self._first)):
            return False
        # Earlier years: rebuild the lists from the new first year on; all or nothing, so an
        # instant found in the span stays in it.
        saved = (self._first, self._last, self._lo, self._hi, self._opens, self._closes,
                 self._cum, self._empty_tail)
        last = self._last
        self._first, self._last = year, year - 1
        self._lo = self._hi = datetime(year, 1, 1, tzinfo=self.tz)
        self._opens, self._closes, self._cum = [], [], []
        self._empty_tail = 0
        while self._last < last:
            if not self._grow():
                (self._first, self._last, self._lo, self._hi, self._opens, self._closes,
                 self._cum, self._empty_tail) = saved
                return False
        return True

    def _grow(self) -> bool:
        """Append the year after the span's last (in place); False if it cannot join."""
        last = self._last
        if last is None or self._fixed_offset(last + 1) != self._offset:
            return False
        if self._empty_tail > _MAX_EMPTY_YEARS:
            return False  # the slow path says why
        year = last + 1
        opens, closes = self._span_windows(year)
        total = self._cum[-1] if self._cum else _ZERO
        cum = self._cum
        for o, c in zip(opens, closes, strict=True):
            total += c - o
            cum.append(total)
        self._opens.extend(opens)
        self._closes.extend(closes)
        self._empty_tail = 0 if opens else self._empty_tail + 1
        self._last = year
        self._hi = datetime(year + 1, 1, 1, tzinfo=self.tz)
        return True

    def _grow_past(self, j: int) -> bool:
        """Grow the span until it has a window at index ``j``; False if it cannot."""
        while j >= len(self._closes):
            if not self._grow():
                return False
        return True

    def _fixed_offset(self, year: int) -> timedelta | None:
        """The zone's UTC offset through local year ``year`` if it never changes; else None.

        Sampled every half hour of the year's wall clock: zones change offsets on whole or half
        hours and keep a new offset for months, so a change shows in the samples.
        """
        if year in self._offsets:
            return self._offsets[year]
        t = datetime(year, 1, 1, tzinfo=self.tz)
        offset = t.utcoffset()
        end = datetime(year + 1, 1, 1, tzinfo=self.tz)
        while offset is not None and t < end:
            if t.utcoffset() != offset:
                offset = None
            t += _HALF_HOUR
        self._offsets[year] = offset
        return offset

    def _span_windows(self, year: int) -> tuple[list[datetime], list[datetime]]:
        opens: list[datetime] = []
        closes: list[datetime] = []
        d = date(year, 1, 1)
        one_day = timedelta(days=1)
        combine, tz = datetime.combine, self.tz
        while d.year == year:
            if self.is_working_day(d):
                for o, c in self.office_hours:
                    opens.append(combine(d, o, tzinfo=tz))
                    closes.append(combine(d, c, tzinfo=tz))
            d += one_day
        return opens, closes

    # -- changes ------------------------------------------------------------------------------

    def with_changes(
        self, *, extra_days_off: Iterable[date] = (), extra_working_days: Iterable[date] = ()
    ) -> WorkingCalendar:
        """A new calendar with more days off / working days; the later announcement wins.

        A day announced off here stops being an extra working day, and the other way round.
        """
        off, work = frozenset(extra_days_off), frozenset(extra_working_days)
        if off & work:
            listed = ", ".join(sorted(d.isoformat() for d in off & work))
            raise ValueError(f"dates both extra days off and extra working days: {listed}")
        return WorkingCalendar(
            timezone=self._timezone_name,
            office_hours=self.office_hours,
            extra_days_off=(self.extra_days_off - work) | off,
            extra_working_days=(self.extra_working_days - off) | work,
            country=self.country,
        )

    # -- tables -------------------------------------------------------------------------------

    def _from_us(self, us: int) -> datetime:
        return (_EPOCH + timedelta(microseconds=us)).astimezone(self.tz)

    def _next_opening_us(self, year: int, us: int) -> tuple[int, int]:
        """(local year, instant) of the first opening at or after ``us`` (in ``year``), or of
        ``us`` itself inside a window."""
        table = self._year(year)
        j = bisect_right(table.closes, us)
        if j < len(table.opens):
            return year, max(us, table.opens[j])
        for later in range(year + 1, year + 2 + _MAX_EMPTY_YEARS):
            table = self._year(later)
            if table.opens:
                return later, table.opens[0]
        raise ValueError(f"no working time in the {_MAX_EMPTY_YEARS} years after {year}")

    def _year(self, year: int) -> _Year:
        table = self._years.get(year)
        if table is None:
            table = self._years[year] = self._build_year(year)
        return table

    def _build_year(self, year: int) -> _Year:
        opens: list[int] = []
        closes: list[int] = []
        cum_after: list[int] = []
        total = 0
        d = date(year, 1, 1)
        one_day = timedelta(days=1)
        while d.year == year:
            if self.is_working_day(d):
                for o, c in self.office_hours:
                    start = _to_us(datetime.combine(d, o, tzinfo=self.tz))
                    end = _to_us(datetime.combine(d, c, tzinfo=self.tz))
                    if end <= start:  # a window swallowed by a daylight-saving jump
                        continue
                    total += end - start
                    opens.append(start)
                    closes.append(end)
                    cum_after.append(total)
            d += one_day
        return _Year(opens, closes, cum_after, total)
