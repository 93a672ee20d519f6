"""The pinned Python clients against the embedded Apache Kafka broker.

kafka-python (the gateway's producer) and aiokafka (under faust) must both work with the broker
version the pom pins: consumer groups, the idempotent producer and transactions — commit, abort,
``send_offsets_to_transaction`` and fencing, including a producer process killed with SIGKILL
between send and commit, whose messages a ``read_committed`` consumer must never see.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import ProducerFencedError
from kafka.structs import OffsetAndMetadata

pytestmark = pytest.mark.kafka

# Short group timeouts: a join otherwise waits for the production defaults (tens of seconds).
KP_GROUP = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500,
            "max_poll_interval_ms": 10000}
AIO_GROUP = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500,
             "rebalance_timeout_ms": 10000, "max_poll_interval_ms": 10000}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- readers


def read_kp(bootstrap: str, topic: str, isolation: str, until: Callable[[list[bytes]], bool],
            timeout: float = 20.0) -> list[bytes]:
    """Read ``topic`` from the beginning (no group) with kafka-python until ``until`` holds."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation,
                             enable_auto_commit=False, group_id=None)
    try:
        partitions = [KpTopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        seen: list[bytes] = []
        deadline = time.monotonic() + timeout
        while not until(seen):
            if time.monotonic() > deadline:
                raise AssertionError(f"kafka-python {isolation} read timed out; saw {seen}")
            for records in consumer.poll(timeout_ms=200).values():
                seen.extend(r.value for r in records)
        return seen
    finally:
        consumer.close()


async def read_aio(bootstrap: str, topic: str, isolation: str,
                   until: Callable[[list[bytes]], bool], timeout: float = 20.0) -> list[bytes]:
    """Read ``topic`` from the beginning (no group) with aiokafka until ``until`` holds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)
                      or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p)
                          for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen: list[bytes] = []
        deadline = time.monotonic() + timeout
        while not until(seen):
            if time.monotonic() > deadline:
                raise AssertionError(f"aiokafka {isolation} read timed out; saw {seen}")
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                seen.extend(r.value for r in records if r.value is not None)
        return seen
    finally:
        await consumer.stop()


def has_all(expected: set[bytes]) -> Callable[[list[bytes]], bool]:
    return lambda seen: expected <= set(seen)


# --------------------------------------------------------------------------- consumer groups


class _KpMember(threading.Thread):
    """One kafka-python group member polling in its own thread, as each worker process does.

    A consumer is used only by the thread that made it; the test reads what it saw (its
    assignment and values) and asks it to commit through events.
    """

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      **KP_GROUP)
        self.assignment: frozenset[int] = frozenset()
        self.values: list[bytes] = []
        self.commit_now = threading.Event()
        self.committed = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for records in self.consumer.poll(timeout_ms=100).values():
                    self.values.extend(r.value for r in records)
                self.assignment = frozenset(tp.partition for tp in self.consumer.assignment())
                if self.commit_now.is_set() and not self.committed.is_set():
                    self.consumer.commit()
                    self.committed.set()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            self.consumer.close()


def _wait(condition: Callable[[], bool], timeout: float, what: Callable[[], object]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.05)


def test_kafka_python_group_splits_partitions_and_resumes_from_committed_offsets(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=2)
    group = _unique("g")
    members = [_KpMember(kafka_bootstrap, topic, group) for _ in range(2)]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for member in members:
            member.start()
        # A join on a broker whose group coordinator is still loading takes a few rounds.
        _wait(lambda: sorted(sorted(m.assignment) for m in members) == [[0], [1]], 60,
              lambda: ([m.assignment for m in members], [m.error for m in members]))

        sent = {f"m{i}".encode() for i in range(20)}
        for i, value in enumerate(sorted(sent)):
            producer.send(topic, value, partition=i % 2)
        producer.flush()
        _wait(lambda: set(members[0].values) | set(members[1].values) == sent, 30,
              lambda: ([m.values for m in members], [m.error for m in members]))
        assert members[0].values and members[1].values
        for member in members:
            member.commit_now.set()
        _wait(lambda: all(m.committed.is_set() for m in members), 30,
              lambda: [m.error for m in members])
    finally:
        for member in members:
            member.stop.set()
        for member in members:
            member.join(timeout=30)
    assert [m.error for m in members] == [None, None]

    producer.send(topic, b"late", partition=0)
    producer.flush()
    producer.close()
    resumed = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                            auto_offset_reset="earliest", enable_auto_commit=False, **KP_GROUP)
    try:
        seen: list[bytes] = []
        deadline = time.monotonic() + 30
        while b"late" not in seen:
            assert time.monotonic() < deadline, seen
            for records in resumed.poll(timeout_ms=200).values():
                seen.extend(r.value for r in records)
        assert seen == [b"late"]
    finally:
        resumed.close()


async def test_aiokafka_group_splits_partitions_and_resumes_from_committed_offsets(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=2)
    group = _unique("g")
    members = [AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                **AIO_GROUP) for _ in range(2)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for member in members:
            await member.start()
        sent = {f"m{i}".encode() for i in range(20)}
        for i, value in enumerate(sorted(sent)):
            await producer.send_and_wait(topic, value, partition=i % 2)
        got: dict[int, list[bytes]] = {0: [], 1: []}
        deadline = time.monotonic() + 20
        while sum(map(len, got.values())) < len(sent) or not all(
            len(m.assignment()) == 1 for m in members
        ):
            assert time.monotonic() < deadline, (got, [m.assignment() for m in members])
            for index, member in enumerate(members):
                batches = await member.getmany(timeout_ms=100)
                for records in batches.values():
                    got[index].extend(r.value for r in records if r.value is not None)
        assert {tp.partition for m in members for tp in m.assignment()} == {0, 1}
        assert set(got[0]) | set(got[1]) == sent
        for member in members:
            await member.commit()
    finally:
        for member in members:
            await member.stop()

    await producer.send_and_wait(topic, b"late", partition=1)
    await producer.stop()
    resumed = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                               auto_offset_reset="earliest", enable_auto_commit=False,
                               **AIO_GROUP)
    await resumed.start()
    try:
        seen: list[bytes] = []
        deadline = time.monotonic() + 20
        while b"late" not in seen:
            assert time.monotonic() < deadline, seen
            for records in (await resumed.getmany(timeout_ms=200)).values():
                seen.extend(r.value for r in records if r.value is not None)
        assert seen == [b"late"]
    finally:
        await resumed.stop()


# --------------------------------------------------------------------------- idempotence


def test_kafka_python_idempotent_producer_writes_each_message_once_in_order(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                             enable_idempotence=True, linger_ms=5)
    sent = [f"i{i:03d}".encode() for i in range(200)]
    for value in sent:
        producer.send(topic, value)
    producer.flush()
    producer.close()
    assert read_kp(kafka_bootstrap, topic, "read_committed",
                   lambda seen: len(seen) >= len(sent)) == sent


async def test_aiokafka_idempotent_producer_writes_each_message_once_in_order(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=5)
    await producer.start()
    sent = [f"i{i:03d}".encode() for i in range(200)]
    try:
        futures = [await producer.send(topic, value) for value in sent]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert await read_aio(kafka_bootstrap, topic, "read_committed",
                          lambda seen: len(seen) >= len(sent)) == sent


# --------------------------------------------------------------------------- transactions


def test_kafka_python_transactions_commit_abort_and_commit_consumed_offsets(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    source, sink = new_topic(), new_topic()
    group = _unique("tx")
    plain = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for i in range(3):
        plain.send(source, f"in{i}".encode())
    plain.close()

    consumer = KafkaConsumer(source, bootstrap_servers=kafka_bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             isolation_level="read_committed", **KP_GROUP)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=_unique("kp"),
                             transaction_timeout_ms=20000)
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(sink, b"aborted-1")
        producer.flush()
        producer.abort_transaction()

        consumed: list[bytes] = []
        offsets: dict[KpTopicPartition, OffsetAndMetadata] = {}
        deadline = time.monotonic() + 20
        while len(consumed) < 3:
            assert time.monotonic() < deadline, consumed
            for tp, records in consumer.poll(timeout_ms=200).items():
                consumed.extend(r.value for r in records)
                offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        producer.begin_transaction()
        for value in consumed:
            producer.send(sink, b"out-" + value)
        producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
        producer.commit_transaction()

        producer.begin_transaction()
        producer.send(sink, b"aborted-2")
        producer.flush()
        producer.abort_transaction()
        producer.begin_transaction()
        producer.send(sink, b"end")
        producer.commit_transaction()
    finally:
        producer.close()
        consumer.close()

    committed = read_kp(kafka_bootstrap, sink, "read_committed", has_all({b"end"}))
    assert committed == [b"out-in0", b"out-in1", b"out-in2", b"end"]
    uncommitted = read_kp(kafka_bootstrap, sink, "read_uncommitted", has_all({b"end"}))
    assert {b"aborted-1", b"aborted-2"} <= set(uncommitted)  # written, just never committed
    # The offsets committed inside the transaction are the group's: nothing left to consume.
    check = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                          enable_auto_commit=False)
    try:
        assert check.committed(KpTopicPartition(source, 0)) == 3
    finally:
        check.close()


async def test_aiokafka_transactions_commit_abort_and_commit_consumed_offsets(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    source, sink = new_topic(), new_topic()
    group = _unique("tx")
    plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await plain.start()
    for i in range(3):
        await plain.send_and_wait(source, f"in{i}".encode())
    await plain.stop()

    consumer = AIOKafkaConsumer(source, bootstrap_servers=kafka_bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed", **AIO_GROUP)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                transactional_id=_unique("aio"), transaction_timeout_ms=20000)
    await consumer.start()
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(sink, b"aborted-1")
        await producer.abort_transaction()

        consumed: list[bytes] = []
        offsets: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + 20
        while len(consumed) < 3:
            assert time.monotonic() < deadline, consumed
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                consumed.extend(r.value for r in records if r.value is not None)
                offsets[tp] = records[-1].offset + 1
        async with producer.transaction():
            for value in consumed:
                await producer.send(sink, b"out-" + value)
            await producer.send_offsets_to_transaction(offsets, group)

        await producer.begin_transaction()
        await producer.send_and_wait(sink, b"aborted-2")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(sink, b"end")
    finally:
        await producer.stop()
        await consumer.stop()

    committed = await read_aio(kafka_bootstrap, sink, "read_committed", has_all({b"end"}))
    assert committed == [b"out-in0", b"out-in1", b"out-in2", b"end"]
    uncommitted = await read_aio(kafka_bootstrap, sink, "read_uncommitted", has_all({b"end"}))
    assert {b"aborted-1", b"aborted-2"} <= set(uncommitted)
    check = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                             enable_auto_commit=False)
    await check.start()
    try:
        assert await check.committed(TopicPartition(source, 0)) == 3
    finally:
        await check.stop()


# --------------------------------------------------------------------------- fencing

_KP_DOOMED = """
import sys, time
from kafka import KafkaProducer
bootstrap, topic, txn_id, timeout_ms = sys.argv[1:5]
producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id,
                         transaction_timeout_ms=int(timeout_ms))
