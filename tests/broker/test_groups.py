"""Consumer groups through the broker (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
OffsetFetch, DescribeGroups, ListGroups, DeleteGroups), served by the embedded group
coordinator: the protocol's rules on raw frames, and real clients (confluent-kafka in worker
processes, kafka-python, aiokafka, the AdminClient), with embedded consumers in the same
groups."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer as CkConsumer
from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient
from kafka.protocol.consumer.metadata import (
    ConsumerProtocolAssignment as KpAssignment,
)
from kafka.protocol.consumer.metadata import (
    ConsumerProtocolSubscription as KpSubscription,
)
from kio.schema.delete_groups.v1.request import DeleteGroupsRequest
from kio.schema.describe_groups.v5.request import DescribeGroupsRequest
from kio.schema.heartbeat.v3.request import HeartbeatRequest
from kio.schema.join_group.v5.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.list_groups.v4.request import ListGroupsRequest
from kio.schema.offset_commit.v7.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest, OffsetFetchRequestTopic
from kio.schema.sync_group.v3.request import SyncGroupRequest, SyncGroupRequestAssignment
from logstore.backends.group_records import CommittedOffset

import logstore
from logstore import TopicPartition
from logstore.broker import Broker, BrokerConfig
from logstore.clock import ManualClock
from logstore.coordinator.assignors import Subscription
from logstore.coordinator.consumer_protocol import (
    decode_assignment,
    encode_assignment,
    encode_subscription,
)
from logstore.coordinator.group_state import JoinRequest
from logstore.protocol.apis import ApiKey
from logstore.protocol.codec import request_type
from tests.support.member_process import MemberProcess

WORKER = Path(__file__).resolve().parent.parent / "workers" / "ck_group_member.py"

NONE, UNKNOWN_TOPIC_OR_PARTITION, OFFSET_METADATA_TOO_LARGE = 0, 3, 12
ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, INVALID_SESSION_TIMEOUT = 22, 25, 26
REBALANCE_IN_PROGRESS, NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND = 27, 68, 69
MEMBER_ID_REQUIRED, FENCED_INSTANCE_ID, UNSTABLE_OFFSET_COMMIT = 79, 82, 88


# --- raw frames ----------------------------------------------------------------------------------


class Raw:
    """One connection speaking the group APIs with kio entities (frames from ``wire``)."""

    def __init__(self, sock: socket.socket, wire: Any) -> None:
        self.sock = sock
        self.wire = wire
        self.correlation = 0

    def call(self, api_key: int, version: int, body: Any) -> Any:
        self.correlation += 1
        self.sock.sendall(self.wire.request_frame(api_key, version, self.correlation, body,
                                                  client_id="raw"))
        payload = self.wire.read_frame(self.sock)
        assert payload, "the broker closed the connection"
        flexible = bool(request_type(api_key, version).__flexible__)
        return self.wire.decode_response(api_key, version, payload, flexible_header=flexible)

    def join(self, member_id: str = "", *, instance: str | None = None,
             session_ms: int = 30_000, rebalance_ms: int = 10_000,
             topics: tuple[str, ...] = ("t",), version: int = 5, group: str = "g") -> Any:
        metadata = encode_subscription(Subscription(topics=topics))
        return self.call(ApiKey.JOIN_GROUP, version, JoinGroupRequest(
            group_id=group, session_timeout=datetime.timedelta(milliseconds=session_ms),
            rebalance_timeout=datetime.timedelta(milliseconds=rebalance_ms),
            member_id=member_id, group_instance_id=instance, protocol_type="consumer",
            protocols=(JoinGroupRequestProtocol(name="range", metadata=metadata),)))

    def join_as_new(self, **options: Any) -> Any:
        """KIP-394: the first join gets a member id, the second joins with it."""
        first = self.join(**options)
        assert first.error_code == MEMBER_ID_REQUIRED and first.member_id
        return self.join(first.member_id, **options)

    def sync(self, member_id: str, generation: int,
             assignments: dict[str, bytes] | None = None, instance: str | None = None) -> Any:
        return self.call(ApiKey.SYNC_GROUP, 3, SyncGroupRequest(
            group_id="g", generation_id=generation, member_id=member_id,
            group_instance_id=instance, assignments=tuple(
                SyncGroupRequestAssignment(member_id=m, assignment=a)
                for m, a in (assignments or {}).items())))

    def heartbeat(self, member_id: str, generation: int, *, group: str = "g",
                  instance: str | None = None) -> Any:
        return self.call(ApiKey.HEARTBEAT, 3, HeartbeatRequest(
            group_id=group, generation_id=generation, member_id=member_id,
            group_instance_id=instance))

    def commit(self, offsets: dict[tuple[str, int], int], *, member_id: str = "",
               generation: int = -1, metadata: str = "") -> dict[tuple[str, int], int]:
        by_topic: dict[str, list[Any]] = defaultdict(list)
        for (topic, partition), offset in offsets.items():
            by_topic[topic].append(OffsetCommitRequestPartition(
                partition_index=partition, committed_offset=offset, committed_leader_epoch=-1,
                committed_metadata=metadata))
        response = self.call(ApiKey.OFFSET_COMMIT, 7, OffsetCommitRequest(
            group_id="g", generation_id_or_member_epoch=generation, member_id=member_id,
            group_instance_id=None, topics=tuple(
                OffsetCommitRequestTopic(name=t, partitions=tuple(ps))
                for t, ps in by_topic.items())))
        return {(t.name, p.partition_index): p.error_code
                for t in response.topics for p in t.partitions}

    def fetch(self, partitions: list[tuple[str, int]] | None, *,
              require_stable: bool = False) -> dict[tuple[str, int], tuple[int, int]]:
        topics = None if partitions is None else tuple(
            OffsetFetchRequestTopic(name=t, partition_indexes=tuple(
                p for tt, p in partitions if tt == t))
            for t in dict.fromkeys(t for t, _ in partitions))
        response = self.call(ApiKey.OFFSET_FETCH, 7, OffsetFetchRequest(
            group_id="g", topics=topics, require_stable=require_stable))
        assert response.error_code == NONE
        return {(t.name, p.partition_index): (p.committed_offset, p.error_code)
                for t in response.topics for p in t.partitions}


class Background:
    """A blocking call on another thread (a held JoinGroup or SyncGroup)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        self.result = call()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def get(self, timeout_s: float = 30) -> Any:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the held request was never answered"
        return self.result


