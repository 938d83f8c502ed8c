"""ACL checks of each handler, over raw frames on a PLAINTEXT listener (principal
``User:ANONYMOUS``, ACLs in the metadata store, read afresh on every check): Produce, Fetch,
Metadata (listing and auto-creation), ListOffsets, OffsetForLeaderEpoch, InitProducerId,
FindCoordinator; the group APIs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
OffsetFetch, DescribeGroups, ListGroups, DeleteGroups); the transaction APIs
(AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit, DescribeTransactions,
ListTransactions, DescribeProducers); and the admin APIs (CreateTopics, DeleteTopics,
CreatePartitions, DeleteRecords, DescribeConfigs, AlterConfigs, IncrementalAlterConfigs,
DescribeCluster) answer their Kafka authorization errors for what the ACLs do not allow, leave
what they refuse unchanged, and serve the rest (authorized-operations fields: the operations
the ACLs allow)."""

from __future__ import annotations

import datetime
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kio.schema.add_offsets_to_txn.v3.request import AddOffsetsToTxnRequest as AddOffsetsV3
from kio.schema.add_partitions_to_txn.v3 import request as add_partitions_v3
from kio.schema.alter_configs.v1 import request as alter_v1
from kio.schema.create_partitions.v2 import request as partitions_v2
from kio.schema.create_topics.v5 import request as create_v5
from kio.schema.delete_groups.v1.request import DeleteGroupsRequest as DeleteGroupsV1
from kio.schema.delete_records.v2 import request as delete_records_v2
from kio.schema.delete_topics.v4.request import DeleteTopicsRequest as DeleteTopicsV4
from kio.schema.describe_cluster.v1.request import DescribeClusterRequest as DescribeClusterV1
from kio.schema.describe_configs.v2 import request as describe_configs_v2
from kio.schema.describe_groups.v5.request import DescribeGroupsRequest as DescribeGroupsV5
from kio.schema.describe_producers.v0 import request as producers_v0
from kio.schema.describe_transactions.v0.request import (
    DescribeTransactionsRequest as DescribeTransactionsV0,
)
from kio.schema.end_txn.v3.request import EndTxnRequest as EndTxnV3
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v11 import request as fetch_v11
from kio.schema.find_coordinator.v3.request import FindCoordinatorRequest as FindCoordinatorV3
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest as FindCoordinatorV4
from kio.schema.heartbeat.v3.request import HeartbeatRequest as HeartbeatV3
from kio.schema.incremental_alter_configs.v1 import request as incremental_v1
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest as InitProducerIdV4
from kio.schema.join_group.v5 import request as join_v5
from kio.schema.leave_group.v3 import request as leave_v3
from kio.schema.list_groups.v4.request import ListGroupsRequest as ListGroupsV4
from kio.schema.list_offsets.v5 import request as list_offsets_v5
from kio.schema.list_transactions.v0.request import ListTransactionsRequest as ListTransactionsV0
from kio.schema.metadata.v9 import request as metadata_v9
from kio.schema.offset_commit.v7 import request as commit_v7
from kio.schema.offset_fetch.v1 import request as fetch_offsets_v1
from kio.schema.offset_fetch.v7 import request as fetch_offsets_v7
from kio.schema.offset_for_leader_epoch.v4 import request as epoch_v4
from kio.schema.produce.v7 import request as produce_v7
from kio.schema.sync_group.v3 import request as sync_v3
from kio.schema.txn_offset_commit.v3 import request as txn_commit_v3

import logstore
from logstore import TopicPartition
from logstore.broker import Broker, BrokerConfig
from logstore.broker.auth import (
    AclBinding,
    AclFilter,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
)
from logstore.protocol.apis import ApiKey
from logstore.protocol.codec import is_flexible

ANONYMOUS = "User:ANONYMOUS"
DENIED_TOPIC = ErrorCode.topic_authorization_failed


def _acl(operation: AclOperation, resource_type: ResourceType, name: str,
         pattern: PatternType = PatternType.LITERAL) -> AclBinding:
    return AclBinding(ANONYMOUS, operation, resource_type, name, pattern)


