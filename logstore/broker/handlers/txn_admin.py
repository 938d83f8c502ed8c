"""Transaction administration over the wire: DescribeProducers (v0), DescribeTransactions (v0)
and ListTransactions (v0), from the partition logs' producer state and the embedded transaction
coordinator (``coordinator/transaction_coordinator.py``). Registered by ``txn.register``.

Authorization, as Kafka's ``KafkaApis``:

* DescribeProducers: READ on each topic, else TOPIC_AUTHORIZATION_FAILED for its partitions.
* DescribeTransactions: DESCRIBE on each transactional id, else
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED for it; the partitions of a described transaction
  are shown only for the topics the principal may DESCRIBE.
* ListTransactions: only the transactional ids the principal may DESCRIBE.

Thread-safety: handlers run on the event loop; every coordinator and storage call goes through
``ctx.run``.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from logstore.backends.txn_records import TXN_STATES
from logstore.broker.auth import AclOperation, ResourceType
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers.common import authorize_names, error_code, error_message
from logstore.errors import (
    LogstoreError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)
from logstore.protocol.apis import ApiKey, VersionRange

ADMIN_VERSIONS = VersionRange(0, 0)
COORDINATOR_LOAD_IN_PROGRESS = 14


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.DESCRIBE_PRODUCERS, ADMIN_VERSIONS, describe_producers)
    dispatcher.register(ApiKey.DESCRIBE_TRANSACTIONS, ADMIN_VERSIONS, describe_transactions)
    dispatcher.register(ApiKey.LIST_TRANSACTIONS, ADMIN_VERSIONS, list_transactions)


async def describe_producers(ctx: RequestContext, request: Any) -> Any:
    """Per partition, the producers its log keeps state for (the partition logs'
    ``producer_states()``): id, epoch, last sequence and timestamp, the first offset of the
    open transaction (-1: none). The coordinator epoch is not kept: -1."""
    module = response_module(ApiKey.DESCRIBE_PRODUCERS, ctx.api_version)
    wanted = [(topic.name, index) for topic in request.topics
              for index in topic.partition_indexes]
    _, denied = await authorize_names(ctx, ResourceType.TOPIC, (name for name, _ in wanted),
                                      AclOperation.READ)
    outcomes = await asyncio.gather(*(
        _refused(name) if name in denied else ctx.run(_producer_states, ctx, name, index)
        for name, index in wanted))
    by_topic: dict[str, list[Any]] = {}
    for (name, index), outcome in zip(wanted, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            entry = build_in(module, "PartitionResponse", partition_index=index,
                             error_code=error_code(outcome),
                             error_message=error_message(outcome), active_producers=())
        else:
            entry = build_in(module, "PartitionResponse", partition_index=index, error_code=0,
                             error_message=None, active_producers=tuple(
                                 build_in(module, "ProducerState", producer_id=pid,
                                          producer_epoch=state.epoch,
                                          last_sequence=state.last_sequence,
                                          last_timestamp=state.last_timestamp_ms,
                                          coordinator_epoch=state.marker_claim,
                                          current_txn_start_offset=(
                                              -1 if state.txn_first_offset is None
                                              else state.txn_first_offset))
                                 for pid, state in sorted(outcome.items())))
        by_topic.setdefault(name, []).append(entry)
    return build(module.DescribeProducersResponse, throttle_time_ms=0, topics=tuple(
        build_in(module, "TopicResponse", name=name, partitions=tuple(entries))
        for name, entries in by_topic.items()))


async def _refused(topic: str) -> BaseException:
    return TopicAuthorizationFailedError(f"not authorized to read topic {topic!r}")


def _producer_states(ctx: RequestContext, topic: str, partition: int) -> Any:
    try:
        return ctx.services.log.partition_log(topic, partition).producer_states()
    except Exception as exc:  # noqa: BLE001 - this partition's error code
        return exc


async def describe_transactions(ctx: RequestContext, request: Any) -> Any:
    """Each transactional id's state as the coordinator keeps it (Kafka's state names); an
    unknown id gets TRANSACTIONAL_ID_NOT_FOUND. The start time is -1 with no transaction."""
    module = response_module(ApiKey.DESCRIBE_TRANSACTIONS, ctx.api_version)
    coordinator = ctx.services.log.transaction_coordinator
    states = []
    for tid in request.transactional_ids:
        if not await ctx.authorize(ResourceType.TRANSACTIONAL_ID, tid, AclOperation.DESCRIBE):
            states.append(_undescribed(module, tid,
                                       TransactionalIdAuthorizationFailedError.error_code))
            continue
        try:
            record = await ctx.run(coordinator.describe_transaction, tid)
        except Exception as exc:  # noqa: BLE001 - this id's error code
            states.append(_undescribed(module, tid, error_code(exc)))
            continue
        visible, _ = await authorize_names(ctx, ResourceType.TOPIC,
                                           (tp.topic for tp in record.partitions),
                                           AclOperation.DESCRIBE)
        by_topic: dict[str, list[int]] = {}
        for tp in sorted(record.partitions):
            if tp.topic in visible:
                by_topic.setdefault(tp.topic, []).append(tp.partition)
        states.append(build_in(
            module, "TransactionState", error_code=0, transactional_id=tid,
            transaction_state=record.state, transaction_timeout_ms=record.timeout_ms,
            transaction_start_time=_timestamp(record.start_ms),
            producer_id=record.producer_id, producer_epoch=record.producer_epoch,
            topics=tuple(build_in(module, "TopicData", topic=topic, partitions=tuple(parts))
                         for topic, parts in by_topic.items())))
    return build(module.DescribeTransactionsResponse, throttle_time_ms=0,
                 transaction_states=tuple(states))


def _undescribed(module: Any, transactional_id: str, code: int) -> Any:
    """The TransactionState entry of an id answered with an error code."""
    return build_in(module, "TransactionState", error_code=code,
                    transactional_id=transactional_id, transaction_state="",
                    transaction_timeout_ms=0, transaction_start_time=_timestamp(-1),
                    producer_id=-1, producer_epoch=-1, topics=())


def _timestamp(ms: int) -> datetime.datetime:
    """A millisecond timestamp as kio's datetime; -1 (Kafka's "none") included: kio writes
    the datetime's milliseconds since the epoch as they are."""
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)


