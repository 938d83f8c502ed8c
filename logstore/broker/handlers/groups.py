"""Consumer groups over the Kafka protocol, through the embedded group coordinator: JoinGroup
(v0-5) and SyncGroup (v0-3) in ``group_join``; here Heartbeat (v0-3), LeaveGroup (v0-3),
OffsetCommit (v2-7), OffsetFetch (v1-7), DescribeGroups (v0-5), ListGroups (v0-5) and
DeleteGroups (v0-1).

Groups live in the metadata store (``logstore.coordinator``), so embedded consumers and Kafka
clients can be members of the same group, and every broker sharing the store can coordinate
every group. Every store call runs off the event loop; failures become error codes in the
response (a metadata store that cannot be reached: COORDINATOR_NOT_AVAILABLE).

Kafka's rules kept here, beyond what the coordinator enforces:

* OffsetCommit: a commit with generation -1 is a commit without group management (accepted
  while the group has no members, else UNKNOWN_MEMBER_ID); unknown topics and partitions get
  UNKNOWN_TOPIC_OR_PARTITION and metadata over 4096 bytes OFFSET_METADATA_TOO_LARGE, per
  partition, while the others are committed.
* OffsetFetch v7 ``require_stable``: a partition with offsets sent to a transaction that has
  not completed (Ongoing or preparing its commit or abort) is answered UNSTABLE_OFFSET_COMMIT,
  which clients retry; without ``require_stable`` the last committed offset is returned.
* DescribeGroups: members carry their subscription metadata and assignment (binary
  ConsumerProtocol) only while the group is Stable, as Kafka's; an unknown group is "Dead".
* ListGroups v4 filters by state (KIP-518), v5 by type (every group here is "classic").
* Static members (``group.instance.id``) fenced by a newer instance get FENCED_INSTANCE_ID.

Authorization, as Kafka's ``KafkaApis`` (checked before the group is read or changed; a
refusal changes nothing):

* Heartbeat, LeaveGroup (and JoinGroup, SyncGroup): READ on the group, else
  GROUP_AUTHORIZATION_FAILED.
* OffsetCommit: READ on the group, else GROUP_AUTHORIZATION_FAILED for every partition; then
  READ on each topic, else TOPIC_AUTHORIZATION_FAILED for its partitions (the others are
  committed).
* OffsetFetch: DESCRIBE on the group, else GROUP_AUTHORIZATION_FAILED (v2+: the top-level code
  and no topics; v1: on each partition asked for). Topics named without DESCRIBE get
  TOPIC_AUTHORIZATION_FAILED per partition; a request for all topics leaves them out.
* DescribeGroups: DESCRIBE on each group, else that group is answered
  GROUP_AUTHORIZATION_FAILED (and nothing else about it). ``include_authorized_operations``
  gets the operations the ACLs allow on each group described.
* ListGroups: DESCRIBE on the cluster lists every group; without it, only the groups with
  DESCRIBE.
* DeleteGroups: DELETE on each group, else GROUP_AUTHORIZATION_FAILED for it.

Thread-safety: handlers run on the broker's event loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from logstore.backends.group_records import STABLE, CommittedOffset, GroupSnapshot
from logstore.backends.txn_records import ONGOING, PREPARE_STATES
from logstore.broker.auth import CLUSTER_RESOURCE_NAME, AclOperation, ResourceType
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers import group_join
from logstore.broker.handlers.common import (
    AUTHORIZED_OPERATIONS_OMITTED,
    authorize_names,
    authorized_operations,
    partition_count,
)
from logstore.broker.handlers.group_join import (
    GROUP_AUTHORIZATION_FAILED,
    coordinator_of,
    group_error_code,
    may_use_group,
    member_error_code,
    runtime,
)
from logstore.coordinator.consumer_protocol import binary_assignment, binary_subscription
from logstore.errors import (
    IllegalGenerationError,
    LogstoreError,
    TopicAuthorizationFailedError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from logstore.protocol.apis import ApiKey, VersionRange
from logstore.types import TopicPartition

if TYPE_CHECKING:
    from logstore.embedded import Log

HEARTBEAT_VERSIONS = VersionRange(0, 3)
LEAVE_GROUP_VERSIONS = VersionRange(0, 3)
OFFSET_COMMIT_VERSIONS = VersionRange(2, 7)
OFFSET_FETCH_VERSIONS = VersionRange(1, 7)
DESCRIBE_GROUPS_VERSIONS = VersionRange(0, 5)
LIST_GROUPS_VERSIONS = VersionRange(0, 5)
DELETE_GROUPS_VERSIONS = VersionRange(0, 1)

#: Kafka's ``offset.metadata.max.bytes`` default.
OFFSET_METADATA_MAX_BYTES = 4096
OFFSET_METADATA_TOO_LARGE = 12
UNSTABLE_OFFSET_COMMIT = 88
TOPIC_AUTHORIZATION_FAILED = TopicAuthorizationFailedError.error_code
CLASSIC = "classic"
DEAD = "Dead"


def register(dispatcher: Dispatcher) -> None:
    group_join.register(dispatcher)
    dispatcher.register(ApiKey.HEARTBEAT, HEARTBEAT_VERSIONS, heartbeat)
    dispatcher.register(ApiKey.LEAVE_GROUP, LEAVE_GROUP_VERSIONS, leave_group)
    dispatcher.register(ApiKey.OFFSET_COMMIT, OFFSET_COMMIT_VERSIONS, offset_commit)
    dispatcher.register(ApiKey.OFFSET_FETCH, OFFSET_FETCH_VERSIONS, offset_fetch)
    dispatcher.register(ApiKey.DESCRIBE_GROUPS, DESCRIBE_GROUPS_VERSIONS, describe_groups)
    dispatcher.register(ApiKey.LIST_GROUPS, LIST_GROUPS_VERSIONS, list_groups)
    dispatcher.register(ApiKey.DELETE_GROUPS, DELETE_GROUPS_VERSIONS, delete_groups)


# --- Heartbeat, LeaveGroup ------------------------------------------------------------------------


async def heartbeat(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.HEARTBEAT, ctx.api_version)
    if not await may_use_group(ctx, request.group_id):
        return build(module.HeartbeatResponse, throttle_time_ms=0,
                     error_code=GROUP_AUTHORIZATION_FAILED)
    instance_id = request.group_instance_id if ctx.api_version >= 3 else None
    try:
        await ctx.run(coordinator_of(ctx).heartbeat, request.group_id, request.member_id,
                      request.generation_id)
        code = 0
    except LogstoreError as exc:
        code = await member_error_code(ctx, exc, request.group_id, instance_id)
    # The step may have expired members or completed a rebalance: held requests re-read.
    runtime(ctx.services).changed(request.group_id)
    return build(module.HeartbeatResponse, throttle_time_ms=0, error_code=code)


async def leave_group(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.LEAVE_GROUP, ctx.api_version)
    group_id: str = request.group_id
    batched = ctx.api_version >= 3
    identities: list[tuple[str, str | None]] = (
        [(m.member_id, m.group_instance_id) for m in request.members] if batched
        else [(request.member_id, None)])

    def answer(code: int, results: list[int] | None = None) -> Any:
        members = tuple(
            build_in(module, "MemberResponse", member_id=member_id,
                     group_instance_id=instance_id, error_code=result)
            for (member_id, instance_id), result in zip(identities, results or [],
                                                        strict=False))
        return build(module.LeaveGroupResponse, throttle_time_ms=0, error_code=code,
                     members=members)

    if not await may_use_group(ctx, group_id):
        return answer(GROUP_AUTHORIZATION_FAILED)
    group_runtime = runtime(ctx.services)
    coordinator = coordinator_of(ctx)
    # A member that got an id (KIP-394) but never joined leaves by forgetting the id.
    leaving = [(m, i) for m, i in identities if not group_runtime.drop_pending(group_id, m)]
    try:
        snapshot = await ctx.run(coordinator.read_group, group_id)
        if snapshot.group is None and leaving:
            return answer(UnknownMemberIdError.error_code)
        outcomes = await ctx.run(coordinator.leave_members, group_id, leaving)
    except LogstoreError as exc:
        return answer(group_error_code(exc))
    by_identity = dict(zip(leaving, outcomes, strict=True))
    results = [0 if by_identity.get(identity) is None else group_error_code(by_identity[identity])
               for identity in identities]
    group_runtime.forget(group_id, [m for m, _ in identities])
    group_runtime.changed(group_id)
    if batched:
        return answer(0, results)
    return answer(results[0])


# --- OffsetCommit, OffsetFetch -------------------------------------------------------------------


async def offset_commit(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.OFFSET_COMMIT, ctx.api_version)
    group_id: str = request.group_id
    generation: int = request.generation_id_or_member_epoch
    # Generation -1 is a client without group management, whatever member id it sends.
    member_id: str = request.member_id if generation >= 0 else ""
    instance_id = request.group_instance_id if ctx.api_version >= 7 else None
    log: Log = ctx.services.log
    now_ms = log.clock.time_ms()
    wanted = [(t.name, p) for t in request.topics for p in t.partitions]
    if not await may_use_group(ctx, group_id):
        return _commit_response(module, wanted, {}, GROUP_AUTHORIZATION_FAILED)
    _, denied = await authorize_names(ctx, ResourceType.TOPIC, (name for name, _ in wanted),
                                      AclOperation.READ)
    names = [name for name in dict.fromkeys(name for name, _ in wanted) if name not in denied]
    counts = await asyncio.gather(*(ctx.run(partition_count, log, name) for name in names))
    count_of = dict(zip(names, counts, strict=True))
    codes: dict[tuple[str, int], int] = {}
    offsets: dict[TopicPartition, CommittedOffset] = {}
    for name, p in wanted:
        metadata = p.committed_metadata or ""
        if name in denied:
            codes[(name, p.partition_index)] = TOPIC_AUTHORIZATION_FAILED
        elif p.partition_index < 0 or p.partition_index >= count_of[name]:
            codes[(name, p.partition_index)] = UnknownTopicOrPartitionError.error_code
        elif len(metadata.encode()) > OFFSET_METADATA_MAX_BYTES:
            codes[(name, p.partition_index)] = OFFSET_METADATA_TOO_LARGE
        else:
            epoch = p.committed_leader_epoch if ctx.api_version >= 6 else -1
            offsets[TopicPartition(name, p.partition_index)] = CommittedOffset(
                p.committed_offset, metadata, epoch, now_ms)
    code = 0
    if offsets:
        try:
            await ctx.run(lambda: coordinator_of(ctx).commit_offsets(
                group_id, offsets, member_id=member_id, generation=generation))
        except IllegalGenerationError as exc:
            # Kafka's answer to a commit without group management into a group with members.
            code = (UnknownMemberIdError.error_code if not member_id
                    else await member_error_code(ctx, exc, group_id, instance_id))
        except LogstoreError as exc:
            code = await member_error_code(ctx, exc, group_id, instance_id)
        runtime(ctx.services).changed(group_id)
    return _commit_response(module, wanted, codes, code)


def _commit_response(module: Any, wanted: list[tuple[str, Any]],
                     codes: dict[tuple[str, int], int], code: int) -> Any:
    """The OffsetCommit response: each partition's code from ``codes``, else ``code``."""
    by_topic: dict[str, list[Any]] = {}
    for name, p in wanted:
        by_topic.setdefault(name, []).append(build_in(
            module, "OffsetCommitResponsePartition", partition_index=p.partition_index,
            error_code=codes.get((name, p.partition_index), code)))
    return build(module.OffsetCommitResponse, throttle_time_ms=0, topics=tuple(
        build_in(module, "OffsetCommitResponseTopic", name=name, partitions=tuple(entries))
        for name, entries in by_topic.items()))


