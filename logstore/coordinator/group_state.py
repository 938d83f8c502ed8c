"""The consumer-group state machine (Kafka's classic group protocol) as pure functions.

Each step takes the group as read under its lock (:class:`GroupSnapshot`), the request and the
current time, and returns the :class:`GroupUpdate` to write plus a result. Nothing here does
I/O, so every transition is tested with plain values; ``group_coordinator`` runs the steps
inside the metadata store's transaction.

Protocol outcomes that tell a member what to do next (rebalance in progress, unknown member,
stale generation) are *returned* as the result (an exception instance), not raised: raising
would roll back the transaction and with it the maintenance the step did (expiring a dead
member, starting a rebalance). ``group_coordinator`` raises them after the write commits. Only
requests that are simply invalid raise inside the step (nothing is written then).

States and transitions::

    Empty --join--> PreparingRebalance --all joined / deadline--> CompletingRebalance
    CompletingRebalance --leader syncs--> Stable
    Stable --join (new member or new metadata) / leave / member expired--> PreparingRebalance
    PreparingRebalance --everyone gone--> Empty

Rules:

* Every step first *maintains* the group: members whose last heartbeat is older than their
  session timeout are removed; a CompletingRebalance whose leader has not synced within the
  rebalance timeout starts over; a PreparingRebalance completes when every member has joined
  the next generation, or at its deadline without those that have not (they are removed).
* Completing a rebalance bumps the generation, picks the protocol every member supports (the
  most preferred by the members, in order), keeps the leader if it rejoined (else the first
  member by id), and clears every assignment.
* Only members of the current generation may sync, heartbeat without error or commit offsets.
  A member of an older generation gets IllegalGenerationError, a removed one
  UnknownMemberIdError: that is how zombies are fenced.
* Static members (``group_instance_id``, KIP-345): a join with the instance id of an existing
  member takes over its member row (new member id, same assignment); when the group is Stable
  and the member's metadata is unchanged, no rebalance happens. The old member id is fenced.
* Offsets may be committed by a member of the current generation while the group is Stable or
  PreparingRebalance (so revocation callbacks can commit, and cooperative members that already
  rejoined go on committing until the next generation completes), or with generation -1 by a
  client that does not use group management, only while the group has no members.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from logstore.backends.group_records import (
    COMPLETING_REBALANCE,
    PREPARING_REBALANCE,
    STABLE,
    CommittedOffset,
    GroupSnapshot,
    GroupUpdate,
    MemberRecord,
)
from logstore.coordinator.group_work import (
    GroupView,
    Work,
    maintain,
    maybe_complete,
    next_maintenance_ms,
    prepare_rebalance,
    static_member,
)
from logstore.errors import (
    FencedInstanceIdError,
    GroupIdNotFoundError,
    GroupNotEmptyError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    InvalidArgumentError,
    LogstoreError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from logstore.types import TopicPartition

__all__ = [
    "NO_GENERATION", "GroupView", "JoinRequest", "alter_offsets", "commit", "delete_group",
    "expire", "heartbeat", "join", "leave", "leave_members", "next_maintenance_ms",
    "same_bytes", "sync",
]

NO_GENERATION = -1


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """A member (re)joining. ``member_id`` "" asks for a new member id."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    rebalance: bool = False
    """Ask for a rebalance even if nothing about this member changed (e.g. topic metadata
    changed, or a cooperative member revoked partitions and must be given new ones)."""
    new_member_id: str = ""
    """The id a new member (``member_id`` "") gets; "" makes one up. The broker hands ids out
    before members join (KIP-394: MEMBER_ID_REQUIRED) and joins them with the id they bring."""
    kafka_rejoin: bool = False
    """Kafka's rule for a known member joining again (members speaking the Kafka protocol): a
    rebalance starts if its metadata bytes changed or, in a Stable group, if it is the leader.
    That is how Kafka clients ask for one (a cooperative member rejoins owning fewer partitions
    after revoking; a leader rejoins when topic metadata changed). Otherwise subscriptions are
    compared by ``same_subscription`` and members ask with ``rebalance``."""