ACLS = [
    _acl(AclOperation.ALL, ResourceType.TOPIC, "open"),
    _acl(AclOperation.ALL, ResourceType.TOPIC, "new-", PatternType.PREFIXED),
    _acl(AclOperation.DESCRIBE, ResourceType.TOPIC, "nocreate-", PatternType.PREFIXED),
    _acl(AclOperation.READ, ResourceType.GROUP, "mine"),
    _acl(AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, "my-tx"),
    # Someone else's ACL on "closed": it is not enough that ACLs exist for it.
    AclBinding("User:bob", AclOperation.ALL, ResourceType.TOPIC, "closed"),
]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[list[AclBinding]],
                                               tuple[socket.socket, logstore.Log]]]:
    """``serve(acls)``: a broker over a log with topics open and closed (one record each)
    and those ACLs; returns a connected socket and the log."""
    opened: list[tuple[Broker, logstore.Log, socket.socket]] = []

    def run(acls: list[AclBinding]) -> tuple[socket.socket, logstore.Log]:
        log = logstore.open(tmp_path / f"d{len(opened)}", maintenance_interval_ms=None,
                            metadata_max_age_ms=0)
        for topic in ("open", "closed"):
            log.create_topic(topic)
            with log.producer(linger_ms=0) as producer:
                producer.send(topic, value=b"v", partition=0).result(10)
        log.metadata.add_acls(acls)
        broker = Broker(log, config=BrokerConfig(listen_port=0, acl_max_age_ms=0))
        broker.start()
        assert broker.address is not None
        sock = socket.create_connection(broker.address, timeout=10)
        opened.append((broker, log, sock))
        return sock, log

    yield run
    for broker, log, sock in opened:
        sock.close()
        broker.stop()
        log.close()


@pytest.fixture
def start(serve: Callable[[list[AclBinding]], tuple[socket.socket, logstore.Log]],
          ) -> Callable[[list[AclBinding]], socket.socket]:
    """``start(acls)``: :func:`serve`'s socket alone."""
    return lambda acls: serve(acls)[0]


def call(sock: socket.socket, wire: Any, api_key: int, version: int, body: Any,
         *, flexible: bool | None = None) -> Any:
    """Send one request and decode its response (``flexible``: the response header's form,
    by default the request version's)."""
    if flexible is None:
        flexible = is_flexible(api_key, version)
    sock.sendall(wire.request_frame(api_key, version, 7, body))
    payload = wire.read_frame(sock)
    assert payload, "the broker closed the connection"
    assert struct.unpack(">i", payload[:4])[0] == 7
    return wire.decode_response(api_key, version, payload, flexible_header=flexible)


def produce(sock: socket.socket, wire: Any, batch: bytes, topics: list[str],
            transactional_id: str | None = None) -> dict[str, ErrorCode]:
    body = produce_v7.ProduceRequest(
        transactional_id=transactional_id, acks=-1, timeout=datetime.timedelta(seconds=10),
        topic_data=tuple(produce_v7.TopicProduceData(name=topic, partition_data=(
            produce_v7.PartitionProduceData(index=0, records=batch),)) for topic in topics))
    response = call(sock, wire, ApiKey.PRODUCE, 7, body)
    return {t.name: t.partition_responses[0].error_code for t in response.responses}


def test_produce_needs_write_on_the_topic(start, wire, batch) -> None:
    sock = start(ACLS)
    assert produce(sock, wire, batch([b"x"]), ["open", "closed"]) == {
        "open": ErrorCode.none, "closed": DENIED_TOPIC}


def test_produce_with_a_transactional_id_needs_write_on_it(start, wire, batch) -> None:
    sock = start(ACLS)
    assert produce(sock, wire, batch([b"x"]), ["open"], transactional_id="their-tx") == {
        "open": ErrorCode.transactional_id_authorization_failed}


def fetch(sock: socket.socket, wire: Any, topics: list[str],
          replica_id: int = -1) -> dict[str, tuple[ErrorCode, int]]:
    body = fetch_v11.FetchRequest(
        replica_id=replica_id, max_wait=datetime.timedelta(0), min_bytes=0, max_bytes=1 << 20,
        isolation_level=0, session_id=0, session_epoch=-1, topics=tuple(
            fetch_v11.FetchTopic(topic=topic, partitions=(fetch_v11.FetchPartition(
                partition=0, current_leader_epoch=-1, fetch_offset=0, log_start_offset=-1,
                partition_max_bytes=1 << 20),)) for topic in topics),
        forgotten_topics_data=(), rack_id="")
    response = call(sock, wire, ApiKey.FETCH, 11, body)
    return {t.topic: (t.partitions[0].error_code, len(t.partitions[0].records or b""))
            for t in response.responses}


def test_fetch_needs_read_on_the_topic(start, wire) -> None:
    sock = start(ACLS)
    found = fetch(sock, wire, ["open", "closed"])
    assert found["open"][0] == ErrorCode.none and found["open"][1] > 0
    assert found["closed"] == (DENIED_TOPIC, 0)


def test_a_replica_fetch_needs_cluster_action(start, wire) -> None:
    sock = start(ACLS)
    assert fetch(sock, wire, ["open"], replica_id=1) == {"open": (DENIED_TOPIC, 0)}


def metadata(sock: socket.socket, wire: Any, topics: list[str] | None,
             create: bool = True) -> dict[str, ErrorCode]:
    body = metadata_v9.MetadataRequest(
        topics=None if topics is None else tuple(
            metadata_v9.MetadataRequestTopic(name=t) for t in topics),
        allow_auto_topic_creation=create, include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False)
    response = call(sock, wire, ApiKey.METADATA, 9, body, flexible=True)
    return {t.name: t.error_code for t in response.topics}


