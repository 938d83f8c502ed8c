"""CreateTopics (v2-v5), DeleteTopics (v1-v4), CreatePartitions (v0-v2), DeleteRecords (v0-v2).

Each goes through the embedded Log's topic administration, so the broker and embedded processes
share one set of rules (topic names, partition counts, configs and their validation). Every
topic (every partition for DeleteRecords) gets its own error code and message: one bad topic
never fails the others, and nothing a topic raises closes the connection (a partition directory
left by a lost metadata store, INCONSISTENT_TOPIC_ID, included). A topic named twice in one
request is answered INVALID_REQUEST, as Kafka does. The requests' ``timeout_ms`` is not waited
on: an operation is complete (in the metadata store and on disk) when it is answered.

One broker: every partition has one replica, this broker. CreateTopics accepts a replication
factor of 1 or -1 (the default, 1) and INVALID_REPLICATION_FACTOR otherwise; manual replica
assignments must name this broker alone. ``num_partitions`` -1 is ``num.partitions``. The v5
response carries the partition count, replication factor and every config with its source.
``validate_only`` (CreateTopics, CreatePartitions) checks everything and changes nothing.

DeleteRecords: offset -1 means the high watermark; an offset above it (or below -1) is
OFFSET_OUT_OF_RANGE for that partition; the answer carries the new log start offset (the low
watermark).

Authorization, as Kafka's ``KafkaApis`` (after the check for a topic named twice, before
anything else; a refused topic is left as it is), else TOPIC_AUTHORIZATION_FAILED for that
topic (each of its partitions, in DeleteRecords): CreateTopics needs CREATE on the cluster or
on the topic (and a created topic's v5 configs, partition count and replication factor are
shown only with DESCRIBE_CONFIGS on it: without, they are left out and
``topic_config_error_code`` is TOPIC_AUTHORIZATION_FAILED); DeleteTopics DELETE on the topic;
CreatePartitions ALTER on it; DeleteRecords DELETE on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from logstore.admin import validate_topic_name
from logstore.broker.auth import CLUSTER_RESOURCE_NAME, AclOperation, ResourceType
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers.admin_configs import topic_config_entries
from logstore.broker.handlers.common import authorize_names, error_code, error_message
from logstore.errors import (
    InvalidArgumentError,
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidReplicaAssignmentError,
    InvalidReplicationFactorError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from logstore.protocol.apis import ApiKey, VersionRange
from logstore.types import TopicDescription

if TYPE_CHECKING:
    from logstore.broker.server import BrokerServices

CREATE_TOPICS_VERSIONS = VersionRange(2, 5)
DELETE_TOPICS_VERSIONS = VersionRange(1, 4)
CREATE_PARTITIONS_VERSIONS = VersionRange(0, 2)
DELETE_RECORDS_VERSIONS = VersionRange(0, 2)
#: Replicas per partition: one broker (replication makes this ``default.replication.factor``).
REPLICATION_FACTOR = 1


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.CREATE_TOPICS, CREATE_TOPICS_VERSIONS, create_topics)
    dispatcher.register(ApiKey.DELETE_TOPICS, DELETE_TOPICS_VERSIONS, delete_topics)
    dispatcher.register(ApiKey.CREATE_PARTITIONS, CREATE_PARTITIONS_VERSIONS, create_partitions)
    dispatcher.register(ApiKey.DELETE_RECORDS, DELETE_RECORDS_VERSIONS, delete_records)


def _repeated(names: Sequence[str]) -> set[str]:
    return {name for name in names if names.count(name) > 1}


_REPEATED = "topic {!r} appears more than once in the request"


async def _denied_topics(ctx: RequestContext, names: Sequence[str], operation: AclOperation,
                   repeated: set[str]) -> set[str]:
    """The topics of ``names`` (not named twice) the principal may not do ``operation`` on."""
    _, denied = await authorize_names(
        ctx, ResourceType.TOPIC, (name for name in names if name not in repeated), operation)
    return denied


async def _not_authorized(name: str, operation: AclOperation) -> BaseException:
    """The refusal of ``operation`` on topic ``name``, as an outcome."""
    return TopicAuthorizationFailedError(
        f"not authorized to {operation.value.lower()} topic {name!r}")


# --- CreateTopics -----------------------------------------------------------------------------


async def create_topics(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.CREATE_TOPICS, ctx.api_version)
    topics = list(request.topics)
    names = [t.name for t in topics]
    repeated = _repeated(names)
    denied: set[str] = set()
    if not await ctx.authorize(ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME,
                               AclOperation.CREATE):
        denied = await _denied_topics(ctx, names, AclOperation.CREATE, repeated)
    hidden = await _denied_topics(ctx, names, AclOperation.DESCRIBE_CONFIGS, repeated)
    outcomes = await asyncio.gather(*(
        _not_authorized(topic.name, AclOperation.CREATE) if topic.name in denied
        else ctx.run(_create, ctx.services, topic, request.validate_only, topic.name in repeated)
        for topic in topics))
    results = []
    for topic, outcome in zip(topics, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            results.append(build_in(
                module, "CreatableTopicResult", name=topic.name, error_code=error_code(outcome),
                error_message=error_message(outcome), topic_config_error_code=0,
                num_partitions=-1, replication_factor=-1, configs=None))
            continue
        if topic.name in hidden:  # created, but its configs are not the principal's to see
            results.append(build_in(
                module, "CreatableTopicResult", name=topic.name, error_code=0,
                error_message=None,
                topic_config_error_code=TopicAuthorizationFailedError.error_code,
                num_partitions=-1, replication_factor=-1, configs=()))
            continue
        configs = tuple(
            build_in(module, "CreatableTopicConfigs", name=e.name, value=e.value,
                     read_only=e.read_only, config_source=e.source, is_sensitive=e.sensitive)
            for e in topic_config_entries(outcome.overrides)) if ctx.api_version >= 5 else None
        results.append(build_in(
            module, "CreatableTopicResult", name=topic.name, error_code=0, error_message=None,
            topic_config_error_code=0, num_partitions=outcome.partition_count,
            replication_factor=REPLICATION_FACTOR, configs=configs))
    return build(module.CreateTopicsResponse, throttle_time_ms=0, topics=tuple(results))


def _create(services: BrokerServices, topic: Any, validate_only: bool,
            repeated: bool) -> TopicDescription | BaseException:
    """Create (or check) one topic; the error instead of raising it."""
    try:
        if repeated:
            raise InvalidArgumentError(_REPEATED.format(topic.name))
        validate_topic_name(topic.name)
        partitions = _partition_count(topic, services)
        names = [c.name for c in topic.configs]
        if len(set(names)) != len(names):
            raise InvalidConfigurationError("a config key is given more than once")
        nulls = [c.name for c in topic.configs if c.value is None]
        if nulls:
            raise InvalidConfigurationError(f"null value not supported for {nulls[0]!r}")
        return services.log.create_topic(topic.name, partitions,
                                          {c.name: c.value for c in topic.configs},
                                          validate_only=validate_only)
    except Exception as exc:  # noqa: BLE001 - this topic's error code
        return exc


def _partition_count(topic: Any, services: BrokerServices) -> int:
    """The partitions to create: from the manual assignment, ``num_partitions``, or
    ``num.partitions``; refuses replication this cluster cannot provide (Kafka's checks)."""
    broker_id = services.config.broker_id
    if topic.assignments:
        if topic.replication_factor != -1 or topic.num_partitions != -1:
            raise InvalidArgumentError(
                "a manual partition assignment was given: num_partitions and "
                "replication_factor must be -1")
        indexes: set[int] = set()
        for assignment in topic.assignments:
            index = assignment.partition_index
            if index in indexes:
                raise InvalidReplicaAssignmentError(
                    f"partition {index} is assigned more than once")
            if tuple(assignment.broker_ids) != (broker_id,):
                raise InvalidReplicaAssignmentError(
                    f"partition {index} is assigned to brokers {list(assignment.broker_ids)}: "
                    f"this cluster is one broker, so every partition's replicas are "
                    f"[{broker_id}]")
            indexes.add(index)
        if indexes != set(range(len(indexes))):
            raise InvalidReplicaAssignmentError(
                "partitions should be a consecutive 0-based integer sequence")
        return len(indexes)
    factor = topic.replication_factor
    if factor == 0 or factor < -1:
        raise InvalidReplicationFactorError(
            "replication factor must be larger than 0, or -1 to use the default value")
    if factor > REPLICATION_FACTOR:
        raise InvalidReplicationFactorError(
            f"unable to replicate the partition {factor} time(s): the cluster has "
            f"{REPLICATION_FACTOR} broker")
    if topic.num_partitions == 0 or topic.num_partitions < -1:
        raise InvalidPartitionsError(
            f"number of partitions must be positive, or -1 to use the default value "
            f"(num.partitions); got {topic.num_partitions}")
    if topic.num_partitions == -1:
        return services.config.num_partitions
    return int(topic.num_partitions)


# --- DeleteTopics -----------------------------------------------------------------------------


async def delete_topics(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.DELETE_TOPICS, ctx.api_version)
    names = list(request.topic_names)
    repeated = _repeated(names)
    denied = await _denied_topics(ctx, names, AclOperation.DELETE, repeated)
    outcomes = await asyncio.gather(*(
        _not_authorized(name, AclOperation.DELETE) if name in denied
        else ctx.run(_delete, ctx.services, name, name in repeated) for name in names))
    return build(module.DeleteTopicsResponse, throttle_time_ms=0, responses=tuple(
        build_in(module, "DeletableTopicResult", name=name,
                 error_code=0 if outcome is None else error_code(outcome))
        for name, outcome in zip(names, outcomes, strict=True)))


def _delete(services: BrokerServices, name: str, repeated: bool) -> BaseException | None:
    try:
        if repeated:
            raise InvalidArgumentError(_REPEATED.format(name))
        services.log.delete_topic(name)
        return None
    except Exception as exc:  # noqa: BLE001 - this topic's error code
        return exc


# --- CreatePartitions -------------------------------------------------------------------------


async def create_partitions(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.CREATE_PARTITIONS, ctx.api_version)
    topics = list(request.topics)
    repeated = _repeated([t.name for t in topics])
    denied = await _denied_topics(ctx, [t.name for t in topics], AclOperation.ALTER, repeated)
    outcomes = await asyncio.gather(*(
        _not_authorized(topic.name, AclOperation.ALTER) if topic.name in denied
        else ctx.run(_grow, ctx.services, topic, request.validate_only, topic.name in repeated)
        for topic in topics))
    return build(module.CreatePartitionsResponse, throttle_time_ms=0, results=tuple(
        build_in(module, "CreatePartitionsTopicResult", name=topic.name,
                 error_code=0 if outcome is None else error_code(outcome),
                 error_message=None if outcome is None else error_message(outcome))
        for topic, outcome in zip(topics, outcomes, strict=True)))


def _grow(services: BrokerServices, topic: Any, validate_only: bool,
          repeated: bool) -> BaseException | None:
    """Grow (or check growing) one topic to ``topic.count`` partitions."""
    try:
        if repeated:
            raise InvalidArgumentError(_REPEATED.format(topic.name))
        if topic.assignments is not None:
            _check_new_assignments(services, topic)
        services.log.create_partitions(topic.name, topic.count, validate_only=validate_only)
        return None
    except Exception as exc:  # noqa: BLE001 - this topic's error code
        return exc


def _check_new_assignments(services: BrokerServices, topic: Any) -> None:
    """A manual assignment of the new partitions: one per new partition, this broker alone."""
    validate_topic_name(topic.name)
    record = services.log.metadata.get_topic(topic.name)
    if record is None:
        raise UnknownTopicOrPartitionError(f"unknown topic {topic.name!r}")
    broker_id = services.config.broker_id
    added = topic.count - record.partition_count
    if added > 0 and len(topic.assignments) != added:
        raise InvalidReplicaAssignmentError(
            f"increasing the number of partitions by {added} but "
            f"{len(topic.assignments)} assignments provided")
    for assignment in topic.assignments:
        if tuple(assignment.broker_ids) != (broker_id,):
            raise InvalidReplicaAssignmentError(
                f"new partitions are assigned to brokers {list(assignment.broker_ids)}: this "
                f"cluster is one broker, so every partition's replicas are [{broker_id}]")


# --- DeleteRecords ----------------------------------------------------------------------------


async def delete_records(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.DELETE_RECORDS, ctx.api_version)
    work = [(t.name, p.partition_index, p.offset) for t in request.topics for p in t.partitions]
    _, denied = await authorize_names(ctx, ResourceType.TOPIC, (name for name, _, _ in work),
                                      AclOperation.DELETE)
    outcomes = await asyncio.gather(*(
        _not_authorized(name, AclOperation.DELETE) if name in denied
        else ctx.run(_delete_records, ctx.services, name, partition, offset)
        for name, partition, offset in work))
    by_topic: dict[str, list[Any]] = {}
    for (name, partition, _), outcome in zip(work, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            entry = build_in(module, "DeleteRecordsPartitionResult", partition_index=partition,
                             low_watermark=-1, error_code=error_code(outcome))
        else:
            entry = build_in(module, "DeleteRecordsPartitionResult", partition_index=partition,
                             low_watermark=outcome, error_code=0)
        by_topic.setdefault(name, []).append(entry)
    return build(module.DeleteRecordsResponse, throttle_time_ms=0, topics=tuple(
        build_in(module, "DeleteRecordsTopicResult", name=name, partitions=tuple(entries))
        for name, entries in by_topic.items()))


def _delete_records(services: BrokerServices, topic: str, partition: int,
                    offset: int) -> int | BaseException:
    """Advance one partition's log start offset; the new one, or the error."""
    try:
        return services.log.partition_log(topic, partition).delete_records(offset)
    except Exception as exc:  # noqa: BLE001 - this partition's error code
        return exc
