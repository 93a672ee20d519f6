"""The README's screenshots, taken of the demo ``lienthong up`` runs, in a real headless
Chromium: the board, a dossier's tracking slip and the scoreboard, at 10:00 of the demo's
Thursday (two and a half minutes into a ``make up`` at the default 60x).

The read model holds what the worker would have published by then (``demo_day``: the
simulator's plan through the domain core and the worker's own snapshot builder), so the pictures
stay true to the demo. The pictures go to ``LIENTHONG_SCREENSHOTS`` (``make screenshots`` sets
it to ``docs/screenshots``), else to a temporary directory.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from lienthong.services.clock import ScaledClock
from lienthong.services.ops.board import OpsBoard
from lienthong.services.ops.demo import demo_day
from tests.browser.test_dashboard_browser import CATALOGUE, Server, _serve, browser, login

__all__ = ["browser"]  # the fixture, shared with the dashboard's browser tests

START = datetime.fromisoformat("2026-12-03T07:30:00+07:00")
SPEED = 60.0
AT = START + timedelta(minutes=150)  # 10:00: 150 real seconds into the demo at 60x
SHOTS = Path(os.environ.get("LIENTHONG_SCREENSHOTS")
             or Path(tempfile.gettempdir()) / "lienthong-browser")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[Server, list[dict[str, Any]]]]:
    snapshots, alerts = demo_day(CATALOGUE, AT, start=START)
    board = OpsBoard(CATALOGUE)
    for s in snapshots:
        board.apply_snapshot(s)
    for a in alerts:
        board.add_alert(a)
    for server in _serve(board, []):
        # The demo's clock: 10:00 now, ticking on at 60x in the header.
        sim = ScaledClock(origin=START, speed=SPEED,
                          epoch=time.time() - (AT - START).total_seconds() / SPEED)
        server.dash.clock = lambda: AT
        server.dash.simulated = sim
        yield server, snapshots


def _shot(d: WebDriver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    d.save_screenshot(str(path))
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 20_000
    return path


def _tracked(snapshots: list[dict[str, Any]]) -> str:
    """A dossier worth a look: still open, handed on twice or more, a supplement asked for."""
    def handoffs(s: dict[str, Any]) -> int:
        return sum(1 for e in s["timeline"] if e["type"] == "handoff")
    candidates = [s for s in snapshots if s["state"] in ("processing", "paused")
                  and handoffs(s) >= 2]
    best = max(candidates, key=lambda s: (bool(s["pauses"]), handoffs(s), s["dossier"]))
    return str(best["dossier"])


def test_the_demo_board_tracking_slip_and_scoreboard_as_the_readme_shows_them(
        demo: tuple[Server, list[dict[str, Any]]], browser: WebDriver) -> None:
    server, snapshots = demo
    d = browser
    d.set_window_size(1440, 1000)
    login(d, server.base)
    WebDriverWait(d, 10).until(
        lambda drv: "on" in drv.find_element(By.ID, "live-status").get_attribute("class"))
    badge = d.find_element(By.ID, "sim-clock").text
    assert "Giờ mô phỏng" in badge and "×60" in badge and "07:30 03/12/2026" in badge
    # the cards: overdue dossiers, overdue steps, due soon (Vietnamese thousands dot)
    overdue_d, overdue_s, due_soon = (int(b.text.replace(".", "")) for b in
                                      d.find_elements(By.CSS_SELECTOR, ".cards .stat b"))
    # the morning's mix: both are there, and the warnings outnumber the red rows
    assert overdue_d + overdue_s > 0 and due_soon > overdue_d + overdue_s
    _shot(d, "board.png")

    code = _tracked(snapshots)
    d.get(f"{server.base}/dossiers/{code}")
    WebDriverWait(d, 10).until(lambda drv: drv.find_elements(By.ID, "applicant-name"))
    assert "Phiếu kiểm soát" in d.find_element(By.TAG_NAME, "h1").text
    assert code in d.page_source
    _shot(d, "slip.png")

    d.get(f"{server.base}/scoreboard")
    WebDriverWait(d, 10).until(lambda drv: "%" in drv.find_element(By.TAG_NAME, "main").text)
    assert "trước hạn" in d.find_element(By.TAG_NAME, "main").text.lower()
    _shot(d, "scoreboard.png")
