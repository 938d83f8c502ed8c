"""Fetch (v4-v12): stored batches as they are, with real long polling.

A fetch reads every partition it asks for (whole batches from the one holding the fetch
offset, up to ``partition_max_bytes`` each and ``max_bytes`` in all, at least one batch when the
first partition has one: KIP-74). If that is less than ``min_bytes`` it waits until one of its
partitions is rung (an append by this broker or by any process sharing the data directory;
see ``AppendWaiters``) or ``max_wait_ms`` passes, then reads again the partitions that were rung.
A broker that answered empty fetches at once would make clients spin.

Authorization: partitions of topics the principal may not READ (or, for a replica's fetch,
every partition unless it may CLUSTER_ACTION the cluster) are answered
TOPIC_AUTHORIZATION_FAILED without being read; the others are served as usual.

``read_committed`` (isolation level 1) stops at the last stable offset and sends the aborted
transactions in range; ``read_uncommitted`` sends none (null, as Kafka).

Fetch sessions (KIP-227) are not kept: the response's session id is 0, which tells clients to
send full fetch requests. The response is encoded by ``protocol.fetch_response`` as chunks, so
the batches go out with a scatter write.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from logstore.broker.auth import CLUSTER_RESOURCE_NAME, AclOperation, ResourceType
from logstore.broker.dispatch import Dispatcher, RawResponse, RequestContext
from logstore.broker.handlers.common import error_code
from logstore.errors import OffsetOutOfRangeError, TopicAuthorizationFailedError
from logstore.protocol import fetch_response
from logstore.protocol.apis import ApiKey, VersionRange
from logstore.protocol.fetch_response import PartitionFetch
from logstore.types import IsolationLevel

VERSIONS = VersionRange(fetch_response.MIN_VERSION, fetch_response.MAX_VERSION)
#: Without inotify, waits for appends by other processes are cut into slices this long.
_POLL_SLICE_S = 0.02


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.FETCH, VERSIONS, fetch)


@dataclass(slots=True)
class _Wanted:
    topic: str
    partition: int
    offset: int
    max_bytes: int
    doorbell: str | None = None
    rings: int | None = None
    result: PartitionFetch | None = None


async def fetch(ctx: RequestContext, request: Any) -> RawResponse:
    services = ctx.services
    isolation = (IsolationLevel.READ_COMMITTED if getattr(request, "isolation_level", 0) == 1
                 else IsolationLevel.READ_UNCOMMITTED)
    every = [_Wanted(topic.topic, p.partition, p.fetch_offset, p.partition_max_bytes)
             for topic in request.topics for p in topic.partitions]
    denied = await _unauthorized(ctx, request, {w.topic for w in every})
    for w in every:
        if w.topic in denied:
            w.result = PartitionFetch(w.partition, TopicAuthorizationFailedError.error_code)
    wanted = [w for w in every if w.topic not in denied]
    max_wait_s = max(0.0, request.max_wait.total_seconds())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    notifier = services.log.notifier
    event = services.waiters.register()
    try:
        todo = wanted
        while True:
            event.clear()  # before reading: an append from here on wakes this fetch
            await ctx.run(_read, ctx, todo, isolation, request.max_bytes, wanted)
            total = sum(w.result.records_size for w in wanted if w.result is not None)
            errors = any(w.result is not None and w.result.error_code for w in wanted)
            remaining = deadline - loop.time()
            if total >= request.min_bytes or errors or remaining <= 0 or not wanted:
                break
            polling = not notifier.cross_process
            try:
                await asyncio.wait_for(event.wait(),
                                       min(remaining, _POLL_SLICE_S) if polling else remaining)
            except TimeoutError:
                if not polling:
                    break
            todo = [w for w in wanted if w.rings is None
                    or notifier.rings(w.doorbell or "") != w.rings]
    finally:
        services.waiters.unregister(event)
    by_topic: dict[str, list[PartitionFetch]] = {}
    for w in every:
        by_topic.setdefault(w.topic, []).append(w.result or PartitionFetch(w.partition))
    chunks, size = fetch_response.encode(ctx.api_version, list(by_topic.items()))
    services.metrics.fetch_done(by_topic.items())
    return RawResponse(chunks, size)


async def _unauthorized(ctx: RequestContext, request: Any, topics: set[str]) -> set[str]:
    """The topics of the request this principal may not read."""
    if getattr(request, "replica_id", -1) >= 0 and not await ctx.authorize(
            ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME, AclOperation.CLUSTER_ACTION):
        return topics  # a replica's fetch: the broker's own principal must be allowed
    return {topic for topic in topics
            if not await ctx.authorize(ResourceType.TOPIC, topic, AclOperation.READ)}


def _read(ctx: RequestContext, todo: list[_Wanted], isolation: IsolationLevel,
          max_bytes: int, wanted: list[_Wanted]) -> None:
    """Read the partitions of ``todo`` (on a storage thread), within the response's
    ``max_bytes`` (counting what the other partitions of ``wanted`` already hold)."""
    log = ctx.services.log
    notifier = log.notifier
    budget = max_bytes - sum(w.result.records_size for w in wanted
                             if w.result is not None and w not in todo)
    first = True
    for w in todo:
        try:
            partition_log = log.partition_log(w.topic, w.partition)
            if w.doorbell is None:
                w.doorbell = partition_log.doorbell_path.name
                ctx.services.watch(partition_log.doorbell_path)
            w.rings = notifier.rings(w.doorbell)
            limit = min(w.max_bytes, budget) if budget > 0 else 0
            # Past the response's max_bytes (and once a batch was read: KIP-74), a partition
            # sends only its offsets.
            result = partition_log.read(
                w.offset, max_bytes=max(limit, 0), isolation=isolation,
                max_offset=w.offset if limit <= 0 and not first else None)
            batches = list(result.batches)
            size = sum(len(b) for b in batches)
            budget -= size
            first = first and not batches
            w.result = PartitionFetch(
                w.partition, 0, result.high_watermark, result.last_stable_offset,
                result.log_start_offset,
                None if isolation is IsolationLevel.READ_UNCOMMITTED
                else [(a.producer_id, a.first_offset) for a in result.aborted],
                batches)
        except OffsetOutOfRangeError as exc:
            w.result = PartitionFetch(w.partition, exc.error_code,
                                      exc.log_end_offset if exc.log_end_offset is not None
                                      else -1, -1,
                                      exc.log_start_offset if exc.log_start_offset is not None
                                      else -1)
        except Exception as exc:  # noqa: BLE001 - this partition's error code
            w.result = PartitionFetch(w.partition, error_code(exc))
