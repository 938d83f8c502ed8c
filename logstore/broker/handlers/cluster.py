"""DescribeCluster (v0-v1): the brokers, the cluster id and the controller.

One broker: it is the whole cluster and its controller (as in Metadata responses). Only the
brokers' endpoint is served: a v1 request for the controllers' endpoint gets
MISMATCHED_ENDPOINT_TYPE, an unknown endpoint type UNSUPPORTED_ENDPOINT_TYPE, as a Kafka broker
answers (v0 requests cannot name an endpoint type).

``cluster_authorized_operations`` is Kafka's "not requested" value unless the client asks;
then, as Kafka's ``AuthHelper``: the cluster operations the principal's ACLs allow (every one
with no ACLs) if it may DESCRIBE the cluster, else 0. The request itself needs no ACL, as in
Kafka (the brokers and the cluster id are what Metadata tells any client anyway).
"""

from __future__ import annotations

from typing import Any

from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers.common import (
    AUTHORIZED_OPERATIONS_OMITTED,
    cluster_authorized_operations,
)
from logstore.protocol.apis import ApiKey, VersionRange

VERSIONS = VersionRange(0, 1)
#: EndpointType
BROKERS, CONTROLLERS = 1, 2
MISMATCHED_ENDPOINT_TYPE, UNSUPPORTED_ENDPOINT_TYPE = 114, 115


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.DESCRIBE_CLUSTER, VERSIONS, describe_cluster)


async def describe_cluster(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.DESCRIBE_CLUSTER, ctx.api_version)
    services = ctx.services
    endpoint_type = getattr(request, "endpoint_type", BROKERS)
    if endpoint_type != BROKERS:
        if endpoint_type == CONTROLLERS:
            code = MISMATCHED_ENDPOINT_TYPE
            message = ("the request was sent to an endpoint of type BROKER, but wanted one of "
                       "type CONTROLLER")
        else:
            code = UNSUPPORTED_ENDPOINT_TYPE
            message = f"unsupported endpoint type {endpoint_type}"
        return build(module.DescribeClusterResponse, throttle_time_ms=0,
                     error_code=code,
                     error_message=message, endpoint_type=endpoint_type, cluster_id="",
                     controller_id=-1, brokers=(),
                     cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED)
    host, port = services.advertised
    broker_id = services.config.broker_id
    brokers = (build_in(module, "DescribeClusterBroker", broker_id=broker_id, host=host,
                        port=port, rack=services.config.rack),)
    operations = AUTHORIZED_OPERATIONS_OMITTED
    if request.include_cluster_authorized_operations:
        operations = await cluster_authorized_operations(ctx)
    return build(module.DescribeClusterResponse, throttle_time_ms=0, error_code=0,
                 error_message=None, endpoint_type=BROKERS, cluster_id=services.cluster_id,
                 controller_id=broker_id, brokers=brokers,
                 cluster_authorized_operations=operations)

