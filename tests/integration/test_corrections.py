"""A void on the embedded broker: the worker replays the dossier from dossier.events, its
outcome and the province's indicators change, the original stays in the log (bounded ~40 s)."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from lienthong.schemas import codec
from lienthong.services.cli import main
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.ops.auth import Operator, hash_password, save_users
from lienthong.services.ops.board import OpsBoard, Period

from .hub import CATALOGUE, Hub, TopicReader, read_records

COMMUNE, POLICE = "000.00.15.H99", "000.02.10.H99"
ICT = timezone(timedelta(hours=7))
PASSWORD = "mat-khau-dai-2026"


@pytest.fixture
def hub(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Hub]:
    hub = Hub(kafka_bootstrap, tmp_path, partitions=2)
    hub.create_topics()
    yield hub
    hub.stop_all()


def ev(etype: str, dossier: str, at: datetime, agency: str = COMMUNE,
       **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": etype, "dossier": dossier,
            "at": at.isoformat(), "agency": agency, **extra}


def latest_snapshots(records: list[Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        out[r.key.decode()] = json.loads(r.value)
    return out


def test_a_void_recomputes_the_outcome_and_the_indicators(
        hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Two dossiers received 10 working days ago (due 5 working days later, long past). One
    # really ended early; on the other a result was entered by mistake: both count as early
    # until the mistake is voided, which leaves that dossier open and overdue.
    received_at = datetime.now(ICT).replace(microsecond=0) - timedelta(days=14)
    day = received_at.strftime("%Y%m%d")
    good, wrong = f"{COMMUNE}-{day}-0000001", f"{COMMUNE}-{day}-0000002"
    applicant = {"name": "Nguyễn Văn A", "id_number": "001099012345"}
    mistake = ev("result_ready", wrong, received_at + timedelta(hours=2), POLICE,
                 decision="approved")
    events = []
    for code in (good, wrong):
        events += [ev("received", code, received_at, procedure="1.001193", channel="desk",
                      applicant=applicant),
                   ev("handoff", code, received_at + timedelta(hours=1), to_agency=POLICE)]
    events += [ev("result_ready", good, received_at + timedelta(hours=2), POLICE,
                  decision="approved"), mistake]
    hub.start_worker()
    hub.publish(events)
    status = TopicReader(hub.bootstrap, hub.names.status)

    def ended(records: list[Any]) -> bool:
        snaps = latest_snapshots(records)
        return all(snaps.get(c, {}).get("state") == "ended" for c in (good, wrong))

    try:
        assert status.until(ended, 60, hub.workers), hub.log()
        catalogue = load_catalogue(CATALOGUE)
        now = datetime.now(ICT)
        period = Period(received_at.date() - timedelta(days=1), date.today())

        def indicators(records: list[Any]) -> Any:
            board = OpsBoard(catalogue)
            for snap in latest_snapshots(records).values():
                board.apply_snapshot(snap)
            return board.indicators(period, now)

        before = indicators(status.records)
        assert before.on_time_rate == 1.0 and before.judged == 2

        users = tmp_path / "users.yaml"
        save_users(users, [Operator("lan.nguyen", hash_password(PASSWORD), "operator",
                                    may_correct=True),
                           Operator("viewer.tran", hash_password(PASSWORD), "viewer")])
        audit_log = tmp_path / "audit.jsonl"
        monkeypatch.setenv("LIENTHONG_TOPIC_PREFIX", hub.prefix)
        monkeypatch.setenv("LIENTHONG_PARTITIONS", str(hub.partitions))
        monkeypatch.setenv("LIENTHONG_CATALOG", str(CATALOGUE))
        argv = ["correct", "--bootstrap", hub.bootstrap, "--users", str(users),
                "--audit-log", str(audit_log), "--wait", "30", "void", wrong,
                mistake["event_id"], "--reason", "Nhập kết quả nhầm hồ sơ",
                "--password-stdin"]

        # A viewer may not void: nothing is published.
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert main([*argv, "--operator", "viewer.tran"]) == 1
        assert "may not void" in capsys.readouterr().err

        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert main([*argv, "--operator", "lan.nguyen"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "applied" in out and "overdue" in out

        status.until(lambda r: latest_snapshots(r)[wrong]["state"] == "processing", 10)
        snap = latest_snapshots(status.records)[wrong]
        assert snap["state"] == "processing" and snap["outcome"] == "overdue"
        assert snap["late_agencies"] == [POLICE]
        notes = {e["event_id"]: e["note"] for e in snap["timeline"]}
        assert notes[mistake["event_id"]] == "voided"
        after = indicators(status.records)
        assert after.on_time_rate == 0.5 and after.judged == 2

        # The original stays in the log, beside the void; the overdue alert comes now.
        logged = [codec.decode_event(r.value)
                  for r in read_records(hub.bootstrap, hub.names.events, len(events) + 1)]
        assert mistake["event_id"] in {e["event_id"] for e in logged}
        voids = [e for e in logged if e["type"] == "event_voided"]
        assert [(v["voided_event_id"], v["operator"]) for v in voids] == [
            (mistake["event_id"], "lan.nguyen")]
        alerts = [codec.decode_alert(r.value)
                  for r in read_records(hub.bootstrap, hub.names.alerts, 1, timeout=10)]
        assert any(a["dossier"] == wrong and a["kind"] == "overdue" and a["scope"] == "dossier"
                   for a in alerts)
        # The operator audit log names who did it and why.
        entries = [json.loads(line) for line in audit_log.read_text().splitlines()]
        done = [e for e in entries if e["action"] == "event_voided"]
        assert [(e["user"], e["dossier"], e["target"]) for e in done] == [
            ("lan.nguyen", wrong, mistake["event_id"])]
        assert any(e["action"] == "event_voided_forbidden" and e["user"] == "viewer.tran"
                   for e in entries)

        # A correction the dossier's later events contradict is refused, with the reason:
        # the good dossier's hand-off "corrected" to social insurance, though the police
        # (its recipient) entered the result since.
        handoff = next(e for e in events if e["dossier"] == good and e["type"] == "handoff")
        fixed = tmp_path / "handoff.json"
        fixed.write_text(json.dumps({k: v for k, v in handoff.items() if k != "event_id"}
                                    | {"to_agency": "000.03.10.H99"}), encoding="utf-8")
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert main([*argv[:9], "replace", good, handoff["event_id"], "--reason",
                     "Chuyển nhầm cơ quan", "--event", str(fixed), "--password-stdin",
                     "--operator", "lan.nguyen"]) == 1
        err = capsys.readouterr().err
        assert "correction_conflict" in err and "not_holder" in err, err
        assert latest_snapshots(status.records)[good]["state"] == "ended"
        assert hub.workers[0].poll() is None
    finally:
        status.close()
