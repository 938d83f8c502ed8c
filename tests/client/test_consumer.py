"""The embedded consumer: positions, resets, seeks, offsets queries, control records, fetch."""

from __future__ import annotations

import pytest

from logstore.errors import (
    IllegalStateError,
    InvalidArgumentError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from logstore.records.control import ControlType, build_control_batch
from logstore.types import TopicPartition

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


@pytest.fixture
def filled(log):
    """Topic t with 2 partitions: partition 0 holds values 0..99, partition 1 holds 100..149."""
    log.create_topic("t", partitions=2, config={"segment.bytes": "2000"})
    with log.producer(linger_ms=0, batch_size=600) as producer:
        for i in range(100):
            producer.send("t", value=b"%d" % i, partition=0, timestamp_ms=10_000 + i)
        for i in range(100, 150):
            producer.send("t", value=b"%d" % i, partition=1, timestamp_ms=10_000 + i)
    return log


def drain(consumer, limit=10_000):
    out = []
    while True:
        records = consumer.poll(timeout_ms=0)
        if not records:
            return out
        out.extend(records)
        assert len(out) <= limit


def test_poll_returns_each_partition_in_order_with_positions(filled):
    consumer = filled.consumer(auto_offset_reset="earliest", max_poll_records=7)
    consumer.assign([TP0, TP1])
    first = consumer.poll(timeout_ms=1000)
    assert 0 < len(first) <= 7
    records = first + drain(consumer)
    by_partition = {p: [int(r.value) for r in records if r.partition == p] for p in (0, 1)}
    assert by_partition == {0: list(range(100)), 1: list(range(100, 150))}
    assert [r.offset for r in records if r.partition == 0] == list(range(100))
    assert consumer.position(TP0) == 100 and consumer.position(TP1) == 50
    assert consumer.poll(timeout_ms=10) == []


def test_partitions_take_turns(filled):
    consumer = filled.consumer(auto_offset_reset="earliest", max_poll_records=5)
    consumer.assign([TP0, TP1])
    partitions = [r.partition for _ in range(4) for r in consumer.poll(timeout_ms=1000)]
    assert {0, 1} <= set(partitions)


def test_auto_offset_reset(filled):
    latest = filled.consumer(auto_offset_reset="latest")
    latest.assign([TP0])
    assert latest.position(TP0) == 100 and latest.poll(timeout_ms=0) == []
    none = filled.consumer(auto_offset_reset="none")
    none.assign([TP0])
    with pytest.raises(NoOffsetForPartitionError):
        none.poll(timeout_ms=0)
    none.seek(TP0, 98)
    assert [r.offset for r in none.poll(timeout_ms=1000)] == [98, 99]
    with pytest.raises(InvalidArgumentError):
        filled.consumer(auto_offset_reset="smallest")


def test_seek_and_seek_to(filled):
    consumer = filled.consumer()
    consumer.assign([TP0, TP1])
    consumer.seek(TP0, 42)
    assert consumer.poll(timeout_ms=1000, max_records=1)[0].offset == 42
    consumer.seek_to_beginning(TP0)
    assert consumer.position(TP0) == 0
    consumer.seek_to_end()
    assert consumer.position(TP0) == 100 and consumer.position(TP1) == 50
    consumer.seek_to_beginning()
    assert consumer.position(TP1) == 0
    with pytest.raises(IllegalStateError):
        consumer.seek(TopicPartition("t", 5), 0)
    with pytest.raises(InvalidArgumentError):
        consumer.seek(TP0, -1)


def test_offsets_queries(filled):
    filled.delete_records({TP0: 10})
    consumer = filled.consumer()
    assert consumer.beginning_offsets([TP0, TP1]) == {TP0: 10, TP1: 0}
    assert consumer.end_offsets([TP0, TP1]) == {TP0: 100, TP1: 50}
    found = consumer.offsets_for_times({TP0: 10_050, TP1: 10_120})
    assert (found[TP0].offset, found[TP0].timestamp_ms) == (50, 10_050)
    assert found[TP1].offset == 20
    assert consumer.offsets_for_times({TP0: 99_999}) == {TP0: None}
    assert consumer.offsets_for_times({TP0: 0})[TP0].offset == 10, "never below the log start"


def test_a_position_deleted_by_retention_resets(filled):
    earliest = filled.consumer(auto_offset_reset="earliest")
    earliest.assign([TP0])
    earliest.seek(TP0, 5)
    filled.delete_records({TP0: 60})
    assert earliest.poll(timeout_ms=1000)[0].offset == 60
    strict = filled.consumer(auto_offset_reset="none")
    strict.assign([TP0])
    strict.seek(TP0, 5)
    with pytest.raises(OffsetOutOfRangeError):
        strict.poll(timeout_ms=0)


def test_pause_and_resume(filled):
    consumer = filled.consumer(auto_offset_reset="earliest")
    consumer.assign([TP0, TP1])
    consumer.pause(TP0)
    assert consumer.paused() == {TP0}
    assert {r.partition for r in drain(consumer)} == {1}
    consumer.resume(TP0)
    assert {r.partition for r in drain(consumer)} == {0}


def test_iteration_stops_after_consumer_timeout(filled):
    consumer = filled.consumer(auto_offset_reset="earliest", consumer_timeout_ms=50)
    consumer.assign([TP1])
    assert [int(r.value) for r in consumer] == list(range(100, 150))


def test_deserializers(filled):
    consumer = filled.consumer(auto_offset_reset="earliest", value_deserializer=int)
    consumer.assign([TP1])
    assert consumer.poll(timeout_ms=1000, max_records=2)[0].value == 100


def test_misuse_is_reported(filled):
    consumer = filled.consumer()
    with pytest.raises(IllegalStateError):
        consumer.poll()
    with pytest.raises(UnknownTopicOrPartitionError):
        consumer.assign([TopicPartition("nope", 0)])
    with pytest.raises(UnknownTopicOrPartitionError):
        consumer.assign([TopicPartition("t", 9)])
    with pytest.raises(InvalidArgumentError):
        consumer.assign(["t"])
    consumer.close()
    with pytest.raises(IllegalStateError):
        consumer.assign([TP0])


def test_control_records_take_offsets_but_are_never_returned(log):
    log.create_topic("t")
    with log.producer(linger_ms=0) as producer:
        producer.send("t", value=b"before").result(10)
    marker = build_control_batch(ControlType.COMMIT, producer_id=7, producer_epoch=0,
                                 coordinator_epoch=0, timestamp_ms=1)
    assert log.append("t", 0, marker).base_offset == 1
    with log.producer(linger_ms=0) as producer:
        producer.send("t", value=b"after").result(10)
    consumer = log.consumer(auto_offset_reset="earliest")
    consumer.assign([TP0])
    records = drain(consumer)
    assert [(r.offset, r.value) for r in records] == [(0, b"before"), (2, b"after")]
    assert consumer.position(TP0) == 3
    # A control batch alone at the end still moves the position past it.
    newer = build_control_batch(ControlType.COMMIT, producer_id=7, producer_epoch=1,
                                coordinator_epoch=0, timestamp_ms=1)
    assert log.append("t", 0, newer).base_offset == 3
    assert drain(consumer) == [] and consumer.position(TP0) == 4
    # The same marker again (a coordinator redoing its work) is recognised and not appended.
    assert log.append("t", 0, newer).duplicate
    assert log.describe_topic("t").partitions[0].log_end_offset == 4


def test_fetch_returns_raw_batches_and_offsets(filled):
    result = filled.fetch("t", 0, 0, max_bytes=1 << 20)
    assert result.high_watermark == result.log_end_offset == 100
    assert result.last_stable_offset == 100 and result.log_start_offset == 0
    from logstore.records.reader import iter_records

    offsets = [r.offset for _, records in iter_records(result.records) for r in records]
    assert offsets == list(range(100))
    assert filled.fetch("t", 0, 100).records == b""
    with pytest.raises(OffsetOutOfRangeError):
        filled.fetch("t", 0, 101)
    with pytest.raises(InvalidArgumentError):
        filled.fetch("t", 0, 0, isolation_level="dirty")
    with pytest.raises(UnknownTopicOrPartitionError):
        filled.fetch("t", 7, 0)


def test_batches_from_kafka_python_can_be_appended_and_consumed(log):
    from kafka.record.default_records import DefaultRecordBatchBuilder

    log.create_topic("t")
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )
    for i in range(3):
        builder.append(i, timestamp=1000 + i, key=b"k", value=b"kafka-%d" % i, headers=[])
    assert log.append("t", 0, bytes(builder.build())).last_offset == 2
    consumer = log.consumer(auto_offset_reset="earliest")
    consumer.assign([TP0])
    assert [r.value for r in drain(consumer)] == [b"kafka-0", b"kafka-1", b"kafka-2"]


