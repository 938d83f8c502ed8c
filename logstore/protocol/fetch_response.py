"""Fetch responses (v4 to v12) as a list of chunks: the encoded fields, and between them the
stored record batches themselves, so the broker sends them with a scatter write and never
copies them into one buffer (kio would).

Layout (Kafka's FetchResponse schema; ``flexible`` means v12: compact lengths, which are
unsigned varints of length + 1 with 0 for null, and a tagged-field section after each struct)::

    throttle_time_ms      int32
    error_code            int16                     v7+
    session_id            int32                     v7+
    responses             array (int32 count; compact in v12)
      topic               string (int16 length; compact in v12)
      partitions          array
        partition_index       int32
        error_code            int16
        high_watermark        int64
        last_stable_offset    int64                 v4+
        log_start_offset      int64                 v5+
        aborted_transactions  nullable array        v4+
          producer_id         int64
          first_offset        int64
          (tagged fields)                           v12
        preferred_read_replica int32                v11+
        records               nullable bytes (int32 length; compact in v12): the batches
        (tagged fields: 0 diverging_epoch, 1 current_leader, 2 snapshot_id; v12)
      (tagged fields)                               v12
    (tagged fields)                                 v12

The tests compare these bytes with kio's writer for every version.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

MIN_VERSION = 4
MAX_VERSION = 12
FLEXIBLE_FROM = 12

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_PARTITION_HEAD = struct.Struct(">ihqq")  # index, error, high watermark, last stable offset
_EPOCH_END = struct.Struct(">iq")  # diverging epoch: epoch, end offset


@dataclass(frozen=True, slots=True)
class PartitionFetch:
    """One partition of a fetch response."""

    partition: int
    error_code: int = 0
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    aborted: Sequence[tuple[int, int]] | None = None
    """(producer id, first offset) of the aborted transactions in range; None for
    read_uncommitted (Kafka sends null)."""
    records: Sequence[bytes] = field(default_factory=tuple)
    """The stored batches, sent as they are."""
    preferred_read_replica: int = -1
    diverging_epoch: tuple[int, int] | None = None
    """(epoch, end offset) when a follower's log diverges (v12 tagged field 0)."""

    @property
    def records_size(self) -> int:
        return sum(len(b) for b in self.records)


def encode(
    version: int,
    topics: Sequence[tuple[str, Sequence[PartitionFetch]]],
    *,
    throttle_time_ms: int = 0,
    error_code: int = 0,
    session_id: int = 0,
) -> tuple[list[bytes], int]:
    """The response body as chunks (record batches among them, uncopied) and its size."""
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"fetch response version {version} is not supported")
    flexible = version >= FLEXIBLE_FROM
    chunks: list[bytes] = []
    head = bytearray(_I32.pack(throttle_time_ms))
    if version >= 7:
        head += _I16.pack(error_code) + _I32.pack(session_id)
    head += _array_length(len(topics), flexible)
    for topic, partitions in topics:
        head += _string(topic, flexible)
        head += _array_length(len(partitions), flexible)
        for p in partitions:
            head += _PARTITION_HEAD.pack(p.partition, p.error_code, p.high_watermark,
                                         p.last_stable_offset)
            if version >= 5:
                head += _I64.pack(p.log_start_offset)
            if p.aborted is None:
                head += _null_array(flexible)
            else:
                head += _array_length(len(p.aborted), flexible)
                for producer_id, first_offset in p.aborted:
                    head += _I64.pack(producer_id) + _I64.pack(first_offset)
                    if flexible:
                        head.append(0)
            if version >= 11:
                head += _I32.pack(p.preferred_read_replica)
            size = p.records_size
            head += _bytes_length(size, flexible)
            if size:
                chunks.append(bytes(head))
                chunks.extend(p.records)
                head = bytearray()
            if flexible:
                head += _partition_tags(p)
        if flexible:
            head.append(0)
    if flexible:
        head.append(0)
    chunks.append(bytes(head))
    return chunks, sum(len(c) for c in chunks)


def _partition_tags(p: PartitionFetch) -> bytes:
    if p.diverging_epoch is None:
        return b"\x00"
    value = _EPOCH_END.pack(*p.diverging_epoch) + b"\x00"  # the struct's own tagged fields
    return b"\x01" + _uvarint(0) + _uvarint(len(value)) + value


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _array_length(count: int, flexible: bool) -> bytes:
    return _uvarint(count + 1) if flexible else _I32.pack(count)


def _null_array(flexible: bool) -> bytes:
    return b"\x00" if flexible else _I32.pack(-1)


def _bytes_length(size: int, flexible: bool) -> bytes:
    return _uvarint(size + 1) if flexible else _I32.pack(size)


def _string(text: str, flexible: bool) -> bytes:
    data = text.encode("utf-8")
    return (_uvarint(len(data) + 1) if flexible else _I16.pack(len(data))) + data