@pytest.fixture
def raw(broker: Any, connect: Callable[[], socket.socket], wire: Any) -> Callable[[], Raw]:
    broker.log.create_topic("t", partitions=4)
    return lambda: Raw(connect(), wire)


# --- JoinGroup, SyncGroup, Heartbeat -------------------------------------------------------------


def test_a_first_join_gets_a_member_id_then_forms_generation_one(raw) -> None:
    client = raw()
    first = client.join()
    assert first.error_code == MEMBER_ID_REQUIRED and first.member_id.startswith("raw-")
    assert first.generation_id == -1
    joined = client.join(first.member_id)
    assert joined.error_code == NONE and joined.member_id == first.member_id
    assert (joined.generation_id, joined.leader, joined.protocol_name) == (
        1, first.member_id, "range")
    assert [m.member_id for m in joined.members] == [first.member_id]
    # The leader gets every member's subscription, in Kafka's binary ConsumerProtocol.
    assert KpSubscription.decode(joined.members[0].metadata).topics == ["t"]
    # JoinGroup v0-v3 clients have no KIP-394 round trip: the broker names them at once.
    old = raw().join(version=3, group="old-clients")
    assert old.error_code == NONE and old.member_id.startswith("raw-")


def test_joins_are_held_until_every_member_rejoined_and_syncs_until_the_leader_assigned(
        raw) -> None:
    a, b = raw(), raw()
    first = a.join_as_new()
    assert a.sync(first.member_id, 1, {first.member_id: encode_assignment(
        [TopicPartition("t", p) for p in range(4)])}).error_code == NONE
    b_join = Background(lambda: b.join_as_new())
    # B's join started a rebalance; A hears it on its next heartbeat, and B is still held:
    # the join phase cannot end before A rejoined.
    while (beat := a.heartbeat(first.member_id, 1)).error_code == NONE:
        time.sleep(0.01)
    assert beat.error_code == REBALANCE_IN_PROGRESS and not b_join.done
    a_again = a.join(first.member_id)
    b_joined = b_join.get()
    assert a_again.generation_id == b_joined.generation_id == 2
    assert a_again.leader == b_joined.leader == first.member_id  # the leader stays
    assert sorted(m.member_id for m in a_again.members) == sorted(
        [first.member_id, b_joined.member_id])
    assert b_joined.members == ()  # only the leader sees the members' metadata
    # B's sync is held until the leader's assignment arrives.
    b_sync = Background(lambda: b.sync(b_joined.member_id, 2))
    # (Meanwhile the group is CompletingRebalance: B's heartbeats, on another connection, pass.)
    assert raw().heartbeat(b_joined.member_id, 2).error_code == NONE
    a_sync = a.sync(first.member_id, 2, {
        first.member_id: encode_assignment([TopicPartition("t", 0), TopicPartition("t", 1)]),
        b_joined.member_id: encode_assignment([TopicPartition("t", 2), TopicPartition("t", 3)]),
    })
    assert a_sync.error_code == NONE
    assert decode_assignment(a_sync.assignment) == {TopicPartition("t", 0),
                                                    TopicPartition("t", 1)}
    assert decode_assignment(b_sync.get().assignment) == {TopicPartition("t", 2),
                                                          TopicPartition("t", 3)}
    assert a.heartbeat(first.member_id, 2).error_code == NONE
    assert a.heartbeat(first.member_id, 1).error_code == ILLEGAL_GENERATION