producer.init_transactions()
producer.begin_transaction()
for i in range(5):
    producer.send(topic, b"doomed-%d" % i)
producer.flush()
print("sent", flush=True)
time.sleep(120)
"""

_AIO_DOOMED = """
import asyncio, sys
from aiokafka import AIOKafkaProducer
bootstrap, topic, txn_id, timeout_ms = sys.argv[1:5]
async def main():
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id,
                                transaction_timeout_ms=int(timeout_ms))
    await producer.start()
    await producer.begin_transaction()
    for i in range(5):
        await producer.send_and_wait(topic, b"doomed-%d" % i)
    print("sent", flush=True)
    await asyncio.sleep(120)
asyncio.run(main())
"""

DOOMED = {f"doomed-{i}".encode() for i in range(5)}
AFTER = {f"after-{i}".encode() for i in range(3)}


def _send_then_sigkill(script: str, bootstrap: str, topic: str, txn_id: str,
                       transaction_timeout_ms: int = 30000) -> None:
    """Run a producer process that sends inside a transaction, then SIGKILL it before commit."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), bootstrap, topic, txn_id,
         str(transaction_timeout_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the script prints "sent" or dies (EOF)
        assert line.strip() == "sent", process.stderr.read() if process.stderr else line
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("killed", ["kafka-python", "aiokafka"])
def test_kafka_python_fences_a_sigkilled_producer_whose_messages_stay_invisible(
    kafka_bootstrap: str, new_topic: Callable[..., str], killed: str
) -> None:
    topic = new_topic()
    txn_id = _unique("killed")
    _send_then_sigkill(_KP_DOOMED if killed == "kafka-python" else _AIO_DOOMED,
                       kafka_bootstrap, topic, txn_id)
    # The doomed messages are in the log, in an open transaction.
    assert set(read_kp(kafka_bootstrap, topic, "read_uncommitted", has_all(DOOMED))) >= DOOMED

    successor = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=txn_id)
    try:
        started = time.monotonic()
        successor.init_transactions()  # fences the dead producer and aborts its transaction
        assert time.monotonic() - started < 15
        successor.begin_transaction()
        for value in sorted(AFTER):
            successor.send(topic, value)
        successor.commit_transaction()
    finally:
        successor.close()

    committed = read_kp(kafka_bootstrap, topic, "read_committed", has_all(AFTER))
    assert sorted(committed) == sorted(AFTER)
    committed_aio = asyncio.run(read_aio(kafka_bootstrap, topic, "read_committed",
                                         has_all(AFTER)))
    assert sorted(committed_aio) == sorted(AFTER)


