"""Consumer groups through the embedded API: members in one process (threads or turns).

Several members are driven from one thread by polling each in turn: a rebalance is a sequence
of steps stored in the metadata store, so it progresses across polls. Session expiry is driven
by a ManualClock; a crashed member is simulated by stopping its heartbeats without leaving.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import logstore
from logstore.clock import ManualClock
from logstore.errors import (
    CommitFailedError,
    GroupIdNotFoundError,
    GroupNotEmptyError,
    IllegalStateError,
    InvalidArgumentError,
)
from logstore.types import OffsetAndMetadata, TopicPartition

FAST = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 100}


@pytest.fixture(params=["sqlite", "postgresql"])
def group_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[logstore.Log]:
    url = request.getfixturevalue("postgresql_url") if request.param == "postgresql" else None
    opened = logstore.open(tmp_path / "d", metadata_url=url, maintenance_interval_ms=None)
    yield opened
    opened.close()


@pytest.fixture
def manual(tmp_path: Path) -> Iterator[tuple[logstore.Log, ManualClock]]:
    clock = ManualClock()
    opened = logstore.open(tmp_path / "m", clock=clock, maintenance_interval_ms=None)
    yield opened, clock
    opened.close()


def fill(log: logstore.Log, topic: str, partitions: int, per_partition: int) -> None:
    log.create_topic(topic, partitions=partitions)
    with log.producer(linger_ms=0) as producer:
        for p in range(partitions):
            for i in range(per_partition):
                producer.send(topic, value=b"%d-%d" % (p, i), partition=p)


def poll_until(consumers: list[logstore.Consumer], done: Callable[[], bool],
               timeout_s: float = 30.0) -> dict[int, list[logstore.ConsumerRecord]]:
    """Poll every consumer in turn until ``done()``; return what each one got."""
    got: dict[int, list[logstore.ConsumerRecord]] = {i: [] for i in range(len(consumers))}
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        for i, consumer in enumerate(consumers):
            got[i].extend(consumer.poll(timeout_ms=20))
    return got


def owned(*consumers: logstore.Consumer) -> list[set[int]]:
    return [{tp.partition for tp in c.assignment()} for c in consumers]


class Recorder:
    """A rebalance listener writing one shared, ordered event log."""

    events: list[tuple[str, str, int]]

    def __init__(self, name: str, events: list[tuple[str, str, int]],
                 lock: threading.Lock) -> None:
        self.name, self.events, self.lock = name, events, lock

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        with self.lock:
            self.events.extend(("revoked", self.name, tp.partition) for tp in sorted(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        with self.lock:
            self.events.extend(("assigned", self.name, tp.partition) for tp in sorted(assigned))


def check_never_two_owners(events: list[tuple[str, str, int]]) -> None:
    owner: dict[int, str] = {}
    for kind, name, partition in events:
        if kind == "assigned":
            assert partition not in owner, f"partition {partition} given to {name} while " \
                                           f"{owner.get(partition)} owns it"
            owner[partition] = name
        elif owner.get(partition) == name:
            del owner[partition]


def test_members_split_the_partitions_and_consume_each_record_once(group_log):
    fill(group_log, "t", 6, 50)
    consumers = [group_log.consumer(group_id="g", auto_offset_reset="earliest", **FAST)
                 for _ in range(3)]
    for consumer in consumers:
        consumer.subscribe(["t"])
    got = poll_until(consumers, lambda: sum(len(c.assignment()) for c in consumers) == 6
                     and all(c.assignment() for c in consumers))
    got2 = poll_until(consumers, lambda: all(
        c.position(tp) == 50 for c in consumers for tp in c.assignment()))
    records = [r for i in got for r in got[i] + got2[i]]
    values = sorted(r.value for r in records)
    assert values == sorted(b"%d-%d" % (p, i) for p in range(6) for i in range(50))
    assert [len(s) for s in owned(*consumers)] == [2, 2, 2]
    assert set().union(*owned(*consumers)) == set(range(6))
    for consumer in consumers:
        consumer.close()
    lag = group_log.group_lag("g")
    assert [(row.partition, row.committed_offset, row.lag) for row in lag] == [
        (p, 50, 0) for p in range(6)]


def test_eager_revocation_happens_before_reassignment(group_log):
    fill(group_log, "t", 4, 5)
    events: list[tuple[str, str, int]] = []
    lock = threading.Lock()
    first = group_log.consumer(group_id="g", **FAST)
    first.subscribe(["t"], listener=Recorder("first", events, lock))
    poll_until([first], lambda: len(first.assignment()) == 4)
    second = group_log.consumer(group_id="g", **FAST)
    second.subscribe(["t"], listener=Recorder("second", events, lock))
    poll_until([first, second], lambda: len(first.assignment()) == 2 and
               len(second.assignment()) == 2)
    first.close()
    poll_until([second], lambda: len(second.assignment()) == 4)
    check_never_two_owners(events)
    assert ("revoked", "first", 0) in events and ("revoked", "first", 3) in events
    second.close()


def test_cooperative_sticky_only_moves_partitions_that_must_move(group_log):
    fill(group_log, "t", 6, 1)
    events: list[tuple[str, str, int]] = []
    lock = threading.Lock()
    options = dict(group_id="g", partition_assignment_strategy="cooperative-sticky", **FAST)
    first = group_log.consumer(**options)
    first.subscribe(["t"], listener=Recorder("first", events, lock))
    poll_until([first], lambda: len(first.assignment()) == 6)
    second = group_log.consumer(**options)
    second.subscribe(["t"], listener=Recorder("second", events, lock))
    poll_until([first, second], lambda: len(first.assignment()) == 3 and
               len(second.assignment()) == 3)
    revoked_from_first = {p for kind, name, p in events if kind == "revoked" and name == "first"}
    assert len(revoked_from_first) == 3, "only the partitions that moved were revoked"
    assert revoked_from_first == owned(second)[0]
    check_never_two_owners(events)
    first.close()
    second.close()


def test_a_static_member_restarting_in_time_keeps_its_partitions_without_a_rebalance(group_log):
    fill(group_log, "t", 4, 1)
    a = group_log.consumer(group_id="g", group_instance_id="a", **FAST)
    b = group_log.consumer(group_id="g", group_instance_id="b", **FAST)
    a.subscribe(["t"])
    b.subscribe(["t"])
    poll_until([a, b], lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2)
    before = group_log.describe_group("g")
    mine = a.assignment()
    a.close()  # a static member does not leave the group
    restarted = group_log.consumer(group_id="g", group_instance_id="a", **FAST)
    restarted.subscribe(["t"])
    poll_until([restarted, b], lambda: restarted.assignment() == mine)
    after = group_log.describe_group("g")
    assert after.generation == before.generation and after.state == "Stable"
    assert len(after.members) == 2
    restarted.close()
    b.close()


def test_the_leader_orders_static_members_by_instance_id_whatever_their_member_ids(group_log):
    # The binary subscription does not carry group.instance.id: the leader takes it from the
    # group's member rows. Member ids start with the client id, so "a-..." sorts before
    # "z-...", while the instance ids sort the other way.
    fill(group_log, "t", 4, 1)
    first = group_log.consumer(group_id="g", client_id="z", group_instance_id="instance-a",
                               **FAST)
    second = group_log.consumer(group_id="g", client_id="a", group_instance_id="instance-z",
                                **FAST)
    first.subscribe(["t"])
    second.subscribe(["t"])
    poll_until([first, second],
               lambda: len(first.assignment()) == 2 and len(second.assignment()) == 2)
    assert owned(first, second) == [{0, 1}, {2, 3}]  # range: static members by instance id
    first.close()
    second.close()


def test_a_crashed_member_is_expired_and_a_zombie_cannot_commit(manual):
    log, clock = manual
    fill(log, "t", 4, 10)
    live = log.consumer(group_id="g", auto_offset_reset="earliest", **FAST)
    zombie = log.consumer(group_id="g", auto_offset_reset="earliest", enable_auto_commit=False,
                          **FAST)
    live.subscribe(["t"])
    zombie.subscribe(["t"])
    poll_until([live, zombie], lambda: len(live.assignment()) == 2 and
               len(zombie.assignment()) == 2)
    zombie._membership.close(leave=False)  # type: ignore[union-attr]  # "kill" it: no heartbeats
    clock.advance(FAST["session_timeout_ms"] + 1)
    poll_until([live], lambda: len(live.assignment()) == 4)
    with pytest.raises(CommitFailedError):
        zombie.commit({TopicPartition("t", 0): OffsetAndMetadata(7)})
    assert log.describe_group("g").generation >= 3
    live.close()


def test_a_member_that_stops_polling_leaves_and_reports_its_partitions_lost(group_log):
    fill(group_log, "t", 2, 1)
    lost: list[set[TopicPartition]] = []

    class Listener:
        def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None: ...

        def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None: ...

        def on_partitions_lost(self, partitions: set[TopicPartition]) -> None:
            lost.append(partitions)

    slow = group_log.consumer(group_id="g", max_poll_interval_ms=600, **FAST)
    slow.subscribe(["t"], listener=Listener())
    other = group_log.consumer(group_id="g", **FAST)
    other.subscribe(["t"])
    poll_until([slow, other], lambda: len(slow.assignment()) == 1 and len(other.assignment()) == 1)
    time.sleep(1.0)  # the application is "processing" for longer than max_poll_interval_ms
    poll_until([other], lambda: len(other.assignment()) == 2)
    poll_until([slow, other], lambda: len(slow.assignment()) == 1 and len(other.assignment()) == 1)
    assert lost and len(lost[0]) == 1
    slow.close()
    other.close()


def test_new_partitions_and_matching_topics_are_picked_up(group_log):
    fill(group_log, "orders", 2, 1)
    consumer = group_log.consumer(group_id="g", **FAST)
    consumer.subscribe(re.compile(r"orders|refunds"))
    poll_until([consumer], lambda: len(consumer.assignment()) == 2)
    group_log.create_partitions("orders", 3)
    poll_until([consumer], lambda: len(consumer.assignment()) == 3)
    group_log.create_topic("refunds", partitions=2)
    group_log.create_topic("unrelated", partitions=2)
    poll_until([consumer], lambda: len(consumer.assignment()) == 5)
    assert consumer.subscription() == {"orders", "refunds"}
    consumer.close()


def test_commit_variants_and_committed(group_log):
    fill(group_log, "t", 2, 10)
    consumer = group_log.consumer(group_id="g", auto_offset_reset="earliest",
                                  enable_auto_commit=False, **FAST)
    consumer.subscribe(["t"])
    poll_until([consumer], lambda: all(consumer.position(tp) == 10 for tp in
                                       consumer.assignment()) and len(consumer.assignment()) == 2)
    tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
    assert consumer.committed(tp0) is None
    consumer.commit()
    assert consumer.committed(tp0) == OffsetAndMetadata(10)
    consumer.commit({tp1: OffsetAndMetadata(4, "half way")})
    assert consumer.committed(tp1) == OffsetAndMetadata(4, "half way")
    seen = []
    consumer.commit_async({tp1: OffsetAndMetadata(6)},
                          callback=lambda offsets, error: seen.append((offsets, error))).result(10)
    assert seen == [({tp1: OffsetAndMetadata(6)}, None)]
    consumer.commit_async(lambda offsets, error: seen.append((offsets, error))).result(10)
    assert seen[-1] == ({tp0: OffsetAndMetadata(10), tp1: OffsetAndMetadata(10)}, None)
    assert consumer.committed(tp1) == OffsetAndMetadata(10)
    consumer.commit_async({tp1: OffsetAndMetadata(6)}).result(10)
    with pytest.raises(InvalidArgumentError):
        consumer.commit({tp1: 3})  # type: ignore[dict-item]
    consumer.close()
    restarted = group_log.consumer(group_id="g", **FAST)
    restarted.subscribe(["t"])
    got = poll_until([restarted], lambda: len(restarted.assignment()) == 2 and all(
        restarted.position(tp) == 10 for tp in restarted.assignment()))[0]
    assert [r.offset for r in got if r.partition == 1] == [6, 7, 8, 9]
    assert [r for r in got if r.partition == 0] == [], "partition 0 was committed at its end"
    restarted.close()


def test_assign_mode_commits_only_into_a_group_without_live_members(group_log):
    fill(group_log, "t", 1, 3)
    manual = group_log.consumer(group_id="g", auto_offset_reset="earliest",
                                enable_auto_commit=False)
    manual.assign([TopicPartition("t", 0)])
    manual.poll(timeout_ms=1000)
    manual.commit()
    assert manual.committed(TopicPartition("t", 0)).offset == 3
    member = group_log.consumer(group_id="g", **FAST)
    member.subscribe(["t"])
    poll_until([member], lambda: len(member.assignment()) == 1)
    with pytest.raises(CommitFailedError):
        manual.commit()
    with pytest.raises(IllegalStateError):
        member.assign([TopicPartition("t", 0)])
    with pytest.raises(IllegalStateError):
        group_log.consumer().subscribe(["t"])  # no group id
    member.close()
    manual.close()


def test_group_admin_refuses_changes_while_members_live(group_log):
    fill(group_log, "t", 2, 10)
    member = group_log.consumer(group_id="g", auto_offset_reset="earliest", **FAST)
    member.subscribe(["t"])
    poll_until([member], lambda: len(member.assignment()) == 2 and all(
        member.position(tp) == 10 for tp in member.assignment()))
    member.commit()
    listing = group_log.list_groups()
    assert [(g.group_id, g.state, g.member_count) for g in listing] == [("g", "Stable", 1)]
    description = group_log.describe_group("g")
    assert description.protocol == "range" and len(description.members) == 1
    assert description.members[0].assignment == {TopicPartition("t", 0), TopicPartition("t", 1)}
    with pytest.raises(GroupNotEmptyError):
        group_log.alter_group_offsets("g", {TopicPartition("t", 0): 0})
    with pytest.raises(GroupNotEmptyError):
        group_log.delete_group("g")
    member.close()
    plan = group_log.plan_group_offset_reset("g", "t", mode="shift", value=-3)
    assert plan == {TopicPartition("t", 0): 7, TopicPartition("t", 1): 7}
    assert group_log.plan_group_offset_reset("g", "t", mode="earliest", partitions=[1]) == {
        TopicPartition("t", 1): 0}
    assert group_log.plan_group_offset_reset("g", "t", mode="offset", value=99)[
        TopicPartition("t", 0)] == 10, "targets are clamped to the log"
    group_log.alter_group_offsets("g", plan)
    assert [row.lag for row in group_log.group_lag("g")] == [3, 3]
    group_log.delete_group("g")
    assert group_log.list_groups() == []
    with pytest.raises(GroupIdNotFoundError):
        group_log.describe_group("g")