def test_group_protocol_errors(raw, broker: Any) -> None:
    client = raw()
    assert client.join("nobody").error_code == UNKNOWN_MEMBER_ID
    assert client.join(session_ms=1000).error_code == INVALID_SESSION_TIMEOUT
    joined = client.join_as_new()
    assert client.sync(joined.member_id, 7).error_code == ILLEGAL_GENERATION
    assert client.sync("nobody", 1).error_code == UNKNOWN_MEMBER_ID
    # A heartbeat to a group that does not exist is refused and creates nothing.
    assert client.heartbeat("x", 1, group="ghost").error_code == UNKNOWN_MEMBER_ID
    assert "ghost" not in [g.group_id for g in broker.log.list_groups()]


def test_a_static_member_is_fenced_by_its_new_instance(raw) -> None:
    old, new = raw(), raw()
    first = old.join(instance="worker-1")  # static members join without the KIP-394 trip
    assert first.error_code == NONE
    old.sync(first.member_id, 1, {first.member_id: b""}, instance="worker-1")
    second = new.join(instance="worker-1")
    assert second.error_code == NONE and second.member_id != first.member_id
    # The restarted instance took the member's place without a rebalance.
    assert second.generation_id == 1
    assert old.heartbeat(first.member_id, 1, instance="worker-1").error_code == (
        FENCED_INSTANCE_ID)
    assert new.heartbeat(second.member_id, 1, instance="worker-1").error_code == NONE


@pytest.fixture
def manual_broker(tmp_path: Path) -> Iterator[tuple[logstore.Log, int, ManualClock]]:
    """A broker whose log (and so its groups) runs on a ManualClock: (log, port, clock)."""
    clock = ManualClock()
    log = logstore.open(tmp_path / "data", clock=clock, maintenance_interval_ms=None,
                        metadata_max_age_ms=0)
    running = Broker(log, config=BrokerConfig(listen_port=0))
    running.start()
    assert running.address is not None
    try:
        yield log, running.address[1], clock
    finally:
        running.stop()
        log.close()


def test_a_held_join_is_answered_at_the_rebalance_deadline_without_the_silent_member(
        manual_broker, wire) -> None:
    log, port, clock = manual_broker
    log.create_topic("t", partitions=2)
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
    a, b, c = (Raw(sock, wire) for sock in sockets)

    def wait_for_rebalance(member_id: str, generation: int) -> None:
        while a.heartbeat(member_id, generation).error_code == NONE:
            time.sleep(0.01)

    a_first = a.join_as_new()
    a.sync(a_first.member_id, 1, {a_first.member_id: b""})
    b_join = Background(lambda: b.join_as_new())
    wait_for_rebalance(a_first.member_id, 1)
    a_second = a.join(a_first.member_id)
    b_second = b_join.get()
    assert a_second.generation_id == b_second.generation_id == 2
    a.sync(a_first.member_id, 2, {a_first.member_id: b"", b_second.member_id: b""})
    b.sync(b_second.member_id, 2)
    # C joins; A rejoins; B says nothing. Both joins are held until the deadline (the
    # members' largest rebalance timeout, 10 s) passes on the group's clock.
    c_join = Background(lambda: c.join_as_new())
    wait_for_rebalance(a_first.member_id, 2)
    a_join = Background(lambda: a.join(a_first.member_id))

    def registered_for_three() -> int:
        return sum(m.join_generation == 3 for m in log.metadata.read_group("g").members)

    while registered_for_three() < 2:
        time.sleep(0.01)
    assert not a_join.done and not c_join.done
    clock.advance(10_001)
    a_third, c_joined = a_join.get(), c_join.get()
    assert a_third.generation_id == c_joined.generation_id == 3
    assert sorted(m.member_id for m in a_third.members) == sorted(
        [a_first.member_id, c_joined.member_id])
    assert a.heartbeat(b_second.member_id, 2).error_code == UNKNOWN_MEMBER_ID
    for sock in sockets:
        sock.close()