def test_metadata_describes_only_what_the_principal_may_and_creates_with_create(
        start, wire) -> None:
    sock = start(ACLS)
    assert metadata(sock, wire, None) == {"open": ErrorCode.none}
    assert metadata(sock, wire, ["open", "closed", "missing", "new-a", "nocreate-b"]) == {
        "open": ErrorCode.none, "closed": DENIED_TOPIC, "missing": DENIED_TOPIC,
        "new-a": ErrorCode.none, "nocreate-b": DENIED_TOPIC}
    assert metadata(sock, wire, ["nocreate-b"], create=False) == {
        "nocreate-b": ErrorCode.unknown_topic_or_partition}
    assert sorted(metadata(sock, wire, None)) == ["new-a", "open"]


def test_list_offsets_and_offset_for_leader_epoch_need_describe(start, wire) -> None:
    sock = start(ACLS)
    body = list_offsets_v5.ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=tuple(
        list_offsets_v5.ListOffsetsTopic(name=topic, partitions=(
            list_offsets_v5.ListOffsetsPartition(partition_index=0, current_leader_epoch=-1,
                                                 timestamp=-1),)) for topic in ("open", "closed")))
    response = call(sock, wire, ApiKey.LIST_OFFSETS, 5, body)
    assert {t.name: (t.partitions[0].error_code, t.partitions[0].offset)
            for t in response.topics} == {"open": (ErrorCode.none, 1),
                                          "closed": (DENIED_TOPIC, -1)}
    body = epoch_v4.OffsetForLeaderEpochRequest(replica_id=-1, topics=tuple(
        epoch_v4.OffsetForLeaderTopic(topic=topic, partitions=(epoch_v4.OffsetForLeaderPartition(
            partition=0, current_leader_epoch=-1, leader_epoch=0),))
        for topic in ("open", "closed")))
    response = call(sock, wire, ApiKey.OFFSET_FOR_LEADER_EPOCH, 4, body, flexible=True)
    assert {t.topic: t.partitions[0].error_code for t in response.topics} == {
        "open": ErrorCode.none, "closed": DENIED_TOPIC}


def init_producer_id(sock: socket.socket, wire: Any, transactional_id: str | None) -> Any:
    body = InitProducerIdV4(transactional_id=transactional_id,
                            transaction_timeout=datetime.timedelta(seconds=60), producer_id=-1,
                            producer_epoch=-1)
    return call(sock, wire, ApiKey.INIT_PRODUCER_ID, 4, body, flexible=True)


def test_init_producer_id_needs_write_on_the_transactional_id(start, wire) -> None:
    sock = start(ACLS)
    assert init_producer_id(sock, wire, "their-tx").error_code == (
        ErrorCode.transactional_id_authorization_failed)
    assert init_producer_id(sock, wire, "my-tx").error_code == ErrorCode.none
    # Idempotence: WRITE on some topic ("open", through ALL) implies IDEMPOTENT_WRITE.
    assert init_producer_id(sock, wire, None).error_code == ErrorCode.none


def test_idempotence_without_write_anywhere_is_a_cluster_authorization_error(
        start, wire) -> None:
    sock = start([_acl(AclOperation.READ, ResourceType.TOPIC, "open")])
    assert init_producer_id(sock, wire, None).error_code == (
        ErrorCode.cluster_authorization_failed)


def test_idempotent_write_on_the_cluster_allows_idempotence(start, wire) -> None:
    sock = start([_acl(AclOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, "kafka-cluster")])
    assert init_producer_id(sock, wire, None).error_code == ErrorCode.none


def test_find_coordinator_needs_describe_on_the_group_or_transactional_id(
        start, wire) -> None:
    sock = start(ACLS)
    for key, key_type, expected in (
            ("mine", 0, ErrorCode.none), ("theirs", 0, ErrorCode.group_authorization_failed),
            ("my-tx", 1, ErrorCode.none),
            ("their-tx", 1, ErrorCode.transactional_id_authorization_failed)):
        response = call(sock, wire, ApiKey.FIND_COORDINATOR, 3,
                        FindCoordinatorV3(key=key, key_type=key_type), flexible=True)
        assert response.error_code == expected, key
        assert (response.node_id == -1) == (expected != ErrorCode.none)
    response = call(sock, wire, ApiKey.FIND_COORDINATOR, 4,
                    FindCoordinatorV4(key_type=0, coordinator_keys=("mine", "theirs")),
                    flexible=True)
    assert [(c.key, c.error_code) for c in response.coordinators] == [
        ("mine", ErrorCode.none), ("theirs", ErrorCode.group_authorization_failed)]


# --- groups --------------------------------------------------------------------------------------

GROUP_DENIED = ErrorCode.group_authorization_failed
TXN_DENIED = ErrorCode.transactional_id_authorization_failed
CLUSTER_DENIED = ErrorCode.cluster_authorization_failed


