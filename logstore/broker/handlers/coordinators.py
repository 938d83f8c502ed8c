"""FindCoordinator (v0-v4): every broker coordinates every group and transactional id.

Group and transaction coordinator state lives in the metadata store, so any broker can serve
any key; with one broker it is always this one. (With several brokers, hashing the key over the
live brokers will keep clients' coordinator connections spread and stable.)

Authorization: finding a group's coordinator needs DESCRIBE on the group (else
GROUP_AUTHORIZATION_FAILED), a transactional id's DESCRIBE on the id (else
TRANSACTIONAL_ID_AUTHORIZATION_FAILED); per key in v4.
"""

from __future__ import annotations

from typing import Any

from logstore.broker.auth import AclOperation, ResourceType
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.errors import (
    GroupAuthorizationFailedError,
    InvalidArgumentError,
    LogstoreError,
    TransactionalIdAuthorizationFailedError,
)
from logstore.protocol.apis import ApiKey, VersionRange

VERSIONS = VersionRange(0, 4)
GROUP, TRANSACTION = 0, 1


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.FIND_COORDINATOR, VERSIONS, find_coordinator)


async def find_coordinator(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.FIND_COORDINATOR, ctx.api_version)
    host, port = ctx.services.advertised
    node_id = ctx.services.config.broker_id
    key_type = getattr(request, "key_type", GROUP)
    if ctx.api_version >= 4:  # batched (KIP-699)
        entries = []
        for key in request.coordinator_keys:
            refusal = await _refusal(ctx, key_type, key)
            entries.append(build_in(
                module, "Coordinator", key=key, node_id=-1 if refusal else node_id,
                host="" if refusal else host, port=-1 if refusal else port,
                error_code=refusal.error_code if refusal else 0,
                error_message=str(refusal) if refusal else None))
        return build(module.FindCoordinatorResponse, throttle_time_ms=0,
                     coordinators=tuple(entries))
    refusal = await _refusal(ctx, key_type, request.key)
    if refusal is not None:
        return build(module.FindCoordinatorResponse, throttle_time_ms=0,
                     error_code=refusal.error_code, error_message=str(refusal), node_id=-1,
                     host="", port=-1)
    return build(module.FindCoordinatorResponse, throttle_time_ms=0, error_code=0,
                 error_message=None, node_id=node_id, host=host, port=port)


async def _refusal(ctx: RequestContext, key_type: int, key: str) -> LogstoreError | None:
    """Why this principal may not find the coordinator of ``key``, or None."""
    if key_type == TRANSACTION:
        if await ctx.authorize(ResourceType.TRANSACTIONAL_ID, key, AclOperation.DESCRIBE):
            return None
        return TransactionalIdAuthorizationFailedError(
            f"not authorized to describe transactional id {key!r}")
    if key_type != GROUP:
        return InvalidArgumentError(f"unknown coordinator key type {key_type}")
    if await ctx.authorize(ResourceType.GROUP, key, AclOperation.DESCRIBE):
        return None
    return GroupAuthorizationFailedError(f"not authorized to describe group {key!r}")