async def list_transactions(ctx: RequestContext, request: Any) -> Any:
    """Every transactional id the coordinator knows that the principal may DESCRIBE, filtered
    by state (Kafka's names; unknown ones are sent back in ``unknown_state_filters``) and by
    producer id."""
    module = response_module(ApiKey.LIST_TRANSACTIONS, ctx.api_version)
    states = set(request.state_filters)
    unknown = tuple(sorted(states - set(TXN_STATES)))
    producer_ids = set(request.producer_id_filters)
    try:
        records = await ctx.run(ctx.services.log.transaction_coordinator.list_transactions)
    except Exception as exc:  # noqa: BLE001 - answered with its error code
        code = (COORDINATOR_LOAD_IN_PROGRESS if isinstance(exc, LogstoreError) and exc.retriable
                else error_code(exc))
        return build(module.ListTransactionsResponse, throttle_time_ms=0, error_code=code,
                     unknown_state_filters=unknown, transaction_states=())
    matching = [r for r in records if (not states or r.state in states)
                and (not producer_ids or r.producer_id in producer_ids)]
    visible, _ = await authorize_names(ctx, ResourceType.TRANSACTIONAL_ID,
                                       (r.transactional_id for r in matching),
                                       AclOperation.DESCRIBE)
    listed = tuple(
        build_in(module, "TransactionState", transactional_id=r.transactional_id,
                 producer_id=r.producer_id, transaction_state=r.state)
        for r in matching if r.transactional_id in visible)
    return build(module.ListTransactionsResponse, throttle_time_ms=0, error_code=0,
                 unknown_state_filters=unknown, transaction_states=listed)