def join(sock: socket.socket, wire: Any, group: str, member_id: str = "") -> Any:
    return call(sock, wire, ApiKey.JOIN_GROUP, 5, join_v5.JoinGroupRequest(
        group_id=group, session_timeout=datetime.timedelta(seconds=30),
        rebalance_timeout=datetime.timedelta(seconds=10), member_id=member_id,
        group_instance_id=None, protocol_type="raw",
        protocols=(join_v5.JoinGroupRequestProtocol(name="p", metadata=b"m"),)))


def sync(sock: socket.socket, wire: Any, group: str, member_id: str, generation: int) -> Any:
    return call(sock, wire, ApiKey.SYNC_GROUP, 3, sync_v3.SyncGroupRequest(
        group_id=group, generation_id=generation, member_id=member_id, group_instance_id=None,
        assignments=(sync_v3.SyncGroupRequestAssignment(member_id=member_id, assignment=b"a"),)))


def heartbeat(sock: socket.socket, wire: Any, group: str, member_id: str,
              generation: int) -> ErrorCode:
    return call(sock, wire, ApiKey.HEARTBEAT, 3, HeartbeatV3(
        group_id=group, generation_id=generation, member_id=member_id,
        group_instance_id=None)).error_code


def leave(sock: socket.socket, wire: Any, group: str, member_id: str) -> Any:
    return call(sock, wire, ApiKey.LEAVE_GROUP, 3, leave_v3.LeaveGroupRequest(
        group_id=group, members=(leave_v3.MemberIdentity(member_id=member_id,
                                                         group_instance_id=None),)))


def deny(log: logstore.Log, operation: AclOperation, resource_type: ResourceType,
         name: str) -> None:
    log.metadata.add_acls([AclBinding(ANONYMOUS, operation, resource_type, name,
                                      permission=AclPermission.DENY)])


def test_the_membership_apis_need_read_on_the_group(serve, wire) -> None:
    sock, log = serve(ACLS)
    refused = join(sock, wire, "theirs")
    assert (refused.error_code, refused.member_id) == (GROUP_DENIED, "")
    assert log.list_groups() == []
    assert sync(sock, wire, "theirs", "m", 1).error_code == GROUP_DENIED
    assert heartbeat(sock, wire, "theirs", "m", 1) == GROUP_DENIED
    assert leave(sock, wire, "theirs", "m").error_code == GROUP_DENIED
    member_id = join(sock, wire, "mine").member_id  # MEMBER_ID_REQUIRED, then the join
    joined = join(sock, wire, "mine", member_id)
    assert (joined.error_code, joined.generation_id) == (ErrorCode.none, 1)
    assert sync(sock, wire, "mine", member_id, 1).error_code == ErrorCode.none
    assert heartbeat(sock, wire, "mine", member_id, 1) == ErrorCode.none
    # A DENY wins over the ALLOW: the member can neither heartbeat, rejoin nor leave.
    deny(log, AclOperation.READ, ResourceType.GROUP, "mine")
    assert heartbeat(sock, wire, "mine", member_id, 1) == GROUP_DENIED
    assert join(sock, wire, "mine", member_id).error_code == GROUP_DENIED
    refused = leave(sock, wire, "mine", member_id)
    assert (refused.error_code, refused.members) == (GROUP_DENIED, ())
    described = log.describe_group("mine")
    assert (described.state, described.generation) == ("Stable", 1)
    assert [m.member_id for m in described.members] == [member_id]
    log.metadata.delete_acls(AclFilter(permission=AclPermission.DENY))
    assert leave(sock, wire, "mine", member_id).error_code == ErrorCode.none
    assert log.describe_group("mine").members == ()


def commit(sock: socket.socket, wire: Any, group: str,
           offsets: dict[str, int]) -> dict[str, ErrorCode]:
    """Commit partition 0 of each topic (without group management); each topic's code."""
    response = call(sock, wire, ApiKey.OFFSET_COMMIT, 7, commit_v7.OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
        topics=tuple(commit_v7.OffsetCommitRequestTopic(name=topic, partitions=(
            commit_v7.OffsetCommitRequestPartition(
                partition_index=0, committed_offset=offset, committed_leader_epoch=-1,
                committed_metadata=""),)) for topic, offset in offsets.items())))
    return {t.name: t.partitions[0].error_code for t in response.topics}


def committed(log: logstore.Log, group: str) -> dict[str, int]:
    return {tp.topic: c.offset for tp, c in log.committed_offsets(group).items()}


def test_offset_commit_needs_read_on_the_group_and_on_each_topic(serve, wire) -> None:
    sock, log = serve(ACLS)
    assert commit(sock, wire, "theirs", {"open": 1, "closed": 1}) == {
        "open": GROUP_DENIED, "closed": GROUP_DENIED}
    assert committed(log, "theirs") == {}
    assert commit(sock, wire, "mine", {"open": 1, "closed": 1}) == {
        "open": ErrorCode.none, "closed": DENIED_TOPIC}
    assert committed(log, "mine") == {"open": 1}