# --- offsets -------------------------------------------------------------------------------------


def test_offset_commit_and_fetch_rules(raw, broker: Any) -> None:
    client = raw()
    # Without group management (generation -1) into an empty group.
    assert client.commit({("t", 0): 5, ("t", 9): 1, ("nope", 0): 1}) == {
        ("t", 0): NONE, ("t", 9): UNKNOWN_TOPIC_OR_PARTITION,
        ("nope", 0): UNKNOWN_TOPIC_OR_PARTITION}
    assert client.commit({("t", 1): 1}, metadata="x" * 5000) == {
        ("t", 1): OFFSET_METADATA_TOO_LARGE}
    assert client.fetch([("t", 0), ("t", 1)]) == {("t", 0): (5, NONE), ("t", 1): (-1, NONE)}
    assert client.fetch(None) == {("t", 0): (5, NONE)}
    joined = client.join_as_new()
    client.sync(joined.member_id, 1, {joined.member_id: b""})
    # Now the group has a member: only it may commit, in its generation.
    assert client.commit({("t", 0): 6}) == {("t", 0): UNKNOWN_MEMBER_ID}
    assert client.commit({("t", 0): 6}, member_id=joined.member_id, generation=0) == {
        ("t", 0): ILLEGAL_GENERATION}
    assert client.commit({("t", 0): 7}, member_id=joined.member_id, generation=1) == {
        ("t", 0): NONE}
    assert broker.log.committed_offsets("g")[TopicPartition("t", 0)].offset == 7


def test_delete_groups_answers_each_name_once(raw, broker: Any) -> None:
    client = raw()
    assert client.commit({("t", 0): 5}) == {("t", 0): NONE}  # group "g": offsets, no members
    deleted = client.call(ApiKey.DELETE_GROUPS, 1, DeleteGroupsRequest(
        groups_names=("g", "ghost", "g")))
    assert [(r.group_id, r.error_code) for r in deleted.results] == [
        ("g", NONE), ("ghost", GROUP_ID_NOT_FOUND)]
    assert broker.log.committed_offsets("g") == {}


def test_offset_fetch_require_stable_reports_pending_transactional_offsets(
        raw, broker: Any) -> None:
    client = raw()
    assert client.commit({("t", 0): 3}) == {("t", 0): NONE}
    coordinator = broker.log.transaction_coordinator
    identity = coordinator.init_producer_id("copier", 60_000)
    coordinator.add_offsets("copier", identity.producer_id, identity.epoch, "g",
                            {TopicPartition("t", 0): CommittedOffset(10)})
    assert client.fetch([("t", 0), ("t", 1)], require_stable=True) == {
        ("t", 0): (-1, UNSTABLE_OFFSET_COMMIT), ("t", 1): (-1, NONE)}
    assert client.fetch([("t", 0)]) == {("t", 0): (3, NONE)}
    coordinator.end_transaction("copier", identity.producer_id, identity.epoch, commit=True)
    assert client.fetch([("t", 0)], require_stable=True) == {("t", 0): (10, NONE)}


# --- describe, list, delete ----------------------------------------------------------------------


