"""The pull connector against the real broker and the agency double's change feed served over
HTTP on 127.0.0.1: every change lands once, a crash or a kill -9 between Kafka's
acknowledgement and the cursor write re-sends at most that page (same event ids) and loses
nothing, and a bad change is dead-lettered without stalling the feed."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from kafka import KafkaConsumer, TopicPartition

from lienthong.connectors.doubles.agencies import AgencyDoubles
from lienthong.connectors.gateway.publisher import KafkaSink
from lienthong.connectors.pull import CursorFile, PullConnector, derive_event_id
from lienthong.schemas.codec import decode_deadletter, decode_event

pytestmark = pytest.mark.kafka

A = "000.00.15.H99"


class FeedServer:
    """The agency doubles on a real port, run by their own event loop in a thread."""

    def __init__(self) -> None:
        self.doubles = AgencyDoubles([A])
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        app = web.Application()
        self.doubles.add_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> FeedServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def add(self, changes: list[dict[str, Any]]) -> None:
        r = httpx.post(f"{self.url}/agencies/{A}/changes", json=changes, timeout=10)
        assert r.status_code == 200, r.text


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


def received(n: int, **over: Any) -> dict[str, Any]:
    event = {"type": "received", "dossier": f"000.00.15.H99-20261125-{n:07d}",
             "at": "2026-11-25T09:15:00+07:00", "agency": A, "procedure": "1.001193",
             "channel": "online", "applicant": {"name": "Trần Thị Bích",
                                               "id_number": "001099012345"}}
    event.update(over)
    return event


def changes(first: int, count: int) -> list[dict[str, Any]]:
    return [{"change_id": f"c{n}", "event": received(n)} for n in range(first, first + count)]


def read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + 15
        while any(consumer.position(tp) < end[tp] for tp in tps) \
                and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


def event_ids(bootstrap: str, topic: str) -> list[str]:
    return [decode_event(r.value)["event_id"] for r in read_all(bootstrap, topic)]


def make_connector(bootstrap: str, url: str, topics: dict[str, str], cursor_dir: Path,
                   batch: int = 5) -> PullConnector:
    return PullConnector(agency=A, base_url=url,
                         sink=KafkaSink(bootstrap, topics["events"], timeout=5.0,
                                        client_id="test-pull"),
                         cursor=CursorFile(cursor_dir, A),
                         deadletter_topic=topics["deadletter"],
                         client=httpx.Client(timeout=10), batch_size=batch)


def drain(connector: PullConnector) -> None:
    try:
        connector.run(threading.Event(), interval=0.05, until_caught_up=True)
    finally:
        connector.client.close()
        connector.sink.close()


@pytest.fixture
def topics(new_topic) -> dict[str, str]:
    return {"events": new_topic(3, prefix="dossier.events"),
            "deadletter": new_topic(1, prefix="deadletter")}


def test_changes_land_once_and_a_bad_change_is_dead_lettered_without_stalling(
        kafka_bootstrap: str, feed: FeedServer, topics: dict[str, str], tmp_path: Path) -> None:
    batch = changes(1, 12)
    batch[4] = {"change_id": "c5", "event": received(5, channel="fax")}
    feed.add(batch)
    drain(make_connector(kafka_bootstrap, feed.url, topics, tmp_path))
    expected = [derive_event_id(A, f"c{n}") for n in range(1, 13) if n != 5]
    assert sorted(event_ids(kafka_bootstrap, topics["events"])) == sorted(expected)
    [parked] = [decode_deadletter(r.value) for r in read_all(kafka_bootstrap,
                                                             topics["deadletter"])]
    assert (parked["reason"], parked["key"]) == ("invalid_event",
                                                 b"000.00.15.H99-20261125-0000005")
    assert parked["detail"].startswith("change c5: channel")
    assert CursorFile(tmp_path, A).load() == 12

    # Polled again from the saved cursor: only what is new arrives.
    feed.add(changes(13, 3))
    drain(make_connector(kafka_bootstrap, feed.url, topics, tmp_path))
    ids = event_ids(kafka_bootstrap, topics["events"])
    assert sorted(ids) == sorted([*expected, *(derive_event_id(A, f"c{n}")
                                               for n in (13, 14, 15))])
    # Each dossier's events are keyed by its code (one partition per dossier).
    keys = {r.key for r in read_all(kafka_bootstrap, topics["events"])}
    assert b"000.00.15.H99-20261125-0000013" in keys


def test_a_crash_after_kafka_acked_but_before_the_cursor_write_resends_only_that_page(
        kafka_bootstrap: str, feed: FeedServer, topics: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    feed.add(changes(1, 10))
    crashing = make_connector(kafka_bootstrap, feed.url, topics, tmp_path, batch=4)
    crashing.poll_once()  # page 1 committed: cursor 4
    real_save = CursorFile.save

    def crash(self: CursorFile, cursor: Any) -> None:
        raise SystemExit("killed between the acknowledgement and the cursor write")

    monkeypatch.setattr(CursorFile, "save", crash)
    with pytest.raises(SystemExit):
        crashing.poll_once()  # page 2 is in Kafka, its cursor is not on disk
    crashing.sink.close()
    monkeypatch.setattr(CursorFile, "save", real_save)
    assert CursorFile(tmp_path, A).load() == 4

    drain(make_connector(kafka_bootstrap, feed.url, topics, tmp_path, batch=4))
    ids = event_ids(kafka_bootstrap, topics["events"])
    counts = collections.Counter(ids)
    assert set(counts) == {derive_event_id(A, f"c{n}") for n in range(1, 11)}  # none lost
    assert {derive_event_id(A, f"c{n}") for n, in [(5,), (6,), (7,), (8,)]} == \
        {i for i, c in counts.items() if c == 2}  # only page 2, once more
    assert len(ids) == 14


def start_pull(bootstrap: str, url: str, topics: dict[str, str], cursor_dir: Path,
               *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lienthong.services.cli", "pull", "--agency", A, "--url", url,
         "--batch-size", "5", "--interval", "0.05", "--cursor-dir", str(cursor_dir),
         "--bootstrap", bootstrap, "--topic", topics["events"],
         "--deadletter-topic", topics["deadletter"], *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_kill_9_between_polls_never_loses_a_change_and_repeats_at_most_a_page(
        kafka_bootstrap: str, feed: FeedServer, topics: dict[str, str], tmp_path: Path) -> None:
    total, batch, kills = 300, 5, 4
    feed.add(changes(1, total))
    cursor = CursorFile(tmp_path, A)
    rng = random.Random(6)
    killed_at: list[Any] = []
    for _ in range(kills):
        before = cursor.load() or 0
        proc = start_pull(kafka_bootstrap, feed.url, topics, tmp_path)
        try:
            deadline = time.monotonic() + 30
            while (cursor.load() or 0) <= before and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))  # somewhere in a later poll
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        killed_at.append(cursor.load())
    assert any(c is not None and c < total for c in killed_at), \
        f"every kill came after the feed was drained: {killed_at}"
    proc = start_pull(kafka_bootstrap, feed.url, topics, tmp_path, "--once")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert cursor.load() == total

    ids = event_ids(kafka_bootstrap, topics["events"])
    counts = collections.Counter(ids)
    assert set(counts) == {derive_event_id(A, f"c{n}") for n in range(1, total + 1)}
    # At least once: each kill may repeat the one page it had produced but not committed.
    assert len(ids) - total <= kills * batch, (killed_at, len(ids))
    assert max(counts.values()) <= 1 + kills
    assert read_all(kafka_bootstrap, topics["deadletter"]) == []