def offset_fetch(sock: socket.socket, wire: Any, group: str, topics: list[str] | None,
                 version: int = 7) -> tuple[ErrorCode, dict[str, tuple[int, ErrorCode]]]:
    """(the group's code, per topic partition 0's (offset, code))."""
    module = fetch_offsets_v7 if version == 7 else fetch_offsets_v1
    wanted = None if topics is None else tuple(
        module.OffsetFetchRequestTopic(name=t, partition_indexes=(0,)) for t in topics)
    body = (module.OffsetFetchRequest(group_id=group, topics=wanted, require_stable=False)
            if version == 7 else module.OffsetFetchRequest(group_id=group, topics=wanted))
    response = call(sock, wire, ApiKey.OFFSET_FETCH, version, body)
    return (getattr(response, "error_code", ErrorCode.none),
            {t.name: (t.partitions[0].committed_offset, t.partitions[0].error_code)
             for t in response.topics})


def test_offset_fetch_needs_describe_on_the_group_and_on_each_topic(serve, wire) -> None:
    sock, log = serve(ACLS)
    for group in ("mine", "theirs"):
        log.alter_group_offsets(group, {TopicPartition("open", 0): 4,
                                        TopicPartition("closed", 0): 5})
    assert offset_fetch(sock, wire, "theirs", ["open"]) == (GROUP_DENIED, {})
    assert offset_fetch(sock, wire, "theirs", ["open"], version=1) == (
        ErrorCode.none, {"open": (-1, GROUP_DENIED)})  # v1: no group-level code
    assert offset_fetch(sock, wire, "mine", ["open", "closed"]) == (
        ErrorCode.none, {"open": (4, ErrorCode.none), "closed": (-1, DENIED_TOPIC)})
    # Asked for every topic: those it may not describe are left out.
    assert offset_fetch(sock, wire, "mine", None) == (ErrorCode.none,
                                                     {"open": (4, ErrorCode.none)})


def test_describe_list_and_delete_groups_need_describe_and_delete(serve, wire) -> None:
    sock, log = serve([*ACLS, _acl(AclOperation.DELETE, ResourceType.GROUP, "gone")])
    for group in ("mine", "theirs", "gone"):
        log.alter_group_offsets(group, {TopicPartition("open", 0): 1})
    response = call(sock, wire, ApiKey.DESCRIBE_GROUPS, 5, DescribeGroupsV5(
        groups=("mine", "theirs"), include_authorized_operations=True))
    assert [(g.group_id, g.error_code, g.group_state, g.authorized_operations)
            for g in response.groups] == [
        ("mine", ErrorCode.none, "Empty", (1 << 3) | (1 << 8)),  # READ, DESCRIBE
        ("theirs", GROUP_DENIED, "", -2147483648)]

    def listed() -> list[str]:
        response = call(sock, wire, ApiKey.LIST_GROUPS, 4, ListGroupsV4(states_filter=()))
        return sorted(g.group_id for g in response.groups)

    assert listed() == ["gone", "mine"]  # DELETE implies DESCRIBE
    log.metadata.add_acls([_acl(AclOperation.DESCRIBE, ResourceType.CLUSTER,
                                "kafka-cluster")])
    assert listed() == ["gone", "mine", "theirs"]
    response = call(sock, wire, ApiKey.DELETE_GROUPS, 1, DeleteGroupsV1(
        groups_names=("mine", "theirs", "gone")))
    assert [(r.group_id, r.error_code) for r in response.results] == [
        ("mine", GROUP_DENIED), ("theirs", GROUP_DENIED), ("gone", ErrorCode.none)]
    assert sorted(g.group_id for g in log.list_groups()) == ["mine", "theirs"]


# --- transactions --------------------------------------------------------------------------------


def init_transactional(sock: socket.socket, wire: Any, transactional_id: str) -> tuple[int, int]:
    response = init_producer_id(sock, wire, transactional_id)
    assert response.error_code == ErrorCode.none
    return response.producer_id, response.producer_epoch


def add_partitions(sock: socket.socket, wire: Any, transactional_id: str,
                   identity: tuple[int, int], topics: list[str]) -> dict[str, ErrorCode]:
    response = call(sock, wire, ApiKey.ADD_PARTITIONS_TO_TXN, 3,
                    add_partitions_v3.AddPartitionsToTxnRequest(
                        v3_and_below_transactional_id=transactional_id,
                        v3_and_below_producer_id=identity[0],
                        v3_and_below_producer_epoch=identity[1],
                        v3_and_below_topics=tuple(add_partitions_v3.AddPartitionsToTxnTopic(
                            name=topic, partitions=(0,)) for topic in topics)))
    return {t.name: t.results_by_partition[0].partition_error_code
            for t in response.results_by_topic_v3_and_below}


