"""InitProducerId (v0-v4): producer identities for idempotent and transactional producers.

Without a transactional id: a fresh producer id at epoch 0; or, when the producer names its
current id and epoch (v3+, KIP-360: it lost track of its sequences), the next epoch of that id
(a fresh id once the epoch would pass 32767). With a transactional id: the transaction
coordinator's next epoch of that id, which fences earlier instances (and first aborts or
finishes a transaction they left).
"""

from __future__ import annotations

from typing import Any

from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, response_module
from logstore.broker.handlers.common import error_code
from logstore.protocol.apis import ApiKey, VersionRange

VERSIONS = VersionRange(0, 4)
MAX_EPOCH = 32767


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.INIT_PRODUCER_ID, VERSIONS, init_producer_id)


async def init_producer_id(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.INIT_PRODUCER_ID, ctx.api_version)
    producer_id = getattr(request, "producer_id", -1)
    epoch = getattr(request, "producer_epoch", -1)
    timeout_ms = int(request.transaction_timeout.total_seconds() * 1000)
    try:
        identity = await ctx.run(_init, ctx, request.transactional_id, timeout_ms,
                                 producer_id, epoch)
    except Exception as exc:  # noqa: BLE001 - answered with its error code
        return build(module.InitProducerIdResponse, throttle_time_ms=0,
                     error_code=error_code(exc), producer_id=-1, producer_epoch=-1)
    return build(module.InitProducerIdResponse, throttle_time_ms=0, error_code=0,
                 producer_id=identity[0], producer_epoch=identity[1])


def _init(ctx: RequestContext, transactional_id: str | None, timeout_ms: int,
          producer_id: int, epoch: int) -> tuple[int, int]:
    coordinator = ctx.services.log.transaction_coordinator
    if transactional_id is None and producer_id >= 0 and 0 <= epoch < MAX_EPOCH:
        return producer_id, epoch + 1  # an idempotent producer's own id: no one else uses it
    found = coordinator.init_producer_id(transactional_id, timeout_ms)
    return found.producer_id, found.epoch
