"""What the applicant was told, on the dossier's tracking slip, in a real headless Chromium:
the "Thông báo cho người dân" table in Vietnamese and English, addresses masked, and a
screenshot for the README (``docs/screenshots/citizen-slip.png``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from lienthong.services.ops.board import OpsBoard
from tests.browser.test_dashboard_browser import (  # noqa: F401 - browser is a fixture
    CATALOGUE,
    TZ,
    Server,
    _serve,
    browser,
    login,
    snapshot,
)

CODE = "000.00.15.H99-20261130-0000042"
SCREENSHOT = Path(__file__).parents[2] / "docs" / "screenshots" / "citizen-slip.png"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # Received 09:15 on 30 November; the supplement request at 21:40 waits for 07:00.
    t = datetime(2026, 11, 30, 9, 15, tzinfo=TZ)
    board = OpsBoard(CATALOGUE)
    board.apply_snapshot(snapshot(CODE, due=datetime(2026, 12, 7, 9, 15, tzinfo=TZ),
                                  received=t, name="Phạm Thị Dung"))

    def notice(mid: str, kind: str, channel: str, status: str, minutes: int,
               to: str | None, detail: str = "") -> dict[str, object]:
        return {"message_id": mid, "dossier": CODE, "event_id": f"e-{mid}", "kind": kind,
                "channel": channel, "status": status, "to": to, "detail": detail,
                "at": (t + timedelta(minutes=minutes)).isoformat()}

    for n in (notice("m1", "received", "sms", "delivered", 0, "849****5678"),
              notice("m2", "received", "email", "sent", 0, "d*******g@example.vn"),
              notice("m3", "handoff", "sms", "delivered", 45, "849****5678"),
              notice("m4", "supplement", "sms", "held", 745, "849****5678",
                     "2026-12-01T07:00:00+07:00"),
              notice("m5", "supplement", "email", "sent", 745, "d*******g@example.vn")):
        board.add_citizen_notice(n)
    yield from _serve(board, [])


def test_the_slip_shows_what_the_citizen_was_told(
        server: Server, browser: WebDriver) -> None:  # noqa: F811 - the imported fixture
    d = browser
    login(d, server.base)
    d.get(f"{server.base}/dossiers/{CODE}")
    WebDriverWait(d, 10).until(lambda drv: drv.find_elements(By.CSS_SELECTOR, "table.citizen"))
    heads = [h.text for h in d.find_elements(By.TAG_NAME, "h2")]
    assert "Thông báo cho người dân" in heads
    table = d.find_element(By.CSS_SELECTOR, "table.citizen")
    statuses = [r.get_attribute("data-status")
                for r in table.find_elements(By.CSS_SELECTOR, "tr[data-status]")]
    assert statuses == ["delivered", "sent", "delivered", "held", "sent"]
    text = table.text
    assert "Đã đến người nhận" in text and "Chờ đến sáng (giờ yên lặng)" in text
    assert "gửi lúc 07:00 01/12/2026" in text
    assert "849****5678" in text and "84912345678" not in d.page_source
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    d.execute_script("arguments[0].scrollIntoView({block: 'center'});", table)
    d.save_screenshot(str(SCREENSHOT))
    d.find_element(By.ID, "lang-switch").click()
    WebDriverWait(d, 10).until(
        lambda drv: drv.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en")
    assert "Citizen notifications" in [h.text for h in d.find_elements(By.TAG_NAME, "h2")]
    assert "Held for the morning (quiet hours)" in d.find_element(
        By.CSS_SELECTOR, "table.citizen").text
