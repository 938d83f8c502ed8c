"""Metadata (v1-v12): brokers, the cluster id, the controller, and topics with their partitions.

One broker serves every partition: it is each partition's leader, its only replica and its ISR,
at leader epoch 0 (replication, later, fills these from the metadata store). Topics a client
asks for that do not exist are created with ``num.partitions`` partitions when
``auto.create.topics.enable`` is on and the request allows it (v4+; earlier versions always
allow it, as in Kafka).
"""

from __future__ import annotations

import uuid
from typing import Any

from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers.common import AUTHORIZED_OPERATIONS_OMITTED
from logstore.errors import (
    InvalidTopicError,
    LogstoreError,
    TopicAlreadyExistsError,
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
    topics = await ctx.run(_describe_topics, ctx, names, allow_create)
    services = ctx.services
    host, port = services.advertised
    broker_id = services.config.broker_id
    brokers = (build_in(module, "MetadataResponseBroker", node_id=broker_id, host=host,
                        port=port, rack=services.config.rack),)
    topic_entries = []
    for name, found in topics:
        if isinstance(found, LogstoreError):
            topic_entries.append(build_in(
                module, "MetadataResponseTopic", error_code=found.error_code, name=name,
                topic_id=uuid.UUID(int=0), is_internal=False, partitions=(),
                topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED))
            continue
        topic_id, count = found
        partitions = tuple(
            build_in(module, "MetadataResponsePartition", error_code=0, partition_index=p,
                     leader_id=broker_id, leader_epoch=0, replica_nodes=(broker_id,),
                     isr_nodes=(broker_id,), offline_replicas=())
            for p in range(count))
        topic_entries.append(build_in(
            module, "MetadataResponseTopic", error_code=0, name=name,
            topic_id=uuid.UUID(topic_id), is_internal=False, partitions=partitions,
            topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED))
    return build(module.MetadataResponse, throttle_time_ms=0, brokers=brokers,
                 cluster_id=services.cluster_id, controller_id=broker_id,
                 topics=tuple(topic_entries),
                 cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED)


def _describe_topics(
    ctx: RequestContext, names: list[str | None] | None, allow_create: bool
) -> list[tuple[str, tuple[str, int] | LogstoreError]]:
    """(name, (topic id, partition count) or the error) per topic asked for (all: None)."""
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
            try:
                log.create_topic(name, config.num_partitions)
            except TopicAlreadyExistsError:
                pass  # created meanwhile by someone else
            except (InvalidTopicError, LogstoreError) as create_error:
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
