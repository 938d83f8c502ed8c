"""Metadata (v1-v12): brokers, the cluster id, the controller, and topics with their partitions.

One broker serves every partition: it is each partition's leader, its only replica and its ISR,
at leader epoch 0 (replication, later, fills these from the metadata store). Topics a client
asks for that do not exist are created with ``num.partitions`` partitions when
``auto.create.topics.enable`` is on and the request allows it (v4+; earlier versions always
allow it, as in Kafka).

Authorization (as Kafka): a topic named in the request that the principal may not DESCRIBE is
answered TOPIC_AUTHORIZATION_FAILED (whether it exists or not); a request for every topic lists
only those it may DESCRIBE. Auto-creation needs CREATE on the cluster or on the topic, else the
missing topic is answered TOPIC_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

import uuid
from typing import Any

from logstore.broker.auth import CLUSTER_RESOURCE_NAME, AclOperation, ResourceType
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers.common import (
    AUTHORIZED_OPERATIONS_OMITTED,
    authorized_operations,
    cluster_authorized_operations,
)
from logstore.errors import (
    LogstoreError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from logstore.protocol.apis import ApiKey, VersionRange

VERSIONS = VersionRange(1, 12)


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.METADATA, VERSIONS, metadata)


async def metadata(ctx: RequestContext, request: Any) -> Any:
    version = ctx.api_version
    module = response_module(ApiKey.METADATA, version)
    allow_create = getattr(request, "allow_auto_topic_creation", True)
    names = None if request.topics is None else [t.name for t in request.topics]
    topics = await _authorized_topics(ctx, names, allow_create)
    services = ctx.services
    host, port = services.advertised
    broker_id = services.config.broker_id
    brokers = (build_in(module, "MetadataResponseBroker", node_id=broker_id, host=host,
                        port=port, rack=services.config.rack),)
    # Asked for in v8+ (the cluster's only up to v10, where DescribeCluster took it over).
    topic_operations = getattr(request, "include_topic_authorized_operations", False)
    topic_entries = []
    for name, found in topics:
        if isinstance(found, LogstoreError):
            topic_entries.append(build_in(
                module, "MetadataResponseTopic", error_code=found.error_code, name=name,
                topic_id=uuid.UUID(int=0), is_internal=False, partitions=(),
                topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED))
            continue
        topic_id, count = found
        operations = (await authorized_operations(ctx, ResourceType.TOPIC, name)
                      if topic_operations else AUTHORIZED_OPERATIONS_OMITTED)
        partitions = tuple(
            build_in(module, "MetadataResponsePartition", error_code=0, partition_index=p,
                     leader_id=broker_id, leader_epoch=0, replica_nodes=(broker_id,),
                     isr_nodes=(broker_id,), offline_replicas=())
            for p in range(count))
        topic_entries.append(build_in(
            module, "MetadataResponseTopic", error_code=0, name=name,
            topic_id=uuid.UUID(topic_id), is_internal=False, partitions=partitions,
            topic_authorized_operations=operations))
    cluster_operations = (await cluster_authorized_operations(ctx)
                          if getattr(request, "include_cluster_authorized_operations", False)
                          else AUTHORIZED_OPERATIONS_OMITTED)
    return build(module.MetadataResponse, throttle_time_ms=0, brokers=brokers,
                 cluster_id=services.cluster_id, controller_id=broker_id,
                 topics=tuple(topic_entries),
                 cluster_authorized_operations=cluster_operations)


async def _authorized_topics(
    ctx: RequestContext, names: list[str | None] | None, allow_create: bool
) -> list[tuple[str, tuple[str, int] | LogstoreError]]:
    """:func:`_describe_topics` of what the principal may DESCRIBE (and create)."""
    if names is None:
        every = await ctx.run(_describe_topics, ctx, None, False, None)
        return [(name, found) for name, found in every
                if await ctx.authorize(ResourceType.TOPIC, name, AclOperation.DESCRIBE)]
    asked = list(dict.fromkeys(name for name in names if name is not None))
    denied = {name for name in asked
              if not await ctx.authorize(ResourceType.TOPIC, name, AclOperation.DESCRIBE)}
    creatable: set[str] | None = None  # None: any
    if allow_create and ctx.services.config.auto_create_topics and not await ctx.authorize(
            ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME, AclOperation.CREATE):
        creatable = {name for name in asked if name not in denied
                     and await ctx.authorize(ResourceType.TOPIC, name, AclOperation.CREATE)}
    described = dict(await ctx.run(_describe_topics, ctx,
                                   [name for name in asked if name not in denied],
                                   allow_create, creatable))
    return [(name, TopicAuthorizationFailedError(f"not authorized to describe topic {name!r}")
             if name in denied else described[name]) for name in asked]


def _describe_topics(
    ctx: RequestContext, names: list[str | None] | None, allow_create: bool,
    creatable: set[str] | None,
) -> list[tuple[str, tuple[str, int] | LogstoreError]]:
    """(name, (topic id, partition count) or the error) per topic asked for (all: None);
    a missing topic is created if ``allow_create`` and it is in ``creatable`` (None: any)."""
    log = ctx.services.log
    config = ctx.services.config
    if names is None:
        names = list(log.list_topics())
    found: list[tuple[str, tuple[str, int] | LogstoreError]] = []
    for name in names:
        if name is None:
            continue  # a lookup by topic id only (v12): not served (no topic ids on the wire yet)
        try:
            found.append((name, _topic(log, name)))
        except UnknownTopicOrPartitionError as exc:
            if not (allow_create and config.auto_create_topics):
                found.append((name, exc))
                continue
            if creatable is not None and name not in creatable:
                found.append((name, TopicAuthorizationFailedError(
                    f"not authorized to create topic {name!r}")))
                continue
            try:
                log.create_topic(name, config.num_partitions)
            except TopicAlreadyExistsError:
                pass  # created meanwhile by someone else
            except LogstoreError as create_error:  # InvalidTopicError among them
                found.append((name, create_error))
                continue
            try:
                found.append((name, _topic(log, name)))
            except LogstoreError as again:
                found.append((name, again))
        except LogstoreError as exc:
            found.append((name, exc))
    return found


def _topic(log: Any, name: str) -> tuple[str, int]:
    count, _ = log.topic_info(name)
    return log.topic_id(name), count