def test_describe_list_and_delete_on_the_wire(raw) -> None:
    client = raw()
    described = client.call(ApiKey.DESCRIBE_GROUPS, 5, DescribeGroupsRequest(
        groups=("g", "ghost"), include_authorized_operations=False))
    assert [(g.group_id, g.group_state, g.error_code) for g in described.groups] == [
        ("g", "Dead", NONE), ("ghost", "Dead", NONE)]
    joined = client.join_as_new()
    client.sync(joined.member_id, 1, {joined.member_id: encode_assignment(
        [TopicPartition("t", 0)])})
    described = client.call(ApiKey.DESCRIBE_GROUPS, 5, DescribeGroupsRequest(
        groups=("g",), include_authorized_operations=False)).groups[0]
    assert (described.group_state, described.protocol_type, described.protocol_data) == (
        "Stable", "consumer", "range")
    (member,) = described.members
    assert member.client_id == "raw" and member.client_host == "/127.0.0.1"
    assert KpAssignment.decode(member.member_assignment).partitions() == [("t", 0)]
    assert KpSubscription.decode(member.member_metadata).topics == ["t"]
    listed = client.call(ApiKey.LIST_GROUPS, 4, ListGroupsRequest(states_filter=("stable",)))
    assert [(g.group_id, g.group_state) for g in listed.groups] == [("g", "Stable")]
    listed = client.call(ApiKey.LIST_GROUPS, 4, ListGroupsRequest(states_filter=("Empty",)))
    assert listed.groups == ()


def test_groups_written_in_the_legacy_json_form_are_served_in_binary(
        raw, broker: Any) -> None:
    # An embedded member of an older logstore wrote JSON (a group running during an upgrade).
    legacy = b'{"v":1,"topics":["t"],"owned":[],"generation":-1,"instance":null}'
    coordinator = broker.log.group_coordinator
    view = coordinator.join_group("g", JoinRequest(
        member_id="", group_instance_id=None, client_id="old", protocol_type="consumer",
        protocols=(("range", legacy),), session_timeout_ms=30_000,
        rebalance_timeout_ms=30_000))
    coordinator.sync_group("g", view.member_id, view.generation, {
        view.member_id: b'{"v":1,"partitions":[["t",2],["t",3]]}'})
    client = raw()
    (member,) = client.call(ApiKey.DESCRIBE_GROUPS, 5, DescribeGroupsRequest(
        groups=("g",), include_authorized_operations=False)).groups[0].members
    assert KpSubscription.decode(member.member_metadata).topics == ["t"]
    assert sorted(KpAssignment.decode(member.member_assignment).partitions()) == [
        ("t", 2), ("t", 3)]
    # A Kafka client leading the next generation reads the old member's subscription too.
    assert broker.log.describe_group("g").members[0].assignment == {
        TopicPartition("t", 2), TopicPartition("t", 3)}


# --- real clients --------------------------------------------------------------------------------