def test_read_committed_drops_aborted_transactions_and_stops_at_the_lso(log):
    from logstore.records.builder import encode_batch

    log.create_topic("t")

    def txn(values: list[bytes], *, epoch: int, seq: int) -> bytes:
        return encode_batch([(1, None, v, ()) for v in values], producer_id=77,
                            producer_epoch=epoch, base_sequence=seq, is_transactional=True)

    def end(kind: ControlType, epoch: int) -> bytes:
        return build_control_batch(kind, producer_id=77, producer_epoch=epoch,
                                   coordinator_epoch=0, timestamp_ms=1)

    log.append("t", 0, txn([b"a", b"b"], epoch=0, seq=0))  # 0-1, aborted below
    with log.producer(linger_ms=0) as producer:
        producer.send("t", value=b"plain", partition=0).result(10)  # 2, not transactional
    log.append("t", 0, txn([b"c"], epoch=0, seq=2))  # 3, aborted
    log.append("t", 0, end(ControlType.ABORT, 1))  # 4
    log.append("t", 0, txn([b"d"], epoch=1, seq=0))  # 5, committed
    log.append("t", 0, end(ControlType.COMMIT, 2))  # 6
    log.append("t", 0, txn([b"e"], epoch=2, seq=0))  # 7, still open
    committed = log.consumer(auto_offset_reset="earliest", isolation_level="read_committed")
    committed.assign([TP0])
    assert [r.value for r in drain(committed)] == [b"plain", b"d"]
    assert committed.position(TP0) == 7 and committed.end_offsets([TP0]) == {TP0: 7}
    uncommitted = log.consumer(auto_offset_reset="earliest")
    uncommitted.assign([TP0])
    assert [r.value for r in drain(uncommitted)] == [b"a", b"b", b"plain", b"c", b"d", b"e"]
    assert uncommitted.end_offsets([TP0]) == {TP0: 8}
    fetched = log.fetch("t", 0, 0, isolation_level="read_committed")
    assert fetched.last_stable_offset == 7 and fetched.aborted_transactions == ((77, 0),)
    assert log.describe_topic("t").partitions[0].last_stable_offset == 7
    log.append("t", 0, end(ControlType.COMMIT, 3))  # 8: the open transaction commits
    assert [r.value for r in drain(committed)] == [b"e"]
    latest = log.consumer(auto_offset_reset="latest", isolation_level="read_committed")
    latest.assign([TP0])
    assert latest.position(TP0) == 9
