"""Partitioning compatible with Kafka's Java producer.

* Records with a key go to ``toPositive(murmur2(key)) % numPartitions``, Kafka's default (and
  since KIP-794 "built-in") partitioner, so a key lands on the same partition whatever client
  (Java, librdkafka's ``murmur2_random``, kafka-python, logstore) produced it.
* Records without a key use the sticky partitioner of KIP-480: all keyless records of a topic
  go to one randomly chosen partition until the batch for it is sent, then another partition is
  chosen. Larger batches, fewer requests, still an even spread over time.

``murmur2`` is Austin Appleby's MurmurHash2 (32-bit) with Kafka's seed ``0x9747b28c``, as
``org.apache.kafka.common.utils.Utils.murmur2`` computes it: little-endian 4-byte words, the
tail bytes mixed in afterwards, and the result read as a signed int32.
"""

from __future__ import annotations

import random
import struct
import threading
from collections.abc import Callable

from logstore.errors import InvalidArgumentError
from logstore.records.speedups import murmur2 as _c_murmur2

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF

# Keys of up to _CACHED_WORDS 4-byte words use pre-built structs (one C call unpacks a key).
_CACHED_WORDS = 64
_WORDS = [struct.Struct(f"<{n}I") for n in range(_CACHED_WORDS + 1)]
# From _LANE_MIN_WORDS words on, the per-word mixing of k runs on all words at once: each word
# sits in its own 64-bit lane of one big int, and since k * m < 2**63 no lane carries into the
# next, so one multiplication mixes every word. Only the h chain stays a Python loop. Below
# this size the extra packing costs more than it saves.
_LANE_MIN_WORDS = 8
_LANES = [struct.Struct(f"<{n}Q") for n in range(_CACHED_WORDS + 1)]
_LANE = b"\xff" * 4 + b"\x00" * 4  # the low 32 bits of a little-endian 64-bit lane
_LANE_MASKS = [int.from_bytes(_LANE * n, "little") for n in range(_CACHED_WORDS + 1)]


def murmur2_py(data: bytes | bytearray | memoryview) -> int:
    """Kafka's murmur2 hash of ``data`` as a signed 32-bit int (``Utils.murmur2``).

    The reference implementation; :func:`murmur2` is the C version when it is built.
    """
    length = len(data)
    m = _M
    mask = _MASK32
    h = (_SEED ^ length) & mask
    words = length >> 2
    if words:
        if words < _LANE_MIN_WORDS:
            for k in _WORDS[words].unpack_from(data):
                k = (k * m) & mask
                # (h*m mod 2**32) ^ (k*m mod 2**32) == (h*m ^ k*m) mod 2**32: one mask for both.
                h = ((h * m) ^ ((k ^ (k >> 24)) * m)) & mask
        else:
            if words <= _CACHED_WORDS:
                unpack_words = _WORDS[words]
                lanes_struct = _LANES[words]
                lane_mask = _LANE_MASKS[words]
            else:
                unpack_words = struct.Struct(f"<{words}I")
                lanes_struct = struct.Struct(f"<{words}Q")
                lane_mask = int.from_bytes(_LANE * words, "little")
            lanes = int.from_bytes(lanes_struct.pack(*unpack_words.unpack_from(data)), "little")
            lanes = (lanes * m) & lane_mask
            lanes = (lanes ^ ((lanes >> 24) & lane_mask)) * m  # lanes hold k*m, unmasked
            for k in lanes_struct.unpack(lanes.to_bytes(words << 3, "little")):
                h = ((h * m) ^ k) & mask
    tail = length & 3
    if tail:
        i = words << 2
        if tail == 3:
            h ^= (data[i + 2] << 16) | (data[i + 1] << 8)
        elif tail == 2:
            h ^= data[i + 1] << 8
        h = ((h ^ data[i]) * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


murmur2: Callable[[bytes | bytearray | memoryview], int] = _c_murmur2 or murmur2_py
"""Kafka's murmur2 hash (the C version when built, else :func:`murmur2_py`)."""


def to_positive(n: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit of an int32 (not ``abs``)."""
    return n & 0x7FFFFFFF


def partition_for_key(key: bytes | bytearray | memoryview, num_partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key``."""
    if num_partitions < 1:
        raise InvalidArgumentError(f"num_partitions must be >= 1, not {num_partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


class StickyPartitioner:
    """KIP-480 sticky partition choice for records without a key.

    ``partition(topic, n)`` returns the topic's current sticky partition (chosen at random the
    first time, or again if the partition count no longer covers it). When the producer closes
    the batch of that partition it calls ``on_new_batch(topic, n, prev_partition)``, which moves
    the topic to a different random partition, but only if it still sticks to
    ``prev_partition`` (another thread may already have moved it).

    Thread-safe: one lock guards the per-topic map. ``rng`` can be injected for tests.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._sticky: dict[str, int] = {}

    def partition(self, topic: str, num_partitions: int) -> int:
        """The partition keyless records of ``topic`` currently go to."""
        if num_partitions < 1:
            raise InvalidArgumentError(f"num_partitions must be >= 1, not {num_partitions}")
        current = self._sticky.get(topic)  # dict reads are atomic; the lock covers changes
        if current is not None and current < num_partitions:
            return current
        with self._lock:
            current = self._sticky.get(topic)
            if current is None or current >= num_partitions:
                current = self._rng.randrange(num_partitions)
                self._sticky[topic] = current
            return current

    def on_new_batch(self, topic: str, num_partitions: int, prev_partition: int) -> int:
        """Switch ``topic`` away from ``prev_partition``; return the (new) sticky partition."""
        if num_partitions < 1:
            raise InvalidArgumentError(f"num_partitions must be >= 1, not {num_partitions}")
        with self._lock:
            current = self._sticky.get(topic)
            if current is None or current == prev_partition or current >= num_partitions:
                if num_partitions == 1:
                    current = 0
                elif 0 <= prev_partition < num_partitions:
                    # Uniform over the other partitions, without a retry loop.
                    current = self._rng.randrange(num_partitions - 1)
                    if current >= prev_partition:
                        current += 1
                else:
                    current = self._rng.randrange(num_partitions)
                self._sticky[topic] = current
            return current
