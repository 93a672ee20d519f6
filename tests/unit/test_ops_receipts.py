"""The tracking slip shows each signed receipt; a receipt_missing alert is named in the feed."""

from __future__ import annotations

from types import SimpleNamespace

from lienthong.schemas import codec
from lienthong.services.ops.board import OpsBoard
from lienthong.services.ops.feed import FeedTopics, StatusFeed
from tests.unit.test_ops_web import CATALOGUE, Site, site, snap  # noqa: F401 (fixture)

POLICE = "000.02.10.H99"
RECEIPT = {"receipt_id": "receipt:D-COMMUNE/h1", "delivery_id": "D-COMMUNE/h1",
           "kind": "handoff", "dossier": "D-COMMUNE", "body_sha256": "ab" * 32,
           "receiver": POLICE, "received_at": "2026-12-01T10:05:00+07:00", "key_id": "2026-06",
           "algorithm": "ed25519", "signature": "5f3a" + "00" * 62,
           "recorded_at": "2026-12-01T10:05:01+07:00"}
MISSING = {"alert_id": "receipt_missing:D-COMMUNE/h2", "kind": "delivery_failing",
           "cause": "receipt_missing", "scope": "dossier", "dossier": "D-COMMUNE",
           "agency": POLICE, "destination": POLICE, "due_at": "2026-12-01T14:00:00+07:00",
           "fired_at": "2026-12-01T14:00:01+07:00", "detail": "no signed receipt"}


CODE = "000.00.15.H99-20261130-0000001"


def test_the_feed_puts_a_receipt_on_its_dossier_once() -> None:
    board = OpsBoard(CATALOGUE)
    board.apply_snapshot(snap(CODE))
    feed = StatusFeed("unused:9092", board, FeedTopics("s", "a", "d", receipts="r"),
                      notify=lambda c: None)
    value = codec.encode_receipt({**RECEIPT, "dossier": CODE})
    record = SimpleNamespace(topic="r", partition=0, offset=3, key=CODE.encode(), value=value)
    feed.apply([record, record])
    dossier = board.dossier(CODE)
    assert dossier is not None
    slip = board.slip(CODE, dossier.received_at)
    assert slip is not None
    [receipt] = slip.receipts
    assert (receipt.receiver, receipt.delivery_id) == (POLICE, "D-COMMUNE/h1")


async def test_the_slip_page_and_api_show_each_receipt_and_the_feed_the_missing_one(
        site: Site) -> None:  # noqa: F811
    site.board.add_receipt(RECEIPT)
    site.board.add_alert(MISSING)
    async with site.login("province") as c:
        html = (await c.get("/dossiers/D-COMMUNE")).text
        assert "Biên nhận điện tử đã ký" in html and "5f3a0000" in html
        assert "Công an tỉnh" in html or POLICE in html
        api = (await c.get("/api/dossiers/D-COMMUNE")).json()
        assert [r["receiver"] for r in api["receipts"]] == [POLICE]
        assert api["receipts"][0]["signature"] == RECEIPT["signature"]
        other = (await c.get("/dossiers/D-DISTRICT")).text
        assert "Chưa có biên nhận đã ký nào." in other
        alerts = (await c.get("/alerts")).text
        assert "Thiếu biên nhận đã ký" in alerts
        feed = (await c.get("/api/alerts")).json()
        assert any(a.get("cause") == "receipt_missing" for a in
                   (feed["alerts"] if isinstance(feed, dict) else feed))
