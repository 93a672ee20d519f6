"""The stored form of a dossier's state on the table's changelog, and what the deadline index
reads from it without decoding the whole state.

A state is stored as compact JSON of ``DossierState.to_dict()`` led by one more entry, its
*index header*::

    {"ix":[CALENDAR, OPEN, ALARM, HOLDER, OVERDUE_FROM],"v":...,"code":...}

- ``CALENDAR``: the fingerprint of what the header was computed under (``fingerprint``: the
  header's format, the catalogue's calendar section, the holidays package's release); a worker
  whose fingerprint differs ignores the header and decodes the state.
- ``OPEN``: whether the dossier has not ended.
- ``ALARM``: ``next_alarm`` in epoch seconds (null: no time alert can fire now).
- ``HOLDER``: the agency holding the dossier.
- ``OVERDUE_FROM``: the dossier counts as overdue at an instant later than this (epoch
  seconds); 0 when it is overdue at any instant (paused after its due), null when never (ended,
  or paused before its due). That is ``dossier_outcome(...) == "overdue"`` for an open dossier,
  which depends on nothing but the state and the instant.

What the fields depend on: the state, and for ``ALARM`` the working calendar (a due_soon
instant not yet worked out is counted in working time from the state's clock). Nothing else
of the catalogue: a procedure's allotments, its route and the due_soon threshold were taken
into the state's clocks when the dossier was received or handed on, apologies are in the
state, and the holdings' agency level is looked up in the running worker's catalogue at the
count. So the fingerprint covers the calendar section and not the agencies or procedures (a
new catalogue that only adds an agency or a procedure version does not send the next restart
back to decoding every state); ``tests/unit/test_stored.py`` checks both sides of that.

After a restart the index is rebuilt from a million states. Decoding one costs about 21 µs
(JSON, then ``DossierState.from_dict``); reading its header costs under 1 µs. So the rebuild
reads headers only, and a state is decoded when the worker first needs it (an event for the
dossier, an alarm that comes due). States stored before the header existed, or under another
fingerprint, are decoded as before. ``DossierState.from_dict`` ignores the entry, so a worker of
an older version reads the new form.

Pure: no Kafka, faust or HTTP import.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import version
from typing import Any

import orjson

# Relative, as the core's modules import each other: mypy --strict checks this module by path.
from ..domain.catalogue import Catalogue
from ..domain.dossier import DossierState, next_alarm

# (next alarm in epoch seconds or None, holder, overdue-from in epoch seconds or None) of an
# open dossier; None for a dossier that has ended.
Summary = tuple[float | None, str, float | None] | None

_HOLIDAYS = version("holidays")
_HEAD = b'{"ix":'
_HEAD_END = b'],"v":'  # the header's last bracket, then to_dict()'s first key


# Bumped whenever what a header field means changes: older headers are then ignored.
HEADER_FORMAT = 1


def fingerprint(catalogue: Catalogue) -> str:
    """A short digest of everything the header's fields are computed from besides the state:
    the header's format, the catalogue's calendar section (zone, office hours, extra days off
    and working days, due_soon hours), the calendar's country and the holidays package's
    release (a new one may add a day off)."""
    text = orjson.dumps([HEADER_FORMAT, catalogue.to_dict()["calendar"],
                         catalogue.calendar.country, _HOLIDAYS],
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()[:16]


def summary_of(state: DossierState, catalogue: Catalogue) -> Summary:
    """What the deadline index and the holdings count need of ``state``."""
    if state.end_type is not None:
        return None
    alarm = next_alarm(state, catalogue)
    clock = state.clock
    if clock.run_from is not None:
        overdue_from: float | None = clock.due.timestamp()
    else:
        overdue_from = 0.0 if clock.late_pause else None
    return (None if alarm is None else alarm.timestamp(), state.holder, overdue_from)


def overdue(summary_overdue_from: float | None, now: float) -> bool:
    """Whether an open dossier with this ``OVERDUE_FROM`` is overdue at ``now``."""
    return summary_overdue_from is not None and now > summary_overdue_from


def encode(state: DossierState, catalogue: Catalogue | None, fingerprint: str) -> bytes:
    """The stored form of ``state``; with no catalogue, without the header."""
    if catalogue is None:
        return orjson.dumps(state.to_dict())
    # The summary first: working out the next alarm may fill in the clock's due_soon instant,
    # which the body then carries like the state in memory does.
    summary = summary_of(state, catalogue)
    body = orjson.dumps(state.to_dict())
    if summary is None:
        header: list[Any] = [fingerprint, False, None, state.holder, None]
    else:
        header = [fingerprint, True, *summary]
    return _HEAD + orjson.dumps(header) + b"," + body[1:]


def read_summary(data: bytes, fingerprint: str) -> tuple[bool, Summary]:
    """(True, summary) from the header of a stored state computed under ``fingerprint``;
    (False, None) when there is no such header (the caller decodes the state)."""
    if not data.startswith(_HEAD):
        return False, None
    end = data.find(_HEAD_END, len(_HEAD))
    if end < 0:
        return False, None
    try:
        fp, is_open, alarm, holder, overdue_from = orjson.loads(data[len(_HEAD):end + 1])
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return False, None
    if fp != fingerprint:
        return False, None
    return True, (alarm, holder, overdue_from) if is_open else None
