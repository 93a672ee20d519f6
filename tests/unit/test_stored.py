"""The stored form of a dossier's state (``services/processors/stored.py``): the index header
a restart rebuilds the deadline index from, and the bulk read's record application
(``services/processors/recovery.py``)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from lienthong.services.domain.catalogue import Catalogue, parse_catalogue
from lienthong.services.domain.dossier import (
    Applied,
    DossierState,
    apply_event,
    dossier_outcome,
    mark_fired,
    time_alerts,
)
from lienthong.services.domain.events import Event
from lienthong.services.processors import stored
from lienthong.services.processors.app import DossierStateCodec, DossierTable
from lienthong.services.processors.recovery import apply_records, bulk_plan
from tests.unit.test_dossier import CATALOGUE_DATA, DESK, SETTINGS, T, ev, histories

CAT = parse_catalogue(CATALOGUE_DATA)
FP = stored.fingerprint(CAT)


def _states(events: list[Event], sweep_every: int) -> Iterator[DossierState]:
    """The dossier's live state after each event (with what it keeps cached, as the worker
    holds it when it stores it), a sweep recording fired alerts after every
    ``sweep_every``-th: received, running, paused, late, apologised, ended."""
    state: DossierState | None = None
    for n, e in enumerate(events, 1):
        decision = apply_event(state, e, CAT)
        assert isinstance(decision, Applied), decision
        state = decision.state
        if n % sweep_every == 0:
            mark_fired(state, time_alerts(state, CAT, e.at + timedelta(hours=n * 7)))
        yield state


def _last(events: list[Event]) -> DossierState:
    """A fresh copy of the state after ``events``."""
    *_, state = _states(events, len(events) + 1)
    return DossierState.from_dict(state.to_dict(), CAT.calendar.tz)


def _fresh(data: bytes, catalogue: Catalogue = CAT) -> DossierState:
    """The state read back from its stored form: nothing cached."""
    return DossierState.from_dict(orjson.loads(data), catalogue.calendar.tz)


@SETTINGS
@given(histories(), st.integers(1, 4))
def test_the_header_gives_what_the_decoded_state_gives(events: list[Event],
                                                       sweep_every: int) -> None:
    for state in _states(events, sweep_every):
        data = stored.encode(state, CAT, FP)
        back = _fresh(data)
        assert back.to_dict() == state.to_dict()  # the header changes nothing of the state
        known, summary = stored.read_summary(data, FP)
        assert known
        assert summary == stored.summary_of(back, CAT)
        assert (summary is None) == (back.end_type is not None)


@SETTINGS
@given(histories(), st.integers(1, 4), st.integers(-60 * 24 * 10, 60 * 24 * 20))
def test_overdue_from_the_header_is_the_dossiers_outcome_at_any_instant(
        events: list[Event], sweep_every: int, minutes: int) -> None:
    for state in _states(events, sweep_every):
        known, summary = stored.read_summary(stored.encode(state, CAT, FP), FP)
        assert known
        if summary is None:
            continue
        for now in (state.clock.due + timedelta(minutes=minutes), state.clock.due,
                    state.clock.due + timedelta(microseconds=1)):
            assert stored.overdue(summary[2], now.timestamp()) == (
                dossier_outcome(state, CAT, now) == "overdue")


@SETTINGS
@given(histories(), st.integers(1, 4))
def test_a_state_stored_without_the_header_is_decoded_as_before(events: list[Event],
                                                                sweep_every: int) -> None:
    for state in _states(events, sweep_every):
        old = orjson.dumps(state.to_dict())  # as a worker before the header wrote it
        assert stored.read_summary(old, FP) == (False, None)
        back = _fresh(old)
        assert back.to_dict() == state.to_dict()
        codec = DossierStateCodec(CAT.calendar.tz, CAT)
        assert codec.loads(old).to_dict() == state.to_dict()
        assert codec.loads(codec.dumps(state)).to_dict() == state.to_dict()


def _with_calendar(**calendar: Any) -> Catalogue:
    data = copy.deepcopy(CATALOGUE_DATA)
    data["calendar"] = {**data["calendar"], **calendar}
    return parse_catalogue(data)


def test_a_header_of_another_calendar_is_ignored() -> None:
    others = [
        _with_calendar(extra_days_off=["2026-01-07"]),  # a day off announced late
        _with_calendar(extra_working_days=["2026-01-10"]),
        _with_calendar(office_hours=[["08:00", "12:00"], ["13:30", "17:30"]]),
        _with_calendar(due_soon_hours=2),
        _with_calendar(timezone="Asia/Bangkok"),
    ]
    prints = {stored.fingerprint(c) for c in others}
    assert FP not in prints and len(prints) == len(others)
    state = _last(_history())
    data = stored.encode(state, CAT, FP)
    for other in others:
        assert stored.read_summary(data, stored.fingerprint(other)) == (False, None)
    # A header that is not of this format at all is ignored too.
    assert stored.read_summary(b'{"ix":[1,2],"v":1}', FP) == (False, None)
    assert stored.read_summary(b'{"ix":"no end', FP) == (False, None)


def _history() -> list[Event]:
    return [ev("received", "2026-01-05 08:00", DESK)]


def test_the_fingerprint_leaves_out_agencies_and_procedures() -> None:
    data = copy.deepcopy(CATALOGUE_DATA)
    data["agencies"].append({"code": "000.00.99.H99", "name": "Sở mới", "level": "department",
                             "parent": "000.00.00.H99"})
    data["procedures"][0]["total"] = {"days": 7}
    data["procedures"][0]["steps"][1]["allot"] = {"days": 4}
    assert stored.fingerprint(parse_catalogue(data)) == FP


@SETTINGS
@given(histories(), st.integers(1, 4))
def test_the_summary_depends_on_nothing_the_fingerprint_leaves_out(events: list[Event],
                                                                   sweep_every: int) -> None:
    # Same calendar, other agencies and procedure allotments: every state's summary is the
    # same, so a header computed under either catalogue is right under the other.
    data = copy.deepcopy(CATALOGUE_DATA)
    data["agencies"] = data["agencies"][:-1]
    for p in data["procedures"]:
        p["total"] = {"days": 30}
        for step in p["steps"]:
            step["allot"] = {"hours": 1}
    other = parse_catalogue(data)
    assert stored.fingerprint(other) == FP
    for state in _states(events, sweep_every):
        body = orjson.dumps(state.to_dict())
        assert stored.summary_of(_fresh(body), other) == stored.summary_of(_fresh(body), CAT)


def test_the_table_reads_headers_and_decodes_only_what_it_must() -> None:
    running = _last([ev("received", "2026-01-05 08:00", DESK)])
    ended = _last([ev("received", "2026-01-05 08:00", DESK),
                   ev("result_ready", "2026-01-06 08:00", DESK)])
    other_fp = stored.fingerprint(_with_calendar(extra_days_off=["2026-01-07"]))
    codec = DossierStateCodec(CAT.calendar.tz, CAT)
    store = {
        b"header": stored.encode(running, CAT, FP),
        b"ended": stored.encode(ended, CAT, FP),
        b"old": orjson.dumps(running.to_dict()),
        b"other": stored.encode(running, CAT, other_fp),
        b"decoded": _last([ev("received", "2026-01-05 08:00", DESK)]),
    }
    table = DossierTable(SimpleNamespace(data=store), codec)
    got = dict(table.summaries(CAT))
    want = stored.summary_of(_last([ev("received", "2026-01-05 08:00", DESK)]), CAT)
    assert want is not None
    assert got == {b"header": want, b"ended": None, b"old": want, b"other": want,
                   b"decoded": want}
    # Read from the header: still stored bytes. Without a usable header: decoded and kept.
    assert isinstance(store[b"header"], bytes) and isinstance(store[b"ended"], bytes)
    assert isinstance(store[b"old"], DossierState) and isinstance(store[b"other"], DossierState)
    # Received Mon 5 Jan 08:00: the first step (4 h) is due 13:30 (08:00-11:30, 13:00-13:30)
    # and its due_soon fires with 2 h left, at 10:00; the desk holds it, due in the future.
    assert want == (T("2026-01-05 10:00").timestamp(), DESK, T("2026-01-12 08:00").timestamp())


# -- the bulk read's records -------------------------------------------------------------------

_records = st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c", None]),
                              st.one_of(st.none(), st.binary(min_size=1, max_size=4))),
                    max_size=40)


@given(_records, st.integers(1, 40))
def test_the_last_record_of_a_key_wins_and_a_tombstone_deletes_it(
        records: list[tuple[bytes | None, bytes | None]], batch: int) -> None:
    data: dict[Any, Any] = {b"a": b"before", b"z": b"untouched"}
    partitions: dict[Any, int] = {b"a": 3, b"z": 3}
    expected = dict(data)
    for key, value in records:
        if key is None:
            continue
        if value is None:
            expected.pop(key, None)
        else:
            expected[key] = value
    applied = 0
    for i in range(0, len(records), batch):  # in log order, fetched in any batch size
        applied += apply_records(data, partitions, 3, records[i:i + batch])
    assert data == expected
    assert set(partitions) == set(expected)
    assert applied == sum(1 for k, _ in records if k is not None)


def test_the_plan_reads_from_the_record_after_the_last_applied_through_the_highwater() -> None:
    offsets = {"p0": -1, "p1": 41, "p2": 9, "p3": None}
    highwaters = {"p0": 99, "p1": 41, "p2": -1, "p3": 5, "p4": 7}
    assert bulk_plan(offsets, highwaters, ["p0", "p1", "p2", "p3", "p4", "p5"]) == {
        "p0": (0, 99),  # nothing applied: the whole log
        # p1 is up to date, p2's log is empty, p5 has no highwater: nothing to read
        "p3": (0, 5),
        "p4": (0, 7),
    }
