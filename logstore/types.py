"""Value types shared by every layer: topic-partitions, records, offsets, descriptions.

All values are immutable. ``ConsumerRecord`` and ``TopicPartition`` are ``NamedTuple`` rather than
frozen dataclasses because they are created once per record / looked up per record on hot paths,
and a tuple is several times cheaper to build and hash than a frozen dataclass.

This module is a leaf: it imports nothing from logstore but ``errors``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

Header = tuple[str, bytes | None]
"""A record header: a UTF-8 key and an optional byte value (Kafka allows null header values)."""


class TopicPartition(NamedTuple):
    """A partition of a topic."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


class ConsumerRecord(NamedTuple):
    """A record as a consumer sees it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    timestamp_type: int = 0  # 0 = CreateTime, 1 = LogAppendTime


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where an acknowledged record was written."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    serialized_key_size: int = -1
    serialized_value_size: int = -1

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class OffsetAndTimestamp:
    """The earliest offset whose record timestamp is at or after a queried time."""

    offset: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class OffsetAndMetadata:
    """A committed offset: the next offset to consume, with optional application metadata."""

    offset: int
    metadata: str = ""
    leader_epoch: int = -1


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadata:
    """A group member's identity, for ``send_offsets_to_transaction`` (KIP-447): offsets sent
    to a transaction are refused if this member has been fenced out of its group."""

    group_id: str
    generation_id: int = -1
    member_id: str = ""
    group_instance_id: str | None = None


class IsolationLevel(str, enum.Enum):
    """Which records a reader may see (Kafka's ``isolation.level``)."""

    READ_UNCOMMITTED = "read_uncommitted"
    READ_COMMITTED = "read_committed"


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Offsets assigned to one appended batch."""

    base_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: int
    duplicate: bool = False
    """True when the batch was a retry of one already appended (idempotence): the offsets are
    those the first append got, and nothing was written this time."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Raw RecordBatch v2 bytes read from one partition, with the partition's offsets.

    ``records`` holds whole batches concatenated in offset order, exactly as stored; the first
    batch may start before the requested offset (Kafka returns whole batches).
    """

    topic: str
    partition: int
    records: bytes
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    log_end_offset: int
    aborted_transactions: tuple[tuple[int, int], ...] = ()
    """read_committed: (producer id, first offset) of each transaction aborted in the range."""


@dataclass(frozen=True, slots=True)
class PartitionDescription:
    """Storage facts of one partition."""

    partition: int
    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    size_bytes: int
    segment_count: int
    last_stable_offset: int = -1
    dirty_ratio: float | None = None
    """Of a compacted topic: dirty bytes / cleanable bytes, as the log cleaner computes it to
    decide whether the partition is due (``min.cleanable.dirty.ratio``); None if the topic is
    not compacted."""
    cleaner_checkpoint: int | None = None
    """Of a compacted topic: offsets below it have been compacted; None if the topic is not
    compacted or the partition was never cleaned."""
    missing_ranges: tuple[tuple[int, int], ...] = ()
    """Holes: ``[start, end)`` offset ranges whose segment files are gone (unreadable; the
    rest of the partition serves). See ``logstore check``."""
    offline_reason: str | None = None
    """Why the partition is offline (its files are missing or damaged in a way that could
    reuse offsets), or None when it serves. Offsets are -1 when offline."""


@dataclass(frozen=True, slots=True)
class TopicDescription:
    """A topic: identity, configuration and per-partition storage facts."""

    name: str
    topic_id: str
    partition_count: int
    config: Mapping[str, str]
    partitions: Sequence[PartitionDescription] = field(default_factory=tuple)
    created_ms: int = 0
    overrides: Mapping[str, str] = field(default_factory=dict)
    """The configs set on this topic (``config`` also holds the defaults of the others)."""


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one maintenance pass did to one partition."""

    topic: str
    partition: int
    segments_deleted: int
    bytes_deleted: int
    log_start_offset: int


@dataclass(frozen=True, slots=True)
class GroupListing:
    """A consumer group as ``list_groups`` shows it."""

    group_id: str
    state: str
    protocol_type: str
    member_count: int


@dataclass(frozen=True, slots=True)
class MemberDescription:
    """A member of a consumer group and the partitions assigned to it."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    assignment: frozenset[TopicPartition]


@dataclass(frozen=True, slots=True)
class GroupDescription:
    """A consumer group: state, generation, chosen protocol, leader and members."""

    group_id: str
    state: str
    generation: int
    protocol_type: str
    protocol: str | None
    leader_id: str | None
    members: tuple[MemberDescription, ...]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far a group is behind on one partition (``lag`` None: nothing committed)."""

    topic: str
    partition: int
    committed_offset: int | None
    log_end_offset: int
    lag: int | None
    member_id: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionDescription:
    """A transactional id as the coordinator stores it (``logstore transactions describe``).

    ``start_ms`` is when the open transaction began (-1: none is open); ``partitions`` and
    ``pending_offsets`` (group -> partition -> offset) belong to it.
    """

    transactional_id: str
    producer_id: int
    producer_epoch: int
    state: str
    timeout_ms: int
    start_ms: int
    last_update_ms: int
    partitions: frozenset[TopicPartition]
    pending_offsets: Mapping[str, Mapping[TopicPartition, int]]
