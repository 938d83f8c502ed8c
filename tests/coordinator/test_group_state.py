"""The group state machine, step by step, on plain values (no store, no clock, no threads)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

import pytest
from logstore.backends.group_records import (
    COMPLETING_REBALANCE,
    EMPTY,
    PREPARING_REBALANCE,
    STABLE,
    CommittedOffset,
    GroupSnapshot,
    GroupUpdate,
)

from logstore.coordinator import consumer_protocol
from logstore.coordinator import group_state as gs
from logstore.coordinator.assignors import Subscription
from logstore.errors import (
    FencedInstanceIdError,
    GroupIdNotFoundError,
    GroupNotEmptyError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from logstore.types import TopicPartition

G = "g"
SESSION = 10_000
REBALANCE = 30_000


class Group:
    """An in-memory group: applies each step's GroupUpdate like the store does."""

    def __init__(self) -> None:
        self.snapshot = GroupSnapshot(None, ())
        self.offsets: dict[TopicPartition, CommittedOffset] = {}
        self.now = 1_000

    def run(self, step, *args):  # type: ignore[no-untyped-def]
        """Apply the step's update, then raise a returned protocol outcome (as the
        coordinator does after the store commits)."""
        update, result = step(self.snapshot, G, *args)
        self.apply(update)
        if isinstance(result, Exception):
            raise result
        return result

    def apply(self, update: GroupUpdate) -> None:
        if update.delete_group:
            self.snapshot = GroupSnapshot(None, ())
            self.offsets.clear()
            return
        group = self.snapshot.group
        if update.group is not None:
            group = replace(update.group, version=(group.version if group else 0) + 1)
        members = {m.member_id: m for m in self.snapshot.members}
        for member_id in update.delete_members:
            members.pop(member_id, None)
        for member in update.upsert_members:
            members[member.member_id] = member
        self.snapshot = GroupSnapshot(
            group, tuple(sorted(members.values(), key=lambda m: m.member_id))
        )
        self.offsets.update(update.commit_offsets)

    def join(
        self,
        member_id: str = "",
        *,
        instance: str | None = None,
        protocols=(("range", b"m"),),
        rebalance: bool = False,
        **extra: Any,
    ) -> gs.GroupView:  # type: ignore[no-untyped-def]
        request = gs.JoinRequest(
            member_id,
            instance,
            "client",
            "consumer",
            tuple(protocols),
            SESSION,
            REBALANCE,
            rebalance,
            **extra,
        )
        return self.run(self.join_step, request, self.now)

    join_step = staticmethod(gs.join)

    def sync(self, view: gs.GroupView, assignments=None) -> gs.GroupView:  # type: ignore[no-untyped-def]
        return self.run(gs.sync, view.member_id, view.generation, assignments, self.now)

    def heartbeat(self, view: gs.GroupView) -> gs.GroupView:
        return self.run(gs.heartbeat, view.member_id, view.generation, self.now)

    @property
    def state(self) -> str:
        assert self.snapshot.group is not None
        return self.snapshot.group.state

    @property
    def generation(self) -> int:
        assert self.snapshot.group is not None
        return self.snapshot.group.generation


def stable_group_of_one() -> tuple[Group, gs.GroupView]:
    group = Group()
    view = group.join()
    assert view.joined and view.is_leader and view.generation == 1
    assert group.state == COMPLETING_REBALANCE
    view = group.sync(view, {view.member_id: b"a1"})
    assert group.state == STABLE and view.assignment == b"a1"
    return group, view


def test_a_single_member_forms_generation_one():
    group, view = stable_group_of_one()
    assert view.members == () or view.is_leader
    assert group.heartbeat(view).assignment == b"a1"


def test_a_second_member_triggers_a_rebalance_that_waits_for_the_first():
    group, first = stable_group_of_one()
    second = group.join()
    assert not second.joined and group.state == PREPARING_REBALANCE
    with pytest.raises(RebalanceInProgressError):
        group.heartbeat(first)
    first = group.join(first.member_id)
    assert first.joined and first.generation == 2 and first.is_leader
    assert {m.member_id for m in first.members} == {first.member_id, second.member_id}
    second = group.join(second.member_id)  # polling: already joined, no new rebalance
    assert second.joined and not second.is_leader and group.generation == 2
    assert group.sync(second).assignment is None, "no assignment before the leader syncs"
    group.sync(first, {first.member_id: b"p0", second.member_id: b"p1"})
    assert group.sync(second).assignment == b"p1"
    assert group.state == STABLE


