"""``lienthong report`` on the real broker: the status topic is read to its end and the latest
snapshot of each dossier is counted once."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from lienthong.services.cli import main


def snapshot(code: str, state: str, outcome: str, updated: str) -> dict[str, Any]:
    ended = "2026-12-02T10:00:00+07:00" if state == "ended" else None
    return {"dossier": code, "procedure": "1.001193", "procedure_name": "Khai sinh",
            "receiving_agency": "000.00.15.H99", "channel": "desk",
            "applicant": {"name": "Lê Thị Mai", "id_number": "001199000001"},
            "holder": "000.00.15.H99", "state": state,
            "received_at": "2026-12-01T08:00:00+07:00", "due_at": "2026-12-03T09:00:00+07:00",
            "ended_at": ended, "outcome": outcome, "steps": [], "pauses": [],
            "apologies": [], "postal": [], "portal_status": 9 if ended else 4, "timeline": [],
            "updated_at": updated}


@pytest.mark.kafka
def test_report_reads_the_status_topic_to_its_end(
        kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"rep{uuid.uuid4().hex[:8]}."
    topic = prefix + "dossier.status"
    kafka_admin.create_topics([NewTopic(topic, 3, 1)], timeout_ms=10000)
    kafka_admin.wait_for_topics([topic], timeout_ms=15000)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for code, state, outcome, updated in [
            ("D1", "processing", "open", "2026-12-01T08:00:00+07:00"),
            ("D1", "ended", "early", "2026-12-02T10:00:00+07:00"),   # replaces the first
            ("D2", "ended", "late", "2026-12-02T10:00:00+07:00"),
            ("D3", "processing", "open", "2026-12-01T08:00:00+07:00")]:
        producer.send(topic, json.dumps(snapshot(code, state, outcome, updated)).encode(),
                      key=code.encode())
    producer.flush()
    producer.close()
    monkeypatch.setenv("LIENTHONG_TOPIC_PREFIX", prefix)
    out = tmp_path / "r.xlsx"
    assert main(["report", "--bootstrap", kafka_bootstrap, "--from", "2026-12-01", "--to",
                 "2026-12-31", "--format", "xlsx", "--out", str(out), "--timeout", "60",
                 "--now", "2026-12-02T12:00:00+07:00"]) == 0
    wb = openpyxl.load_workbook(io.BytesIO(out.read_bytes()))
    total = list(wb["Kết quả giải quyết"].iter_rows(min_row=4, values_only=True))[-1]
    # 3 dossiers received; D1 early and D2 late ended; D3 open, not yet due: 1 / 2.
    assert total[4:10] == (3, 2, 1, 0, 1, 0.5)
    assert total[13] == 1