def test_add_partitions_to_txn_needs_write_on_the_id_and_on_each_topic(serve, wire) -> None:
    sock, log = serve(ACLS)
    identity = init_transactional(sock, wire, "my-tx")
    assert add_partitions(sock, wire, "their-tx", identity, ["open"]) == {"open": TXN_DENIED}
    assert add_partitions(sock, wire, "my-tx", identity, ["open", "closed"]) == {
        "open": ErrorCode.operation_not_attempted, "closed": DENIED_TOPIC}
    assert log.describe_transaction("my-tx").partitions == frozenset()
    assert add_partitions(sock, wire, "my-tx", identity, ["open"]) == {"open": ErrorCode.none}
    assert log.describe_transaction("my-tx").partitions == {TopicPartition("open", 0)}


def add_offsets(sock: socket.socket, wire: Any, transactional_id: str,
                identity: tuple[int, int], group: str) -> ErrorCode:
    return call(sock, wire, ApiKey.ADD_OFFSETS_TO_TXN, 3, AddOffsetsV3(
        transactional_id=transactional_id, producer_id=identity[0],
        producer_epoch=identity[1], group_id=group)).error_code


def end_txn(sock: socket.socket, wire: Any, transactional_id: str,
            identity: tuple[int, int]) -> ErrorCode:
    return call(sock, wire, ApiKey.END_TXN, 3, EndTxnV3(
        transactional_id=transactional_id, producer_id=identity[0],
        producer_epoch=identity[1], committed=True)).error_code


def txn_commit(sock: socket.socket, wire: Any, transactional_id: str,
               identity: tuple[int, int], group: str,
               offsets: dict[str, int]) -> dict[str, ErrorCode]:
    response = call(sock, wire, ApiKey.TXN_OFFSET_COMMIT, 3, txn_commit_v3.TxnOffsetCommitRequest(
        transactional_id=transactional_id, group_id=group, producer_id=identity[0],
        producer_epoch=identity[1], generation_id=-1, member_id="", group_instance_id=None,
        topics=tuple(txn_commit_v3.TxnOffsetCommitRequestTopic(name=topic, partitions=(
            txn_commit_v3.TxnOffsetCommitRequestPartition(
                partition_index=0, committed_offset=offset, committed_leader_epoch=-1,
                committed_metadata=""),)) for topic, offset in offsets.items())))
    return {t.name: t.partitions[0].error_code for t in response.topics}


def test_transactional_offsets_and_end_txn_need_write_on_the_id_and_read_on_the_group(
        serve, wire) -> None:
    sock, log = serve(ACLS)
    coordinator = log.transaction_coordinator
    theirs = coordinator.init_producer_id("their-tx", 60_000)
    coordinator.add_partitions("their-tx", theirs.producer_id, theirs.epoch,
                               [TopicPartition("open", 0)])
    identity = init_transactional(sock, wire, "my-tx")
    assert add_offsets(sock, wire, "their-tx", (theirs.producer_id, theirs.epoch),
                       "mine") == TXN_DENIED
    assert add_offsets(sock, wire, "my-tx", identity, "theirs") == GROUP_DENIED
    assert log.describe_transaction("my-tx").state == "Empty"  # no transaction began
    assert add_offsets(sock, wire, "my-tx", identity, "mine") == ErrorCode.none
    assert txn_commit(sock, wire, "their-tx", identity, "mine", {"open": 3}) == {
        "open": TXN_DENIED}
    assert txn_commit(sock, wire, "my-tx", identity, "theirs", {"open": 3}) == {
        "open": GROUP_DENIED}
    assert txn_commit(sock, wire, "my-tx", identity, "mine", {"open": 3, "closed": 3}) == {
        "open": ErrorCode.none, "closed": DENIED_TOPIC}
    assert log.describe_transaction("my-tx").pending_offsets == {
        "mine": {TopicPartition("open", 0): 3}}
    assert end_txn(sock, wire, "their-tx", (theirs.producer_id, theirs.epoch)) == TXN_DENIED
    assert log.describe_transaction("their-tx").state == "Ongoing"
    assert end_txn(sock, wire, "my-tx", identity) == ErrorCode.none
    assert committed(log, "mine") == {"open": 3}


