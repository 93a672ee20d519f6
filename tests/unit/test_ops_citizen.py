"""The dossier's tracking slip shows what the applicant was told (``citizen.notifications``),
in Vietnamese with the English switch, addresses masked, each message at its latest status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiokafka import ConsumerRecord

from lienthong.connectors.http.serving import listening
from lienthong.services.domain.catalogue import load_catalogue
from lienthong.services.ops.auth import Operator, hash_password
from lienthong.services.ops.board import OpsBoard
from lienthong.services.ops.feed import FeedTopics, StatusFeed
from lienthong.services.ops.web import create_app

CATALOGUE = load_catalogue(Path(__file__).parents[2] / "examples" / "province-h99.yaml")
COMMUNE = "000.00.15.H99"
CODE = "000.00.15.H99-20261130-0000001"
NOW = datetime.fromisoformat("2026-12-02T09:00:00+07:00")
PASSWORD = "correct horse battery staple"


def snapshot() -> dict[str, Any]:
    return {
        "dossier": CODE, "procedure": "1.001193", "procedure_name": "Liên thông khai sinh",
        "receiving_agency": COMMUNE, "receiving_level": "commune", "channel": "desk",
        "applicant": {"name": "Nguyễn Văn A", "id_number": "001099012345"}, "holder": COMMUNE,
        "state": "processing", "received_at": "2026-11-30T08:00:00+07:00",
        "due_at": "2026-12-05T08:00:00+07:00", "ended_at": None, "outcome": "open",
        "late_agencies": [], "repeat_supplement": False,
        "steps": [{"agency": COMMUNE, "started_at": "2026-11-30T08:00:00+07:00",
                   "due_at": "2026-11-30T12:00:00+07:00", "ended_at": None,
                   "outcome": "open"}],
        "pauses": [], "apologies": [], "postal": [], "portal_status": 2, "timeline": [],
        "updated_at": "2026-11-30T08:00:00+07:00"}


def notice(mid: str, status: str, at: str, channel: str = "sms", detail: str = "",
           kind: str = "received") -> dict[str, Any]:
    return {"message_id": mid, "dossier": CODE, "event_id": "e1", "kind": kind,
            "channel": channel, "status": status, "at": at, "detail": detail,
            "to": "849****5678" if channel == "sms" else None}


def record(topic: str, value: dict[str, Any], offset: int) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(topic, 0, offset, 0, 0, CODE.encode(),
                          json.dumps(value).encode(), None, 0, 0, [])


def test_a_message_keeps_its_latest_status_and_a_repeat_never_moves_it_back() -> None:
    board = OpsBoard(CATALOGUE)
    board.apply_snapshot(snapshot())
    feed = StatusFeed("unused:9092", board, FeedTopics("st", citizen="cn"),
                      notify=lambda change: None)
    rows = [notice("m1", "queued", "2026-11-30T08:00:01+07:00"),
            notice("m1", "sent", "2026-11-30T08:00:02+07:00"),
            notice("m1", "delivered", "2026-11-30T08:00:05+07:00"),
            notice("m1", "sent", "2026-11-30T08:00:02+07:00"),        # re-published repeat
            notice("m2", "skipped", "2026-11-30T08:00:01+07:00", channel="email",
                   detail="opted_out")]
    feed.apply(record("cn", r, i) for i, r in enumerate(rows))
    got = [(n.message_id, n.status) for n in board.citizen_notices(CODE)]
    assert got == [("m1", "delivered"), ("m2", "skipped")]
    slip = board.slip(CODE, NOW)
    assert slip is not None and len(slip.citizen_notices) == 2


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, OpsBoard]]:
    board = OpsBoard(CATALOGUE)
    board.apply_snapshot(snapshot())
    board.add_citizen_notice(notice("m1", "delivered", "2026-11-30T08:00:05+07:00"))
    board.add_citizen_notice(notice("m2", "held", "2026-11-30T22:00:00+07:00",
                                    kind="supplement", detail="until 07:00"))
    board.add_citizen_notice(notice("m3", "skipped", "2026-11-30T08:00:01+07:00",
                                    channel="email", detail="opted_out"))
    users = {"province": Operator("province", hash_password(PASSWORD, n=2**10), "operator",
                                  None, False)}
    app: web.Application = create_app(board, users, clock=lambda: NOW,
                                      secret=b"0123456789abcdef0123456789abcdef")
    async with listening(app) as base:
        yield base, board


async def test_the_slip_lists_what_the_citizen_was_told_in_vietnamese_and_english(
        site: tuple[str, OpsBoard]) -> None:
    base, _ = site
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        r = await c.post("/login", data={"username": "province", "password": PASSWORD,
                                         "next": "/"})
        assert r.status_code == 303
        text = (await c.get(f"/dossiers/{CODE}")).text
        assert "Thông báo cho người dân" in text
        assert "Đã đến người nhận" in text and "Tin nhắn SMS" in text
        assert "Chờ đến sáng (giờ yên lặng)" in text
        assert "người dân đã từ chối nhận" in text
        assert "849****5678" in text and "84912345678" not in text
        english = (await c.get(f"/dossiers/{CODE}", params={"lang": "en"})).text
        assert "Citizen notifications" in english and "Delivered" in english