async def offset_fetch(ctx: RequestContext, request: Any) -> Any:
    version = ctx.api_version
    module = response_module(ApiKey.OFFSET_FETCH, version)
    group_id: str = request.group_id
    asked: list[TopicPartition] | None = None if request.topics is None else [
        TopicPartition(t.name, p) for t in request.topics for p in t.partition_indexes]
    require_stable = version >= 7 and request.require_stable
    if not await ctx.authorize(ResourceType.GROUP, group_id, AclOperation.DESCRIBE):
        # Kafka's answer: the group's code alone (v1, without one: on each partition asked).
        return _fetch_response(module, [] if version >= 2 else asked or [], {}, set(), set(),
                               GROUP_AUTHORIZATION_FAILED, version)
    allowed, denied = await authorize_names(
        ctx, ResourceType.TOPIC, [] if asked is None else (tp.topic for tp in asked),
        AclOperation.DESCRIBE)
    coordinator = coordinator_of(ctx)
    try:
        committed = await ctx.run(coordinator.fetch_offsets, group_id, None if asked is None
                                  else [tp for tp in asked if tp.topic in allowed])
        unstable = (await ctx.run(_pending_transactional_offsets, ctx.services.log, group_id)
                    if require_stable else set())
        code = 0
    except LogstoreError as exc:
        committed, unstable, code = {}, set(), group_error_code(exc)
    if asked is None:  # all topics: only those the principal may DESCRIBE
        allowed, _ = await authorize_names(ctx, ResourceType.TOPIC,
                                           (tp.topic for tp in committed), AclOperation.DESCRIBE)
        partitions = sorted(tp for tp in committed if tp.topic in allowed)
    else:
        partitions = asked
    return _fetch_response(module, partitions, committed, unstable, denied, code, version)