def test_a_member_that_stops_heartbeating_is_removed_and_the_group_rebalances():
    group, first = stable_group_of_one()
    second = group.join()
    first = group.join(first.member_id)
    group.sync(first, {first.member_id: b"x", second.member_id: b"y"})
    group.now += SESSION + 1  # nobody heard from either member
    group.snapshot = GroupSnapshot(
        group.snapshot.group,
        tuple(
            replace(m, last_heartbeat_ms=group.now) if m.member_id == first.member_id else m
            for m in group.snapshot.members
        ),
    )
    with pytest.raises(RebalanceInProgressError):
        group.heartbeat(first)
    assert [m.member_id for m in group.snapshot.members] == [first.member_id]
    first = group.join(first.member_id)
    assert first.joined and first.generation == 3


def test_members_that_do_not_rejoin_by_the_deadline_are_removed():
    group, first = stable_group_of_one()
    second = group.join()
    deadline = group.snapshot.group.rebalance_deadline_ms  # type: ignore[union-attr]
    # first stays alive (its heartbeats are answered "rebalance in progress", and still keep
    # its session) but never rejoins; second keeps polling its join
    while group.now + 5_000 < deadline:
        group.now += 5_000
        with pytest.raises(RebalanceInProgressError):
            group.heartbeat(first)
        assert not group.join(second.member_id).joined
    group.now = deadline
    view = group.join(second.member_id)
    assert view.joined and view.is_leader and view.generation == 2
    assert [m.member_id for m in group.snapshot.members] == [second.member_id]
    with pytest.raises(UnknownMemberIdError):
        group.heartbeat(first)


def test_leaving_triggers_a_rebalance_and_the_last_member_empties_the_group():
    group, first = stable_group_of_one()
    second = group.join()
    first = group.join(first.member_id)
    group.run(gs.leave, second.member_id, group.now)
    assert group.state == PREPARING_REBALANCE
    first = group.join(first.member_id)
    assert first.joined and first.generation == 3
    group.run(gs.leave, first.member_id, group.now)
    assert group.state == EMPTY and group.snapshot.members == ()
    assert group.generation == 4


def test_commits_are_fenced_by_generation_and_membership():
    group, first = stable_group_of_one()
    offsets = {TopicPartition("t", 0): CommittedOffset(5)}
    group.run(gs.commit, first.member_id, first.generation, offsets, group.now)
    assert group.offsets[TopicPartition("t", 0)].offset == 5
    with pytest.raises(IllegalGenerationError):
        group.run(gs.commit, first.member_id, first.generation - 1, offsets, group.now)
    with pytest.raises(UnknownMemberIdError):
        group.run(gs.commit, "zombie", first.generation, offsets, group.now)
    with pytest.raises(IllegalGenerationError, match="live members"):
        group.run(gs.commit, "", gs.NO_GENERATION, offsets, group.now)
    second = group.join()
    assert group.state == PREPARING_REBALANCE
    # during PreparingRebalance the current generation may still commit (revocation callbacks)
    group.run(
        gs.commit,
        first.member_id,
        first.generation,
        {TopicPartition("t", 0): CommittedOffset(6)},
        group.now,
    )
    group.join(first.member_id)
    assert group.state == COMPLETING_REBALANCE
    with pytest.raises(IllegalGenerationError):  # the old generation is over
        group.run(gs.commit, first.member_id, first.generation, offsets, group.now)
    with pytest.raises(RebalanceInProgressError):
        group.run(gs.commit, second.member_id, group.generation, offsets, group.now)
    assert group.offsets[TopicPartition("t", 0)].offset == 6


def test_a_group_without_members_takes_simple_commits():
    group = Group()
    group.run(
        gs.commit, "", gs.NO_GENERATION, {TopicPartition("t", 1): CommittedOffset(9)}, group.now
    )
    assert group.state == EMPTY and group.offsets[TopicPartition("t", 1)].offset == 9


def test_a_static_member_restarting_in_time_gets_its_assignment_without_a_rebalance():
    group = Group()
    view = group.join(instance="worker-1")
    view = group.sync(view, {view.member_id: b"mine"})
    generation = group.generation
    restarted = group.join(instance="worker-1")
    assert restarted.member_id != view.member_id
    assert restarted.joined and restarted.assignment == b"mine"
    assert group.state == STABLE and group.generation == generation
    with pytest.raises(UnknownMemberIdError):
        group.heartbeat(view)  # the old incarnation is fenced


