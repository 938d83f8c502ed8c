"""CreateAcls, DescribeAcls and DeleteAcls through confluent-kafka's AdminClient: the bindings
land in the metadata store (where ``logstore acls`` keeps them), filters select as Kafka's do
(ANY, MATCH, exact fields), an invalid creation is refused alone, and once the ACLs no longer
let the client alter or describe the cluster it gets CLUSTER_AUTHORIZATION_FAILED."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from kio.schema.describe_acls.v1.request import DescribeAclsRequest

import logstore
from logstore.broker import Broker, BrokerConfig
from logstore.broker.auth import AclOperation as StoredOperation
from logstore.broker.auth import PatternType
from logstore.broker.auth import ResourceType as StoredResourceType
from logstore.protocol.apis import ApiKey
from tests.broker.conftest import decode_response, read_frame, request_frame

TIMEOUT_S = 30


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[tuple[AdminClient, logstore.Log]]:
    log = logstore.open(tmp_path / "data", maintenance_interval_ms=None)
    broker = Broker(log, config=BrokerConfig(listen_port=0, acl_max_age_ms=0))
    broker.start()
    assert broker.address is not None
    try:
        yield AdminClient({"bootstrap.servers": f"127.0.0.1:{broker.address[1]}"}), log
    finally:
        broker.stop()
        log.close()


ALICE_READS_ORDERS = AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL,
                                "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW)
BOB_WRITES_LOGS = AclBinding(ResourceType.TOPIC, "logs-", ResourcePatternType.PREFIXED,
                             "User:bob", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
ANONYMOUS_ADMINISTERS = AclBinding(ResourceType.BROKER, "kafka-cluster",
                                   ResourcePatternType.LITERAL, "User:ANONYMOUS", "*",
                                   AclOperation.ALL, AclPermissionType.ALLOW)


def _filter(resource_type: ResourceType = ResourceType.ANY, name: str | None = None,
            pattern: ResourcePatternType = ResourcePatternType.ANY,
            principal: str | None = None) -> AclBindingFilter:
    return AclBindingFilter(resource_type, name, pattern, principal, None, AclOperation.ANY,
                            AclPermissionType.ANY)


def _create(client: AdminClient, *bindings: AclBinding) -> None:
    for future in client.create_acls(list(bindings), request_timeout=TIMEOUT_S).values():
        future.result(TIMEOUT_S)


def test_acls_are_created_described_and_deleted(admin) -> None:
    client, log = admin
    _create(client, ALICE_READS_ORDERS, BOB_WRITES_LOGS, ANONYMOUS_ADMINISTERS)
    stored = {(b.principal, b.operation, b.resource_type, b.resource_name, b.pattern_type)
              for b in log.metadata.list_acls()}
    assert stored == {
        ("User:alice", StoredOperation.READ, StoredResourceType.TOPIC, "orders",
         PatternType.LITERAL),
        ("User:bob", StoredOperation.WRITE, StoredResourceType.TOPIC, "logs-",
         PatternType.PREFIXED),
        ("User:ANONYMOUS", StoredOperation.ALL, StoredResourceType.CLUSTER, "kafka-cluster",
         PatternType.LITERAL)}

    everything = client.describe_acls(_filter(), request_timeout=TIMEOUT_S).result(TIMEOUT_S)
    assert set(everything) == {ALICE_READS_ORDERS, BOB_WRITES_LOGS, ANONYMOUS_ADMINISTERS}
    matching = client.describe_acls(
        _filter(ResourceType.TOPIC, "logs-app", ResourcePatternType.MATCH),
        request_timeout=TIMEOUT_S).result(TIMEOUT_S)
    assert matching == [BOB_WRITES_LOGS]
    alice = client.describe_acls(_filter(principal="User:alice"),
                                 request_timeout=TIMEOUT_S).result(TIMEOUT_S)
    assert alice == [ALICE_READS_ORDERS]

    (deleted,) = client.delete_acls([_filter(ResourceType.TOPIC, principal="User:alice")],
                                    request_timeout=TIMEOUT_S).values()
    assert deleted.result(TIMEOUT_S) == [ALICE_READS_ORDERS]
    assert len(log.metadata.list_acls()) == 2


def test_an_invalid_creation_is_refused_alone(admin) -> None:
    client, log = admin
    not_the_cluster = AclBinding(ResourceType.BROKER, "other", ResourcePatternType.LITERAL,
                                 "User:carol", "*", AclOperation.ALTER, AclPermissionType.ALLOW)
    futures = client.create_acls([not_the_cluster, ALICE_READS_ORDERS],
                                 request_timeout=TIMEOUT_S)
    futures[ALICE_READS_ORDERS].result(TIMEOUT_S)
    with pytest.raises(KafkaException) as raised:
        futures[not_the_cluster].result(TIMEOUT_S)
    assert "kafka-cluster" in raised.value.args[0].str()
    assert [b.principal for b in log.metadata.list_acls()] == ["User:alice"]


def test_without_rights_on_the_cluster_the_client_is_refused(admin) -> None:
    client, log = admin
    _create(client, ALICE_READS_ORDERS)  # allowed: no ACL existed yet
    # Now ANONYMOUS has no ACL at all. librdkafka drops DescribeAcls' error code (a known
    # quirk of its rd_kafka_DescribeAclsResponse_parse), so it sees an empty listing; the
    # frame itself carries the error.
    assert client.describe_acls(_filter(), request_timeout=TIMEOUT_S).result(TIMEOUT_S) == []
    response = _raw_describe(admin_port(client))
    assert (response.error_code, response.resources) == (CLUSTER_AUTHORIZATION_FAILED, ())
    with pytest.raises(KafkaException) as raised:
        _create(client, BOB_WRITES_LOGS)
    assert raised.value.args[0].name() == "CLUSTER_AUTHORIZATION_FAILED"
    (refused,) = client.delete_acls([_filter()], request_timeout=TIMEOUT_S).values()
    with pytest.raises(KafkaException):
        refused.result(TIMEOUT_S)
    assert len(log.metadata.list_acls()) == 1


CLUSTER_AUTHORIZATION_FAILED = 31


def admin_port(client: AdminClient) -> int:
    (broker,) = client.list_topics(timeout=TIMEOUT_S).brokers.values()
    return int(broker.port)


def _raw_describe(port: int) -> Any:
    """A DescribeAcls v1 (ANY of everything) answered on a connection of its own."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.sendall(request_frame(ApiKey.DESCRIBE_ACLS, 1, 1, DescribeAclsRequest(
            resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1,
            principal_filter=None, host_filter=None, operation=1, permission_type=1)))
        return decode_response(ApiKey.DESCRIBE_ACLS, 1, read_frame(sock),
                               flexible_header=False)