def _fetch_response(module: Any, partitions: list[TopicPartition],
                    committed: dict[TopicPartition, CommittedOffset],
                    unstable: set[TopicPartition], denied: set[str], code: int,
                    version: int) -> Any:
    """The OffsetFetch response for ``partitions``: their committed offsets, or the partition's
    error (a topic in ``denied``: TOPIC_AUTHORIZATION_FAILED); ``code`` is the group's."""
    by_topic: dict[str, list[Any]] = {}
    for tp in partitions:
        found = committed.get(tp)
        if tp.topic in denied:
            offset, epoch, metadata = -1, -1, ""
            partition_code = TOPIC_AUTHORIZATION_FAILED
        elif tp in unstable or found is None:
            offset, epoch, metadata = -1, -1, ""
            partition_code = UNSTABLE_OFFSET_COMMIT if tp in unstable else (
                code if version < 2 else 0)  # v1 has no group-level error code
        else:
            offset, epoch, metadata = found.offset, found.leader_epoch, found.metadata
            partition_code = 0
        by_topic.setdefault(tp.topic, []).append(build_in(
            module, "OffsetFetchResponsePartition", partition_index=tp.partition,
            committed_offset=offset, committed_leader_epoch=epoch, metadata=metadata,
            error_code=partition_code))
    return build(module.OffsetFetchResponse, throttle_time_ms=0, error_code=code, topics=tuple(
        build_in(module, "OffsetFetchResponseTopic", name=name, partitions=tuple(entries))
        for name, entries in by_topic.items()))


