"""Which partition a dossier lives on: the Kafka default partitioner (murmur2 of the key bytes).

The gateway (kafka-python), the worker's table changelog and the deadline index must agree;
both client libraries implement the same murmur2 as the Java client.
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def partition_of(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions
