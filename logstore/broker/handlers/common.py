"""What handlers share: error codes for exceptions, and ACL checks over many names.

Authorization helpers (see ``logstore.broker.auth.authorizer`` for the rules):
:func:`authorize_names` splits a request's names into those the principal may do an operation on
and the others (Kafka's ``filterByAuthorized``), and :func:`authorized_operations` answers the
``*_authorized_operations`` bitfields of DescribeGroups, DescribeCluster and Metadata: the bits
(Kafka's AclOperation codes) of the operations the resource type supports that the principal is
allowed, as Kafka's ``AuthHelper.authorizedOperations`` (:func:`cluster_authorized_operations`:
0 without DESCRIBE on the cluster, as Kafka answers).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from logstore.broker.auth import CLUSTER_RESOURCE_NAME, AclOperation, ResourceType
from logstore.errors import LogstoreError, UnknownTopicOrPartitionError

if TYPE_CHECKING:
    from logstore.broker.dispatch import RequestContext

_log = logging.getLogger("logstore.broker")

#: UNKNOWN_SERVER_ERROR
UNKNOWN_SERVER_ERROR = -1
#: Kafka's "not requested" value of authorized-operations fields.
AUTHORIZED_OPERATIONS_OMITTED = -2147483648

#: Kafka's AclOperation codes (the bit numbers of authorized-operations fields).
ACL_OPERATION_CODES: dict[AclOperation, int] = {
    AclOperation.ALL: 2,
    AclOperation.READ: 3,
    AclOperation.WRITE: 4,
    AclOperation.CREATE: 5,
    AclOperation.DELETE: 6,
    AclOperation.ALTER: 7,
    AclOperation.DESCRIBE: 8,
    AclOperation.CLUSTER_ACTION: 9,
    AclOperation.DESCRIBE_CONFIGS: 10,
    AclOperation.ALTER_CONFIGS: 11,
    AclOperation.IDEMPOTENT_WRITE: 12,
}

#: The operations each resource type supports (Kafka's ``AclEntry.supportedOperations``;
#: groups without DESCRIBE_CONFIGS and ALTER_CONFIGS: group configs are not served).
SUPPORTED_OPERATIONS: dict[ResourceType, tuple[AclOperation, ...]] = {
    ResourceType.TOPIC: (AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE,
                         AclOperation.DESCRIBE, AclOperation.DELETE, AclOperation.ALTER,
                         AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS),
    ResourceType.GROUP: (AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE),
    ResourceType.CLUSTER: (AclOperation.CREATE, AclOperation.CLUSTER_ACTION,
                           AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS,
                           AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER,
                           AclOperation.DESCRIBE),
    ResourceType.TRANSACTIONAL_ID: (AclOperation.DESCRIBE, AclOperation.WRITE),
}


def error_code(exc: BaseException) -> int:
    """The Kafka error code to answer with for an exception a handler caught."""
    if isinstance(exc, LogstoreError):
        return exc.error_code
    _log.error("unexpected error answering a request", exc_info=exc)
    return UNKNOWN_SERVER_ERROR


def error_message(exc: BaseException) -> str | None:
    """The message to send along (v8+ produce responses and others); None for bugs."""
    return str(exc) if isinstance(exc, LogstoreError) else None


async def authorize_names(ctx: RequestContext, resource_type: ResourceType,
                          names: Iterable[str], operation: AclOperation,
                          ) -> tuple[set[str], set[str]]:
    """(allowed, denied): the distinct ``names`` on which the principal may do ``operation``,
    and the others (each name asked about once)."""
    allowed: set[str] = set()
    denied: set[str] = set()
    for name in dict.fromkeys(names):
        if await ctx.authorize(resource_type, name, operation):
            allowed.add(name)
        else:
            denied.add(name)
    return allowed, denied


def operations_bitfield(operations: Iterable[AclOperation]) -> int:
    """Kafka's bitfield of AclOperation codes: bit ``code`` set for each operation."""
    return sum({1 << ACL_OPERATION_CODES[op] for op in operations})


async def authorized_operations(ctx: RequestContext, resource_type: ResourceType,
                                name: str) -> int:
    """The bitfield of the operations ``resource_type`` supports that the principal may do on
    the resource ``name`` (every supported one when there are no ACLs)."""
    return operations_bitfield([
        op for op in SUPPORTED_OPERATIONS[resource_type]
        if await ctx.authorize(resource_type, name, op)])


async def cluster_authorized_operations(ctx: RequestContext) -> int:
    """A requested ``cluster_authorized_operations`` (DescribeCluster, Metadata v8-v10): the
    bitfield of what the principal may do on the cluster if it may DESCRIBE it, else 0."""
    if not await ctx.authorize(ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME,
                               AclOperation.DESCRIBE):
        return 0
    return await authorized_operations(ctx, ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME)


def partition_count(log: Any, topic: str) -> int:
    """The topic's partition count; 0 if it does not exist (a storage call: run it on the
    storage threads)."""
    try:
        return int(log.topic_info(topic)[0])
    except UnknownTopicOrPartitionError:
        return 0
