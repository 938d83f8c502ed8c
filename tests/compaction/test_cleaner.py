"""The log cleaner end to end on an embedded log: what it keeps, removes and leaves alone."""

from __future__ import annotations

import pytest
from logstore.backends.cleaner_records import Lease
from logstore.compaction import CompactionStatus, DueReason
from logstore.compaction.job import lease_name

from logstore.errors import InvalidArgumentError, InvalidRecordError, UnknownTopicOrPartitionError
from logstore.records.builder import encode_batch
from logstore.records.compression import Compression
from logstore.types import TopicPartition


def keyed(n: int, keys: int, *, prefix: bytes = b"v") -> list[tuple[bytes, bytes]]:
    return [(b"k%d" % (i % keys), prefix + b"%d" % i) for i in range(n)]


def only(report):
    (partition,) = report.partitions
    return partition


def test_keeps_the_latest_record_of_every_key_at_its_offset(clog, kit):
    pairs = keyed(200, 7)
    kit.write(clog, pairs[:100])
    kit.roll(clog)
    kit.write(clog, pairs[100:])
    kit.roll(clog)
    before = kit.stored(clog)
    result = only(clog.compact())
    after = kit.stored(clog)
    assert result.status is CompactionStatus.CLEANED
    assert result.records_removed == 200 - 7
    assert result.checkpoint_offset == 200
    assert result.bytes_after < result.bytes_before
    # Exactly the last record of each key survives, with its original offset.
    last_offset = {key: offset for offset, key, _ in before}
    assert after == [e for e in before if last_offset[e[1]] == e[0]]
    assert kit.latest(after) == kit.latest(before)
    plog = clog.partition_log("c", 0)
    assert plog.log_end_offset() == 200  # offsets are never reassigned


def test_the_active_segment_is_never_cleaned(clog, kit):
    kit.write(clog, keyed(30, 3)[:20])
    kit.roll(clog)
    kit.write(clog, keyed(30, 3)[20:])  # stays in the active segment
    only(clog.compact())
    offsets = [offset for offset, _, _ in kit.stored(clog)]
    assert offsets == [17, 18, 19, *list(range(20, 30))]


def test_a_second_run_finds_nothing_due_and_changes_nothing(clog, kit):
    kit.write(clog, keyed(50, 5))
    kit.roll(clog)
    clog.compact()
    before = kit.stored(clog)
    result = only(clog.compact())
    assert result.status is CompactionStatus.CLEAN
    assert kit.stored(clog) == before


def test_tombstones_stay_for_delete_retention_then_disappear(clog, kit, clock):
    clog.alter_topic_config("c", {"delete.retention.ms": "60000"})
    kit.write(clog, [(b"a", b"1"), (b"b", b"1"), (b"a", None), (b"c", b"1")])
    kit.roll(clog)
    clog.compact()
    # The tombstone deleted a's value at once, and is itself still readable.
    assert kit.stored(clog) == [(1, b"b", b"1"), (2, b"a", None), (3, b"c", b"1")]
    (horizon_batch,) = [h for h, records in kit.batches(clog) if h.base_offset == 2]
    assert horizon_batch.has_delete_horizon
    assert horizon_batch.base_timestamp == clock.time_ms() + 60000
    clock.advance(59_999)
    clog.compact(force=True)
    assert (2, b"a", None) in kit.stored(clog)
    clock.advance(1)
    result = only(clog.compact(force=True))
    assert result.tombstones_removed == 1
    assert kit.stored(clog) == [(1, b"b", b"1"), (3, b"c", b"1")]


def test_record_timestamps_survive_the_delete_horizon_rewrite(clog, kit, clock):
    ts = clock.time_ms() - 5000
    kit.write(clog, [(b"a", b"1"), (b"a", None), (b"b", b"2")], timestamp_ms=ts, per_batch=3)
    kit.roll(clog)
    clog.compact()
    ((header, records),) = kit.batches(clog)
    assert header.has_delete_horizon
    assert [(r.offset, r.key, r.value, r.timestamp_ms) for r in records] == [
        (1, b"a", None, ts), (2, b"b", b"2", ts)]
    assert header.max_timestamp == ts