class Worker(MemberProcess):
    """A confluent-kafka group member process (tests/workers/ck_group_member.py)."""

    def records(self) -> list[tuple[int, int]]:
        return [(int(p), int(o)) for _, _, p, o, _ in self.events("R")]

    def ownership(self, end: float) -> dict[int, list[tuple[float, float]]]:
        """Per partition, the intervals (monotonic time) this member owned it."""
        spans: dict[int, list[tuple[float, float]]] = defaultdict(list)
        since: dict[int, float] = {}
        for line in list(self.lines):
            kind, *rest = line.split(" ")
            if kind not in ("A", "V", "L"):
                continue
            stamp, parts = rest
            for p in (int(p) for p in parts.split(",") if p != "-"):
                if kind == "A":
                    since[p] = float(stamp)
                elif p in since:
                    spans[p].append((since.pop(p), float(stamp)))
        for p, start in since.items():
            spans[p].append((start, self.ended_at or end))
        return spans

    def uncommitted(self) -> set[tuple[int, int]]:
        """Records processed here whose offsets this member never committed."""
        committed: dict[int, int] = {}
        for _, _, position in self.events("C"):
            p, o = position.split(":")
            committed[int(p)] = max(committed.get(int(p), 0), int(o))
        return {(p, o) for p, o in self.records() if o >= committed.get(p, 0)}


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_confluent_kafka_members_in_three_processes_rebalance_and_honour_commits(
        broker: Any, tmp_path: Path) -> None:
    partitions = 6
    broker.log.create_topic("orders", partitions=partitions)
    workers: list[Worker] = []
    produced = 0

    def start(name: str) -> Worker:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), broker.bootstrap, "orders", "g", name,
             "--session-ms", "6000", "--heartbeat-ms", "300"],
            cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        worker = Worker(name, proc)
        workers.append(worker)
        wait_for(lambda: "ready" in worker.lines, f"{name} to start")
        return worker

    def produce(count: int) -> None:
        nonlocal produced
        with broker.log.producer() as producer:
            for i in range(produced, produced + count):
                producer.send("orders", key=b"k%d" % i, value=b"%d" % i,
                              partition=i % partitions)
        produced += count

    def processed() -> set[tuple[int, int]]:
        return {r for w in workers for r in w.records()}

    def all_processed() -> bool:
        return len(processed()) == produced

    def owners_are(*expected: Worker) -> Callable[[], bool]:
        return lambda: (all(w.owned() for w in expected)
                        and sorted(p for w in expected for p in w.owned())
                        == list(range(partitions)))

    try:
        a = start("a")
        wait_for(owners_are(a), "a to own every partition")
        produce(300)
        wait_for(all_processed, "a to process the first records")
        b = start("b")
        wait_for(owners_are(a, b), "a and b to share the partitions")
        produce(300)
        wait_for(all_processed, "a and b to process")
        c = start("c")
        wait_for(owners_are(a, b, c), "a, b and c to share the partitions")
        produce(300)
        wait_for(lambda: bool(set(b.records()) - set(b.uncommitted()) and b.owned()), "b")
        b.kill()  # maybe mid-record: its session expires, a and c take its partitions over
        produce(300)
        wait_for(owners_are(a, c), "a and c to take b's partitions over")
        wait_for(all_processed, "every record to be processed after the kill")
        c.stop()  # leaves the group: a takes everything at once
        wait_for(owners_are(a), "a to own every partition again")
        produce(300)
        wait_for(all_processed, "a to process the last records")
        a.stop()
    finally:
        for worker in workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait()
    end = time.monotonic()
    # Every record was processed; a record was processed twice only if a member processed it
    # without committing (the killed one, or a commit refused during a rebalance): every
    # other handover started at the offset the previous owner committed.
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for worker in workers:
        for record in worker.records():
            counts[record] += 1
    assert len(counts) == produced == 1500
    duplicates = {r for r, n in counts.items() if n > 1}
    assert duplicates <= set().union(*(w.uncommitted() for w in workers))
    # No partition ever had two owners at once (monotonic stamps across processes).
    for p in range(partitions):
        spans = sorted(s for w in workers for s in w.ownership(end).get(p, []))
        for (_, first_end), (second_start, _) in pairwise(spans):
            assert first_end <= second_start, f"partition {p} had two owners"
    assert all(w.events("A") for w in workers)
    committed = broker.log.committed_offsets("g")
    assert {tp.partition: c.offset for tp, c in committed.items()} == dict.fromkeys(
        range(partitions), produced // partitions)


def test_kafka_python_group_consumer_restarts_at_the_committed_offset(
        broker: Any) -> None:
    from kafka import KafkaConsumer

    broker.log.create_topic("kp", partitions=3)
    with broker.log.producer() as producer:
        for i in range(90):
            producer.send("kp", value=b"%d" % i, partition=i % 3)

    def consume(count: int, *, commit: bool) -> list[Any]:
        consumer = KafkaConsumer("kp", bootstrap_servers=broker.bootstrap, group_id="kp",
                                 auto_offset_reset="earliest", enable_auto_commit=False)
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500, max_records=count - len(got))
            for records in batch.values():
                got.extend(records)
        if commit:
            consumer.commit()
        consumer.close()
        return got

    first = consume(45, commit=True)
    committed = broker.log.committed_offsets("kp")
    assert sum(c.offset for c in committed.values()) == 45
    second = consume(45, commit=False)
    # The restarted member began at the committed offsets: every record exactly once.
    seen = [(r.partition, r.offset) for r in first + second]
    assert sorted(seen) == sorted({(p, o) for p in range(3) for o in range(30)})


