"""A consumer of many partitions reads only those that were rung since it found them empty, and
still finds records whose writer died between its commit and its ring."""

from __future__ import annotations

from pathlib import Path

import pytest

import logstore
from logstore import ManualClock, TopicPartition
from logstore.client.fetcher import SWEEP_INTERVAL_MS, SWEEP_MS_PER_PARTITION
from logstore.log.doorbell import Doorbell
from logstore.log.partition_log import PartitionLog

PARTITIONS = 40


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every PartitionLog.read call, as (topic, partition)."""
    calls: list[tuple[str, int]] = []
    real = PartitionLog.read

    def read(self: PartitionLog, *args: object, **kwargs: object) -> object:
        calls.append((self.topic, self.partition))
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PartitionLog, "read", read)
    return calls


def drain(consumer: logstore.Consumer) -> list[tuple[int, int]]:
    found = []
    while records := consumer.poll(timeout_ms=0):
        found.extend((r.partition, r.offset) for r in records)
    return found


def test_quiet_partitions_are_not_read_until_rung(tmp_path: Path, reads) -> None:
    clock = ManualClock()
    with logstore.open(tmp_path / "data", maintenance_interval_ms=None, clock=clock) as log:
        log.create_topic("t", partitions=PARTITIONS)
        with log.consumer(auto_offset_reset="earliest") as consumer:
            consumer.assign([TopicPartition("t", p) for p in range(PARTITIONS)])
            assert drain(consumer) == []
            assert consumer.poll(timeout_ms=0) == []
            reads.clear()
            for _ in range(5):
                assert consumer.poll(timeout_ms=0) == []
            assert reads == []  # every partition is quiet: nothing is opened
            log.append("t", 7, batch())
            assert drain(consumer) == [(7, 0)]
            assert set(reads) == {("t", 7)}  # only the rung partition was read
            reads.clear()
            clock.advance(max(SWEEP_INTERVAL_MS, PARTITIONS * SWEEP_MS_PER_PARTITION))
            consumer.poll(timeout_ms=0)
            assert len(set(reads)) == PARTITIONS  # the sweep reads them all once


def test_a_commit_nobody_rang_is_found_by_the_sweep_or_the_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    data = tmp_path / "data"
    with logstore.open(data, maintenance_interval_ms=None, clock=clock) as log:
        log.create_topic("t", partitions=2)
        with log.consumer(auto_offset_reset="earliest") as consumer:
            consumer.assign([TopicPartition("t", p) for p in range(2)])
            assert drain(consumer) == []
            # Another log on the directory commits as a writer that dies before ringing would.
            with monkeypatch.context() as patch:
                patch.setattr(Doorbell, "ring", lambda *args: None)
                with logstore.open(data, maintenance_interval_ms=None) as writer:
                    writer.append("t", 1, batch())
            assert drain(consumer) == []  # quiet: not announced yet
            clock.advance(SWEEP_INTERVAL_MS)
            assert drain(consumer) == [(1, 0)]  # the sweep found it
            with monkeypatch.context() as patch:
                patch.setattr(Doorbell, "ring", lambda *args: None)
                with logstore.open(data, maintenance_interval_ms=None) as writer:
                    writer.append("t", 0, batch())
            # Opening the partition anywhere rings for the dead writer: no sweep needed.
            with logstore.open(data, maintenance_interval_ms=None) as other:
                other.partition_log("t", 0)
            found = []
            for _ in range(50):
                found += drain(consumer)
                if found:
                    break
                consumer.poll(timeout_ms=100)
            assert found == [(0, 0)]


def batch() -> bytes:
    from logstore.records.builder import encode_batch

    return encode_batch([(1_700_000_000_000, b"k", b"v", ())])