def test_a_static_member_restarting_after_its_session_expired_causes_a_rebalance():
    group = Group()
    view = group.join(instance="worker-1")
    group.sync(view, {view.member_id: b"mine"})
    group.now += SESSION + 1
    restarted = group.join(instance="worker-1")
    assert restarted.joined and restarted.generation == 3  # the expiry emptied gen 2
    assert restarted.assignment is None


def test_rejoining_unchanged_does_not_rebalance_but_asking_does():
    group, view = stable_group_of_one()
    again = group.join(view.member_id)
    assert group.state == STABLE and again.assignment == b"a1"
    group.join(view.member_id, rebalance=True)
    assert group.generation == 2 and group.state == COMPLETING_REBALANCE


def test_the_protocol_is_one_every_member_supports():
    group = Group()
    first = group.join(protocols=(("cooperative-sticky", b""), ("range", b"")))
    group.sync(first, {first.member_id: b""})
    second = group.join(protocols=(("range", b""),))
    first = group.join(first.member_id, protocols=(("cooperative-sticky", b""), ("range", b"")))
    assert first.protocol == "range"
    with pytest.raises(InconsistentGroupProtocolError):
        group.join(protocols=(("roundrobin", b""),))
    assert second.member_id in {m.member_id for m in group.snapshot.members}


def test_a_leader_that_never_syncs_restarts_the_rebalance():
    group = Group()
    leader = group.join()
    assert group.state == COMPLETING_REBALANCE
    group.now += REBALANCE + 1
    group.snapshot = GroupSnapshot(
        group.snapshot.group,
        tuple(replace(m, last_heartbeat_ms=group.now) for m in group.snapshot.members),
    )
    with pytest.raises(RebalanceInProgressError):
        group.heartbeat(leader)


def test_offsets_cannot_be_altered_and_the_group_not_deleted_while_members_live():
    group, view = stable_group_of_one()
    with pytest.raises(GroupNotEmptyError):
        group.run(gs.alter_offsets, {TopicPartition("t", 0): CommittedOffset(1)}, group.now)
    with pytest.raises(GroupNotEmptyError):
        group.run(gs.delete_group, group.now)
    group.run(gs.leave, view.member_id, group.now)
    group.run(gs.alter_offsets, {TopicPartition("t", 0): CommittedOffset(1)}, group.now)
    assert group.offsets[TopicPartition("t", 0)].offset == 1
    group.run(gs.delete_group, group.now)
    assert group.snapshot.group is None and group.offsets == {}
    with pytest.raises(GroupIdNotFoundError):
        group.run(gs.delete_group, group.now)


# --- what the Kafka-protocol broker needs -------------------------------------------------------


def test_a_member_that_already_rejoined_still_commits_in_the_current_generation():
    group, first = stable_group_of_one()
    second = group.join()
    first = group.join(first.member_id)
    group.sync(first, {first.member_id: b"", second.member_id: b""})
    assert group.state == STABLE and group.generation == 2
    group.join()  # a third member starts a rebalance
    assert not group.join(first.member_id).joined  # first rejoined; second has not yet
    # A cooperative member goes on consuming (and committing) until the generation completes.
    group.run(gs.commit, first.member_id, 2, {TopicPartition("t", 0): CommittedOffset(4)},
              group.now)
    assert group.offsets[TopicPartition("t", 0)].offset == 4


def test_a_new_member_joins_under_the_id_it_was_handed():
    group = Group()
    view = group.join(new_member_id="client-handed")
    assert view.member_id == "client-handed" and view.joined
    again = group.join(new_member_id="client-handed")  # the same first join, retried
    assert again.member_id == "client-handed" and len(group.snapshot.members) == 1


def subscribed(*owned: int) -> tuple[tuple[str, bytes], ...]:
    metadata = consumer_protocol.encode_subscription(Subscription(
        topics=("t",), owned_partitions=tuple(TopicPartition("t", p) for p in owned)))
    return (("cooperative-sticky", metadata),)


