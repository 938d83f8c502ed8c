"""Closing a log closes every client it made: producers kept, never closed, or dropped."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

import logstore
from logstore.errors import DatabaseLockedError, IllegalStateError, LogstoreTimeoutError
from logstore.log.partition_log import PartitionLog


def client_threads(prefix: str) -> list[threading.Thread]:
    """Live logstore-* threads of the clients whose ids start with ``prefix``."""
    return [t for t in threading.enumerate()
            if t.name.startswith("logstore-") and f"-{prefix}" in t.name]


def test_log_close_ends_the_threads_of_clients_kept_dropped_or_never_closed(tmp_path: Path):
    log = logstore.open(tmp_path / "d", maintenance_interval_ms=None)
    log.create_topic("t", partitions=3)
    all_before = len([t for t in threading.enumerate() if t.name.startswith("logstore-")])
    kept = [log.producer(linger_ms=600_000, client_id=f"kept-{i}") for i in range(10)]
    kept_futures = [p.send("t", value=b"kept-%d" % i) for i, p in enumerate(kept)]
    dropped_futures = []
    for i in range(10):
        producer = log.producer(linger_ms=600_000, client_id=f"dropped-{i}")
        dropped_futures.append(producer.send("t", value=b"dropped-%d" % i))
    del producer
    member = log.consumer(group_id="g", client_id="member-kept")
    member.subscribe(["t"])
    member.poll(timeout_ms=100)
    orphan = log.consumer(group_id="g", client_id="member-dropped")
    orphan.subscribe(["t"])
    orphan.poll(timeout_ms=100)
    del orphan
    gc.collect()
    assert len(client_threads("kept-")) == 10

    # A producer the application dropped still sends what it held, then its thread ends.
    assert all(f.result(10).serialized_value_size == 9 for f in dropped_futures)
    for thread in client_threads("dropped-"):
        thread.join(10)
    assert client_threads("dropped-") == []
    assert not any(f.done() for f in kept_futures), "kept producers linger"

    log.close()
    assert all(f.result(0).serialized_value_size == 6 for f in kept_futures), "flushed"
    assert client_threads("kept-") == [] and client_threads("member-") == []
    all_after = [t for t in threading.enumerate() if t.name.startswith("logstore-")]
    assert len(all_after) <= all_before, [t.name for t in all_after]
    with pytest.raises(IllegalStateError):
        kept[0].send("t", value=b"late")
    with pytest.raises(IllegalStateError):
        member.poll(timeout_ms=0)
    with logstore.open(tmp_path / "d", maintenance_interval_ms=None) as reopened:
        values = {r.value for r in read_all(reopened, "t", 3)}
    assert values == {b"kept-%d" % i for i in range(10)} | {b"dropped-%d" % i for i in range(10)}


def read_all(log: logstore.Log, topic: str, partitions: int) -> list[logstore.ConsumerRecord]:
    consumer = log.consumer(auto_offset_reset="earliest")
    tps = [logstore.TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    records: list[logstore.ConsumerRecord] = []
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        records.extend(consumer.poll(timeout_ms=5000))
    consumer.close()
    return records


def test_log_close_bounds_the_wait_and_fails_what_it_could_not_send(tmp_path, monkeypatch):
    log = logstore.open(tmp_path / "d", maintenance_interval_ms=None)
    log.create_topic("t")
    producer = log.producer(linger_ms=0, retry_backoff_ms=10, delivery_timeout_ms=5000,
                            client_id="stuck")
    sent = producer.send("t", value=b"sent").result(10)

    def locked(self, batches, **options):  # type: ignore[no-untyped-def]
        raise DatabaseLockedError("locked by another process")

    monkeypatch.setattr(PartitionLog, "append_each", locked)
    stuck = producer.send("t", value=b"never")
    log.close(client_timeout_ms=200)
    error = stuck.exception(0)
    assert isinstance(error, LogstoreTimeoutError) and "log was closed" in str(error)
    assert sent.offset == 0
    assert client_threads("stuck") == []