def test_aiokafka_group_consumer_restarts_at_the_committed_offset(broker: Any) -> None:
    from aiokafka import AIOKafkaConsumer

    broker.log.create_topic("aio", partitions=3)
    with broker.log.producer() as producer:
        for i in range(90):
            producer.send("aio", value=b"%d" % i, partition=i % 3)

    async def consume(limit: int, commit: bool) -> list[Any]:
        consumer = AIOKafkaConsumer("aio", bootstrap_servers=broker.bootstrap, group_id="aio",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        got: list[Any] = []
        try:
            while len(got) < limit:
                batch = await asyncio.wait_for(
                    consumer.getmany(timeout_ms=500, max_records=limit - len(got)), 30)
                for records in batch.values():
                    got.extend(records)
            if commit:
                await consumer.commit()
        finally:
            await consumer.stop()
        return got

    first = asyncio.run(consume(40, commit=True))
    assert sum(c.offset for c in broker.log.committed_offsets("aio").values()) == 40
    second = asyncio.run(consume(50, commit=False))
    seen = [(r.partition, r.offset) for r in first + second]
    assert sorted(seen) == sorted({(p, o) for p in range(3) for o in range(30)})


class OwnershipLog:
    """Assignments and revocations of in-process members, stamped with time.monotonic()."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, set[int]]] = []
        self._lock = threading.Lock()

    def note(self, member: str, kind: str, partitions: set[int]) -> None:
        with self._lock:
            self.events.append((time.monotonic(), member, kind, partitions))

    def check_no_partition_had_two_owners(self) -> None:
        owner: dict[int, str] = {}
        for _, member, kind, partitions in sorted(self.events, key=lambda e: e[0]):
            for p in partitions:
                if kind == "assigned":
                    assert owner.get(p) in (None, member), f"partition {p} owned twice"
                    owner[p] = member
                elif owner.get(p) == member:
                    del owner[p]


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
@pytest.mark.parametrize("first", ["embedded", "confluent"])
def test_an_embedded_and_a_confluent_kafka_consumer_share_one_group(
        broker: Any, strategy: str, first: str) -> None:
    log = broker.log
    log.create_topic("shared", partitions=4)
    with log.producer() as producer:
        for i in range(200):
            producer.send("shared", value=b"%d" % i, partition=i % 4)
    ownership = OwnershipLog()

    class Listener:
        def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            ownership.note("embedded", "assigned", {tp.partition for tp in assigned})

        def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
            ownership.note("embedded", "revoked", {tp.partition for tp in revoked})

    embedded = log.consumer(group_id="shared", client_id="embedded", enable_auto_commit=False,
                            auto_offset_reset="earliest", partition_assignment_strategy=strategy,
                            session_timeout_ms=6000, heartbeat_interval_ms=200)
    ck = CkConsumer({"bootstrap.servers": broker.bootstrap, "group.id": "shared",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "partition.assignment.strategy": strategy, "session.timeout.ms": 6000,
                     "heartbeat.interval.ms": 200})
    got: dict[str, set[tuple[int, int]]] = {"embedded": set(), "confluent": set()}
    stop = threading.Event()

    def run_embedded() -> None:
        embedded.subscribe(["shared"], listener=Listener())
        while not stop.is_set():
            records = embedded.poll(timeout_ms=100)
            got["embedded"] |= {(r.partition, r.offset) for r in records}
            if records:
                embedded.commit()

    def ck_poll() -> None:
        for message in ck.consume(num_messages=100, timeout=0.05):
            if message.error() is not None:
                continue
            got["confluent"].add((message.partition(), message.offset()))
            try:
                ck.commit(message=message, asynchronous=False)
            except KafkaException:
                pass  # refused during a rebalance: the next owner reads the record again

    thread = threading.Thread(target=run_embedded)

    def both_own_partitions() -> bool:
        ck_poll()
        mine = {tp.partition for tp in ck.assignment()}
        theirs = {tp.partition for tp in embedded.assignment()}
        return bool(mine) and bool(theirs) and not mine & theirs and (
            mine | theirs == set(range(4)))

    ck.subscribe(["shared"],
                 on_assign=lambda _c, tps: ownership.note(
                     "confluent", "assigned", {tp.partition for tp in tps}),
                 on_revoke=lambda _c, tps: ownership.note(
                     "confluent", "revoked", {tp.partition for tp in tps}))
    try:
        if first == "embedded":
            thread.start()
            wait_for(lambda: len(embedded.assignment()) == 4, "the embedded member to join")
        else:
            wait_for(lambda: (ck_poll(), len(ck.assignment()) == 4)[1],
                     "the confluent-kafka member to join")
            thread.start()
        wait_for(both_own_partitions, "the members to split the partitions")
        wait_for(lambda: (ck_poll(), len(got["embedded"] | got["confluent"]) == 200)[1],
                 "every record")
        for _ in range(10):
            ck_poll()
        # Both members see the same committed offsets: the group's.
        tps = [TopicPartition("shared", p) for p in range(4)]
        from confluent_kafka import TopicPartition as CkTopicPartition

        ck_committed = {tp.partition: tp.offset for tp in ck.committed(
            [CkTopicPartition("shared", p) for p in range(4)], timeout=10)}
        embedded_committed = {}
        for tp in tps:
            found = embedded.committed(tp)
            embedded_committed[tp.partition] = found.offset if found else -1001
        assert ck_committed == embedded_committed == dict.fromkeys(range(4), 50)
        assert log.describe_group("shared").protocol == strategy
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=30)
        embedded.close()
        ck.close()
    ownership.check_no_partition_had_two_owners()


def test_a_static_confluent_kafka_member_restarts_without_a_rebalance(
        broker: Any) -> None:
    broker.log.create_topic("static", partitions=2)
    config = {"bootstrap.servers": broker.bootstrap, "group.id": "static",
              "group.instance.id": "worker-1", "session.timeout.ms": 30_000,
              "heartbeat.interval.ms": 200, "enable.auto.commit": False}

    def join_and_close() -> tuple[int, set[TopicPartition]]:
        consumer = CkConsumer(config)
        consumer.subscribe(["static"])
        wait_for(lambda: (consumer.poll(0.05), len(consumer.assignment()) == 2)[1],
                 "the static member to be assigned")
        description = broker.log.describe_group("static")
        consumer.close()  # a static member does not leave the group
        (member,) = description.members
        assert member.group_instance_id == "worker-1"
        return description.generation, set(member.assignment)

    first = join_and_close()
    assert [m.group_instance_id for m in broker.log.describe_group("static").members] == [
        "worker-1"]
    assert join_and_close() == first  # same generation: no rebalance


def test_the_admin_client_lists_describes_and_deletes_groups_and_the_cli_agrees(
        broker: Any, tmp_path: Path) -> None:
    broker.log.create_topic("adm", partitions=2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    consumer = CkConsumer({"bootstrap.servers": broker.bootstrap, "group.id": "adm",
                           "client.id": "adm-client", "session.timeout.ms": 6000,
                           "heartbeat.interval.ms": 200})
    consumer.subscribe(["adm"])
    wait_for(lambda: (consumer.poll(0.05), len(consumer.assignment()) == 2)[1], "a member")
    broker.log.alter_group_offsets("idle", {TopicPartition("adm", 0): 1})
    try:
        listed = admin.list_consumer_groups(request_timeout=10).result()
        assert sorted((g.group_id, g.state) for g in listed.valid) == [
            ("adm", ConsumerGroupState.STABLE), ("idle", ConsumerGroupState.EMPTY)]
        stable = admin.list_consumer_groups(
            request_timeout=10, states={ConsumerGroupState.STABLE}).result()
        assert [g.group_id for g in stable.valid] == ["adm"]
        description = admin.describe_consumer_groups(["adm"])["adm"].result()
        assert description.state == ConsumerGroupState.STABLE
        assert description.partition_assignor == "range"
        (member,) = description.members
        assert member.client_id == "adm-client" and member.host == "/127.0.0.1"
        assert sorted(tp.partition for tp in member.assignment.topic_partitions) == [0, 1]
        # `logstore groups describe` reads the same group from the data directory.
        cli = subprocess.run(
            [str(Path(sys.executable).parent / "logstore"), "--data-dir", str(broker.log.path),
             "groups", "describe", "adm", "--format", "json"],
            capture_output=True, text=True, check=True, cwd=tmp_path)
        from_cli = json.loads(cli.stdout)
        assert from_cli["state"] == "Stable" and from_cli["protocol"] == "range"
        assert [(m["member_id"], m["client_id"], sorted(a["partition"] for a in m["assignment"]))
                for m in from_cli["members"]] == [(member.member_id, "adm-client", [0, 1])]
        with pytest.raises(KafkaException) as refused:
            admin.delete_consumer_groups(["adm"], request_timeout=10)["adm"].result()
        assert refused.value.args[0].code() == NON_EMPTY_GROUP
        with pytest.raises(KafkaException) as unknown:
            admin.delete_consumer_groups(["ghost"], request_timeout=10)["ghost"].result()
        assert unknown.value.args[0].code() == GROUP_ID_NOT_FOUND
    finally:
        consumer.close()
    deleted = admin.delete_consumer_groups(["adm", "idle"], request_timeout=10)
    for future in deleted.values():
        future.result()
    assert broker.log.list_groups() == []
