"""The log cleaner on transactional and idempotent data: aborted data goes, committed data is
compacted like any other, markers go once useless, open transactions are left alone, and the
last batch of every producer stays (empty if need be) so idempotence survives."""

from __future__ import annotations

from logstore.compaction import CompactionStatus, DueReason

import logstore
from logstore.records.builder import encode_batch
from logstore.types import TopicPartition

TP = TopicPartition("c", 0)


def committed_view(log: logstore.Log) -> list[tuple[int, bytes | None, bytes | None]]:
    consumer = log.consumer(isolation_level="read_committed", auto_offset_reset="earliest",
                            enable_auto_commit=False)
    try:
        consumer.assign([TP])
        end = consumer.end_offsets([TP])[TP]
        out = []
        while consumer.position(TP) < end:
            out.extend((r.offset, r.key, r.value) for r in consumer.poll(timeout_ms=2000))
        return out
    finally:
        consumer.close()


def run_transaction(log, txn_id: str, pairs, *, commit: bool) -> None:
    with log.producer(transactional_id=txn_id, linger_ms=0) as producer:
        producer.init_transactions()
        producer.begin_transaction()
        for key, value in pairs:
            producer.send("c", key=key, value=value, partition=0)
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()


def test_aborted_data_is_removed_and_committed_data_compacted(clog, kit):
    run_transaction(clog, "t1", [(b"a", b"1"), (b"b", b"1")], commit=True)
    run_transaction(clog, "t2", [(b"a", b"aborted"), (b"c", b"aborted")], commit=False)
    run_transaction(clog, "t3", [(b"a", b"2")], commit=True)
    kit.roll(clog)
    view = committed_view(clog)
    assert [(k, v) for _, k, v in view] == [(b"a", b"1"), (b"b", b"1"), (b"a", b"2")]
    clog.compact()
    data = [(k, v) for _, k, v in kit.stored(clog)]
    assert (b"a", b"aborted") not in data and (b"c", b"aborted") not in data
    assert (b"a", b"1") not in data
    assert committed_view(clog) == [e for e in view if (e[1], e[2]) != (b"a", b"1")]


def test_markers_go_after_their_horizon_once_their_transaction_is_empty(clog, kit, clock):
    clog.alter_topic_config("c", {"delete.retention.ms": "1000"})
    run_transaction(clog, "t1", [(b"a", b"1")], commit=True)
    run_transaction(clog, "t2", [(b"a", b"aborted")], commit=False)
    run_transaction(clog, "t3", [(b"a", b"2")], commit=True)
    kit.write(clog, [(b"z", b"plain")])
    kit.roll(clog)
    clog.compact()
    markers = [h for h, _ in kit.batches(clog) if h.is_control]
    assert len(markers) == 3 and all(h.has_delete_horizon for h in markers[:2])
    clock.advance(1001)
    result = clog.compact(force=True).partitions[0]
    markers = [h for h, _ in kit.batches(clog) if h.is_control]
    # t1's and t2's markers end transactions with nothing left; t3's data (a=2) is current.
    assert result.markers_removed == 2
    assert len(markers) == 1
    assert clog.partition_log("c", 0).aborted_transactions(0) == []
    assert [(k, v) for _, k, v in committed_view(clog)] == [(b"a", b"2"), (b"z", b"plain")]


def test_an_open_transaction_is_never_cleaned(clog, kit):
    kit.write(clog, [(b"a", b"1")])
    kit.roll(clog)
    producer = clog.producer(transactional_id="open", linger_ms=0)
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send("c", key=b"a", value=b"2", partition=0)
        producer.flush()
        kit.roll(clog)
        kit.write(clog, [(b"a", b"3")])
        kit.roll(clog)
        clog.compact(force=True)
        # Nothing at or after the last stable offset (the open transaction's first offset) moved.
        assert [(o, v) for o, _, v in kit.stored(clog)] == [(0, b"1"), (1, b"2"), (2, b"3")]
        producer.commit_transaction()
    finally:
        producer.close()
    kit.roll(clog)
    clog.compact()
    assert [(o, v) for o, _, v in kit.stored(clog)] == [(2, b"3")]


