"""The backup procedure, rehearsed on the real broker: a simulated day through a hub (worker and
dashboard), ``lienthong backup``, the hub's topics and files destroyed, ``lienthong restore``
into new topics, worker and dashboard started again: the dashboard's JSON (board, scoreboard
and Decision 766 indicators, alerts, every dossier's tracking slip) is the same, compared by
counts and SHA-256."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient

from lienthong.connectors.simulator.generate import plan
from lienthong.deploy.embedded.broker import free_port
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.ops.auth import Operator, hash_password, save_users
from tests.integration.hub import CATALOGUE, Hub, TopicReader, read_records
from tests.integration.test_province_day import next_saturday_morning

PASSWORD = "mật khẩu đủ dài 2026"
DOSSIERS = 12


def lienthong(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lienthong.services.cli", *args],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


def hub_env(hub: Hub, clock: str) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": hub.bootstrap, "LIENTHONG_TOPIC_PREFIX": hub.prefix,
            "LIENTHONG_PARTITIONS": str(hub.partitions), "LIENTHONG_CLOCK": clock,
            "LIENTHONG_CATALOG": str(CATALOGUE)}


class Dashboard:
    """``lienthong dashboard`` as its own process, signed in as an operator."""

    def __init__(self, hub: Hub, clock: str, users: Path, audit: Path, log: Path) -> None:
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lienthong.services.cli", "dashboard", "--users", str(users),
             "--port", str(port), "--bootstrap", hub.bootstrap, "--audit-log", str(audit),
             "--catalog", str(CATALOGUE)],
            env={**os.environ, **hub_env(hub, clock)}, stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"))  # noqa: SIM115
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.time() + 30
        while True:
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None and time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        r = self.client.post("/login", data={"username": "lan", "password": PASSWORD,
                                              "next": "/"})
        assert r.status_code == 303, r.text

    def view(self, codes: list[str], period: tuple[str, str]) -> dict[str, Any]:
        q = {"from": period[0], "to": period[1]}
        board = self.client.get("/api/board").json()
        board.pop("now", None)  # the dashboard's clock, not the record
        return {"board": board,
                "scoreboard": self.client.get("/api/scoreboard", params=q).json(),
                "scoreboard_steps": self.client.get("/api/scoreboard",
                                                    params={**q, "basis": "step"}).json(),
                # The feed lists alerts as they arrived; across partitions that order is the
                # reader's, so the alerts are compared as a set.
                "alerts": sorted(self.client.get("/api/alerts").json()["alerts"],
                                 key=lambda a: json.dumps(a, sort_keys=True)),
                "deadletters": self.client.get("/api/deadletters").json()["deadletters"],
                "slips": {c: self.client.get(f"/api/dossiers/{c}").json() for c in codes}}

    def settled_view(self, codes: list[str], period: tuple[str, str],
                     complete: Any, timeout: float = 60) -> dict[str, Any]:
        """The view once ``complete(view)`` holds and two reads 1 s apart agree."""
        deadline, last = time.time() + timeout, None
        while time.time() < deadline:
            view = self.view(codes, period)
            if complete(view) and view == last:
                return view
            last = view
            time.sleep(1.0)
        raise AssertionError(f"the dashboard never settled: {json.dumps(last)[:2000]}")

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(15)


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False)
                          .encode()).hexdigest()


def first_difference(x: Any, y: Any, path: str = "") -> str | None:
    """Where two JSON views part (for the failure message)."""
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y), key=str):
            found = first_difference(x.get(k), y.get(k), f"{path}/{k}")
            if found:
                return found
        return None
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            found = first_difference(u, v, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if x == y else f"{path}: {str(x)[:300]} != {str(y)[:300]}"


def records_digest(records: list[Any]) -> tuple[int, str]:
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        h.update(json.dumps([r.partition, r.timestamp, (r.key or b"").hex(),
                             (r.value or b"").hex()]).encode())
    return len(records), h.hexdigest()


def test_a_hub_backed_up_destroyed_and_restored_shows_the_same_dashboard(
        kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path) -> None:
    catalogue = load_catalogue(CATALOGUE)
    start = datetime.fromisoformat("2026-11-25T07:30:00+07:00")
    # Half the dossiers stop before their result: the board has open and overdue work.
    day = plan(catalogue, seed=13, dossiers=DOSSIERS, start=start)
    still_open = set(sorted({e["dossier"] for e in day})[::2])
    events, cut = [], set()
    for e in day:
        if e["dossier"] in still_open and (e["dossier"] in cut or e["type"] in (
                "result_ready", "returned", "withdrawn", "stopped")):
            cut.add(e["dossier"])
            continue
        events.append(e)
    now = next_saturday_morning(max(datetime.fromisoformat(e["at"]) for e in events))
    clock = f"scaled:{now.isoformat()}:1@{time.time()}"
    per_dossier: dict[str, int] = {}
    for e in events:
        per_dossier[e["dossier"]] = per_dossier.get(e["dossier"], 0) + 1
    codes = sorted(per_dossier)
    period = (start.date().isoformat(), now.date().isoformat())

    def complete(view: dict[str, Any]) -> bool:
        return bool(view["deadletters"]) and all(
            len(view["slips"][c].get("timeline", [])) >= n for c, n in per_dossier.items())

    users, audit, keys = tmp_path / "users.yaml", tmp_path / "audit.jsonl", tmp_path / "keys.yaml"
    save_users(users, [Operator("lan", hash_password(PASSWORD, n=2**10), "admin", None, True)])
    keys.write_text("000.00.15.H99:\n  - {key_id: k1, secret: a-secret-of-thirty-two-chars-00}\n")

    # 1. A simulated day through hub A: worker and dashboard.
    a = Hub(kafka_bootstrap, tmp_path / "a")
    a.workdir.mkdir()
    a.create_topics()
    a.publish(events)
    producer = a.producer()  # one malformed record: the day has a dead letter too
    producer.send(a.names.events, key=codes[0].encode(), value=b"not an Avro event",
                  headers=[("source", b"test")])
    producer.flush()
    producer.close()
    a.start_worker(clock=clock)
    dash: Dashboard | None = None
    b: Hub | None = None
    try:
        dash = Dashboard(a, clock, users, audit, tmp_path / "dash-a.log")
        before = dash.settled_view(codes, period, complete)
        assert before["board"]["count"] > 0 and before["alerts"], "a day with overdue work"
        assert before["scoreboard"]["indicators_766"]["received"] == DOSSIERS
        dash.stop()
        dash = None
        events_a = records_digest(read_records(kafka_bootstrap, a.names.events,
                                               len(events) + 1))

        # 2. Back up the running hub.
        out = tmp_path / "backup"
        done = lienthong(["backup", "--out", str(out), "--users", str(users), "--audit-log",
                          str(audit), "--keys-file", str(keys)], hub_env(a, clock))
        assert done.returncode == 0, done.stderr
        assert "dossier.events" in done.stderr and "100.0%" in done.stderr  # the progress bar
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["keys"]["included"] is False
        assert not (out / "files" / "keys").exists(), "no secret without --include-secrets"
        counts = {t["topic"]: t["records"] for t in manifest["topics"]}
        assert counts["dossier.events"] == len(events) + 1
        assert counts["deadletter"] == 1

        # 3. Destroy: hub A's topics, worker, accounts and audit log.
        a.stop_all()
        kafka_admin.delete_topics(list(a.names.all()), timeout_ms=30000)
        audit_before = audit.read_bytes()
        users.unlink()
        audit.unlink()

        # 4. A damaged copy is refused before anything is written.
        damaged = tmp_path / "damaged"
        shutil.copytree(out, damaged)
        with (damaged / "topics" / "dossier.events.jsonl").open("r+b") as f:
            f.seek(40)
            f.write(b"X")
        b = Hub(kafka_bootstrap, tmp_path / "b")
        b.workdir.mkdir()
        refused = lienthong(["restore", str(damaged)], hub_env(b, clock))
        assert refused.returncode == 1 and "SHA-256 differs" in refused.stderr, refused.stderr

        # 5. Restore into new topics (hub B), then a second restore is refused.
        restored_users, restored_audit = b.workdir / "users.yaml", b.workdir / "audit.jsonl"
        args = ["restore", str(out), "--users-to", str(restored_users), "--audit-log-to",
                str(restored_audit), "--catalog-to", str(b.workdir / "catalogue.yaml")]
        done = lienthong(args, hub_env(b, clock))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["restored"] == counts
        again = lienthong([*args, "--audit-log-to", str(b.workdir / "other.jsonl")],
                          hub_env(b, clock))
        assert again.returncode == 1 and "already holds" in again.stderr, again.stderr
        assert restored_audit.read_bytes() == audit_before
        assert (b.workdir / "catalogue.yaml").read_bytes() == CATALOGUE.read_bytes()
        assert records_digest(read_records(kafka_bootstrap, b.names.events,
                                           len(events) + 1)) == events_a

        # 6. The dashboard over the restored topics, then a new worker over them.
        dash = Dashboard(b, clock, restored_users, restored_audit, tmp_path / "dash-b.log")
        restored = dash.settled_view(codes, period, complete)
        assert digest(restored) == digest(before), first_difference(before, restored)
        status_restored = counts["dossier.status"]
        b.start_worker(clock=clock)
        status = TopicReader(kafka_bootstrap, b.names.status)
        try:
            # The new worker (its own app id) re-derives every dossier from dossier.events.
            assert status.until(lambda r: len(r) >= status_restored + len(codes), 90,
                                b.live()), b.log()
        finally:
            status.close()
        after = dash.settled_view(codes, period, complete)
        # The rebuilt worker parks the malformed record again: the dead-letter list then
        # shows it twice (the restored entry and the new one); everything else is the same.
        reparked = after.pop("deadletters")
        expected = {k: v for k, v in before.items() if k != "deadletters"}
        assert digest(after) == digest(expected), first_difference(expected, after)
        assert len(reparked) == 2 and reparked[0]["reason"] == reparked[1]["reason"]
        logins = [json.loads(line)["action"] for line in restored_audit.read_text().splitlines()]
        assert logins.count("login") == 2  # hub A's sign-in survived the restore, then ours
        print(f"backup/restore: {len(events)} events, {len(codes)} dossiers, "
              f"{len(before['alerts'])} alerts, {before['board']['count']} board rows, "
              f"indicators {before['scoreboard']['indicators_766']}; records per topic {counts}; "
              f"dossier.events sha256 {events_a[1][:16]}… identical; dashboard JSON sha256 "
              f"{digest(before)[:16]}… before and after restore; without the dead letters "
              f"{digest(expected)[:16]}… also after the worker rebuilt")
    finally:
        if dash is not None:
            dash.stop()
        a.stop_all()
        if b is not None:
            b.stop_all()
