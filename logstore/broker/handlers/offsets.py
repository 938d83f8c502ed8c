"""ListOffsets (v1-v7) and OffsetForLeaderEpoch (v2-v4).

ListOffsets: timestamp -2 is the log start offset, -1 the high watermark (the last stable
offset for read_committed, v2+), -3 the record with the largest timestamp (v7, KIP-734), any
other value the earliest record whose timestamp is at least that (offset and timestamp -1 when
there is none).

OffsetForLeaderEpoch: every batch is written at leader epoch 0 until replication exists, so
epoch 0 (or any epoch not above it) ends at the log end offset; a later epoch is unknown.

Authorization: both need DESCRIBE on each topic (partitions of others are answered
TOPIC_AUTHORIZATION_FAILED); a replica's OffsetForLeaderEpoch needs CLUSTER_ACTION on the
cluster instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

from logstore.broker.auth import CLUSTER_RESOURCE_NAME, AclOperation, ResourceType
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers.common import error_code
from logstore.errors import TopicAuthorizationFailedError
from logstore.protocol.apis import ApiKey, VersionRange
from logstore.types import OffsetAndTimestamp

LIST_OFFSETS_VERSIONS = VersionRange(1, 7)
OFFSET_FOR_LEADER_EPOCH_VERSIONS = VersionRange(2, 4)
EARLIEST, LATEST, MAX_TIMESTAMP = -2, -1, -3
#: The leader epoch of every partition until replication exists.
LEADER_EPOCH = 0


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.LIST_OFFSETS, LIST_OFFSETS_VERSIONS, list_offsets)
    dispatcher.register(ApiKey.OFFSET_FOR_LEADER_EPOCH, OFFSET_FOR_LEADER_EPOCH_VERSIONS,
                        offset_for_leader_epoch)


async def list_offsets(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.LIST_OFFSETS, ctx.api_version)
    committed = getattr(request, "isolation_level", 0) == 1
    work = [(t.name, p.partition_index, p.timestamp)
            for t in request.topics for p in t.partitions]
    denied = await _undescribable(ctx, {name for name, _, _ in work})
    outcomes = await asyncio.gather(*(
        _refused(name) if name in denied
        else ctx.run(_lookup, ctx, name, partition, timestamp, committed)
        for name, partition, timestamp in work))
    by_topic: dict[str, list[Any]] = {}
    for (name, partition, _), outcome in zip(work, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            entry = build_in(module, "ListOffsetsPartitionResponse", partition_index=partition,
                             error_code=error_code(outcome), timestamp=-1, offset=-1,
                             leader_epoch=-1)
        else:
            entry = build_in(module, "ListOffsetsPartitionResponse", partition_index=partition,
                             error_code=0, timestamp=outcome[1], offset=outcome[0],
                             leader_epoch=LEADER_EPOCH if outcome[0] >= 0 else -1)
        by_topic.setdefault(name, []).append(entry)
    return build(module.ListOffsetsResponse, throttle_time_ms=0, topics=tuple(
        build_in(module, "ListOffsetsTopicResponse", name=name, partitions=tuple(entries))
        for name, entries in by_topic.items()))


def _lookup(ctx: RequestContext, topic: str, partition: int, timestamp: int,
            committed: bool) -> tuple[int, int] | BaseException:
    """(offset, timestamp) for one partition, or the error."""
    try:
        log = ctx.services.log.partition_log(topic, partition)
        if timestamp == EARLIEST:
            return log.log_start_offset, -1
        if timestamp == LATEST:
            return (log.last_stable_offset if committed else log.high_watermark), -1
        found: OffsetAndTimestamp | None
        if timestamp == MAX_TIMESTAMP:
            found = log.max_timestamp_offset()
        else:
            found = log.offset_for_timestamp(timestamp)
        return (-1, -1) if found is None else (found.offset, found.timestamp_ms)
    except Exception as exc:  # noqa: BLE001 - this partition's error code
        return exc


async def offset_for_leader_epoch(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.OFFSET_FOR_LEADER_EPOCH, ctx.api_version)
    work = [(t.topic, p.partition, p.leader_epoch) for t in request.topics for p in t.partitions]
    topics = {name for name, _, _ in work}
    if getattr(request, "replica_id", -1) >= 0:  # a replica: the broker's own principal
        denied = set() if await ctx.authorize(
            ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME, AclOperation.CLUSTER_ACTION) else topics
    else:
        denied = await _undescribable(ctx, topics)
    outcomes = await asyncio.gather(*(
        _refused(name) if name in denied else ctx.run(_epoch_end, ctx, name, partition, epoch)
        for name, partition, epoch in work))
    by_topic: dict[str, list[Any]] = {}
    for (name, partition, _), outcome in zip(work, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            entry = build_in(module, "EpochEndOffset", error_code=error_code(outcome),
                             partition=partition, leader_epoch=-1, end_offset=-1)
        else:
            entry = build_in(module, "EpochEndOffset", error_code=0, partition=partition,
                             leader_epoch=outcome[0], end_offset=outcome[1])
        by_topic.setdefault(name, []).append(entry)
    return build(module.OffsetForLeaderEpochResponse, throttle_time_ms=0, topics=tuple(
        build_in(module, "OffsetForLeaderTopicResult", topic=name, partitions=tuple(entries))
        for name, entries in by_topic.items()))


async def _undescribable(ctx: RequestContext, topics: set[str]) -> set[str]:
    """The topics this principal may not DESCRIBE."""
    return {topic for topic in topics
            if not await ctx.authorize(ResourceType.TOPIC, topic, AclOperation.DESCRIBE)}


async def _refused(topic: str) -> BaseException:
    return TopicAuthorizationFailedError(f"not authorized to describe topic {topic!r}")


def _epoch_end(ctx: RequestContext, topic: str, partition: int,
               epoch: int) -> tuple[int, int] | BaseException:
    """(leader epoch, end offset) of the largest epoch <= ``epoch`` (-1, -1: none)."""
    try:
        log = ctx.services.log.partition_log(topic, partition)
        if epoch < 0 or epoch > LEADER_EPOCH:
            return -1, -1
        return LEADER_EPOCH, log.log_end_offset()
    except Exception as exc:  # noqa: BLE001 - this partition's error code
        return exc
