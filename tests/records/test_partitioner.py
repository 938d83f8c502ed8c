"""Key partitioning compatible with Kafka; KIP-480 sticky partitioning for keyless records."""

from __future__ import annotations

import random
import threading

import pytest
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as kafka_murmur2

import logstore.client.partitioner as partitioner
from logstore.client.partitioner import StickyPartitioner, partition_for_key
from logstore.errors import InvalidArgumentError

# Expected values from Kafka's UtilsTest.testMurmur2 (Java, signed int32).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), sorted(JAVA_MURMUR2.items()))
def test_murmur2_matches_java(key: bytes, expected: int) -> None:
    assert partitioner.murmur2(key) == expected


def _random_keys(count: int) -> list[bytes]:
    rng = random.Random(480)
    return [rng.randbytes(rng.randrange(0, 201)) for _ in range(count)]


def test_murmur2_matches_kafka_python_on_random_keys() -> None:
    keys = _random_keys(10_000)
    for key in keys:
        # kafka-python returns the same 32 bits unsigned.
        assert partitioner.murmur2(key) & 0xFFFFFFFF == kafka_murmur2(key), key
    assert {len(k) & 3 for k in keys} == {0, 1, 2, 3}
    assert all(-(2**31) <= partitioner.murmur2(k) < 2**31 for k in keys[:100])


def test_murmur2_accepts_bytes_like() -> None:
    key = b"some-key-123"
    assert (
        partitioner.murmur2(bytearray(key))
        == partitioner.murmur2(memoryview(key))
        == partitioner.murmur2(key)
    )
    assert partitioner.murmur2(b"x" * 5000) == kafka_murmur2(b"x" * 5000) - (1 << 32) * (
        kafka_murmur2(b"x" * 5000) >= 1 << 31
    )


class _Cluster:
    """The slice of kafka-python's ClusterMetadata that DefaultPartitioner reads."""

    def __init__(self, partitions: int) -> None:
        self._partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


@pytest.mark.parametrize("num_partitions", [1, 2, 3, 7, 12, 100, 1000])
def test_partition_for_key_matches_kafka_python(num_partitions: int) -> None:
    theirs = DefaultPartitioner()
    cluster = _Cluster(num_partitions)
    for key in _random_keys(1000):
        assert partition_for_key(key, num_partitions) == theirs.partition(
            "t", key, key, None, None, cluster
        )


def test_partition_for_key_uses_to_positive_not_abs() -> None:
    # partitioner.murmur2(b"21") is negative: Kafka masks the sign bit rather than negating.
    assert partition_for_key(b"21", 1000) == (-973932308 & 0x7FFFFFFF) % 1000 == 340
    with pytest.raises(InvalidArgumentError):
        partition_for_key(b"k", 0)


def test_sticky_partition_sticks_until_a_new_batch() -> None:
    sticky = StickyPartitioner(random.Random(1))
    first = sticky.partition("t", 6)
    assert 0 <= first < 6
    assert {sticky.partition("t", 6) for _ in range(100)} == {first}
    seen = {first}
    current = first
    for _ in range(60):
        new = sticky.on_new_batch("t", 6, current)
        assert new != current and 0 <= new < 6
        assert {sticky.partition("t", 6) for _ in range(5)} == {new}
        seen.add(new)
        current = new
    assert seen == set(range(6))  # every partition is eventually used


def test_on_new_batch_for_a_stale_partition_keeps_the_current_one() -> None:
    sticky = StickyPartitioner(random.Random(2))
    current = sticky.partition("t", 4)
    other = (current + 1) % 4
    # Another thread already moved away from `other`'s batch: nothing changes.
    assert sticky.on_new_batch("t", 4, other) == current
    assert sticky.partition("t", 4) == current


def test_topics_are_independent_and_single_partition_topics() -> None:
    sticky = StickyPartitioner(random.Random(3))
    assert sticky.partition("one", 1) == 0
    assert sticky.on_new_batch("one", 1, 0) == 0
    a = sticky.partition("a", 1000)
    b_before = sticky.partition("b", 1000)
    sticky.on_new_batch("a", 1000, a)
    assert sticky.partition("b", 1000) == b_before


def test_partition_count_shrink_or_unknown_topic_rechooses() -> None:
    sticky = StickyPartitioner(random.Random(4))
    while sticky.partition("t", 10) < 5:
        sticky.on_new_batch("t", 10, sticky.partition("t", 10))
    assert 0 <= sticky.partition("t", 5) < 5
    assert 0 <= sticky.on_new_batch("new", 3, 7) < 3
    with pytest.raises(InvalidArgumentError):
        sticky.partition("t", 0)


def test_sticky_partitioner_is_thread_safe() -> None:
    sticky = StickyPartitioner()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(2000):
                p = sticky.partition("t", 8)
                assert 0 <= p < 8
                assert 0 <= sticky.on_new_batch("t", 8, p) < 8
        except BaseException as exc:  # collected: the main thread asserts on them
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
