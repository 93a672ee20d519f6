"""The pull connector without a broker: the cursor file, derived event ids, one page turned
into events and dead letters, and the cursor moving only after every record was acknowledged."""

from __future__ import annotations

import json
import unicodedata
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from lienthong.connectors.doubles.agencies import Inbox
from lienthong.connectors.gateway.intake import Limits
from lienthong.connectors.gateway.publisher import KafkaUnavailable
from lienthong.connectors.pull import (
    INVALID_CHANGE,
    CursorError,
    CursorFile,
    FeedError,
    PullConnector,
    derive_event_id,
    parse_page,
    prepare,
)
from lienthong.schemas.codec import decode_deadletter, decode_event, encode_deadletter, encode_event

A = "000.00.15.H99"
DOSSIER = "000.00.15.H99-20261125-0000007"
AT = datetime(2026, 11, 25, 2, 15, tzinfo=UTC)


def received(n: int = 1, **over: Any) -> dict[str, Any]:
    event = {"type": "received", "dossier": f"000.00.15.H99-20261125-{n:07d}",
             "at": "2026-11-25T09:15:00+07:00", "agency": A, "procedure": "1.001193",
             "channel": "desk", "applicant": {"name": "Nguyễn Văn A",
                                             "id_number": "001099012345"}}
    event.update(over)
    return event


def page(changes: list[Any]) -> Any:
    return prepare(changes, system=A, agency=A, encode=encode_event,
                   encode_deadletter=encode_deadletter, limits=Limits(), source=f"pull:{A}",
                   at=AT)


# -- cursor file ---------------------------------------------------------------------------------

def test_a_cursor_file_starts_empty_and_keeps_what_was_saved(tmp_path: Path) -> None:
    cursor = CursorFile(tmp_path / "cursors", A)
    assert cursor.load() is None
    cursor.save(120)
    cursor.save(140)
    assert CursorFile(tmp_path / "cursors", A).load() == 140
    assert sorted(p.name for p in (tmp_path / "cursors").iterdir()) == [f"{A}.cursor.json"]


def test_a_damaged_or_foreign_cursor_file_is_refused_rather_than_restarted(
        tmp_path: Path) -> None:
    damaged = CursorFile(tmp_path, A)
    damaged.path.write_text('{"agency": "000.00.15.H99", "curs')
    with pytest.raises(CursorError, match="not JSON"):
        damaged.load()
    CursorFile(tmp_path, "000.00.16.H99").save(7)
    (tmp_path / "000.00.16.H99.cursor.json").rename(damaged.path)
    with pytest.raises(CursorError, match="belongs to"):
        damaged.load()


# -- ids and pages -------------------------------------------------------------------------------

def test_derived_event_ids_are_stable_per_system_and_change() -> None:
    first = derive_event_id(A, "17")
    assert first == derive_event_id(A, "17")
    assert uuid.UUID(first).version == 5
    assert len({first, derive_event_id(A, "18"), derive_event_id("other-system", "17")}) == 3


def test_a_change_without_an_id_gets_the_derived_one_and_a_source_id_is_kept() -> None:
    own = str(uuid.uuid4())
    out = page([{"change_id": 17, "event": received(1)},
                {"change_id": "18", "event": received(2, event_id=own)}])
    assert out.event_ids == [derive_event_id(A, "17"), own]
    assert [decode_event(v)["event_id"] for _, v in out.events] == out.event_ids
    assert [k for k, _ in out.events] == [f"000.00.15.H99-20261125-{n:07d}".encode()
                                          for n in (1, 2)]
    assert out.deadletters == []


def test_nfd_text_from_the_feed_is_published_in_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "Nguyễn Thị Hằng")
    out = page([{"change_id": "1", "event": received(applicant={"name": nfd,
                                                                 "id_number": "001099012345"})}])
    assert decode_event(out.events[0][1])["applicant"]["name"] == \
        unicodedata.normalize("NFC", "Nguyễn Thị Hằng")


