"""The partition of a key: the same murmur2 as the Java client and both Python clients."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from lienthong.services.processors.partitioning import murmur2, partition_of


@settings(max_examples=500)
@given(st.binary(max_size=80))
def test_murmur2_equals_kafka_pythons_for_any_bytes(key: bytes) -> None:
    assert murmur2(key) == kafka_python_murmur2(key)


@given(st.integers(0, 9_999_999), st.integers(1, 64))
def test_a_dossier_code_lands_where_the_producer_puts_it(sequence: int, partitions: int) -> None:
    key = f"G09.20-20260609-{sequence:07d}".encode()
    assert partition_of(key, partitions) == (
        (kafka_python_murmur2(key) & 0x7FFFFFFF) % partitions)


def test_known_values_of_the_java_client() -> None:
    # org.apache.kafka.common.utils.UtilsTest.testMurmur2 (as signed 32-bit ints there)
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829,
             b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
             b"abc": 479470107}
    for key, signed in cases.items():
        assert murmur2(key) == signed & 0xFFFFFFFF
