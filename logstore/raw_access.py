"""Raw access to partitions for the embedded API: fetch encoded RecordBatch v2 bytes, append
an encoded batch, advance log start offsets (Kafka's Fetch, Produce and DeleteRecords without
the wire protocol).

Each function checks its arguments, then finds the partition through ``partition_log`` (the
Log's: it checks the topic name and raises UnknownTopicOrPartitionError). Thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from logstore.errors import InvalidArgumentError
from logstore.log.partition_log import PartitionLog
from logstore.types import AppendResult, FetchResult, IsolationLevel, TopicPartition

PartitionLookup = Callable[[str, int], PartitionLog]


def fetch(
    partition_log: PartitionLookup,
    topic: str,
    partition: int,
    offset: int,
    *,
    max_bytes: int,
    isolation_level: str,
) -> FetchResult:
    """See :meth:`logstore.embedded.Log.fetch`."""
    try:
        isolation = IsolationLevel(isolation_level)
    except ValueError:
        raise InvalidArgumentError(f"unknown isolation_level {isolation_level!r}") from None
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise InvalidArgumentError(f"max_bytes must be a non-negative int, got {max_bytes!r}")
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise InvalidArgumentError(f"offset must be an int, got {offset!r}")
    log = partition_log(topic, partition)
    result = log.read(offset, max_bytes=max_bytes, isolation=isolation)
    return FetchResult(
        topic=topic,
        partition=partition,
        records=result.records,
        high_watermark=result.high_watermark,
        last_stable_offset=result.last_stable_offset,
        log_start_offset=result.log_start_offset,
        log_end_offset=result.log_end_offset,
        aborted_transactions=tuple((a.producer_id, a.first_offset) for a in result.aborted),
    )


def append(
    partition_log: PartitionLookup, topic: str, partition: int, batch: bytes
) -> AppendResult:
    """See :meth:`logstore.embedded.Log.append`."""
    if not isinstance(batch, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(f"batch must be bytes, got {type(batch).__name__}")
    return partition_log(topic, partition).append(bytes(batch), verify_records=True)


def delete_records(
    partition_log: PartitionLookup, offsets: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """See :meth:`logstore.embedded.Log.delete_records`."""
    return {
        TopicPartition(*tp): partition_log(tp[0], tp[1]).delete_records(offset)
        for tp, offset in offsets.items()
    }