def test_describing_transactions_and_producers_needs_describe_and_read(serve, wire) -> None:
    sock, log = serve(ACLS)
    coordinator = log.transaction_coordinator
    for tid in ("my-tx", "their-tx"):
        found = coordinator.init_producer_id(tid, 60_000)
        coordinator.add_partitions(tid, found.producer_id, found.epoch,
                                   [TopicPartition("open", 0), TopicPartition("closed", 0)])
    response = call(sock, wire, ApiKey.DESCRIBE_TRANSACTIONS, 0,
                    DescribeTransactionsV0(transactional_ids=("my-tx",)))
    (mine,) = response.transaction_states
    assert (mine.error_code, mine.transaction_state) == (ErrorCode.none, "Ongoing")
    assert [(t.topic, t.partitions) for t in mine.topics] == [("open", (0,))]  # not "closed"
    # kio cannot read the start time -1 of an undescribed id: the code is read from the bytes
    # (after the correlation id, header tags, throttle time and the states' count).
    sock.sendall(wire.request_frame(ApiKey.DESCRIBE_TRANSACTIONS, 0, 8,
                                    DescribeTransactionsV0(transactional_ids=("their-tx",))))
    assert struct.unpack_from(">h", wire.read_frame(sock), 10) == (TXN_DENIED.value,)
    response = call(sock, wire, ApiKey.LIST_TRANSACTIONS, 0,
                    ListTransactionsV0(state_filters=(), producer_id_filters=()))
    assert [t.transactional_id for t in response.transaction_states] == ["my-tx"]
    response = call(sock, wire, ApiKey.DESCRIBE_PRODUCERS, 0, producers_v0.DescribeProducersRequest(
        topics=tuple(producers_v0.TopicRequest(name=topic, partition_indexes=(0,))
                     for topic in ("open", "closed"))))
    assert {t.name: t.partitions[0].error_code for t in response.topics} == {
        "open": ErrorCode.none, "closed": DENIED_TOPIC}


# --- topic and config administration -------------------------------------------------------------


def create_topics(sock: socket.socket, wire: Any, names: list[str]) -> dict[str, Any]:
    response = call(sock, wire, ApiKey.CREATE_TOPICS, 5, create_v5.CreateTopicsRequest(
        topics=tuple(create_v5.CreatableTopic(name=name, num_partitions=2, replication_factor=-1,
                                              assignments=(), configs=()) for name in names),
        timeout=datetime.timedelta(seconds=10), validate_only=False))
    return {t.name: t for t in response.topics}


def test_create_topics_needs_create_on_the_cluster_or_the_topic(serve, wire) -> None:
    sock, log = serve([*ACLS, _acl(AclOperation.CREATE, ResourceType.TOPIC, "bare-",
                                   PatternType.PREFIXED)])
    found = create_topics(sock, wire, ["new-a", "bare-b", "other-c"])
    assert (found["new-a"].error_code, found["new-a"].num_partitions) == (ErrorCode.none, 2)
    assert found["new-a"].topic_config_error_code == 0 and found["new-a"].configs
    # Created, but without DESCRIBE_CONFIGS its configs and counts are not shown.
    assert (found["bare-b"].error_code, found["bare-b"].topic_config_error_code,
            found["bare-b"].num_partitions, found["bare-b"].configs) == (
        ErrorCode.none, DENIED_TOPIC.value, -1, ())
    assert found["other-c"].error_code == DENIED_TOPIC
    assert sorted(log.list_topics()) == ["bare-b", "closed", "new-a", "open"]
    log.metadata.add_acls([_acl(AclOperation.CREATE, ResourceType.CLUSTER, "kafka-cluster")])
    assert create_topics(sock, wire, ["other-c"])["other-c"].error_code == ErrorCode.none
    assert "other-c" in log.list_topics()


def test_deleting_topics_and_records_and_adding_partitions_need_delete_and_alter(
        serve, wire) -> None:
    sock, log = serve(ACLS)
    ten_s = datetime.timedelta(seconds=10)
    response = call(sock, wire, ApiKey.DELETE_RECORDS, 2, delete_records_v2.DeleteRecordsRequest(
        topics=tuple(delete_records_v2.DeleteRecordsTopic(name=topic, partitions=(
            delete_records_v2.DeleteRecordsPartition(partition_index=0, offset=-1),))
            for topic in ("open", "closed")), timeout=ten_s))
    assert {t.name: (t.partitions[0].error_code, t.partitions[0].low_watermark)
            for t in response.topics} == {"open": (ErrorCode.none, 1),
                                          "closed": (DENIED_TOPIC, -1)}
    assert log.partition_log("closed", 0).log_start_offset == 0
    response = call(sock, wire, ApiKey.CREATE_PARTITIONS, 2, partitions_v2.CreatePartitionsRequest(
        topics=tuple(partitions_v2.CreatePartitionsTopic(name=topic, count=2, assignments=None)
                     for topic in ("open", "closed")), timeout=ten_s, validate_only=False))
    assert {r.name: r.error_code for r in response.results} == {
        "open": ErrorCode.none, "closed": DENIED_TOPIC}
    assert (log.topic_info("open")[0], log.topic_info("closed")[0]) == (2, 1)
    response = call(sock, wire, ApiKey.DELETE_TOPICS, 4, DeleteTopicsV4(
        topic_names=("open", "closed"), timeout=ten_s))
    assert {r.name: r.error_code for r in response.responses} == {
        "open": ErrorCode.none, "closed": DENIED_TOPIC}
    assert log.list_topics() == ["closed"]


TOPIC_RESOURCE, BROKER_RESOURCE = 2, 4