@pytest.mark.parametrize("killed", ["kafka-python", "aiokafka"])
async def test_aiokafka_fences_a_sigkilled_producer_whose_messages_stay_invisible(
    kafka_bootstrap: str, new_topic: Callable[..., str], killed: str
) -> None:
    topic = new_topic()
    txn_id = _unique("killed")
    await asyncio.to_thread(_send_then_sigkill,
                            _KP_DOOMED if killed == "kafka-python" else _AIO_DOOMED,
                            kafka_bootstrap, topic, txn_id)
    assert set(await read_aio(kafka_bootstrap, topic, "read_uncommitted",
                                        has_all(DOOMED))) >= DOOMED

    successor = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=txn_id)
    started = time.monotonic()
    await successor.start()  # init_transactions: fences the dead producer, aborts its txn
    try:
        assert time.monotonic() - started < 15
        async with successor.transaction():
            for value in sorted(AFTER):
                await successor.send(topic, value)
    finally:
        await successor.stop()

    committed = await read_aio(kafka_bootstrap, topic, "read_committed", has_all(AFTER))
    assert sorted(committed) == sorted(AFTER)
    committed_kp = await asyncio.to_thread(read_kp, kafka_bootstrap, topic, "read_committed",
                                           has_all(AFTER))
    assert sorted(committed_kp) == sorted(AFTER)


