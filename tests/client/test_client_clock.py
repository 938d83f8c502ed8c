"""Client timing on the log's clock: linger, retry backoff and delivery timeout, auto-commit,
and a group member's session and max-poll interval, driven by a ManualClock.

A "not yet" is checked by waiting a little real time for something that must not happen; it
can only pass wrongly, never fail wrongly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import logstore
from logstore.clock import ManualClock
from logstore.errors import DatabaseLockedError, LogstoreTimeoutError, MetadataStoreError
from logstore.log.partition_log import PartitionLog
from logstore.types import OffsetAndMetadata, TopicPartition

NOT_YET_S = 0.2  # real time given to something that must not happen


@pytest.fixture
def manual(tmp_path: Path) -> Iterator[tuple[logstore.Log, ManualClock]]:
    clock = ManualClock()
    with logstore.open(tmp_path / "m", clock=clock, maintenance_interval_ms=None) as opened:
        opened.create_topic("t", partitions=2)
        yield opened, clock


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    pause = threading.Event()
    for _ in range(int(timeout_s * 100)):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError("condition not reached in time")


def test_a_batch_lingers_for_linger_ms_of_the_clock(manual):
    log, clock = manual
    producer = log.producer(linger_ms=60_000)
    future = producer.send("t", value=b"v", partition=0)
    with pytest.raises(LogstoreTimeoutError):
        future.result(NOT_YET_S)
    clock.advance(59_999)
    with pytest.raises(LogstoreTimeoutError):
        future.result(NOT_YET_S)
    clock.advance(1)
    assert future.result(10).offset == 0
    producer.close()


def test_retries_back_off_and_expire_on_the_clock(manual, monkeypatch):
    log, clock = manual
    attempts: list[int] = []

    def locked(self, batches, **options):  # type: ignore[no-untyped-def]
        attempts.append(len(batches))
        raise DatabaseLockedError("locked by another process")

    monkeypatch.setattr(PartitionLog, "append_each", locked)
    producer = log.producer(linger_ms=0, retry_backoff_ms=1_000, delivery_timeout_ms=10_000)
    future = producer.send("t", value=b"v", partition=0)
    wait_until(lambda: len(attempts) == 1)
    with pytest.raises(LogstoreTimeoutError):
        future.result(NOT_YET_S)
    assert len(attempts) == 1, "no retry before retry_backoff_ms of the clock"
    clock.advance(1_000)
    wait_until(lambda: len(attempts) == 2)
    clock.advance(9_000)  # 10 s after the batch was made: its delivery timeout
    assert isinstance(future.exception(10), DatabaseLockedError)
    assert len(attempts) == 3
    producer.close()


def test_offsets_are_auto_committed_every_interval_of_the_clock(manual):
    log, clock = manual
    with log.producer(linger_ms=0) as producer:
        producer.send("t", value=b"v", partition=0).result(10)
    consumer = log.consumer(group_id="g", auto_offset_reset="earliest",
                            auto_commit_interval_ms=5_000)
    tp = TopicPartition("t", 0)
    consumer.assign([tp])
    wait_until(lambda: bool(consumer.poll(timeout_ms=50)))
    consumer.poll(timeout_ms=0)
    assert log.committed_offsets("g") == {}
    clock.advance(5_000)
    consumer.poll(timeout_ms=0)
    assert log.committed_offsets("g") == {tp: OffsetAndMetadata(1)}
    consumer.close()


GROUP = {"session_timeout_ms": 30_000, "heartbeat_interval_ms": 1_000}
# Sessions longer than the whole test: only the max-poll interval can remove a member.
LONG_SESSION = {"session_timeout_ms": 600_000, "heartbeat_interval_ms": 1_000}


class Listener:
    def __init__(self) -> None:
        self.lost: list[set[TopicPartition]] = []

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None: ...

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None: ...

    def on_partitions_lost(self, partitions: set[TopicPartition]) -> None:
        self.lost.append(partitions)


def test_a_member_that_stops_polling_leaves_after_max_poll_interval_of_the_clock(manual):
    log, clock = manual
    listener = Listener()
    idle = log.consumer(group_id="g", max_poll_interval_ms=60_000, **LONG_SESSION)
    idle.subscribe(["t"], listener=listener)
    busy = log.consumer(group_id="g", max_poll_interval_ms=60_000, **LONG_SESSION)
    busy.subscribe(["t"])

    def poll_both() -> bool:
        idle.poll(timeout_ms=10)
        busy.poll(timeout_ms=10)
        return len(idle.assignment()) == len(busy.assignment()) == 1

    wait_until(poll_both)
    for _ in range(12):  # 60 s of the clock, in steps that keep "busy" within its interval
        clock.advance(5_000)
        busy.poll(timeout_ms=10)
    assert len(log.describe_group("g").members) == 2, "60 s is not more than the interval"
    clock.advance(5_000)  # 65 s since "idle" last polled: its heartbeat thread leaves
    wait_until(lambda: busy.poll(timeout_ms=10) == [] and len(busy.assignment()) == 2)
    idle.poll(timeout_ms=10)
    assert len(listener.lost) == 1 and len(listener.lost[0]) == 1, "told its partition is lost"
    idle.close()
    busy.close()


class UnreachableHeartbeats:
    """A group coordinator whose heartbeats fail as if the metadata store were unreachable."""

    def __init__(self, coordinator: object) -> None:
        self._coordinator = coordinator
        self.calls = 0

    def heartbeat(self, *args: object) -> None:
        self.calls += 1
        raise MetadataStoreError("the metadata store is unreachable")

    def __getattr__(self, name: str) -> object:
        return getattr(self._coordinator, name)


def test_a_member_cut_off_for_a_session_timeout_of_the_clock_drops_its_partitions(manual):
    log, clock = manual
    listener = Listener()
    member = log.consumer(group_id="g", enable_auto_commit=False, **GROUP)
    member.subscribe(["t"], listener=listener)
    wait_until(lambda: member.poll(timeout_ms=10) == [] and len(member.assignment()) == 2)
    membership = member._membership  # type: ignore[attr-defined]
    unreachable = UnreachableHeartbeats(membership._coordinator)
    membership._coordinator = unreachable
    wait_until(lambda: unreachable.calls > 0)  # no successful heartbeat is still under way
    clock.advance(GROUP["session_timeout_ms"])
    member.poll(timeout_ms=0)
    assert listener.lost == [], "not a whole session yet"
    clock.advance(1)
    member.poll(timeout_ms=0)
    assert listener.lost == [{TopicPartition("t", 0), TopicPartition("t", 1)}]
    member.close()
