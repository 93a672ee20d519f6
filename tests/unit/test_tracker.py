"""The tracker shell: outputs first, state after; dead letters; the sweeper without traffic."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lienthong.schemas import codec
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.processors.tracker import InMemoryStates, SourceRecord, Tracker

CATALOGUE = load_catalogue(Path(__file__).parents[2] / "examples" / "province-h99.yaml")
COMMUNE, POLICE = "000.00.15.H99", "000.02.10.H99"
CODE = "000.00.15.H99-20261125-0000007"


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


class RecordingOutputs:
    """Acknowledges every record at once, and fails on demand."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.fail = False

    async def send_all(self, records: Any) -> list[Any]:
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.extend((kind, key, value) for kind, key, value, _ in records)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done]

    def of(self, kind: str) -> list[dict[str, Any]]:
        by = {"delivery": codec.DELIVERIES, "alert": codec.ALERTS,
              "deadletter": codec.DEADLETTERS}[kind]
        return [by.decode(v) for k, _, v in self.sent if k == kind]


def event(etype: str, at: str, agency: str = COMMUNE, **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": etype, "dossier": CODE, "at": at,
            "agency": agency, **extra}


def received(at: str) -> dict[str, Any]:
    return event("received", at, procedure="1.001193", channel="desk",
                 applicant={"name": "Nguyễn Văn A", "id_number": "001099012345"})


def records(*events: dict[str, Any], start: int = 0) -> list[SourceRecord]:
    return [SourceRecord("dossier.events", 0, start + i, CODE.encode(),
                         codec.EVENTS.encode(e)) for i, e in enumerate(events)]


def make(now: str) -> tuple[Tracker, RecordingOutputs, InMemoryStates, FixedClock]:
    outputs = RecordingOutputs()
    states = InMemoryStates()
    clock = FixedClock(datetime.fromisoformat(now))
    return Tracker(catalogue=CATALOGUE, clock=clock, states=states, outputs=outputs,
                   partitions=8), outputs, states, clock


async def test_a_handoff_is_delivered_to_its_recipient_and_synced_to_the_portal() -> None:
    tracker, outputs, states, _ = make("2026-11-25T10:00:00+07:00")
    await tracker.handle(records(received("2026-11-25T09:15:00+07:00"),
                                 event("handoff", "2026-11-25T09:45:00+07:00", to_agency=POLICE)))
    deliveries = outputs.of("delivery")
    assert [(d["destination"], d["kind"]) for d in deliveries if d["kind"] == "handoff"] == [
        (POLICE, "handoff")]
    assert {d["destination"] for d in deliveries} == {POLICE, "DVCQG"}
    assert states[CODE.encode()].holder == POLICE
    assert outputs.sent[-1][0] == "status"  # the snapshot goes out with the batch


async def test_the_same_event_twice_is_applied_once() -> None:
    tracker, outputs, states, _ = make("2026-11-25T10:00:00+07:00")
    first = received("2026-11-25T09:15:00+07:00")
    await tracker.handle(records(first, first))
    assert len(states[CODE.encode()].timeline) == 1
    assert outputs.of("deadletter") == []


async def test_an_illegal_event_goes_to_the_dead_letter_topic_with_its_reason() -> None:
    tracker, outputs, states, _ = make("2026-11-25T10:00:00+07:00")
    orphan = event("handoff", "2026-11-25T09:45:00+07:00", to_agency=POLICE)
    batch = records(orphan)
    await tracker.handle(batch)
    [letter] = outputs.of("deadletter")
    assert letter["reason"] == "unknown_dossier"
    assert letter["original"] == batch[0].value and letter["offset"] == 0
    assert states == {}


async def test_undecodable_bytes_are_dead_lettered_and_processing_goes_on() -> None:
    tracker, outputs, states, _ = make("2026-11-25T10:00:00+07:00")
    garbage = SourceRecord("dossier.events", 0, 0, CODE.encode(), b"\x00not avro")
    await tracker.handle([garbage, *records(received("2026-11-25T09:15:00+07:00"), start=1)])
    [letter] = outputs.of("deadletter")
    assert letter["original"] == b"\x00not avro"
    assert CODE.encode() in states


async def test_state_is_not_written_when_its_outputs_were_not_acknowledged() -> None:
    tracker, outputs, states, _ = make("2026-11-25T10:00:00+07:00")
    outputs.fail = True
    with pytest.raises(ConnectionError):
        await tracker.handle(records(received("2026-11-25T09:15:00+07:00")))
    assert states == {}


async def test_the_sweeper_raises_overdue_with_no_new_event_and_only_once() -> None:
    # Received Wed 25 Nov 2026 09:15; the first step (4 working hours) is due 14:45
    # (09:15→11:30 is 2h15, 13:00→14:45 is 1h45). due_soon for it (min(4h, 2h)=2h) at 11:30.
    tracker, outputs, _, clock = make("2026-11-25T09:15:00+07:00")
    await tracker.handle(records(received("2026-11-25T09:15:00+07:00")))
    clock.current = datetime.fromisoformat("2026-11-25T14:45:00+07:00")
    raised = await tracker.sweep()
    alerts = outputs.of("alert")
    kinds = sorted((a["kind"], a["scope"]) for a in alerts)
    assert ("overdue", "step") in kinds and ("due_soon", "step") in kinds
    assert raised == len(alerts)
    overdue = next(a for a in alerts if a["kind"] == "overdue")
    assert overdue["due_at"] == "2026-11-25T14:45:00+07:00"
    clock.current += timedelta(minutes=1)
    assert await tracker.sweep() == 0
    assert len(outputs.of("alert")) == len(alerts)