@pytest.mark.parametrize("killed", ["kafka-python", "aiokafka"])
def test_a_sigkilled_producers_transaction_is_aborted_by_its_timeout_without_a_successor(
    kafka_bootstrap: str, new_topic: Callable[..., str], killed: str
) -> None:
    topic = new_topic()
    _send_then_sigkill(_KP_DOOMED if killed == "kafka-python" else _AIO_DOOMED,
                       kafka_bootstrap, topic, _unique("orphan"), transaction_timeout_ms=2000)
    plain = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for value in sorted(AFTER):
        plain.send(topic, value)
    plain.close()
    started = time.monotonic()
    # The open transaction holds back read_committed readers until the broker aborts it.
    committed = read_kp(kafka_bootstrap, topic, "read_committed", has_all(AFTER), timeout=20)
    assert sorted(committed) == sorted(AFTER)
    assert time.monotonic() - started < 15


def test_kafka_python_live_zombie_cannot_commit_after_a_successor_starts(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    txn_id = _unique("zombie")
    zombie = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=txn_id)
    successor = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=txn_id)
    try:
        zombie.init_transactions()
        zombie.begin_transaction()
        zombie.send(topic, b"zombie")
        zombie.flush()
        successor.init_transactions()
        with pytest.raises(ProducerFencedError):
            zombie.commit_transaction()
        successor.begin_transaction()
        successor.send(topic, b"successor")
        successor.commit_transaction()
    finally:
        zombie.close(timeout=2)
        successor.close()
    assert read_kp(kafka_bootstrap, topic, "read_committed",
                   has_all({b"successor"})) == [b"successor"]


async def test_aiokafka_live_zombie_cannot_commit_after_a_successor_starts(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    txn_id = _unique("zombie")
    zombie = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=txn_id)
    successor = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=txn_id)
    await zombie.start()
    try:
        await zombie.begin_transaction()
        await zombie.send_and_wait(topic, b"zombie")
        await successor.start()
        with pytest.raises(ProducerFenced):
            await zombie.commit_transaction()
        async with successor.transaction():
            await successor.send(topic, b"successor")
    finally:
        await zombie.stop()
        await successor.stop()
    assert await read_aio(kafka_bootstrap, topic, "read_committed",
                          has_all({b"successor"})) == [b"successor"]
