"""``audit verify`` and ``audit copy`` from the embedded broker, in chunks smaller than the log:
the chain carries across chunks, and a tampered entry in a later chunk is named."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaProducer

from lienthong.services.audit import chain
from lienthong.services.audit.verify import read_log, stream_copy, verify_kafka, write_copy
from tests.integration.hub import Hub
from tests.unit.test_audit_verify_stream import PUB, build, checkpoint

pytestmark = pytest.mark.kafka


def produce(hub: Hub, chains: dict[int, list[bytes]], checkpoints: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=hub.bootstrap, acks="all", linger_ms=20)
    for p, values in chains.items():
        for value in values:
            producer.send(hub.names.audit_log, value=value, partition=p)
    for value in checkpoints:
        producer.send(hub.names.audit_checkpoints, value=value, partition=0)
    producer.flush(30)
    producer.close()


def test_verify_from_kafka_in_chunks_carries_the_chain_and_names_a_later_tampered_entry(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    chains = {0: build(0, 1_800), 1: build(1, 700)}
    cps = [checkpoint(chains, "2026-11-25T03:00:00+00:00", {0: 899, 1: 699})]
    good = Hub(kafka_bootstrap, tmp_path / "good", partitions=2)
    good.create_topics()
    produce(good, chains, cps)
    n = good.names
    report = verify_kafka(kafka_bootstrap, n.audit_log, n.audit_checkpoints, PUB,
                          chunk_entries=250)
    assert report.ok, report.problems
    assert (report.entries, report.partitions, report.checkpoints) == (2_500, 2, 1)
    assert report.heads == chain.heads_of(chains)

    # The streamed copy is the same file as one written from the whole log read at once.
    streamed, whole = tmp_path / "streamed.jsonl", tmp_path / "whole.jsonl"
    assert stream_copy(kafka_bootstrap, n.audit_log, n.audit_checkpoints, streamed,
                       chunk_entries=250) == (2_500, 1)
    write_copy(read_log(kafka_bootstrap, n.audit_log, n.audit_checkpoints), whole)
    assert streamed.read_bytes() == whole.read_bytes()

    # Entry 1,300 of partition 0 (the sixth chunk of 250) is stored with one content byte off.
    tampered = {**chains, 0: list(chains[0])}
    value = bytearray(tampered[0][1_300])
    value[80] ^= 0x01
    tampered[0][1_300] = bytes(value)
    bad = Hub(kafka_bootstrap, tmp_path / "bad", partitions=2)
    bad.create_topics()
    produce(bad, tampered, cps)
    report = verify_kafka(kafka_bootstrap, bad.names.audit_log, bad.names.audit_checkpoints,
                          PUB, chunk_entries=250)
    [problem] = report.problems
    assert problem.offset == 1_300  # a plain producer: offsets are the seqs
    assert str(problem) == (f"{bad.names.audit_log} partition 0, entry 1300: content_mismatch: "
                            "SHA-256 of the recorded content differs from its content_sha256 "
                            "(Kafka offset 1300)")
    assert report.heads[0] == chain.heads_of({0: chains[0][:900]})[0]
