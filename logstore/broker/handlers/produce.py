"""Produce (v3-v9): append each partition's record batch, as the client encoded it.

The batch crosses the broker as bytes: the partition log validates it (magic 2, CRC, lengths,
record count, sizes against ``max.message.bytes``; a batch that fails gets CORRUPT_MESSAGE,
INVALID_RECORD or MESSAGE_TOO_LARGE for its partition and nothing is written), checks its
producer id and sequence (idempotence: a retried batch is answered with its first offsets), and
patches its base offset and leader epoch in place. Partitions of one request are appended
concurrently, each in its partition's group commit.

``acks``: 0 gets no response (the appends still happen, in order); 1 and -1 are both answered
once the append is durable as the topic's ``durability`` says (with one broker, the leader's
log is the whole ISR).

Authorization comes first: a request carrying a transactional id the principal may not WRITE
gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition; partitions of topics it may not
WRITE get TOPIC_AUTHORIZATION_FAILED; neither is appended.

Before appending, ``txn.verify_produce`` refuses control batches (only the coordinator writes
markers) and transactional batches whose partition is not in their producer's ongoing
transaction (KIP-890 part 1); a stale producer epoch is answered INVALID_PRODUCER_EPOCH.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from logstore.broker.auth import AclOperation, ResourceType
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers.common import error_code, error_message
from logstore.broker.handlers.txn import produce_error, verify_produce
from logstore.errors import (
    InvalidRecordError,
    LogstoreError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)
from logstore.protocol.apis import ApiKey, VersionRange
from logstore.types import AppendResult

VERSIONS = VersionRange(3, 9)


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.PRODUCE, VERSIONS, produce)


async def produce(ctx: RequestContext, request: Any) -> Any:
    work = [
        (topic.name, part.index, part.records)
        for topic in request.topic_data for part in topic.partition_data
    ]
    refused = await _unauthorized(ctx, request.transactional_id, work)
    verified_claim = None
    if len(refused) < len(work):
        unverified, verified_claim = await verify_produce(ctx, request.transactional_id, work)
        refused = unverified | refused
    outcomes = await asyncio.gather(*(
        _refuse(refused[i]) if i in refused
        else ctx.run(_append, ctx, name, index, records, verified_claim)
        for i, (name, index, records) in enumerate(work)))
    ctx.services.metrics.produce_done(work, outcomes)
    if request.acks == 0:
        return None
    module = response_module(ApiKey.PRODUCE, ctx.api_version)
    by_topic: dict[str, list[Any]] = {}
    for (name, index, _), outcome in zip(work, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            entry = build_in(module, "PartitionProduceResponse", index=index,
                             error_code=error_code(outcome), base_offset=-1,
                             log_append_time=None, log_start_offset=-1, record_errors=(),
                             error_message=error_message(outcome))
        else:
            entry = build_in(module, "PartitionProduceResponse", index=index, error_code=0,
                             base_offset=outcome.base_offset,
                             log_append_time=_append_time(outcome),
                             log_start_offset=outcome.log_start_offset, record_errors=(),
                             error_message=None)
        by_topic.setdefault(name, []).append(entry)
    return build(module.ProduceResponse, throttle_time_ms=0, responses=tuple(
        build_in(module, "TopicProduceResponse", name=name, partition_responses=tuple(entries))
        for name, entries in by_topic.items()))


def _append(ctx: RequestContext, topic: str, partition: int, records: bytes | None,
            verified_claim: int | None) -> AppendResult | BaseException:
    """Append one partition's batch; the error instead of raising it."""
    try:
        if not records:
            raise InvalidRecordError("a produce request must carry a record batch")
        log = ctx.services.log.partition_log(topic, partition)
        return log.append_many([records], verify_records=True,
                               verified_claim=verified_claim)[0]
    except Exception as exc:  # noqa: BLE001 - answered as this partition's error code
        return produce_error(exc)


async def _unauthorized(ctx: RequestContext, transactional_id: str | None,
                        work: list[tuple[str, int, bytes | None]]) -> dict[int, LogstoreError]:
    """Refusals (by index in ``work``) of what this principal may not write."""
    if transactional_id is not None and not await ctx.authorize(
            ResourceType.TRANSACTIONAL_ID, transactional_id, AclOperation.WRITE):
        return dict.fromkeys(range(len(work)), TransactionalIdAuthorizationFailedError(
            f"not authorized to write as transactional id {transactional_id!r}"))
    allowed: dict[str, bool] = {}
    refused: dict[int, LogstoreError] = {}
    for index, (topic, _, _) in enumerate(work):
        if topic not in allowed:
            allowed[topic] = await ctx.authorize(ResourceType.TOPIC, topic, AclOperation.WRITE)
        if not allowed[topic]:
            refused[index] = TopicAuthorizationFailedError(
                f"not authorized to write to topic {topic!r}")
    return refused


async def _refuse(refusal: BaseException) -> BaseException:
    """A partition's outcome when the transactional checks refused its batch."""
    return refusal


def _append_time(result: AppendResult) -> datetime.datetime | None:
    if result.log_append_time_ms < 0:
        return None
    return datetime.datetime.fromtimestamp(result.log_append_time_ms / 1000, datetime.UTC)
