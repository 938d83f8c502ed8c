"""Producers across topic re-creation and expired producer state (KIP-360)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import logstore
from logstore.clock import ManualClock
from logstore.errors import (
    LogstoreError,
    OutOfOrderSequenceError,
    TransactionAbortedError,
    UnknownProducerIdError,
)
from logstore.log.append import PRODUCER_EXPIRATION_MS
from logstore.records.header import BatchHeader, iter_headers
from logstore.types import IsolationLevel

DAY_MS = 24 * 3600 * 1000


def read(log: logstore.Log, topic: str, partition: int) -> list[tuple[int, bytes | None]]:
    """(offset, value) of every record of a partition, through a consumer."""
    consumer = log.consumer(auto_offset_reset="earliest")
    tp = logstore.TopicPartition(topic, partition)
    consumer.assign([tp])
    end = consumer.end_offsets([tp])[tp]
    found: list[tuple[int, bytes | None]] = []
    while consumer.position(tp) < end:
        found.extend((r.offset, r.value) for r in consumer.poll(timeout_ms=5000))
    consumer.close()
    return found


def headers(log: logstore.Log, topic: str, partition: int) -> list[BatchHeader]:
    return [h for _, h in iter_headers(log.fetch(topic, partition, 0, max_bytes=1 << 24).records)]


def test_a_producer_keeps_sending_after_its_topic_is_deleted_and_recreated(log):
    log.create_topic("t", partitions=2)
    log.create_topic("other")
    producer = log.producer(linger_ms=0)
    for i in range(5):
        producer.send("t", value=b"old-%d" % i, partition=0)
    producer.send("t", value=b"old-p1", partition=1)
    producer.send("other", value=b"before", partition=0)
    producer.flush()

    log.delete_topic("t")
    log.create_topic("t", partitions=2)
    after = [producer.send("t", value=b"new-%d" % i, partition=0) for i in range(4)]
    after.append(producer.send("t", value=b"new-p1", partition=1))
    after.append(producer.send("other", value=b"after", partition=0))
    producer.flush()

    assert [f.result(0).offset for f in after] == [0, 1, 2, 3, 0, 1]
    assert read(log, "t", 0) == [(i, b"new-%d" % i) for i in range(4)]
    assert read(log, "t", 1) == [(0, b"new-p1")]
    assert read(log, "other", 0) == [(0, b"before"), (1, b"after")]
    new_epoch = {h.producer_epoch for h in headers(log, "t", 0) + headers(log, "t", 1)}
    assert new_epoch == {1}, "one local epoch bump covers every partition"
    assert headers(log, "t", 0)[0].base_sequence == 0, "the new epoch starts at 0"
    assert [h.producer_epoch for h in headers(log, "other", 0)] == [0, 1]
    producer.close()


def test_churn_loses_nothing_acknowledged_and_duplicates_nothing(log):
    """Topic "churn" is deleted and created again 5 times while one producer keeps sending to it
    and to "steady" from another thread."""
    log.create_topic("steady", partitions=2)
    log.create_topic("churn", partitions=2)
    producer = log.producer(linger_ms=1, batch_size=2000)
    lock = threading.Lock()
    acked: dict[bytes, tuple[int, int]] = {}  # value -> (partition, offset)
    failed: list[BaseException] = []
    sent: dict[str, list[tuple[bytes, logstore.RecordFuture]]] = {"steady": [], "churn": []}
    stop = threading.Event()

    def on_done(value: bytes, future: logstore.RecordFuture) -> None:
        error = future.exception(0)
        with lock:
            if error is None:
                meta = future.result(0)
                acked[value] = (meta.partition, meta.offset)
            else:
                failed.append(error)

    def send_forever() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            for topic in ("steady", "churn"):
                value = b"%s-%d" % (topic.encode(), n)
                try:
                    future = producer.send(topic, value=value, partition=n % 2)
                except LogstoreError as exc:  # the topic is gone at the moment
                    with lock:
                        failed.append(exc)
                    continue
                sent[topic].append((value, future))
                future.add_done_callback(lambda f, v=value: on_done(v, f))

    def acked_churn() -> int:
        with lock:
            return sum(1 for v in acked if v.startswith(b"churn"))

    def failures() -> int:
        with lock:
            return len(failed)

    sender = threading.Thread(target=send_forever)
    sender.start()
    try:
        for _ in range(5):
            acked_before = acked_churn()
            wait_until(lambda n=acked_before: acked_churn() >= n + 200)
            failed_before = failures()
            log.delete_topic("churn")
            wait_until(lambda n=failed_before: failures() > n)  # sends meet the missing topic
            log.create_topic("churn", partitions=2)
        first_after_last_create = len(sent["churn"])
        wait_until(lambda: len(sent["churn"]) >= first_after_last_create + 200)
    finally:
        stop.set()
        sender.join()
    producer.flush()
    wait_until(lambda: len(acked) + len(failed) >= len(sent["steady"]) + len(sent["churn"]))

    assert not any(isinstance(e, (OutOfOrderSequenceError, UnknownProducerIdError))
                   for e in failed), "no sequence error reaches the application"
    after = sent["churn"][first_after_last_create:]
    for value, future in after:
        assert future.exception(0) is None, f"{value!r} was sent after the last re-creation"
    stored_values: set[bytes | None] = set()
    for partition in (0, 1):
        stored = read(log, "churn", partition)
        assert [o for o, _ in stored] == list(range(len(stored))), "offsets from 0, no gap"
        for offset, value in stored:
            assert acked[value] == (partition, offset), "stored where it was acknowledged"
        stored_values.update(v for _, v in stored)
        assert len(stored_values) == sum(len(read(log, "churn", p)) for p in range(partition + 1))
    assert {v for v, _ in after} <= stored_values, "every record sent since arrived, once"
    for partition in (0, 1):  # the topic left alone: every record once, in send order
        mine = [v for v, _ in sent["steady"] if int(v.split(b"-")[1]) % 2 == partition]
        assert [v for _, v in read(log, "steady", partition)] == mine
    producer.close()


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s * 100)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def manual(tmp_path: Path) -> Iterator[tuple[logstore.Log, ManualClock]]:
    clock = ManualClock()
    with logstore.open(tmp_path / "m", clock=clock, maintenance_interval_ms=None) as opened:
        yield opened, clock


def test_a_producer_whose_state_expired_starts_a_new_epoch(manual):
    log, clock = manual
    log.create_topic("t", config={"segment.ms": str(30 * DAY_MS)})
    producer = log.producer(linger_ms=0)
    for i in range(3):
        producer.send("t", value=b"v%d" % i).result(10)
    clock.advance(PRODUCER_EXPIRATION_MS + DAY_MS)
    log.partition_log("t", 0).roll()  # the idle producer's state is dropped here
    assert log.partition_log("t", 0).producer_states() == {}

    assert producer.send("t", value=b"v3").result(10).offset == 3
    assert producer.send("t", value=b"v4").result(10).offset == 4
    assert [v for _, v in read(log, "t", 0)] == [b"v0", b"v1", b"v2", b"v3", b"v4"]
    assert [(h.producer_epoch, h.base_sequence) for h in headers(log, "t", 0)] == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    producer.close()


def test_a_transactional_producer_aborts_after_a_recreation_and_goes_on(log):
    log.create_topic("t", partitions=2)
    producer = log.producer(transactional_id="tx", linger_ms=0)
    producer.init_transactions()
    producer.begin_transaction()
    producer.send("t", value=b"lost with the topic", partition=0).result(10)
    log.delete_topic("t")
    log.create_topic("t", partitions=2)
    failed = producer.send("t", value=b"x", partition=0)
    fresh = producer.send("t", value=b"first here", partition=1)  # sequence 0: accepted
    assert isinstance(failed.exception(10), UnknownProducerIdError)
    assert fresh.result(10).offset == 0
    with pytest.raises(TransactionAbortedError):
        producer.commit_transaction()
    producer.abort_transaction()
    with producer.transaction():
        producer.send("t", value=b"next", partition=0)
        producer.send("t", value=b"next", partition=1)
    for partition in (0, 1):
        consumer = log.consumer(auto_offset_reset="earliest",
                                isolation_level=IsolationLevel.READ_COMMITTED.value)
        tp = logstore.TopicPartition("t", partition)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        values = []
        while consumer.position(tp) < end:
            values.extend(r.value for r in consumer.poll(timeout_ms=5000))
        consumer.close()
        assert values == [b"next"]
    producer.close()