def test_bad_changes_are_dead_lettered_with_their_reason_and_the_good_ones_go_on() -> None:
    changes = [{"change_id": "1", "event": received(1)},
               {"change_id": "2", "event": received(2, channel="fax")},
               {"event": received(3)},
               {"change_id": "4", "event": received(4, agency="000.00.16.H99")},
               "not a change",
               {"change_id": "6", "event": received(6)}]
    out = page(changes)
    assert out.event_ids == [derive_event_id(A, "1"), derive_event_id(A, "6")]
    parked = [decode_deadletter(v) for _, v in out.deadletters]
    assert [p["reason"] for p in parked] == ["invalid_event", INVALID_CHANGE, "forbidden_agency",
                                             INVALID_CHANGE]
    assert parked[0]["detail"].startswith("change 2: channel")
    assert json.loads(parked[0]["original"]) == changes[1]
    assert {(p["source_topic"], p["partition"], p["offset"]) for p in parked} == \
        {(f"pull:{A}", -1, -1)}
    assert [k for k, _ in out.deadletters] == [
        b"000.00.15.H99-20261125-0000002", b"000.00.15.H99-20261125-0000003",
        b"000.00.15.H99-20261125-0000004", None]


@pytest.mark.parametrize("answer", [[], {"changes": {}, "next_cursor": 1, "more": False},
                                    {"changes": [], "more": False},
                                    {"changes": [], "next_cursor": 1, "more": True}])
def test_a_malformed_feed_answer_is_refused_whole(answer: Any) -> None:
    with pytest.raises(FeedError):
        parse_page(answer)


# -- the poll ------------------------------------------------------------------------------------

class Acked:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float) -> None:
        if self.error is not None:
            raise self.error


class FakeSink:
    """KafkaSink's surface: records per topic; fails the next ``fail`` sends."""

    timeout = 1.0

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.fail = 0
        self.resets = 0

    def send(self, records: list[tuple[bytes | None, bytes]], *,
             topic: str | None = None) -> list[Acked]:
        error = None
        if self.fail:
            self.fail -= 1
            error = TimeoutError("no acknowledgement")
        self.sent.extend((topic or "events", k, v) for k, v in records)
        return [Acked(error) for _ in records]

    def reset(self) -> None:
        self.resets += 1


def connector(tmp_path: Path, inbox: Inbox, sink: FakeSink, batch: int = 2) -> PullConnector:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/agencies/{A}/changes"
        cursor = int(request.url.params.get("cursor", "0"))
        return httpx.Response(200, json=inbox.changes_since(
            cursor, int(request.url.params["limit"])))

    client = httpx.Client(transport=httpx.MockTransport(answer))
    return PullConnector(agency=A, base_url="http://agency.test", sink=sink,  # type: ignore[arg-type]
                         cursor=CursorFile(tmp_path, A), deadletter_topic="deadletter",
                         client=client, batch_size=batch)


def test_the_cursor_moves_only_after_kafka_acknowledged_the_page(tmp_path: Path) -> None:
    inbox = Inbox(A)
    for n in range(1, 4):
        inbox.add_change(received(n))
    sink = FakeSink()
    pull = connector(tmp_path, inbox, sink)
    sink.fail = 1
    with pytest.raises(KafkaUnavailable):
        pull.poll_once()
    assert CursorFile(tmp_path, A).load() is None and sink.resets == 1
    first = pull.poll_once()
    assert (first.changes, first.cursor, first.more) == (2, 2, True)
    assert CursorFile(tmp_path, A).load() == 2
    rest = pull.poll_once()
    assert (rest.changes, rest.cursor, rest.more) == (1, 3, False)
    # The failed page went out once before and once again: at least once, same ids.
    ids = [decode_event(v)["event_id"] for _, _, v in sink.sent]
    assert ids == [derive_event_id(A, c) for c in ("1", "2", "1", "2", "3")]
    assert pull.poll_once().changes == 0


def test_a_restarted_connector_resumes_from_the_saved_cursor(tmp_path: Path) -> None:
    inbox = Inbox(A)
    for n in range(1, 6):
        inbox.add_change(received(n))
    sink = FakeSink()
    connector(tmp_path, inbox, sink).poll_once()
    again = connector(tmp_path, inbox, sink, batch=10)
    assert again.position == 2
    assert again.poll_once().changes == 3
    assert [decode_event(v)["event_id"] for _, _, v in sink.sent] == \
        [derive_event_id(A, str(c)) for c in range(1, 6)]


def test_dead_letters_go_to_their_topic_and_do_not_stall_the_feed(tmp_path: Path) -> None:
    inbox = Inbox(A)
    inbox.add_change(received(1, channel="fax"))
    inbox.add_change(received(2))
    sink = FakeSink()
    result = connector(tmp_path, inbox, sink).poll_once()
    assert (result.published, result.deadlettered, result.cursor) == (1, 1, 2)
    assert [(t, k) for t, k, _ in sink.sent] == [
        ("events", b"000.00.15.H99-20261125-0000002"),
        ("deadletter", b"000.00.15.H99-20261125-0000001")]
