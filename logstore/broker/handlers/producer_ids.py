"""InitProducerId (v0-v4): producer identities for idempotent and transactional producers.

Without a transactional id: a fresh producer id at epoch 0; or, when the producer names its
current id and epoch (v3+, KIP-360: it lost track of its sequences), the next epoch of that id
(a fresh id once the epoch would pass 32767). With a transactional id: the transaction
coordinator's next epoch of that id, which fences earlier instances (and first aborts or
finishes a transaction they left). A transactional producer that names its id and epoch (v3+,
KIP-360: it bumps its epoch after an abortable error) must be the id's current identity or the
one its own last transaction end or timeout replaced; anyone else is fenced, so a zombie cannot
take the id back this way.

A fenced producer gets PRODUCER_FENCED from v4 on, INVALID_PRODUCER_EPOCH before (Kafka's rule:
older clients do not know the newer code).

Authorization: a transactional id needs WRITE on it (else TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
an idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic (KIP-679),
else CLUSTER_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

from typing import Any

from logstore.backends.txn_records import BUMP_INIT
from logstore.broker.auth import CLUSTER_RESOURCE_NAME, AclOperation, ResourceType
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, response_module
from logstore.broker.handlers.common import error_code
from logstore.errors import (
    AuthorizationError,
    ProducerFencedError,
    TransactionalIdAuthorizationFailedError,
    TransactionalIdNotFoundError,
)
from logstore.protocol.apis import ApiKey, VersionRange

VERSIONS = VersionRange(0, 4)
MAX_EPOCH = 32767
INVALID_PRODUCER_EPOCH = 47
#: The first version whose clients know PRODUCER_FENCED.
PRODUCER_FENCED_SINCE = 4


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.INIT_PRODUCER_ID, VERSIONS, init_producer_id)


async def init_producer_id(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.INIT_PRODUCER_ID, ctx.api_version)
    refusal = await _unauthorized(ctx, request.transactional_id)
    if refusal is not None:
        return build(module.InitProducerIdResponse, throttle_time_ms=0, error_code=refusal,
                     producer_id=-1, producer_epoch=-1)
    producer_id = getattr(request, "producer_id", -1)
    epoch = getattr(request, "producer_epoch", -1)
    timeout_ms = int(request.transaction_timeout.total_seconds() * 1000)
    try:
        identity = await ctx.run(_init, ctx, request.transactional_id, timeout_ms,
                                 producer_id, epoch)
    except Exception as exc:  # noqa: BLE001 - answered with its error code
        code = error_code(exc)
        if isinstance(exc, ProducerFencedError) and ctx.api_version < PRODUCER_FENCED_SINCE:
            code = INVALID_PRODUCER_EPOCH
        return build(module.InitProducerIdResponse, throttle_time_ms=0,
                     error_code=code, producer_id=-1, producer_epoch=-1)
    return build(module.InitProducerIdResponse, throttle_time_ms=0, error_code=0,
                 producer_id=identity[0], producer_epoch=identity[1])


async def _unauthorized(ctx: RequestContext, transactional_id: str | None) -> int | None:
    """The error code refusing this principal the producer identity it asks for, or None."""
    if transactional_id is not None:
        allowed = await ctx.authorize(ResourceType.TRANSACTIONAL_ID, transactional_id,
                                      AclOperation.WRITE)
        return None if allowed else TransactionalIdAuthorizationFailedError.error_code
    if await ctx.authorize(ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME,
                           AclOperation.IDEMPOTENT_WRITE):
        return None
    if await ctx.authorize_any(ResourceType.TOPIC, AclOperation.WRITE):
        return None
    return AuthorizationError.error_code  # CLUSTER_AUTHORIZATION_FAILED


def _init(ctx: RequestContext, transactional_id: str | None, timeout_ms: int,
          producer_id: int, epoch: int) -> tuple[int, int]:
    coordinator = ctx.services.log.transaction_coordinator
    if transactional_id is None and producer_id >= 0 and 0 <= epoch < MAX_EPOCH:
        return producer_id, epoch + 1  # an idempotent producer's own id: no one else uses it
    if transactional_id is not None and producer_id >= 0:
        _check_bump(ctx, transactional_id, producer_id, epoch)
    found = coordinator.init_producer_id(transactional_id, timeout_ms)
    return found.producer_id, found.epoch


def _check_bump(ctx: RequestContext, transactional_id: str, producer_id: int,
                epoch: int) -> None:
    """KIP-360: only the id's current identity, or the one that its own transaction's end or
    timeout abort replaced, may bump it; raises ProducerFencedError for anyone else (an
    identity replaced by another instance's init). An id that expired meanwhile is created
    afresh by the init, as for a new producer."""
    try:
        record = ctx.services.log.transaction_coordinator.describe_transaction(transactional_id)
    except TransactionalIdNotFoundError:
        return
    asked = (producer_id, epoch)
    if asked == (record.producer_id, record.producer_epoch):
        return
    if record.last_bump != BUMP_INIT and asked == (record.previous_producer_id,
                                                   record.previous_epoch):
        return
    raise ProducerFencedError(
        f"producer {producer_id} epoch {epoch} is fenced: transactional id "
        f"{transactional_id!r} has moved on to producer {record.producer_id} epoch "
        f"{record.producer_epoch}")