def test_the_last_batch_of_an_idempotent_producer_is_kept_empty(clog, kit, tmp_path):
    with clog.producer(linger_ms=0) as producer:
        for i in range(5):
            producer.send("c", key=b"a", value=b"%d" % i, partition=0).result(10)
    kit.write(clog, [(b"a", b"plain")])  # supersedes every record the producer wrote
    kit.roll(clog)
    plog = clog.partition_log("c", 0)
    (entry,) = plog.producer_states().values()
    clog.compact()
    kept = {h.base_offset: h for h, _ in kit.batches(clog)}
    assert [(o, v) for o, _, v in kit.stored(clog)] == [(5, b"plain")]
    last = kept[entry.batches[-1].first_offset]
    assert last.record_count == 0
    assert (last.producer_id, last.base_sequence) == (entry.producer_id, 4)
    # The producer state is intact after a reopen: a retry of the producer's last batch is
    # still recognised as a duplicate and answered with its original offset.
    path, url = clog.path, clog.metadata_url
    clog.close()
    reopened = logstore.open(path, metadata_url=url, maintenance_interval_ms=None)
    try:
        (again,) = reopened.partition_log("c", 0).producer_states().values()
        assert again.last_sequence == entry.last_sequence
        retry = encode_batch([(0, b"a", b"4", ())], producer_id=entry.producer_id,
                             producer_epoch=entry.epoch, base_sequence=4)
        result = reopened.append("c", 0, retry)
        assert result.base_offset == last.base_offset
        assert reopened.partition_log("c", 0).log_end_offset() == 6
    finally:
        reopened.close()


def test_markers_go_without_force_once_their_delete_horizon_passes(clog, kit, clock):
    clog.alter_topic_config("c", {"delete.retention.ms": "1000"})
    run_transaction(clog, "t1", [(b"a", b"1")], commit=True)
    run_transaction(clog, "t2", [(b"a", b"aborted")], commit=False)
    run_transaction(clog, "t3", [(b"a", b"2")], commit=True)
    kit.write(clog, [(b"z", b"plain")])
    kit.roll(clog)
    first = clog.compact().partitions[0]
    assert first.delete_horizon_ms == clock.time_ms() + 1000
    clock.advance(999)
    assert clog.compact().partitions[0].status is CompactionStatus.CLEAN
    assert len([h for h, _ in kit.batches(clog) if h.is_control]) == 3
    clock.advance(1)
    result = clog.compact().partitions[0]
    assert (result.status, result.due) == (CompactionStatus.CLEANED, DueReason.DELETE_HORIZON)
    assert result.markers_removed == 2
    # t3's marker stays while its transaction has data (a=2): it is no reason to clean again.
    assert result.delete_horizon_ms is None
    clock.advance(60_000)
    assert clog.compact().partitions[0].status is CompactionStatus.CLEAN
    assert [(k, v) for _, k, v in committed_view(clog)] == [(b"a", b"2"), (b"z", b"plain")]


def test_a_marker_kept_as_the_end_of_the_range_does_not_reschedule_cleaning(clog, kit, clock):
    clog.alter_topic_config("c", {"delete.retention.ms": "1000"})
    run_transaction(clog, "t1", [(b"a", b"1")], commit=True)
    run_transaction(clog, "t2", [(b"a", b"aborted")], commit=False)  # its marker ends the range
    kit.roll(clog)
    clog.compact()
    clock.advance(1000)
    result = clog.compact().partitions[0]
    assert (result.status, result.due) == (CompactionStatus.CLEANED, DueReason.DELETE_HORIZON)
    # t1's marker stays for its data (a=1); t2's, with nothing left, because it ends the range.
    first, last = [h for h, _ in kit.batches(clog) if h.is_control]
    assert not first.has_delete_horizon and last.has_delete_horizon
    assert last.last_offset == clog.partition_log("c", 0).log_end_offset() - 1
    # Its horizon has passed but cleaning cannot remove it: it must not make the partition due.
    assert result.delete_horizon_ms is None
    clock.advance(1000)
    assert clog.compact().partitions[0].status is CompactionStatus.CLEAN
