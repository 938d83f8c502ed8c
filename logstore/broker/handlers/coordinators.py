"""FindCoordinator (v0-v4): every broker coordinates every group and transactional id.

Group and transaction coordinator state lives in the metadata store, so any broker can serve
any key; with one broker it is always this one. (With several brokers, hashing the key over the
live brokers will keep clients' coordinator connections spread and stable.)
"""

from __future__ import annotations

from typing import Any

from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.protocol.apis import ApiKey, VersionRange

VERSIONS = VersionRange(0, 4)
GROUP, TRANSACTION = 0, 1


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.FIND_COORDINATOR, VERSIONS, find_coordinator)


async def find_coordinator(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.FIND_COORDINATOR, ctx.api_version)
    host, port = ctx.services.advertised
    node_id = ctx.services.config.broker_id
    if ctx.api_version >= 4:  # batched (KIP-699)
        return build(module.FindCoordinatorResponse, throttle_time_ms=0, coordinators=tuple(
            build_in(module, "Coordinator", key=key, node_id=node_id, host=host, port=port,
                     error_code=0, error_message=None)
            for key in request.coordinator_keys))
    return build(module.FindCoordinatorResponse, throttle_time_ms=0, error_code=0,
                 error_message=None, node_id=node_id, host=host, port=port)
