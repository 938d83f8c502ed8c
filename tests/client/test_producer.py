"""The embedded producer: partitioning, record fields, errors, flush/close, concurrency."""

from __future__ import annotations

import threading
from itertools import pairwise
from pathlib import Path

import pytest

import logstore
from logstore.client.partitioner import partition_for_key
from logstore.clock import ManualClock
from logstore.errors import (
    BufferExhaustedError,
    IllegalStateError,
    InvalidArgumentError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
)
from logstore.records.header import iter_headers
from logstore.types import TopicPartition


def consume_all(log: logstore.Log, topic: str) -> list[logstore.ConsumerRecord]:
    consumer = log.consumer(auto_offset_reset="earliest")
    count = log.describe_topic(topic).partition_count
    tps = [TopicPartition(topic, p) for p in range(count)]
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    records: list[logstore.ConsumerRecord] = []
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        records.extend(consumer.poll(timeout_ms=5000))
    consumer.close()
    return records


def test_keyed_records_use_kafkas_default_partitioner(log):
    log.create_topic("t", partitions=7)
    with log.producer(linger_ms=0) as producer:
        futures = {key: producer.send("t", value=b"v", key=key)
                   for key in (b"user-%d" % i for i in range(200))}
        for key, future in futures.items():
            assert future.result(10).partition == partition_for_key(key, 7)


def test_explicit_partition_wins_over_the_key(log):
    log.create_topic("t", partitions=3)
    with log.producer(linger_ms=0) as producer:
        key = b"k"
        other = (partition_for_key(key, 3) + 1) % 3
        future = producer.send("t", value=b"v", key=key, partition=other)
        assert future.result(10).partition == other


def test_keyless_records_stick_to_a_partition_per_batch(log):
    log.create_topic("t", partitions=4)
    with log.producer(linger_ms=60_000, batch_size=2000) as producer:
        futures = [producer.send("t", value=b"x" * 100) for _ in range(200)]
        producer.flush()
    partitions = [f.result(10).partition for f in futures]
    runs = sum(1 for a, b in pairwise(partitions) if a != b)
    assert 1 <= runs < 40, "sticky: a partition is kept for a whole batch, then changed"
    assert len(set(partitions)) > 1


def test_record_fields_round_trip(tmp_path: Path):
    clock = ManualClock(start_ms=1_234_567_890_000)
    with logstore.open(tmp_path / "d", clock=clock, maintenance_interval_ms=None) as log:
        log.create_topic("t")
        with log.producer(linger_ms=0) as producer:
            metas = [
                producer.send("t", value=b"v", key=b"k", headers=[("h1", b"a"), ("h2", None)]),
                producer.send("t", value=None, key=b"tombstone"),
                producer.send("t", value=b"", key=None),
                producer.send("t", value=b"explicit", timestamp_ms=42),
            ]
            results = [m.result(10) for m in metas]
        assert [r.offset for r in results] == [0, 1, 2, 3]
        assert results[0].timestamp_ms == clock.time_ms()
        assert results[3].timestamp_ms == 42
        assert (results[0].serialized_key_size, results[0].serialized_value_size) == (1, 1)
        assert results[1].serialized_value_size == -1
        records = consume_all(log, "t")
        assert [(r.key, r.value) for r in records] == [
            (b"k", b"v"), (b"tombstone", None), (None, b""), (None, b"explicit")
        ]
        assert records[0].headers == (("h1", b"a"), ("h2", None))
        assert [r.timestamp_ms for r in records] == [clock.time_ms()] * 3 + [42]


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_compression_type_round_trips(log, codec):
    log.create_topic("t")
    with log.producer(linger_ms=50, compression_type=codec) as producer:
        for i in range(500):
            producer.send("t", value=b"value-%d " % i * 5, key=b"k%d" % (i % 7), partition=0)
    records = consume_all(log, "t")
    assert [r.value for r in records] == [b"value-%d " % i * 5 for i in range(500)]
    data = log.fetch("t", 0, 0, max_bytes=1 << 24).records
    codecs = {h.compression for _, h in iter_headers(data)}
    assert codecs == {["none", "gzip", "snappy", "lz4", "zstd"].index(codec)}