async def test_the_index_is_rebuilt_from_the_table_for_owned_partitions_only() -> None:
    tracker, _, _, _ = make("2026-11-25T10:00:00+07:00")
    await tracker.handle(records(received("2026-11-25T09:15:00+07:00")))
    from lienthong.services.processors.partitioning import partition_of

    mine = partition_of(CODE.encode(), 8)
    assert tracker.rebuild_index({mine}) == 1
    assert tracker.rebuild_index(set(range(8)) - {mine}) == 0


async def test_open_and_overdue_dossiers_are_counted_per_holding_agency() -> None:
    # Received Wed 25 Nov 09:15 (dossier due 5 working days later, Wed 2 Dec 09:15), handed to
    # the police at 09:45. On Thu 3 Dec the dossier is overdue, held by the police.
    tracker, _, _, clock = make("2026-11-25T10:00:00+07:00")
    await tracker.handle(records(received("2026-11-25T09:15:00+07:00"),
                                 event("handoff", "2026-11-25T09:45:00+07:00", to_agency=POLICE)))
    police = (POLICE, "vertical")
    assert (tracker.holdings.open(police), tracker.holdings.overdue(police)) == (1, 0)
    assert tracker.holdings.open((COMMUNE, "commune")) == 0
    clock.current = datetime.fromisoformat("2026-12-03T09:00:00+07:00")
    await tracker.sweep()
    assert (tracker.holdings.open(police), tracker.holdings.overdue(police)) == (1, 1)
    tracker.rebuild_index(range(8))  # a rebalance recounts from the table: same figures
    assert (tracker.holdings.open(police), tracker.holdings.overdue(police)) == (1, 1)


async def test_the_index_takes_the_partition_the_table_recovered_a_key_from() -> None:
    # The table knows the key came from partition p: it is indexed there, not hashed.
    from lienthong.services.processors.partitioning import partition_of

    tracker, _, states, _ = make("2026-11-25T10:00:00+07:00")
    await tracker.handle(records(received("2026-11-25T09:15:00+07:00")))
    hashed = partition_of(CODE.encode(), 8)
    recovered = (hashed + 3) % 8
    states.partitions = {CODE.encode(): recovered}
    assert tracker.rebuild_index({recovered}) == 1
    assert tracker.index.partitions() == {recovered}
    assert tracker.rebuild_index({hashed}) == 0


async def test_a_recount_gives_the_counts_of_following_every_change() -> None:
    from lienthong.services.processors.holdings import Holdings

    tracker, _, states, clock = make("2026-11-25T10:00:00+07:00")
    for i in range(6):
        code = f"000.00.15.H99-20261125-{i:07d}"
        e = received("2026-11-25T09:15:00+07:00") | {"dossier": code}
        moves = [e]
        if i % 2:
            moves.append(event("handoff", "2026-11-25T09:45:00+07:00", to_agency=POLICE)
                         | {"dossier": code})
        if i == 5:
            moves.append(event("withdrawn", "2026-11-25T09:50:00+07:00", reason="rút")
                         | {"dossier": code})
        await tracker.handle([SourceRecord("dossier.events", 0, n, code.encode(),
                                           codec.EVENTS.encode(m)) for n, m in enumerate(moves)])
    clock.current = datetime.fromisoformat("2026-12-03T09:00:00+07:00")
    followed = Holdings(CATALOGUE)
    followed.update(states.items(), clock.now())
    recounted = Holdings(CATALOGUE)
    recounted.recount(states.items(), clock.now())
    for label in [(COMMUNE, "commune"), (POLICE, "vertical")]:
        assert (recounted.open(label), recounted.overdue(label)) == (
            followed.open(label), followed.overdue(label))
    # three at the commune, two with the police (the third withdrawn), all overdue by 3 Dec
    assert (recounted.open((COMMUNE, "commune")), recounted.overdue((COMMUNE, "commune"))) == (
        3, 3)
    assert (recounted.open((POLICE, "vertical")), recounted.overdue((POLICE, "vertical"))) == (
        2, 2)


async def test_a_rebuild_in_steps_lets_the_event_loop_run_and_indexes_the_same() -> None:
    tracker, _, _, _ = make("2026-11-25T10:00:00+07:00")
    for i in range(25):
        code = f"000.00.15.H99-20261125-{i:07d}"
        e = received("2026-11-25T09:15:00+07:00") | {"dossier": code}
        await tracker.handle([SourceRecord("dossier.events", 0, i, code.encode(),
                                           codec.EVENTS.encode(e))])
    at_once = tracker.rebuild_index(range(8))
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    beside = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    started = turns
    in_steps = await tracker.rebuild_index_in_steps(range(8), step=10)
    beside.cancel()
    assert in_steps == at_once == 25
    assert turns - started >= 2  # 25 states in steps of 10: the loop ran between them
    assert tracker.holdings.open((COMMUNE, "commune")) == 25


async def test_the_snapshot_names_the_applicant_and_the_changelog_keeps_it() -> None:
    # The dashboard's applicant column and its search by ID number read the snapshot.
    import json

    from lienthong.services.domain.dossier import DossierState
    from lienthong.services.processors.snapshot import snapshot

    tracker, outputs, states, clock = make("2026-11-25T10:00:00+07:00")
    await tracker.handle(records(received("2026-11-25T09:15:00+07:00")))
    [status] = [json.loads(v) for k, _, v in outputs.sent if k == "status"]
    assert status["applicant"] == {"name": "Nguyễn Văn A", "id_number": "001099012345"}
    state = states[CODE.encode()]
    again = DossierState.from_dict(json.loads(json.dumps(state.to_dict())),
                                   CATALOGUE.calendar.tz)
    assert json.loads(snapshot(again, CATALOGUE, clock.now())) == json.loads(
        snapshot(state, CATALOGUE, clock.now()))