# --- steps ---------------------------------------------------------------------------------------


Protocols = tuple[tuple[str, bytes], ...]


def same_bytes(old: Protocols, new: Protocols) -> bool:
    return old == new


def join(
    snapshot: GroupSnapshot,
    group_id: str,
    request: JoinRequest,
    now_ms: int,
    *,
    same_subscription: Callable[[Protocols, Protocols], bool] = same_bytes,
) -> tuple[GroupUpdate, GroupView]:
    """Add or refresh a member and move the group toward the next generation.

    ``same_subscription`` decides whether a rejoining member's protocols differ in a way that
    needs a rebalance (byte equality by default; the consumer protocol ignores the partitions
    a member owns, which a restarted static member cannot know).
    """
    if not request.protocols:
        raise InvalidArgumentError("a member must support at least one assignor")
    work = Work.of(snapshot, group_id, now_ms)
    maintain(work, now_ms)
    group = work.group
    if work.members and group.protocol_type and group.protocol_type != request.protocol_type:
        raise InconsistentGroupProtocolError(
            f"group {group_id!r} uses protocol type {group.protocol_type!r}, "
            f"not {request.protocol_type!r}"
        )
    names = {name for name, _ in request.protocols}
    for other in work.members.values():
        if other.member_id != request.member_id and not names & {n for n, _ in other.protocols}:
            raise InconsistentGroupProtocolError(
                f"the assignors {sorted(names)} share none with the members of group {group_id!r}"
            )

    if not request.member_id and request.new_member_id in work.members:
        request = replace(request, member_id=request.new_member_id)  # a retried first join
    member = work.members.get(request.member_id) if request.member_id else None
    if request.member_id and member is None:
        static = static_member(work, request.group_instance_id)
        if static is None:
            raise UnknownMemberIdError(
                f"member {request.member_id} is not in group {group_id!r}: rejoin as a new member"
            )
        raise FencedInstanceIdError(
            f"instance {request.group_instance_id!r} of group {group_id!r} "
            "belongs to another member"
        )
    if member is None:
        previous = static_member(work, request.group_instance_id)
        member_id = request.new_member_id or f"{request.client_id}-{uuid.uuid4()}"
        if previous is not None:
            # A static member restarted: take over its row and assignment (KIP-345).
            work.remove(previous.member_id)
            member = replace(previous, member_id=member_id, client_id=request.client_id,
                             last_heartbeat_ms=now_ms)
            if group.leader_id == previous.member_id:
                work.set_group(leader_id=member_id)
            work.put(member)
            unchanged = same_subscription(previous.protocols, request.protocols) and (
                not request.rebalance)
            if group.state == STABLE and previous.join_generation == group.generation and unchanged:
                return _finish(work, request), work.view(member_id)
        else:
            member = MemberRecord(
                member_id=member_id,
                group_instance_id=request.group_instance_id,
                client_id=request.client_id,
                session_timeout_ms=request.session_timeout_ms,
                rebalance_timeout_ms=request.rebalance_timeout_ms,
                protocols=request.protocols,
                last_heartbeat_ms=now_ms,
            )
            work.put(member)
    else:
        if request.kafka_rejoin:
            unchanged = member.protocols == request.protocols and not (
                group.state == STABLE and group.leader_id == member.member_id)
        else:
            unchanged = same_subscription(member.protocols, request.protocols)
        unchanged = unchanged and not request.rebalance
        if (unchanged and member.join_generation == group.generation
                and group.state in (COMPLETING_REBALANCE, STABLE)):
            work.put(replace(member, last_heartbeat_ms=now_ms))
            return _finish(work, request), work.view(member.member_id)

    member = work.members[member.member_id]
    if work.group.state != PREPARING_REBALANCE:
        prepare_rebalance(work, now_ms)
    work.put(replace(
        member,
        protocols=request.protocols,
        session_timeout_ms=request.session_timeout_ms,
        rebalance_timeout_ms=request.rebalance_timeout_ms,
        join_generation=work.group.generation + 1,
        last_heartbeat_ms=now_ms,
    ))
    maybe_complete(work, now_ms)
    return _finish(work, request), work.view(member.member_id)