def test_min_compaction_lag_protects_young_segments(clog, kit, clock):
    clog.alter_topic_config("c", {"min.compaction.lag.ms": "10000"})
    kit.write(clog, keyed(20, 2))
    kit.roll(clog)
    result = only(clog.compact())
    assert result.status is CompactionStatus.CLEAN
    assert len(kit.stored(clog)) == 20
    clock.advance(10_001)
    result = only(clog.compact())
    assert result.status is CompactionStatus.CLEANED
    assert len(kit.stored(clog)) == 2


def test_dirty_ratio_threshold_and_max_compaction_lag(clog, kit, clock):
    clog.alter_topic_config("c", {"min.cleanable.dirty.ratio": "0.9"})
    kit.write(clog, keyed(40, 4))
    kit.roll(clog)
    clog.compact(force=True)
    kit.write(clog, keyed(4, 4, prefix=b"w"))  # a little new dirty data
    kit.roll(clog)
    result = only(clog.compact())
    assert result.status is CompactionStatus.NOT_DUE
    assert 0 < result.dirty_ratio < 0.9
    clog.alter_topic_config("c", {"max.compaction.lag.ms": "1000"})
    clock.advance(1001)
    result = only(clog.compact())
    assert result.status is CompactionStatus.CLEANED
    assert {v for _, _, v in kit.stored(clog)} == {b"w0", b"w1", b"w2", b"w3"}


def test_dry_run_reports_without_writing(clog, kit):
    kit.write(clog, keyed(60, 6))
    kit.roll(clog)
    before = kit.stored(clog)
    result = only(clog.compact(dry_run=True))
    assert result.status is CompactionStatus.DRY_RUN
    assert result.records_removed == 54
    assert kit.stored(clog) == before
    assert clog.metadata.cleaner_checkpoints(clog.describe_topic("c").topic_id) == {}


def test_a_small_offset_map_cleans_in_several_rounds(clog, kit):
    pairs = [(b"k%d" % i, b"v%d" % i) for i in range(300)] * 2
    kit.write(clog, pairs, per_batch=10)
    kit.roll(clog)
    before = kit.stored(clog)
    result = only(clog.compact(memory_bytes=24 * 256))
    assert result.rounds > 1
    after = kit.stored(clog)
    assert kit.latest(after) == kit.latest(before)
    assert [o for o, _, _ in after] == list(range(300, 600))


def test_an_offset_map_smaller_than_one_batch_is_a_clear_error(clog, kit):
    kit.write(clog, [(b"k%d" % i, b"v") for i in range(500)], per_batch=500)
    kit.roll(clog)
    with pytest.raises(InvalidArgumentError, match="more memory"):
        clog.compact(memory_bytes=24 * 64)
    assert len(kit.stored(clog)) == 500


def test_compressed_batches_keep_their_codec_and_offsets(clog, kit):
    for codec in (Compression.GZIP, Compression.ZSTD, Compression.LZ4, Compression.SNAPPY):
        kit.write(clog, keyed(30, 3), per_batch=10, compression=codec)
    kit.roll(clog)
    clog.compact()
    stored = kit.batches(clog)
    assert [(r.offset, r.key) for _, records in stored for r in records] == [
        (117, b"k0"), (118, b"k1"), (119, b"k2")]
    ((header, _),) = stored
    assert header.compression == Compression.SNAPPY
    assert (header.base_offset, header.last_offset) == (110, 119)  # the batch keeps its range


def test_many_small_segments_are_merged(clog, kit):
    for i in range(12):
        kit.write(clog, keyed(10, 3, prefix=b"s%d-" % i))
        kit.roll(clog)
    plog = clog.partition_log("c", 0)
    assert len(plog.segment_bases()) == 13
    result = only(clog.compact())
    assert result.segments_merged >= 11
    assert len(plog.segment_bases()) == 2  # one cleaned segment + the active one
    assert [o for o, _, _ in kit.stored(clog)] == [117, 118, 119]


def test_retention_still_works_after_merges(clog, kit, clock):
    clog.alter_topic_config("c", {"cleanup.policy": "compact,delete", "retention.ms": "1000"})
    for i in range(5):
        kit.write(clog, keyed(10, 10, prefix=b"s%d-" % i))
        kit.roll(clog)
    clog.compact()
    clock.advance(2000)
    kit.write(clog, [(b"new", b"1")])
    kit.roll(clog)
    clog.run_maintenance("c")
    assert kit.stored(clog) == [(50, b"new", b"1")]