def test_configs_need_describe_configs_and_alter_configs_on_the_topic_or_the_cluster(
        serve, wire) -> None:
    sock, log = serve([_acl(AclOperation.ALTER_CONFIGS, ResourceType.TOPIC, "open"),
                       _acl(AclOperation.DESCRIBE_CONFIGS, ResourceType.TOPIC, "closed")])
    resources = [(TOPIC_RESOURCE, "open"), (TOPIC_RESOURCE, "closed"), (BROKER_RESOURCE, "0")]

    def describe() -> list[ErrorCode]:
        response = call(sock, wire, ApiKey.DESCRIBE_CONFIGS, 2, describe_configs_v2.
                        DescribeConfigsRequest(resources=tuple(
                            describe_configs_v2.DescribeConfigsResource(
                                resource_type=kind, resource_name=name, configuration_keys=None)
                            for kind, name in resources), include_synonyms=False))
        return [r.error_code for r in response.results]

    assert describe() == [ErrorCode.none, ErrorCode.none, CLUSTER_DENIED]
    response = call(sock, wire, ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, incremental_v1.
                    IncrementalAlterConfigsRequest(resources=tuple(
                        incremental_v1.AlterConfigsResource(
                            resource_type=kind, resource_name=name, configs=() if kind == 4 else (
                                incremental_v1.AlterableConfig(
                                    name="retention.ms", config_operation=0, value="1000"),))
                        for kind, name in resources), validate_only=False))
    assert [r.error_code for r in response.responses] == [ErrorCode.none, DENIED_TOPIC,
                                                          CLUSTER_DENIED]
    response = call(sock, wire, ApiKey.ALTER_CONFIGS, 1, alter_v1.AlterConfigsRequest(
        resources=(alter_v1.AlterConfigsResource(
            resource_type=TOPIC_RESOURCE, resource_name="closed", configs=(
                alter_v1.AlterableConfig(name="retention.ms", value="1000"),)),),
        validate_only=False))
    assert [r.error_code for r in response.responses] == [DENIED_TOPIC]
    assert log.metadata.get_topic("open").configs == {"retention.ms": "1000"}
    assert log.metadata.get_topic("closed").configs == {}
    log.metadata.add_acls([_acl(AclOperation.DESCRIBE_CONFIGS, ResourceType.CLUSTER,
                                "kafka-cluster")])
    assert describe() == [ErrorCode.none, ErrorCode.none, ErrorCode.none]


def test_describe_cluster_answers_the_cluster_operations_the_acls_allow(serve, wire) -> None:
    sock, log = serve(ACLS)

    def described(include: bool) -> tuple[ErrorCode, int]:
        response = call(sock, wire, ApiKey.DESCRIBE_CLUSTER, 1, DescribeClusterV1(
            include_cluster_authorized_operations=include, endpoint_type=1))
        assert [b.broker_id for b in response.brokers] == [0]  # served to anyone, as Kafka
        return response.error_code, response.cluster_authorized_operations

    assert described(False) == (ErrorCode.none, -2147483648)
    assert described(True) == (ErrorCode.none, 0)  # no DESCRIBE on the cluster
    log.metadata.add_acls([_acl(AclOperation.DESCRIBE, ResourceType.CLUSTER, "kafka-cluster"),
                           _acl(AclOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER,
                                "kafka-cluster")])
    assert described(True) == (ErrorCode.none, (1 << 8) | (1 << 12))
    log.metadata.add_acls([_acl(AclOperation.ALL, ResourceType.CLUSTER, "kafka-cluster")])
    assert described(True) == (ErrorCode.none, sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12)))


def test_metadata_answers_the_topic_and_cluster_operations_the_acls_allow(serve, wire) -> None:
    sock, log = serve([*ACLS, _acl(AclOperation.READ, ResourceType.TOPIC, "readonly")])
    log.create_topic("readonly", 1)

    def described(include: bool) -> tuple[dict[str, int], int]:
        body = metadata_v9.MetadataRequest(
            topics=tuple(metadata_v9.MetadataRequestTopic(name=t) for t in ("open", "readonly")),
            allow_auto_topic_creation=False, include_cluster_authorized_operations=include,
            include_topic_authorized_operations=include)
        response = call(sock, wire, ApiKey.METADATA, 9, body, flexible=True)
        return ({t.name: t.topic_authorized_operations for t in response.topics},
                response.cluster_authorized_operations)

    omitted = -2147483648
    assert described(False) == ({"open": omitted, "readonly": omitted}, omitted)
    every_topic_operation = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))
    read_and_describe = (1 << 3) | (1 << 8)
    assert described(True) == ({"open": every_topic_operation, "readonly": read_and_describe}, 0)
    log.metadata.add_acls([_acl(AclOperation.DESCRIBE, ResourceType.CLUSTER, "kafka-cluster")])
    assert described(True)[1] == 1 << 8