def _finish(work: Work, request: JoinRequest) -> GroupUpdate:
    if not work.group.protocol_type and request.protocol_type:
        work.set_group(protocol_type=request.protocol_type)
    return work.update()


def sync(
    snapshot: GroupSnapshot,
    group_id: str,
    member_id: str,
    generation: int,
    assignments: Mapping[str, bytes] | None,
    now_ms: int,
) -> tuple[GroupUpdate, GroupView | LogstoreError]:
    """The leader hands out assignments; every member learns its own (None: not yet)."""
    work, error = _member_step(snapshot, group_id, member_id, generation, now_ms)
    if error is not None:
        return work.update(), error
    group = work.group
    if group.state == COMPLETING_REBALANCE and assignments is not None:
        if group.leader_id != member_id:
            raise InvalidArgumentError(f"only the leader of group {group_id!r} may assign")
        unknown = set(assignments) - set(work.members)
        if unknown:
            raise InvalidArgumentError(f"assignment for unknown members {sorted(unknown)}")
        for other in list(work.members.values()):
            work.put(replace(other, assignment=assignments.get(other.member_id, b"")))
        work.set_group(state=STABLE, state_since_ms=now_ms)
    return work.update(), work.view(member_id)


def heartbeat(
    snapshot: GroupSnapshot, group_id: str, member_id: str, generation: int, now_ms: int
) -> tuple[GroupUpdate, GroupView | LogstoreError]:
    """Keep the member alive; RebalanceInProgressError when it must rejoin."""
    work, error = _member_step(snapshot, group_id, member_id, generation, now_ms)
    return work.update(), error if error is not None else work.view(member_id)


def _member_step(
    snapshot: GroupSnapshot, group_id: str, member_id: str, generation: int, now_ms: int
) -> tuple[Work, LogstoreError | None]:
    """Maintain the group and check that ``member_id`` is a member of ``generation``."""
    work = Work.of(snapshot, group_id, now_ms)
    if snapshot.group is None:
        work.group_changed = False  # a request naming a group that does not exist creates none
        return work, UnknownMemberIdError(f"group {group_id!r} does not exist")
    maintain(work, now_ms)
    member = work.members.get(member_id)
    if member is None:
        return work, UnknownMemberIdError(f"member {member_id} is not in group {group_id!r}")
    work.put(replace(member, last_heartbeat_ms=now_ms))
    group = work.group
    if group.state == PREPARING_REBALANCE:
        return work, RebalanceInProgressError(f"group {group_id!r} is rebalancing: rejoin")
    if generation != group.generation or member.join_generation != group.generation:
        return work, IllegalGenerationError(
            f"generation {generation} of group {group_id!r} is over (now {group.generation})"
        )
    return work, None


def leave(
    snapshot: GroupSnapshot, group_id: str, member_id: str, now_ms: int
) -> tuple[GroupUpdate, None]:
    """Remove a member (a consumer closing, or giving up after max.poll.interval.ms)."""
    update, _ = leave_members(snapshot, group_id, ((member_id, None),), now_ms)
    return update, None


