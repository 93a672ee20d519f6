"""The tracker applies voids and corrections by replaying the dossier's events from the log."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from lienthong.schemas import codec
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.processors.history import InMemoryHistory
from lienthong.services.processors.tracker import InMemoryStates, SourceRecord, Tracker
from tests.unit.test_tracker import FixedClock, RecordingOutputs, event, received

CATALOGUE = load_catalogue(Path(__file__).parents[2] / "examples" / "province-h99.yaml")
COMMUNE, POLICE, PROVINCE = "000.00.15.H99", "000.02.10.H99", "000.00.00.H99"
CODE = "000.00.15.H99-20261125-0000007"
TOPIC = "dossier.events"


class Log:
    """Records written to one partition, and what the tracker's history reader sees."""

    def __init__(self) -> None:
        self.history = InMemoryHistory()
        self.offset = 0

    def records(self, *events: dict[str, Any]) -> list[SourceRecord]:
        out = []
        for e in events:
            value = codec.EVENTS.encode(e)
            self.history.append(TOPIC, 0, self.offset, CODE.encode(), value)
            out.append(SourceRecord(TOPIC, 0, self.offset, CODE.encode(), value))
            self.offset += 1
        return out


def make(now: str) -> tuple[Tracker, RecordingOutputs, InMemoryStates, Log]:
    log = Log()
    outputs, states = RecordingOutputs(), InMemoryStates()
    tracker = Tracker(catalogue=CATALOGUE, clock=FixedClock(datetime.fromisoformat(now)),
                      states=states, outputs=outputs, partitions=8, history=log.history)
    return tracker, outputs, states, log


def status(outputs: RecordingOutputs) -> dict[str, Any]:
    last = [v for k, _, v in outputs.sent if k == "status"][-1]
    return dict(json.loads(last))


def void(target: dict[str, Any], at: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "event_voided", "dossier": CODE, "at": at,
            "agency": PROVINCE, "voided_event_id": target["event_id"], "reason": "Nhập nhầm",
            "operator": "lan.nguyen", **extra}


async def test_a_void_recomputes_the_dossier_and_its_snapshot() -> None:
    # Received Wednesday 25 November 2026 09:15; a result entered by mistake on Thursday.
    tracker, outputs, _states, log = make("2026-12-10T09:00:00+07:00")
    wrong = event("result_ready", "2026-11-26T09:00:00+07:00", decision="approved")
    first = [received("2026-11-25T09:15:00+07:00"),
             event("handoff", "2026-11-25T10:00:00+07:00", to_agency=POLICE),
             {**wrong, "agency": POLICE}]
    await tracker.handle(log.records(*first))
    assert status(outputs)["state"] == "ended"
    sent_before = len(outputs.of("delivery"))

    v = void(first[2], "2026-12-10T09:00:00+07:00")
    await tracker.handle(log.records(v))
    snap = status(outputs)
    assert snap["state"] == "processing" and snap["outcome"] == "overdue"
    assert snap["holder"] == POLICE
    notes = [(e["type"], e["note"]) for e in snap["timeline"]]
    assert notes[2] == ("result_ready", "voided")
    assert notes[3] == ("event_voided", first[2]["event_id"])
    # The portal hears the dossier is processing again; no delivery is sent twice.
    new = outputs.of("delivery")[sent_before:]
    assert [(d["kind"], d["payload"].get("status")) for d in new] == [("portal_status", 4)]
    kinds = {(a["kind"], a["scope"]) for a in outputs.of("alert")}
    assert ("overdue", "dossier") in kinds
    assert outputs.of("deadletter") == []
    # The redelivered void changes nothing.
    count = len(outputs.sent)
    await tracker.handle([SourceRecord(TOPIC, 0, 3, CODE.encode(), codec.EVENTS.encode(v))])
    assert [k for k, _, _ in outputs.sent[count:]] == []


async def test_a_void_that_cannot_apply_is_a_dead_letter_with_its_reason() -> None:
    tracker, outputs, states, log = make("2026-11-25T11:00:00+07:00")
    first = [received("2026-11-25T09:15:00+07:00"),
             event("handoff", "2026-11-25T10:00:00+07:00", to_agency=POLICE)]
    await tracker.handle(log.records(*first))
    before = states[CODE.encode()].to_dict()
    await tracker.handle(log.records(void(first[0], "2026-11-25T10:30:00+07:00")))
    letters = outputs.of("deadletter")
    assert [d["reason"] for d in letters] == ["invalid_correction"]
    assert "receipt" in letters[0]["detail"]
    assert states[CODE.encode()].to_dict() == before


async def test_a_correction_in_the_same_batch_as_the_event_it_corrects() -> None:
    tracker, outputs, states, log = make("2026-11-25T11:00:00+07:00")
    wrong = event("handoff", "2026-11-25T10:00:00+07:00", to_agency="000.03.10.H99")
    fix = {**event("handoff", "2026-11-25T10:00:00+07:00", to_agency=POLICE),
           "corrects_event_id": wrong["event_id"], "operator": "lan.nguyen",
           "correction_reason": "Chuyển nhầm cơ quan"}
    await tracker.handle(log.records(received("2026-11-25T09:15:00+07:00"), wrong, fix))
    state = states[CODE.encode()]
    assert state.holder == POLICE and [s.agency for s in state.steps] == [COMMUNE, POLICE]
    handoffs = [d["destination"] for d in outputs.of("delivery") if d["kind"] == "handoff"]
    assert handoffs == ["000.03.10.H99", POLICE]  # the wrong one was already sent