def _pending_transactional_offsets(log: Log, group_id: str) -> set[TopicPartition]:
    """Partitions of the group with offsets sent to a transaction that has not completed."""
    records = log.metadata.list_transactions((ONGOING, *PREPARE_STATES))
    return {tp for record in records for tp in record.pending_offsets.get(group_id, {})}


# --- DescribeGroups, ListGroups, DeleteGroups ----------------------------------------------------


async def describe_groups(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.DESCRIBE_GROUPS, ctx.api_version)
    coordinator = coordinator_of(ctx)
    with_operations = ctx.api_version >= 3 and request.include_authorized_operations
    described = []
    for group_id in request.groups:
        if not await ctx.authorize(ResourceType.GROUP, group_id, AclOperation.DESCRIBE):
            described.append(build_in(
                module, "DescribedGroup", error_code=GROUP_AUTHORIZATION_FAILED,
                group_id=group_id, group_state="", protocol_type="", protocol_data="",
                members=(), authorized_operations=AUTHORIZED_OPERATIONS_OMITTED))
            continue
        try:
            snapshot = await ctx.run(coordinator.current_group, group_id)
        except LogstoreError as exc:
            described.append(build_in(
                module, "DescribedGroup", error_code=group_error_code(exc), group_id=group_id,
                group_state=DEAD, protocol_type="", protocol_data="", members=(),
                authorized_operations=AUTHORIZED_OPERATIONS_OMITTED))
            continue
        operations = (await authorized_operations(ctx, ResourceType.GROUP, group_id)
                      if with_operations else AUTHORIZED_OPERATIONS_OMITTED)
        described.append(_described(ctx, module, group_id, snapshot, operations))
    return build(module.DescribeGroupsResponse, throttle_time_ms=0, groups=tuple(described))