def leave_members(
    snapshot: GroupSnapshot,
    group_id: str,
    members: Sequence[tuple[str, str | None]],
    now_ms: int,
) -> tuple[GroupUpdate, tuple[LogstoreError | None, ...]]:
    """Remove members, each named by ``(member_id, group_instance_id)`` (Kafka's LeaveGroup).

    A static member may be named by its instance id alone (member id "": an administrator
    removing it, KIP-345). Per member the result is None (removed), UnknownMemberIdError, or
    FencedInstanceIdError (the instance id belongs to another member id). The group rebalances
    once for all of them.
    """
    work = Work.of(snapshot, group_id, now_ms)
    work.group_changed = False
    results: list[LogstoreError | None] = []
    for member_id, instance_id in members:
        static = static_member(work, instance_id)
        if instance_id is not None and static is None:
            results.append(UnknownMemberIdError(
                f"instance {instance_id!r} is not in group {group_id!r}"))
            continue
        if static is not None:
            if member_id and static.member_id != member_id:
                results.append(FencedInstanceIdError(
                    f"instance {instance_id!r} of group {group_id!r} belongs to another member"))
                continue
            member_id = static.member_id
        if member_id not in work.members:
            results.append(UnknownMemberIdError(
                f"member {member_id} is not in group {group_id!r}"))
            continue
        work.remove(member_id)
        if work.group.leader_id == member_id:
            work.set_group(leader_id=None)
        results.append(None)
    if work.removed:
        if work.group.state == PREPARING_REBALANCE:
            maybe_complete(work, now_ms)
        else:
            prepare_rebalance(work, now_ms)
    return work.update(), tuple(results)


def commit(
    snapshot: GroupSnapshot,
    group_id: str,
    member_id: str,
    generation: int,
    offsets: Mapping[TopicPartition, CommittedOffset],
    now_ms: int,
) -> tuple[GroupUpdate, LogstoreError | None]:
    """Store committed offsets, fencing members that are not of the current generation."""
    work = Work.of(snapshot, group_id, now_ms)
    maintain(work, now_ms)
    group = work.group
    if generation == NO_GENERATION and not member_id:
        if work.members:
            return work.update(), IllegalGenerationError(
                f"group {group_id!r} has live members: only they may commit its offsets"
            )
    else:
        member = work.members.get(member_id)
        if member is None:
            work.group_changed = work.group_changed and snapshot.group is not None
            return work.update(), UnknownMemberIdError(
                f"member {member_id} is not in group {group_id!r}")
        # A member that already rejoined for the next generation still commits as a member
        # of this one until it completes (cooperative members consume through rebalances).
        if generation != group.generation or member.join_generation < group.generation:
            return work.update(), IllegalGenerationError(
                f"generation {generation} of group {group_id!r} is over (now {group.generation})"
            )
        if group.state == COMPLETING_REBALANCE:
            return work.update(), RebalanceInProgressError(
                f"group {group_id!r} is completing a rebalance")
        work.put(replace(member, last_heartbeat_ms=now_ms))
    return work.update(commit_offsets=tuple(offsets.items())), None


def alter_offsets(
    snapshot: GroupSnapshot,
    group_id: str,
    offsets: Mapping[TopicPartition, CommittedOffset],
    now_ms: int,
) -> tuple[GroupUpdate, None]:
    """Administrative offset change; refused while the group has live members."""
    work = Work.of(snapshot, group_id, now_ms)
    maintain(work, now_ms)
    if work.members:
        raise GroupNotEmptyError(
            f"group {group_id!r} has {len(work.members)} live member(s): stop them before "
            "changing its offsets"
        )
    return work.update(commit_offsets=tuple(offsets.items())), None


def delete_group(snapshot: GroupSnapshot, group_id: str, now_ms: int) -> tuple[GroupUpdate, None]:
    """Delete a group and its offsets; refused while it has live members."""
    if snapshot.group is None:
        raise GroupIdNotFoundError(f"group {group_id!r} does not exist")
    work = Work.of(snapshot, group_id, now_ms)
    maintain(work, now_ms)
    if work.members:
        raise GroupNotEmptyError(
            f"group {group_id!r} has {len(work.members)} live member(s): it cannot be deleted"
        )
    return GroupUpdate(delete_group=True), None


def expire(snapshot: GroupSnapshot, group_id: str, now_ms: int) -> tuple[GroupUpdate, GroupView]:
    """Only maintenance (expire members, finish rebalances); used to describe a group."""
    if snapshot.group is None:
        raise GroupIdNotFoundError(f"group {group_id!r} does not exist")
    work = Work.of(snapshot, group_id, now_ms)
    maintain(work, now_ms)
    return work.update(), work.view("")
