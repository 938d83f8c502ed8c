"""The group one coordinator step changes, and the maintenance every step starts with.

Shared by the steps of ``group_state`` (the state machine; its docstring has the rules): a
step reads the group into a :class:`Work` (mutable scratch state), :func:`maintain` expires
members whose session ended, restarts a rebalance whose leader never synced and completes a
rebalance when every member rejoined or its deadline passed, then the step applies its request
and turns the Work into the :class:`GroupUpdate` to write. :func:`next_maintenance_ms` says
when time alone would make maintenance change the group. Pure functions of plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from logstore.backends.group_records import (
    COMPLETING_REBALANCE,
    EMPTY,
    PREPARING_REBALANCE,
    STABLE,
    GroupRecord,
    GroupSnapshot,
    GroupUpdate,
    MemberRecord,
)
from logstore.errors import InconsistentGroupProtocolError


@dataclass(frozen=True, slots=True)
class GroupView:
    """What a member learns from a step: where the group is and what concerns the member."""

    member_id: str
    generation: int
    state: str
    protocol: str | None
    leader_id: str | None
    joined: bool
    """The member has joined ``generation`` (True once the rebalance it is part of completed)."""
    assignment: bytes | None
    members: tuple[MemberRecord, ...] = ()
    """All members of ``generation``, given to the leader only (it computes the assignment)."""

    @property
    def is_leader(self) -> bool:
        return self.leader_id == self.member_id


@dataclass
class Work:
    """A group being changed by one step (mutable scratch state; the result is a GroupUpdate)."""

    group: GroupRecord
    members: dict[str, MemberRecord]
    removed: set[str]
    changed: set[str]
    group_changed: bool

    @classmethod
    def of(cls, snapshot: GroupSnapshot, group_id: str, now_ms: int) -> Work:
        group = snapshot.group or GroupRecord(group_id=group_id, state_since_ms=now_ms)
        return cls(group, {m.member_id: m for m in snapshot.members}, set(), set(),
                   snapshot.group is None)

    def set_group(self, **changes: object) -> None:
        self.group = replace(self.group, **changes)  # type: ignore[arg-type]
        self.group_changed = True

    def put(self, member: MemberRecord) -> None:
        self.members[member.member_id] = member
        self.changed.add(member.member_id)
        self.removed.discard(member.member_id)

    def remove(self, member_id: str) -> None:
        if self.members.pop(member_id, None) is not None:
            self.removed.add(member_id)
            self.changed.discard(member_id)

    def update(self, **extra: object) -> GroupUpdate:
        return GroupUpdate(
            group=self.group if self.group_changed else None,
            upsert_members=tuple(self.members[m] for m in sorted(self.changed)),
            delete_members=tuple(sorted(self.removed)),
            **extra,  # type: ignore[arg-type]
        )

    def view(self, member_id: str) -> GroupView:
        group = self.group
        member = self.members.get(member_id)
        joined = member is not None and member.join_generation == group.generation and (
            group.state in (COMPLETING_REBALANCE, STABLE)
        )
        leader = joined and group.leader_id == member_id
        return GroupView(
            member_id=member_id,
            generation=group.generation,
            state=group.state,
            protocol=group.protocol,
            leader_id=group.leader_id,
            joined=joined,
            assignment=member.assignment if joined and member is not None else None,
            members=tuple(sorted(self.members.values(), key=lambda m: m.member_id))
            if leader else (),
        )


def maintain(work: Work, now_ms: int) -> None:
    group = work.group
    expired = [m.member_id for m in work.members.values()
               if m.last_heartbeat_ms + m.session_timeout_ms < now_ms]
    for member_id in expired:
        work.remove(member_id)
    if expired and group.state in (STABLE, COMPLETING_REBALANCE):
        prepare_rebalance(work, now_ms)
    group = work.group
    if group.state == COMPLETING_REBALANCE:
        timeout = max((m.rebalance_timeout_ms for m in work.members.values()), default=0)
        if now_ms > group.state_since_ms + timeout:
            prepare_rebalance(work, now_ms)  # the leader never synced
    maybe_complete(work, now_ms)


def prepare_rebalance(work: Work, now_ms: int) -> None:
    if not work.members:
        work.set_group(state=EMPTY, state_since_ms=now_ms, rebalance_deadline_ms=-1,
                       generation=work.group.generation + 1, leader_id=None, protocol=None)
        return
    if work.group.state == PREPARING_REBALANCE:
        return
    timeout = max(m.rebalance_timeout_ms for m in work.members.values())
    work.set_group(state=PREPARING_REBALANCE, state_since_ms=now_ms,
                   rebalance_deadline_ms=now_ms + timeout)


def maybe_complete(work: Work, now_ms: int) -> None:
    group = work.group
    if group.state != PREPARING_REBALANCE:
        return
    target = group.generation + 1
    waiting = [m for m in work.members.values() if m.join_generation != target]
    if waiting and now_ms < group.rebalance_deadline_ms:
        return
    for member in waiting:
        work.remove(member.member_id)  # did not rejoin in time
    if not work.members:
        work.set_group(state=EMPTY, state_since_ms=now_ms, rebalance_deadline_ms=-1,
                       generation=target, leader_id=None, protocol=None)
        return
    members = sorted(work.members.values(), key=lambda m: m.member_id)
    protocol = select_protocol(members)
    leader = group.leader_id if group.leader_id in work.members else members[0].member_id
    for member in members:
        if member.assignment is not None:
            work.put(replace(member, assignment=None))
    work.set_group(state=COMPLETING_REBALANCE, state_since_ms=now_ms, rebalance_deadline_ms=-1,
                   generation=target, leader_id=leader, protocol=protocol)


def select_protocol(members: list[MemberRecord]) -> str:
    """The protocol every member supports that the members prefer most (Kafka's vote: each
    member votes for its most preferred candidate; ties go to the first candidate in the
    first member's order)."""
    supported = set.intersection(*({name for name, _ in m.protocols} for m in members))
    if not supported:
        raise InconsistentGroupProtocolError("the members share no partition assignor")
    order = [name for name, _ in members[0].protocols if name in supported]
    votes = dict.fromkeys(order, 0)
    for member in members:
        for name, _ in member.protocols:
            if name in supported:
                votes[name] += 1
                break
    return max(order, key=lambda name: (votes[name], -order.index(name)))


def static_member(work: Work, instance_id: str | None) -> MemberRecord | None:
    if instance_id is None:
        return None
    for member in work.members.values():
        if member.group_instance_id == instance_id:
            return member
    return None



def next_maintenance_ms(snapshot: GroupSnapshot) -> int | None:
    """The earliest time at which a step would change the group by time alone: a member's
    session runs out, a rebalance reaches its deadline, or the leader's sync is overdue. None
    if nothing is pending. Whoever waits for the group (the broker holding a JoinGroup or
    SyncGroup) runs a step then, so the group moves on without members driving it."""
    group = snapshot.group
    if group is None:
        return None
    times = [m.last_heartbeat_ms + m.session_timeout_ms + 1 for m in snapshot.members]
    if group.state == COMPLETING_REBALANCE:
        timeout = max((m.rebalance_timeout_ms for m in snapshot.members), default=0)
        times.append(group.state_since_ms + timeout + 1)
    elif group.state == PREPARING_REBALANCE and group.rebalance_deadline_ms >= 0:
        times.append(group.rebalance_deadline_ms)
    return min(times, default=None)
