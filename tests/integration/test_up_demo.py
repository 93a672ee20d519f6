"""``lienthong up`` as a newcomer sees it: a province day that unfolds now.

The whole demo runs as its own processes (doubles, gateway, worker, delivery, dashboard,
simulator) on the session broker, at 600x (a working hour every 6 s), for a bounded time. From
the dashboard's own JSON and HTML and from the alerts topic: the header says the time is
simulated, the board holds both due-soon and overdue items without being all red, an overdue
alert fires for a due instant that the shared clock passes while the test watches, and the
scoreboard's rates fill in.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from lienthong.deploy.embedded.broker import free_port
from lienthong.schemas import topics
from lienthong.services.settings import Settings
from tests.integration.hub import CATALOGUE, TopicReader, decoded

START = "2026-12-03T07:30:00+07:00"  # a Thursday's office opening
SPEED = 600
WATCH_SECONDS = 40  # after the banner: the board, alerts and scoreboard must show by then


def _banner(proc: subprocess.Popen[str], out: list[str], timeout: float) -> str:
    """Read up's console until it prints the demo password; return it."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            out.append(line)
            found = re.search(r"sign in as 'demo', password (\S+)", line)
            if found:
                return found.group(1)
            continue
        assert proc.poll() is None, "".join(out)
        time.sleep(0.2)
    raise AssertionError("no demo account on the console:\n" + "".join(out))


def test_up_shows_a_province_day_unfolding_with_due_soon_overdue_and_alerts_firing(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"up{uuid.uuid4().hex[:8]}."
    ports = {name: free_port() for name in ("gateway", "dashboard", "worker", "doubles",
                                            "delivery")}
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "LIENTHONG_TOPIC_PREFIX": prefix, "LIENTHONG_APP_ID": f"{prefix}worker",
           "LIENTHONG_PARTITIONS": "4", "LIENTHONG_CATALOG": str(CATALOGUE),
           "LIENTHONG_GATEWAY_PORT": str(ports["gateway"]),
           "LIENTHONG_DASHBOARD_PORT": str(ports["dashboard"]),
           "LIENTHONG_WORKER_PORT": str(ports["worker"]), "PYTHONUNBUFFERED": "1"}
    env.pop("LIENTHONG_CLOCK", None)
    env.pop("LIENTHONG_DASHBOARD_USERS", None)
    names = topics.names(Settings(topic_prefix=prefix))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lienthong.services.cli", "up", "--data-dir", str(tmp_path),
         "--speed", str(SPEED), "--start", START, "--per-hour", "15", "--backlog-days", "3",
         "--doubles-port", str(ports["doubles"]),
         "--delivery-metrics-port", str(ports["delivery"])],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    console: list[str] = []
    alerts: TopicReader | None = None
    seen: dict[str, Any] = {}
    try:
        password = _banner(proc, console, timeout=60)
        text = "".join(console)
        assert f"http://127.0.0.1:{ports['dashboard']}/" in text
        assert "SIMULATED, 600x real time from 07:30 03/12/2026" in text
        alerts = TopicReader(kafka_bootstrap, names.alerts)
        start = datetime.fromisoformat(START)
        web = httpx.Client(base_url=f"http://127.0.0.1:{ports['dashboard']}", timeout=10)
        r = web.post("/login", data={"username": "demo", "password": password, "next": "/"})
        assert r.status_code == 303, r.text

        def look() -> bool:
            board = web.get("/api/board").json()
            urgency = Counter(row["urgency"] for row in board["rows"])
            total = web.get("/api/scoreboard").json()["total"]
            alerts.poll()  # type: ignore[union-attr]
            fired = [a for a in decoded(alerts.records, "alert")  # type: ignore[union-attr]
                     if a["kind"] == "overdue"
                     and datetime.fromisoformat(str(a["due_at"])) > start]
            seen.update(now=board["now"], clock=board["clock"], due_soon=urgency["due_soon"],
                        overdue=urgency["overdue"], early=total["early"],
                        on_time=total["on_time"], late=total["late"], open=total["open"],
                        alerts=len(alerts.records),  # type: ignore[union-attr]
                        overdue_alerts_fired_during_run=len(fired))
            return bool(urgency["due_soon"] and urgency["overdue"] and fired
                        and total["early"] + total["on_time"] > 0)

        deadline = time.monotonic() + WATCH_SECONDS
        while not look():
            assert time.monotonic() < deadline, (seen, "".join(console)[-2000:])
            assert proc.poll() is None, "".join(console)
            time.sleep(1)
        print(f"\nlienthong up at {SPEED}x, seen on the dashboard and the alerts topic: {seen}")
        assert seen["clock"] == {"simulated": True, "speed": float(SPEED), "origin": START}
        assert datetime.fromisoformat(seen["now"]) > start
        # a realistic mix, not an all-red board: more on time or due soon than overdue
        assert seen["overdue"] < seen["due_soon"] + seen["open"]
        html = web.get("/").text
        assert "Giờ mô phỏng" in html and "×600" in html
        assert "Quá hạn" in html and "Sắp đến hạn" in html
        assert "Simulated time" in web.get("/?lang=en").text
    finally:
        if alerts is not None:
            alerts.consumer.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, "".join(console)[-2000:]
