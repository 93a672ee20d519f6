"""The audit chain service on the embedded broker: a province day is chained and verifies; one
altered record is named; a dossier export checks out alone; kill -9 loses and repeats nothing."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lienthong.connectors.simulator.generate import plan
from lienthong.deploy.embedded import EmbeddedKafka
from lienthong.schemas import codec
from lienthong.services.audit import chain
from lienthong.services.audit.entries import create_audit_key
from lienthong.services.audit.verify import read_log
from lienthong.services.cli import main as cli_main
from lienthong.services.domain.catalogue import load_catalogue
from tests.integration.hub import CATALOGUE, Hub, TopicReader
from tests.integration.test_province_day import next_saturday_morning

pytestmark = pytest.mark.kafka


_READERS: dict[str, KafkaConsumer] = {}


@pytest.fixture(autouse=True)
def _close_readers() -> Any:
    yield
    while _READERS:
        _READERS.popitem()[1].close()


def committed_count(bootstrap: str, topics: list[str]) -> int:
    """Records a read_committed reader sees in ``topics`` (transaction markers left out).

    One reader per broker for the whole test: a new kafka-python consumer every 50 ms left
    enough behind in this process for later tests' consumer groups to stop rebalancing."""
    consumer = _READERS.get(bootstrap)
    if consumer is None:
        consumer = _READERS[bootstrap] = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False,
            isolation_level="read_committed")
    tps = [TopicPartition(t, p) for t in topics
           for p in sorted(consumer.partitions_for_topic(t) or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    n = 0
    deadline = time.monotonic() + 30
    while any(consumer.position(tp) < end[tp] for tp in tps):
        assert time.monotonic() < deadline
        for records in consumer.poll(timeout_ms=300, max_records=20000).values():
            n += len(records)
    return n


def sources(hub: Hub) -> list[str]:
    n = hub.names
    return [n.events, n.deliveries, n.receipts, n.alerts, n.deadletter, n.operator_actions]


def start_chain(hub: Hub, key: Path, log_name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": hub.bootstrap,
           "LIENTHONG_TOPIC_PREFIX": hub.prefix, "LIENTHONG_AUDIT_KEY": str(key)}
    log = open(hub.workdir / log_name, "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "lienthong.services.cli", "audit", "chain",
                             "--checkpoint-seconds", "1"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=hub.workdir)


def wait_chained(hub: Hub, proc: subprocess.Popen[bytes], timeout: float,
                 log_name: str) -> int:
    """Wait until audit.log holds one entry per source record; returns that count."""
    deadline = time.monotonic() + timeout
    while True:
        want = committed_count(hub.bootstrap, sources(hub))
        have = committed_count(hub.bootstrap, [hub.names.audit_log])
        if have == want and want > 0:
            return have
        assert proc.poll() is None, (hub.workdir / log_name).read_text()[-3000:]
        assert time.monotonic() < deadline, f"{have} of {want} chained"
        time.sleep(0.5)


def audit_cli(monkeypatch: pytest.MonkeyPatch, hub: Hub, capsys: pytest.CaptureFixture[str],
              *args: str) -> tuple[int, str]:
    monkeypatch.setenv("LIENTHONG_TOPIC_PREFIX", hub.prefix)
    code = cli_main(["audit", *args])
    return code, capsys.readouterr().out


def test_a_province_day_is_chained_verifies_and_one_altered_record_is_named(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    catalogue = load_catalogue(CATALOGUE)
    events = plan(catalogue, seed=12, dossiers=25,
                  start=datetime.fromisoformat("2026-11-25T07:30:00+07:00"))
    hub = Hub(kafka_bootstrap, tmp_path)
    hub.create_topics()
    key_file = tmp_path / "audit-2026.pem"
    create_audit_key(key_file)
    now = next_saturday_morning(max(datetime.fromisoformat(e["at"]) for e in events))
    hub.publish(events)
    operator = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for line in (b'{"action":"login","user":"dieuhanh"}',
                 b'{"action":"resend","user":"dieuhanh","offset":7}'):
        operator.send(hub.names.operator_actions, value=line, key=b"dieuhanh")
    operator.close()
    hub.start_worker(clock=f"scaled:{now.isoformat()}:1@{time.time()}")
    status = TopicReader(hub.bootstrap, hub.names.status)
    chainer = start_chain(hub, key_file, "chain.log")
    try:
        per_dossier: dict[str, int] = {}
        for e in events:
            per_dossier[e["dossier"]] = per_dossier.get(e["dossier"], 0) + 1
        latest: dict[str, Any] = {}

        def applied(records: list[Any]) -> bool:
            for r in records:
                latest[r.key.decode()] = json.loads(r.value)
            records.clear()
            return len(latest) == len(per_dossier) and all(
                len(latest[d]["timeline"]) >= n for d, n in per_dossier.items())

        assert status.until(applied, 90, hub.live()), hub.log()
        chained = wait_chained(hub, chainer, 60, "chain.log")
    finally:
        status.close()
        hub.stop_all()
        chainer.send_signal(signal.SIGTERM)  # a clean stop signs a last checkpoint
        chainer.wait(20)
    assert chained >= len(events)

    code, out = audit_cli(monkeypatch, hub, capsys, "verify", "--bootstrap", kafka_bootstrap,
                          "--audit-key", str(key_file))
    report = json.loads(out)
    assert code == 0, report
    assert report["entries"] == chained and report["checkpoints"] >= 1
    logged = read_log(kafka_bootstrap, hub.names.audit_log, hub.names.audit_checkpoints)
    kinds = {chain.read_entry(v)["source_kind"] for values in logged.partitions.values()
             for _, v in values}
    assert {"event", "delivery", "alert", "operator"} <= kinds

    copy = tmp_path / "copy.jsonl"
    assert audit_cli(monkeypatch, hub, capsys, "copy", "--bootstrap", kafka_bootstrap,
                     "--out", str(copy))[0] == 0
    lines = copy.read_text().splitlines()
    # Alter the content of one entry in the middle of the copy: its event's `at`, say.
    target = next(i for i, line in enumerate(lines[len(lines) // 2:], len(lines) // 2)
                  if "entry" in json.loads(line))
    row = json.loads(lines[target])
    raw = bytearray(base64.b64decode(row["entry"]))
    raw[90] ^= 0x01
    lines[target] = json.dumps({**row, "entry": base64.b64encode(bytes(raw)).decode()})
    copy.write_text("\n".join(lines) + "\n")
    code, out = audit_cli(monkeypatch, hub, capsys, "verify", "--copy", str(copy),
                          "--audit-key", str(key_file))
    report = json.loads(out)
    assert code == 1
    seq = read_log(kafka_bootstrap, hub.names.audit_log, hub.names.audit_checkpoints)
    offsets = [o for o, _ in seq.partitions[row["partition"]]]
    named = f"partition {row['partition']}, entry {offsets.index(row['offset'])}: " \
            f"content_mismatch"
    assert report["problems"][0].startswith(f"{hub.names.audit_log} {named}"), report
    assert f"(Kafka offset {row['offset']})" in report["problems"][0]

    # One dossier's export checks out with chain.py alone, and fails once altered.
    dossier = next(e["dossier"] for e in events if e["type"] == "handoff")
    code, out = audit_cli(monkeypatch, hub, capsys, "export", "--bootstrap", kafka_bootstrap,
                          "--audit-key", str(key_file), "--dossier", dossier, "--out",
                          str(tmp_path / "out"))
    assert code == 0, out
    export_file = tmp_path / "out" / f"{dossier}.json"
    html = (tmp_path / "out" / f"{dossier}.html").read_text()
    assert "Phiếu kiểm soát" in html and dossier in html
    result = subprocess.run([sys.executable, str(Path(chain.__file__)), str(export_file)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # The chain service writes entries of version 2: none of the dossier's is left out.
    assert "\ncompleteness proven for partition " in result.stdout, result.stdout
    export = json.loads(export_file.read_text())
    kinds = {r["source_kind"] for r in export["records"]}
    assert {"event", "delivery"} <= kinds
    assert all(r["dossier"] == dossier for r in export["records"])
    link = next(link for link in export["segment"]["links"] if "entry" in link)
    raw = bytearray(base64.b64decode(link["entry"]))
    raw[80] ^= 0x04
    link["entry"] = base64.b64encode(bytes(raw)).decode()
    export_file.write_text(json.dumps(export))
    result = subprocess.run([sys.executable, str(Path(chain.__file__)), str(export_file)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 1 and "content_mismatch" in result.stdout, result.stdout


def test_the_chain_service_killed_with_sigkill_resumes_exactly_once(tmp_path: Path) -> None:
    # On a broker of its own: after this transactional writer is killed mid-transaction, new
    # kafka-python groups on the shared test broker were seen not to settle for over 20 s.
    with EmbeddedKafka() as kafka:
        _killed_and_resumed(kafka.bootstrap, tmp_path)


def _killed_and_resumed(kafka_bootstrap: str, tmp_path: Path) -> None:
    hub = Hub(kafka_bootstrap, tmp_path, partitions=3)
    hub.create_topics()
    key_file = tmp_path / "audit.pem"
    create_audit_key(key_file)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)

    def burst(n: int, start: int) -> None:
        for i in range(start, start + n):
            e = {"event_id": f"00000000-0000-4000-8000-{i:012d}", "type": "received",
                 "dossier": f"000.00.15.H99-20261125-{i:07d}",
                 "at": "2026-11-25T09:15:00+07:00", "agency": "000.00.15.H99",
                 "procedure": "1.001193", "channel": "desk",
                 "applicant": {"name": "Nguyễn Văn A", "id_number": "001099012345"}}
            producer.send(hub.names.events, key=e["dossier"].encode(),
                          value=codec.encode_event(e))
        producer.flush()

    burst(4000, 0)
    first = start_chain(hub, key_file, "chain1.log")
    try:
        deadline = time.monotonic() + 40
        while committed_count(kafka_bootstrap, [hub.names.audit_log]) < 500:
            assert first.poll() is None, (tmp_path / "chain1.log").read_text()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        burst(2000, 4000)  # more arrives while it works, then it dies mid-stream
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        partial = committed_count(kafka_bootstrap, [hub.names.audit_log])
        burst(1000, 6000)
        second = start_chain(hub, key_file, "chain2.log")
        try:
            total = wait_chained(hub, second, 60, "chain2.log")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
        producer.close()
    assert 0 < partial < 7000 and total == 7000

    copy = read_log(kafka_bootstrap, hub.names.audit_log, hub.names.audit_checkpoints)
    seen = [(e["source_topic"], e["source_partition"], e["source_offset"])
            for values in copy.partitions.values()
            for e in (chain.read_entry(v) for _, v in values)]
    assert len(seen) == len(set(seen)) == 7000  # none twice, none missing
    for p, values in copy.partitions.items():
        result = chain.verify_run(v for _, v in values)
        assert result.ok, (p, result.mismatch)
        seqs = [chain.read_entry(v)["seq"] for _, v in values]
        assert seqs == list(range(len(values)))