def test_batch_size_bounds_batches(log):
    log.create_topic("t")
    with log.producer(linger_ms=60_000, batch_size=1000) as producer:
        for _i in range(100):
            producer.send("t", value=b"x" * 50, partition=0)
    batches = list(iter_headers(log.fetch("t", 0, 0, max_bytes=1 << 24).records))
    assert len(batches) > 5
    assert all(h.size_bytes <= 1000 for _, h in batches)
    assert sum(h.record_count for _, h in batches) == 100


def test_send_errors_are_typed_and_immediate(log):
    log.create_topic("t", partitions=2, config={"max.message.bytes": "1000"})
    with log.producer() as producer:
        with pytest.raises(UnknownTopicOrPartitionError):
            producer.send("missing", value=b"v")
        with pytest.raises(UnknownTopicOrPartitionError):
            producer.send("t", value=b"v", partition=2)
        with pytest.raises(InvalidArgumentError, match="str"):
            producer.send("t", value="text")
        with pytest.raises(InvalidArgumentError):
            producer.send("t", value=b"v", headers=[("h", 3)])
        with pytest.raises(InvalidArgumentError):
            producer.send("t", value=b"v", partition="0")
        with pytest.raises(RecordTooLargeError):
            producer.send("t", value=b"x" * 2000)
    with pytest.raises(InvalidArgumentError):
        log.producer(compression_type="brotli")
    with pytest.raises(InvalidArgumentError):
        log.producer(linger_ms=-1)


def test_serializers(log):
    log.create_topic("t")
    with log.producer(key_serializer=str.encode, value_serializer=lambda v: repr(v).encode(),
                      linger_ms=0) as producer:
        producer.send("t", key="k", value={"a": 1}).result(10)
    (record,) = consume_all(log, "t")
    assert (record.key, record.value) == (b"k", b"{'a': 1}")


def test_flush_sends_lingering_records_and_close_flushes(log):
    log.create_topic("t")
    producer = log.producer(linger_ms=600_000)
    first = producer.send("t", value=b"a")
    assert not first.done()
    producer.flush(timeout=10)
    assert first.done() and first.result().offset == 0
    second = producer.send("t", value=b"b")
    producer.close()
    assert second.result(0).offset == 1
    with pytest.raises(IllegalStateError):
        producer.send("t", value=b"c")
    producer.close()  # idempotent


def test_close_with_zero_timeout_fails_what_was_not_sent(log):
    log.create_topic("t")
    producer = log.producer(linger_ms=600_000)
    pending = producer.send("t", value=b"a")
    producer.close(timeout=0)
    assert isinstance(pending.exception(5), IllegalStateError)
    assert log.describe_topic("t").partitions[0].log_end_offset == 0


def test_a_full_buffer_blocks_then_fails(log):
    log.create_topic("t")
    with (
        log.producer(linger_ms=600_000, buffer_memory=2000, max_block_ms=50) as producer,
        pytest.raises(BufferExhaustedError),
    ):
        for _ in range(100):
            producer.send("t", value=b"x" * 100)


def test_callbacks_run_once_acknowledged(log):
    log.create_topic("t")
    seen: list[int] = []
    done = threading.Event()
    with log.producer(linger_ms=0) as producer:
        future = producer.send("t", value=b"v")
        future.add_done_callback(lambda f: (seen.append(f.result().offset), done.set()))
        assert done.wait(10)
        future.add_done_callback(lambda f: seen.append(-1))  # already done: runs at once
    assert seen == [0, -1]


def test_many_threads_sending_keep_per_thread_order(log):
    log.create_topic("t", partitions=3)
    with log.producer(linger_ms=1) as producer:
        def work(n: int) -> None:
            for i in range(300):
                producer.send("t", value=b"%d:%d" % (n, i), key=b"thread-%d" % n)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    records = consume_all(log, "t")
    assert len(records) == 1800
    for n in range(6):
        mine = [r for r in records if r.key == b"thread-%d" % n]
        mine.sort(key=lambda r: r.offset)
        assert [int(r.value.split(b":")[1]) for r in mine] == list(range(300))
        assert len({r.partition for r in mine}) == 1


def test_closing_the_log_closes_its_producers(tmp_path: Path):
    log = logstore.open(tmp_path / "d", maintenance_interval_ms=None)
    log.create_topic("t")
    producer = log.producer(linger_ms=600_000)
    future = producer.send("t", value=b"v")
    log.close()
    assert future.result(0).offset == 0
    with pytest.raises(IllegalStateError):
        producer.send("t", value=b"w")
