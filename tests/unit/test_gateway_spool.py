"""The durable spool and the publisher that falls back to it (with a fake Kafka sink)."""

from __future__ import annotations

import asyncio
import os

import pytest

from lienthong.connectors.gateway.publisher import KafkaUnavailable, Publisher
from lienthong.connectors.gateway.spool import HEADER_SIZE, Spool, SpoolFull, encode_record


def _records(n: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [(b"D-%d" % (i % 3), b"event-%04d" % i) for i in range(start, start + n)]


def test_appended_records_come_back_in_order_after_reopening(tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.append(_records(5))
    spool.close()
    again = Spool(tmp_path)
    assert [(r.key, r.value) for r in again.read()] == _records(5)
    assert again.pending() == 5


def test_acknowledged_records_are_not_read_again_and_a_drained_spool_is_truncated(
        tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.append(_records(4))
    first_two = spool.read(max_records=2)
    spool.acknowledge(first_two[-1].end, 2)
    spool.close()
    again = Spool(tmp_path)
    assert [r.value for r in again.read()] == [b"event-0002", b"event-0003"]
    rest = again.read()
    again.acknowledge(rest[-1].end, 2)
    assert again.is_empty()
    assert os.path.getsize(tmp_path / "spool.log") == 0


def test_a_torn_last_append_is_dropped_and_everything_before_it_kept(tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.append(_records(3))
    spool.close()
    # A crash in the middle of the next append: half a record reached the disk.
    torn = encode_record(b"D-9", b"never-acknowledged")
    with open(tmp_path / "spool.log", "ab") as f:
        f.write(torn[: len(torn) // 2])
    again = Spool(tmp_path)
    assert again.dropped_torn_bytes == len(torn) // 2
    assert [r.value for r in again.read()] == [v for _, v in _records(3)]
    again.append([(b"D-1", b"after")])
    again.close()
    assert [r.value for r in Spool(tmp_path).read()][-1] == b"after"


def test_a_damaged_record_in_the_middle_is_set_aside_and_the_rest_kept(tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.append(_records(3))
    spool.close()
    with open(tmp_path / "spool.log", "r+b") as f:
        first = len(encode_record(*_records(1)[0]))
        f.seek(first + HEADER_SIZE + 2)
        f.write(b"XX")  # flips payload bytes of the second record
    again = Spool(tmp_path)
    assert [r.value for r in again.read()] == [b"event-0000", b"event-0002"]
    assert len(again.damaged_ranges) == 1
    assert list(tmp_path.glob("spool.damaged-*"))


def test_a_cursor_beyond_the_end_means_the_spool_was_drained(tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.append(_records(2))
    recs = spool.read()
    spool._write_cursor(recs[-1].end)  # crash after the cursor moved...
    os.truncate(tmp_path / "spool.log", 0)  # ...then truncate landed, cursor reset did not
    spool.close()
    assert Spool(tmp_path).is_empty()


def test_a_full_spool_refuses_instead_of_losing(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    spool.append(_records(2))
    with pytest.raises(SpoolFull):
        spool.append(_records(5))
    assert spool.pending() == 2


class FakeKafkaFuture:
    """Like kafka-python's future: a callback added after resolution runs at once."""

    def __init__(self) -> None:
        self.done = False
        self.error: Exception | None = None
        self._cb: list = []
        self._eb: list = []

    def add_callback(self, f):
        if self.done and self.error is None:
            f("ok")
        elif not self.done:
            self._cb.append(f)

    def add_errback(self, f):
        if self.done and self.error is not None:
            f(self.error)
        elif not self.done:
            self._eb.append(f)

    def resolve(self, error: Exception | None) -> None:
        self.done, self.error = True, error
        for f in (self._eb if error else self._cb):
            f(error if error else "ok")


class FakeSink:
    """A Kafka that is down until ``up`` is set; records what it acknowledged."""

    timeout = 0.5

    def __init__(self) -> None:
        self.up = False
        self.log: list[tuple[bytes, bytes]] = []

    def send(self, records):
        if not self.up:
            raise KafkaUnavailable("no brokers")
        futures = []
        for r in records:
            f = FakeKafkaFuture()
            self.log.append(r)
            futures.append(f)
        for f in futures:
            f.resolve(None)
        return futures

    def reset(self) -> None:
        pass

    def close(self, timeout: float = 0) -> None:
        pass


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_events_go_to_the_spool_while_kafka_is_down_and_forward_in_order(
        tmp_path) -> None:
    sink = FakeSink()
    publisher = Publisher(sink, Spool(tmp_path), max_backoff=0.05)  # type: ignore[arg-type]
    await publisher.start()
    try:
        assert await publisher.publish(_records(3)) == "spool"
        assert publisher.spooling
        # Later events queue behind the spooled ones even once Kafka is back.
        assert await publisher.publish(_records(2, start=3)) == "spool"
        sink.up = True
        await _until(lambda: not publisher.spooling)
        assert sink.log == _records(5)
        assert await publisher.publish(_records(1, start=5)) == "kafka"
        assert sink.log == _records(6)
    finally:
        await publisher.stop()


async def test_a_restarted_gateway_forwards_the_spool_before_new_events(tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.append(_records(4))
    spool.close()
    sink = FakeSink()
    sink.up = True
    publisher = Publisher(sink, Spool(tmp_path), max_backoff=0.05)  # type: ignore[arg-type]
    assert publisher.spooling
    await publisher.start()
    try:
        assert await publisher.publish(_records(1, start=4)) in {"spool", "kafka"}
        await _until(lambda: len(sink.log) == 5)
        await _until(lambda: publisher.pending() == 0)
        assert sink.log == _records(5)
    finally:
        await publisher.stop()


async def test_once_the_spool_is_seen_empty_events_go_straight_to_kafka(tmp_path) -> None:
    seen: list[tuple[int, bool]] = []  # (pending, spooling) whenever the spool's size changes
    sink = FakeSink()
    publisher: Publisher | None = None

    def on_change(pending: int) -> None:
        if publisher is not None:
            seen.append((pending, publisher.spooling))

    publisher = Publisher(sink, Spool(tmp_path), max_backoff=0.05,  # type: ignore[arg-type]
                          on_spool_change=on_change)
    await publisher.start()
    try:
        assert await publisher.publish(_records(3)) == "spool"
        sink.up = True
        await _until(lambda: publisher.pending() == 0)
        # The acknowledgement that emptied the spool ended spooling with it: no publish can
        # find an empty spool still marked spooling.
        assert seen[-1] == (0, False)
        assert await publisher.publish(_records(1, start=3)) == "kafka"
        assert sink.log == _records(4)
    finally:
        await publisher.stop()