def test_the_kafka_rejoin_rule_rebalances_on_new_metadata_bytes_and_on_the_leader():
    def stable_pair() -> tuple[Group, gs.GroupView, gs.GroupView]:
        group = Group()
        group.join_step = partial(gs.join, same_subscription=consumer_protocol.same_subscription)
        leader = group.join(protocols=subscribed())
        follower = group.join(protocols=subscribed())
        leader = group.join(leader.member_id, protocols=subscribed())
        group.sync(leader, {leader.member_id: b"", follower.member_id: b""})
        assert group.state == STABLE and leader.is_leader
        return group, leader, follower

    # The embedded rule compares subscriptions: owned partitions do not count.
    group, leader, follower = stable_pair()
    group.join(follower.member_id, protocols=subscribed(1))
    group.join(leader.member_id, protocols=subscribed())
    assert group.state == STABLE
    # Kafka's rule: a member rejoining with other bytes (a cooperative member that revoked
    # partitions) or the leader rejoining starts a rebalance; the same bytes do not.
    group, leader, follower = stable_pair()
    group.join(follower.member_id, protocols=subscribed(), kafka_rejoin=True)
    assert group.state == STABLE
    group.join(follower.member_id, protocols=subscribed(1), kafka_rejoin=True)
    assert group.state == PREPARING_REBALANCE
    group, leader, follower = stable_pair()
    group.join(leader.member_id, protocols=subscribed(), kafka_rejoin=True)
    assert group.state == PREPARING_REBALANCE


def test_members_leave_by_id_or_by_instance_id_and_the_group_rebalances_once():
    group = Group()
    static = group.join(instance="worker-1")
    other = group.join()
    dynamic = group.join()
    static = group.join(static.member_id)
    other = group.join(other.member_id)
    group.sync(static, {static.member_id: b"", other.member_id: b"", dynamic.member_id: b""})
    generation = group.generation
    update, results = gs.leave_members(group.snapshot, G, [
        (dynamic.member_id, None),           # leaves
        ("", "worker-1"),                    # an administrator removes the static member
        ("zombie", None),                    # unknown
        (other.member_id, "worker-9"),       # an instance id nobody has
    ], group.now)
    assert [type(r).__name__ if r else None for r in results] == [
        None, None, "UnknownMemberIdError", "UnknownMemberIdError"]
    group.apply(update)
    assert [m.member_id for m in group.snapshot.members] == [other.member_id]
    assert group.state == PREPARING_REBALANCE and group.generation == generation
    fenced = Group()
    first = fenced.join(instance="worker-1")
    _, (result,) = gs.leave_members(fenced.snapshot, G, [("old-id", "worker-1")], fenced.now)
    assert isinstance(result, FencedInstanceIdError) and first.member_id != "old-id"


def test_requests_naming_a_group_that_does_not_exist_create_nothing():
    group = Group()
    with pytest.raises(UnknownMemberIdError):
        group.run(gs.heartbeat, "m", 1, group.now)
    with pytest.raises(UnknownMemberIdError):
        group.run(gs.sync, "m", 1, None, group.now)
    with pytest.raises(UnknownMemberIdError):
        group.run(gs.commit, "m", 1, {TopicPartition("t", 0): CommittedOffset(1)}, group.now)
    assert group.snapshot.group is None and group.offsets == {}


def test_the_next_maintenance_is_when_a_step_would_change_the_group_by_time_alone():
    assert gs.next_maintenance_ms(GroupSnapshot(None)) is None

    def changes_at(group: Group, when: int) -> bool:
        update, _ = gs.expire(group.snapshot, G, when)
        return not update.is_empty

    def heard_from_everyone_at(group: Group, when: int) -> None:
        group.snapshot = GroupSnapshot(group.snapshot.group, tuple(
            replace(m, last_heartbeat_ms=when) for m in group.snapshot.members))

    # Stable: a member's session ends.
    group, _ = stable_group_of_one()
    due = gs.next_maintenance_ms(group.snapshot)
    assert due == group.now + SESSION + 1
    assert not changes_at(group, due - 1) and changes_at(group, due)
    # PreparingRebalance: the deadline for members to rejoin.
    group.join()
    deadline = group.snapshot.group.rebalance_deadline_ms  # type: ignore[union-attr]
    heard_from_everyone_at(group, deadline)
    assert gs.next_maintenance_ms(group.snapshot) == deadline
    assert not changes_at(group, deadline - 1) and changes_at(group, deadline)
    # CompletingRebalance: the leader's sync is overdue after the rebalance timeout.
    group = Group()
    group.join()
    assert group.state == COMPLETING_REBALANCE
    heard_from_everyone_at(group, group.now + REBALANCE)
    due = gs.next_maintenance_ms(group.snapshot)
    assert due == group.now + REBALANCE + 1
    assert not changes_at(group, due - 1) and changes_at(group, due)