def _described(ctx: RequestContext, module: Any, group_id: str, snapshot: GroupSnapshot,
               operations: int) -> Any:
    group = snapshot.group
    if group is None:
        return build_in(module, "DescribedGroup", error_code=0, group_id=group_id,
                        group_state=DEAD, protocol_type="", protocol_data="", members=(),
                        authorized_operations=operations)
    stable = group.state == STABLE
    consumer = group.protocol_type == "consumer"
    protocol = group.protocol or ""
    group_runtime = runtime(ctx.services)
    members = []
    for member in snapshot.members:
        metadata = assignment = b""
        if stable:  # Kafka shows metadata and assignments of Stable groups only
            metadata = member.metadata_for(protocol)
            assignment = member.assignment or b""
            if consumer:
                metadata, assignment = binary_subscription(metadata), binary_assignment(assignment)
        members.append(build_in(
            module, "DescribedGroupMember", member_id=member.member_id,
            group_instance_id=member.group_instance_id, client_id=member.client_id,
            client_host=group_runtime.host(group_id, member.member_id),
            member_metadata=metadata, member_assignment=assignment))
    return build_in(module, "DescribedGroup", error_code=0, group_id=group_id,
                    group_state=group.state, protocol_type=group.protocol_type,
                    protocol_data=protocol if stable else "", members=tuple(members),
                    authorized_operations=operations)


async def list_groups(ctx: RequestContext, request: Any) -> Any:
    version = ctx.api_version
    module = response_module(ApiKey.LIST_GROUPS, version)
    states = {s.lower() for s in request.states_filter} if version >= 4 else set()
    types = {t.lower() for t in request.types_filter} if version >= 5 else set()
    try:
        listed = [] if types and CLASSIC not in types else await ctx.run(
            _current_groups, ctx, version >= 4)
        code = 0
    except LogstoreError as exc:
        listed, code = [], group_error_code(exc)
    if not await ctx.authorize(ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME,
                               AclOperation.DESCRIBE):
        allowed, _ = await authorize_names(ctx, ResourceType.GROUP,
                                           (group_id for group_id, _, _ in listed),
                                           AclOperation.DESCRIBE)
        listed = [entry for entry in listed if entry[0] in allowed]
    groups = tuple(
        build_in(module, "ListedGroup", group_id=group_id, protocol_type=protocol_type,
                 group_state=state, group_type=CLASSIC)
        for group_id, protocol_type, state in listed
        if not states or state.lower() in states)
    return build(module.ListGroupsResponse, throttle_time_ms=0, error_code=code, groups=groups)


def _current_groups(ctx: RequestContext, with_state: bool) -> list[tuple[str, str, str]]:
    """(group id, protocol type, state) of every group; the states brought up to date (only
    groups whose members' sessions or deadlines ran out are written)."""
    coordinator = coordinator_of(ctx)
    result = []
    for record in coordinator.list_groups():
        if not with_state:
            result.append((record.group_id, record.protocol_type, record.state))
            continue
        group = coordinator.current_group(record.group_id).group
        if group is not None:
            result.append((group.group_id, group.protocol_type, group.state))
    return result


async def delete_groups(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.DELETE_GROUPS, ctx.api_version)
    coordinator = coordinator_of(ctx)
    results = []
    # A name given twice is deleted and answered once (as Kafka): the second try would only
    # say GROUP_ID_NOT_FOUND about a group this request deleted.
    for group_id in dict.fromkeys(request.groups_names):
        if not await ctx.authorize(ResourceType.GROUP, group_id, AclOperation.DELETE):
            results.append(build_in(module, "DeletableGroupResult", group_id=group_id,
                                    error_code=GROUP_AUTHORIZATION_FAILED))
            continue
        try:
            await ctx.run(coordinator.delete_group, group_id)
            code = 0
            runtime(ctx.services).forget(group_id)
        except LogstoreError as exc:
            code = group_error_code(exc)
        results.append(build_in(module, "DeletableGroupResult", group_id=group_id,
                                error_code=code))
    return build(module.DeleteGroupsResponse, throttle_time_ms=0, results=tuple(results))