def test_keyless_records_are_refused_by_a_compacted_topic(clog):
    with pytest.raises(InvalidRecordError):
        clog.append("c", 0, encode_batch([(0, None, b"v", ())]))


def test_keyless_records_from_before_the_switch_are_removed(clog, kit):
    clog.create_topic("d", partitions=1)
    kit.write(clog, [(None, b"x"), (b"a", b"1")], topic="d")  # type: ignore[list-item]
    kit.roll(clog, topic="d")
    clog.alter_topic_config("d", {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0"})
    clog.compact("d")
    assert kit.stored(clog, topic="d") == [(1, b"a", b"1")]


def test_another_compactor_holding_the_lease_makes_the_partition_busy(clog, kit, clock):
    kit.write(clog, keyed(20, 2))
    kit.roll(clog)
    topic_id = clog.describe_topic("c").topic_id
    held = clog.metadata.acquire_lease(lease_name(topic_id, 0), "someone-else",
                                       now_ms=clock.time_ms(), duration_ms=60_000)
    assert isinstance(held, Lease)
    assert only(clog.compact()).status is CompactionStatus.BUSY
    assert len(kit.stored(clog)) == 20
    clock.advance(60_001)  # the other compactor died: its lease expires
    assert only(clog.compact()).status is CompactionStatus.CLEANED
    assert len(kit.stored(clog)) == 2


def test_checkpoint_is_recorded_per_partition(clog, kit):
    kit.write(clog, keyed(20, 2))
    kit.roll(clog)
    clog.compact()
    topic_id = clog.describe_topic("c").topic_id
    assert clog.metadata.cleaner_checkpoints(topic_id)[0].offset == 20


def test_bad_targets_are_refused(clog):
    clog.create_topic("plain", partitions=1)
    with pytest.raises(InvalidArgumentError, match="not compacted"):
        clog.compact("plain")
    with pytest.raises(InvalidArgumentError, match="needs a topic"):
        clog.compact(partition=0)
    with pytest.raises(UnknownTopicOrPartitionError):
        clog.compact("c", 3)
    with pytest.raises(UnknownTopicOrPartitionError):
        clog.compact("missing")
    # Without a topic, non-compacted topics are simply not looked at.
    assert [p.topic for p in clog.compact().partitions] == ["c"]


def test_a_consumer_can_reach_the_end_when_the_last_record_was_cleaned_away(clog, kit, clock):
    clog.alter_topic_config("c", {"delete.retention.ms": "0"})
    kit.write(clog, [(b"a", b"1"), (b"b", b"1"), (b"a", None)])
    kit.roll(clog)  # the active segment is empty: nothing follows the tombstone
    clog.compact()
    clock.advance(1)
    clog.compact(force=True)
    assert kit.stored(clog) == [(1, b"b", b"1")]
    tp = TopicPartition("c", 0)
    consumer = clog.consumer(auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        consumer.assign([tp])
        records = consumer.poll(timeout_ms=1000)
        assert [(r.offset, r.value) for r in records] == [(1, b"1")]
        consumer.poll(timeout_ms=100)
        # The tombstone's batch stays, emptied, so the position moves past its offset.
        assert consumer.position(tp) == 3 == consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


def test_a_long_run_renews_its_lease_so_nobody_takes_the_partition_over(clog, kit, clock):
    # Segments of three batches, each its own group; every batch read takes 10 s of "time",
    # so the run lasts several lease durations (60 s) and must renew between segments.
    clog.alter_topic_config("c", {"segment.bytes": "150"})
    for i in range(12):
        kit.write(clog, keyed(3, 3, prefix=b"s%d-" % i))
        kit.roll(clog)
    name = lease_name(clog.describe_topic("c").topic_id, 0)
    takeovers = []

    def slow(done: int, total: int) -> None:
        clock.advance(10_000)
        takeovers.append(clog.metadata.acquire_lease(name, "intruder", now_ms=clock.time_ms(),
                                                     duration_ms=60_000))

    result = only(clog.compact(progress=slow))
    assert len(takeovers) > 12  # the run outlasted its lease several times over
    assert takeovers == [None] * len(takeovers)
    assert result.status is CompactionStatus.CLEANED
    assert [v for _, _, v in kit.stored(clog)] == [b"s11-0", b"s11-1", b"s11-2"]


# --- cleaning scheduled by a passed delete horizon ------------------------------------------


def test_expired_tombstones_go_without_force_once_their_delete_horizon_passes(clog, kit, clock):
    clog.alter_topic_config("c", {"delete.retention.ms": "60000"})
    kit.write(clog, [(b"a", b"1"), (b"b", b"1"), (b"a", None), (b"c", b"1"), (b"d", b"1"),
                     (b"d", None)])
    kit.write(clog, [(b"e", b"1")])
    kit.roll(clog)
    first = only(clog.compact())
    horizon = clock.time_ms() + 60_000
    assert (first.status, first.due) == (CompactionStatus.CLEANED, DueReason.DIRTY_RATIO)
    assert first.delete_horizon_ms == horizon
    topic_id = clog.describe_topic("c").topic_id
    assert clog.metadata.cleaner_checkpoints(topic_id)[0].delete_horizon_ms == horizon
    with_tombstones = kit.stored(clog)
    assert (2, b"a", None) in with_tombstones and (5, b"d", None) in with_tombstones

    # Nothing is written to the topic any more: before the horizon nothing is due.
    clock.advance(59_999)
    waiting = only(clog.compact())
    assert (waiting.status, waiting.due) == (CompactionStatus.CLEAN, None)
    assert "delete horizon passes in 1 ms" in waiting.reason
    assert kit.stored(clog) == with_tombstones

    clock.advance(1)
    done = only(clog.compact())
    assert (done.status, done.due) == (CompactionStatus.CLEANED, DueReason.DELETE_HORIZON)
    assert done.reason.startswith("delete horizon passed")
    assert done.tombstones_removed == 2
    assert kit.stored(clog) == [(1, b"b", b"1"), (3, b"c", b"1"), (6, b"e", b"1")]
    # No tombstone is left, so no horizon is recorded and nothing is due again.
    assert done.delete_horizon_ms is None
    assert clog.metadata.cleaner_checkpoints(topic_id)[0].delete_horizon_ms is None
    clock.advance(10 * 60_000)
    assert only(clog.compact()).status is CompactionStatus.CLEAN


def test_the_earliest_of_several_delete_horizons_is_recorded(clog, kit, clock):
    clog.alter_topic_config("c", {"delete.retention.ms": "60000"})
    kit.write(clog, [(b"a", b"1"), (b"a", None), (b"x", b"1")])
    kit.roll(clog)
    first_horizon = clock.time_ms() + 60_000
    clog.compact()
    clock.advance(30_000)
    kit.write(clog, [(b"b", b"1"), (b"b", None), (b"y", b"1")])
    kit.roll(clog)
    second_horizon = clock.time_ms() + 60_000
    assert only(clog.compact()).delete_horizon_ms == first_horizon

    clock.advance(30_000)  # the first horizon passed, the second not yet
    result = only(clog.compact())
    assert (result.due, result.tombstones_removed) == (DueReason.DELETE_HORIZON, 1)
    assert result.delete_horizon_ms == second_horizon
    assert [(k, v) for _, k, v in kit.stored(clog)] == [
        (b"x", b"1"), (b"b", None), (b"y", b"1")]
    clock.advance(30_000)
    result = only(clog.compact())
    assert (result.due, result.tombstones_removed) == (DueReason.DELETE_HORIZON, 1)
    assert [(k, v) for _, k, v in kit.stored(clog)] == [(b"x", b"1"), (b"y", b"1")]


def test_a_dry_run_reports_the_delete_horizon_reason_and_records_nothing(clog, kit, clock):
    clog.alter_topic_config("c", {"delete.retention.ms": "1000"})
    kit.write(clog, [(b"a", b"1"), (b"a", None), (b"x", b"1")])
    kit.roll(clog)
    clog.compact()
    topic_id = clog.describe_topic("c").topic_id
    recorded = clog.metadata.cleaner_checkpoints(topic_id)
    clock.advance(1000)
    dry = only(clog.compact(dry_run=True))
    assert (dry.status, dry.due, dry.tombstones_removed) == (
        CompactionStatus.DRY_RUN, DueReason.DELETE_HORIZON, 1)
    assert dry.to_dict()["due"] == "delete-horizon"
    assert clog.metadata.cleaner_checkpoints(topic_id) == recorded
    assert (1, b"a", None) in kit.stored(clog)
