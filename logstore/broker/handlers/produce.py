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
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers.common import error_code, error_message
from logstore.errors import InvalidRecordError
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
    outcomes = await asyncio.gather(*(
        ctx.run(_append, ctx, name, index, records) for name, index, records in work))
    ctx.services.metrics.bytes_in(sum(len(r or b"") for _, _, r in work))
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


def _append(ctx: RequestContext, topic: str, partition: int,
            records: bytes | None) -> AppendResult | BaseException:
    """Append one partition's batch; the error instead of raising it."""
    try:
        if not records:
            raise InvalidRecordError("a produce request must carry a record batch")
        log = ctx.services.log.partition_log(topic, partition)
        return log.append_many([records], verify_records=True)[0]
    except Exception as exc:  # noqa: BLE001 - answered as this partition's error code
        return exc


def _append_time(result: AppendResult) -> datetime.datetime | None:
    if result.log_append_time_ms < 0:
        return None
    return datetime.datetime.fromtimestamp(result.log_append_time_ms / 1000, datetime.UTC)
