"""Tiered storage through the embedded API, with a memory object store and a manual clock:
copying, local and total retention, reads across the local/remote boundary (bytes identical to
local reads), read_committed and timestamps from remote segments, upload faults, abandoned
copies, the orphan cleaner, and logs opened without an object store."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest
from logstore.backends.manifest_records import COPY_FINISHED

import logstore
from logstore.errors import (
    ObjectStoreAccessError,
    ObjectStoreError,
    OffsetOutOfRangeError,
    RemoteStorageError,
)
from logstore.tier.keys import object_key, parse_object_key

TIERED = {"remote.storage.enable": "true", "segment.bytes": "4096", "local.retention.bytes": "0"}
T0 = 1_700_000_000_000


def _fetch_all(log: logstore.Log, topic: str, end: int, max_bytes: int) -> list[bytes]:
    return [log.fetch(topic, 0, offset, max_bytes=max_bytes).records
            for offset in range(0, end, 37)]


def _objects(store) -> list[str]:
    return sorted(info.key for info in store.list(""))


# --- copying and reading back ------------------------------------------------------------------


def test_tiered_reads_return_the_bytes_a_local_read_returned(kit, read_all):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 3000)
    records = read_all(log, "t")
    local = {size: _fetch_all(log, "t", 3000, size) for size in (1, 2000, 9000, 1 << 20)}

    report = log.tier()

    plog = log.partition_log("t", 0)
    assert report.segments_copied >= 10 and not report.failed
    assert plog.first_local_offset() > 2500  # only the active segment is left locally
    assert len(plog.segment_bases()) == 1
    for size, expected in local.items():
        assert _fetch_all(log, "t", 3000, size) == expected
    assert read_all(log, "t") == records
    assert [r[0] for r in records] == list(range(3000))
    # A new Log (cold caches) reads the same.
    log.close()
    again = kit.open()
    assert read_all(again, "t") == records
    assert _fetch_all(again, "t", 3000, 9000) == local[9000]


def test_objects_follow_the_key_scheme_and_the_manifest(kit):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1500)
    log.tier()
    rows = log.metadata.remote_segments(states=[COPY_FINISHED])
    assert _objects(kit.store) == sorted(r.object_key for r in rows)
    for previous, row in pairwise(rows):
        assert row.base_offset == previous.next_offset  # contiguous, no overlap
    for row in rows:
        key = parse_object_key(row.object_key)
        assert key is not None and (key.topic, key.partition) == ("t", 0)
        assert (key.base_offset, key.last_offset, key.segment_id) == (
            row.base_offset, row.last_offset, row.segment_id)
        assert row.object_key == object_key("t", 0, row.base_offset, row.last_offset,
                                            row.segment_id)
        assert kit.store.head(row.object_key).size_bytes == row.size_bytes
    assert rows[0].base_offset == 0
    assert rows[-1].next_offset == log.partition_log("t", 0).first_local_offset()


def test_a_second_pass_copies_only_new_segments(kit):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1000)
    first = log.tier().segments_copied
    assert log.tier().segments_copied == 0
    kit.produce(log, "t", 1000, start=1000)
    second = log.tier()
    assert first > 0 and second.segments_copied > 0
    assert kit.store.stats().puts == first + second.segments_copied


def test_topics_without_remote_storage_are_not_tiered(kit):
    log = kit.open()
    log.create_topic("plain", 1, {"segment.bytes": "4096"})
    kit.produce(log, "plain", 1000)
    assert log.tier().partitions == ()
    assert _objects(kit.store) == []


def test_segments_with_an_open_transaction_wait_until_it_ends(kit, read_all):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    txn = log.producer(transactional_id="tx", linger_ms=0)
    txn.init_transactions()
    txn.begin_transaction()
    txn.send("t", value=b"open", partition=0)
    txn.flush()
    kit.produce(log, "t", 800, start=1)
    assert log.tier().segments_copied == 0  # every sealed segment is above the LSO
    txn.commit_transaction()
    kit.produce(log, "t", 400, start=801)
    assert log.tier().segments_copied > 0
    txn.close()
    assert [r[2] for r in read_all(log, "t", isolation_level="read_committed")][:2] == [
        b"open", b"v000001"]


def test_read_committed_drops_aborted_data_from_remote_segments(kit, read_all):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    txn = log.producer(transactional_id="tx", linger_ms=0, batch_size=600)
    txn.init_transactions()
    expected = []
    for round_ in range(6):
        txn.begin_transaction()
        for i in range(60):
            txn.send("t", value=b"r%d-%d" % (round_, i), partition=0)
        if round_ % 2:
            txn.abort_transaction()
        else:
            txn.commit_transaction()
            expected += [b"r%d-%d" % (round_, i) for i in range(60)]
    txn.close()
    kit.produce(log, "t", 300, start=10_000)  # roll past the markers
    before = read_all(log, "t", isolation_level="read_committed")
    assert log.tier().segments_copied > 0
    assert log.partition_log("t", 0).first_local_offset() > 400
    after = read_all(log, "t", isolation_level="read_committed")
    assert after == before
    assert [r[2] for r in after][:len(expected)] == expected
    assert any(r.aborted_count for r in log.metadata.remote_segments())


def test_offsets_for_times_search_remote_segments(kit):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 2000)
    log.tier()
    plog = log.partition_log("t", 0)
    assert plog.first_local_offset() > 1000
    for offset in (0, 5, 777, 1500, 1999):
        found = plog.offset_for_timestamp(T0 + offset)
        assert found is not None and (found.offset, found.timestamp_ms) == (offset, T0 + offset)
    assert plog.offset_for_timestamp(T0 + 5000) is None


def test_an_offset_by_time_is_found_when_local_copies_go_away_mid_search(kit, monkeypatch):
    """The segment listing the search starts from is stale (tiering dropped local copies in
    another process): it looks again instead of skipping the segments that moved."""
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 2000)
    plog = log.partition_log("t", 0)
    stale_bases = list(plog.segment_bases())
    log.tier()
    segments = plog._segments
    assert segments.first_base() > 1000
    stale = [stale_bases]
    real_bases = segments.bases
    monkeypatch.setattr(segments, "bases", lambda: stale.pop() if stale else real_bases())
    found = plog.offset_for_timestamp(T0 + 777)
    assert found is not None and (found.offset, found.timestamp_ms) == (777, T0 + 777)
    assert not stale


def test_sequential_remote_reads_prefetch_the_next_chunk(kit, read_all):
    log = kit.open()
    log.create_topic("t", 1, {**TIERED, "segment.bytes": str(3_500_000)})
    producer = log.producer(linger_ms=0, batch_size=16_384)
    for i in range(4000):
        producer.send("t", value=bytes(1000) + b"%d" % i, partition=0)
    producer.close()
    assert log.tier().segments_copied == 1
    log.close()
    reader = kit.open(remote_cache_bytes=3 << 20)
    storage = reader._tiered.storage
    offset = 0
    while offset < 3000:
        fetched = reader.fetch("t", 0, offset, max_bytes=32_768)
        offset = fetched.high_watermark if not fetched.records else offset + 1
        offset = max(offset, _last_offset(fetched.records) + 1)
    stats = storage.cache.stats()
    assert stats.prefetches > 0
    assert stats.hits > stats.misses
    assert stats.held_bytes <= 3 << 20


def _last_offset(records: bytes) -> int:
    from logstore.records.reader import iter_records

    last = -1
    for header, _ in iter_records(records, allow_partial_tail=False):
        last = header.last_offset
    return last


# --- retention ---------------------------------------------------------------------------------


def test_a_read_whose_segment_list_moves_on_mid_read_goes_remote_not_past_the_gap(
        kit, monkeypatch):
    """Another process tiers and drops local copies between the reader's look at the first
    local segment and its choice of segment: the read must go to the remote copy, not skip to
    the first local segment left (a gap a reader in another process once saw)."""
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 3000)
    first_batch = log.fetch("t", 0, 0, max_bytes=1).records
    assert log.tier().segments_copied >= 10
    segments = log.partition_log("t", 0)._segments
    assert segments.first_base() > 2500
    stale = [0]  # the first local offset as this reader saw it before the tiering
    real_first_base = segments.first_base
    monkeypatch.setattr(segments, "first_base",
                        lambda: stale.pop() if stale else real_first_base())
    assert log.fetch("t", 0, 0, max_bytes=1).records == first_batch
    assert not stale


def test_local_retention_never_drops_untiered_segments(kit):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1500)
    plog = log.partition_log("t", 0)
    segments = len(plog.segment_bases())
    log.run_maintenance()  # retention runs, but nothing is tiered yet
    assert len(plog.segment_bases()) == segments > 3
    assert plog.log_start_offset == 0


def test_local_retention_by_time_keeps_recent_local_copies(kit):
    log = kit.open()
    log.create_topic("t", 1, {**TIERED, "local.retention.bytes": "-2",
                              "local.retention.ms": "1000"})
    kit.produce(log, "t", 1500)  # timestamps T0 .. T0 + 1499
    plog = log.partition_log("t", 0)
    segments = len(plog.segment_bases())
    # segments whose newest record is before T0 + 700 expire
    kit.clock.advance(T0 + 1000 + 700 - kit.clock.time_ms())
    log.tier()
    assert 1 < len(plog.segment_bases()) < segments
    assert 600 <= plog.first_local_offset() <= 760
    assert plog.log_start_offset == 0


def test_total_retention_deletes_remote_segments(kit, read_all):
    log = kit.open()
    log.create_topic("t", 1, {**TIERED, "retention.bytes": "20000"})
    kit.produce(log, "t", 3000)
    log.tier()
    remote_before = log.metadata.remote_segments()
    report = log.run_maintenance("t")[0]
    plog = log.partition_log("t", 0)
    remote_after = log.metadata.remote_segments()
    assert report.segments_deleted > 0 and plog.log_start_offset > 0
    assert len(remote_after) < len(remote_before)
    assert all(r.next_offset > plog.log_start_offset for r in remote_after)
    assert _objects(kit.store) == sorted(r.object_key for r in remote_after)
    assert sum(r.size_bytes for r in remote_after) + plog.describe().size_bytes <= 20000 + 4096
    with pytest.raises(OffsetOutOfRangeError):
        log.fetch("t", 0, plog.log_start_offset - 1)
    records = read_all(log, "t")
    assert records[0][0] == plog.log_start_offset
    assert [r[0] for r in records] == list(range(plog.log_start_offset, 3000))


def test_total_retention_by_time_spans_remote_and_local(kit):
    log = kit.open()
    log.create_topic("t", 1, {**TIERED, "retention.ms": "10000"})
    kit.produce(log, "t", 2000)
    log.tier()
    # records older than T0 + 1000 expire
    kit.clock.advance(T0 + 10_000 + 1000 - kit.clock.time_ms())
    log.run_maintenance("t")
    plog = log.partition_log("t", 0)
    assert 700 <= plog.log_start_offset <= 1001
    assert min(r.base_offset for r in log.metadata.remote_segments()) <= plog.log_start_offset
    assert log.fetch("t", 0, plog.log_start_offset).records


def test_delete_records_then_retention_removes_remote_segments_below(kit):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 2000)
    log.tier()
    log.delete_records({("t", 0): 1200})
    log.run_maintenance("t")
    remote = log.metadata.remote_segments()
    assert all(r.next_offset > 1200 for r in remote)
    assert log.fetch("t", 0, 1200).records


# --- faults ------------------------------------------------------------------------------------


def test_upload_errors_are_retried_without_loss(kit, read_all, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)  # the tierer's backoff
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 2000)
    records = read_all(log, "t")
    kit.store.fail_randomly(0.3, seed=5, ops={"put"})
    kit.store.fail_next("put", error=ObjectStoreError("response lost"), after=True)
    report = log.tier()
    kit.store.clear_faults()
    assert kit.store.stats().failures["put"] >= 2
    assert not report.failed and report.segments_copied > 5
    assert read_all(log, "t") == records
    assert log.partition_log("t", 0).first_local_offset() > 1500
    rows = log.metadata.remote_segments()
    assert {r.state for r in rows} == {COPY_FINISHED}
    assert _objects(kit.store) == sorted(r.object_key for r in rows)


def test_a_copy_that_fails_for_good_is_abandoned_and_retried_next_pass(kit, read_all):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1000)
    kit.store.fail_next("put", error=ObjectStoreAccessError("access denied"))
    report = log.tier()
    assert [p.status for p in report.partitions] == ["failed"]
    assert "access denied" in report.partitions[0].error
    assert log.metadata.remote_segments() == [] and _objects(kit.store) == []
    assert len(log.partition_log("t", 0).segment_bases()) > 1  # nothing local was dropped
    assert log.tier().segments_copied > 0
    assert [r[0] for r in read_all(log, "t")] == list(range(1000))


def test_reads_survive_slow_and_failing_gets(kit, read_all):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1000)
    records = read_all(log, "t")
    log.tier()
    log.close()
    reader = kit.open()
    kit.store.fail_next("get", error=ObjectStoreError("timeout"))
    with pytest.raises(ObjectStoreError):
        reader.fetch("t", 0, 0)
    assert read_all(reader, "t") == records  # the next read succeeds


def test_busy_partitions_are_skipped(kit):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1000)
    topic_id = log.metadata.get_topic("t").topic_id
    held = log.metadata.acquire_lease(f"tierer/{topic_id}/0", "someone-else",
                                      now_ms=kit.clock.time_ms(), duration_ms=60_000)
    assert held is not None
    assert [p.status for p in log.tier().partitions] == ["busy"]
    kit.clock.advance(60_001)
    assert [p.status for p in log.tier().partitions] == ["tiered"]


# --- orphans -----------------------------------------------------------------------------------


def test_the_orphan_cleaner_removes_debris_older_than_the_grace_period(kit):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1000)
    log.tier()
    live = _objects(kit.store)
    stray = object_key("t", 0, 5, 9, "ab" * 16)
    kit.store.put(stray, b"junk")
    kit.store.fail_next("put", leave_incomplete_upload=True)
    with pytest.raises(ObjectStoreError):
        kit.store.put(object_key("t", 0, 10, 19, "cd" * 16), b"partial")
    young = log.clean_remote_orphans(grace_ms=60_000, dry_run=False)
    assert young.total == 0 and stray in _objects(kit.store)
    kit.clock.advance(60_001)
    dry = log.clean_remote_orphans(grace_ms=60_000, dry_run=True)
    assert dry.orphan_objects == (stray,) and dry.incomplete_uploads == 1
    assert stray in _objects(kit.store)
    done = log.clean_remote_orphans(grace_ms=60_000)
    assert done.orphan_objects == (stray,) and done.incomplete_uploads == 1
    assert _objects(kit.store) == live
    assert list(kit.store.list_incomplete_uploads("")) == []


def test_a_copy_whose_cleanup_failed_is_finished_by_the_orphan_cleaner(kit, read_all):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1000)
    records = read_all(log, "t")
    # The finish fails after the upload, and so does the abandon step's object delete
    # (a kill -9 at that point is tests/fault/test_tier_crash.py's case).
    real_finish = log.metadata.finish_remote_copy
    real_delete = kit.store.delete

    def die(*args, **kwargs):
        raise ObjectStoreError("crash")

    log.metadata.finish_remote_copy = die  # type: ignore[method-assign]
    kit.store.delete = die  # type: ignore[method-assign]
    assert [p.status for p in log.tier().partitions] == ["failed"]
    log.metadata.finish_remote_copy = real_finish  # type: ignore[method-assign]
    kit.store.delete = real_delete  # type: ignore[method-assign]
    rows = log.metadata.remote_segments()
    # The abandon step marked the row delete-started, then could not delete the object.
    assert [r.state for r in rows] == ["delete-started"]
    assert len(_objects(kit.store)) == 1
    assert log.tier().segments_copied > 0  # the stale row does not block the copy
    assert read_all(log, "t") == records
    kit.clock.advance(3_600_001)
    report = log.clean_remote_orphans()
    assert report.total == 1
    rows = log.metadata.remote_segments()
    assert {r.state for r in rows} == {COPY_FINISHED}
    assert _objects(kit.store) == sorted(r.object_key for r in rows)
    assert read_all(log, "t") == records


def test_deleted_topics_leave_objects_the_cleaner_removes(kit):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1000)
    log.tier()
    assert _objects(kit.store)
    log.delete_topic("t")
    assert log.metadata.remote_segments() == []
    log.create_topic("t", 1, TIERED)  # a new incarnation starts with an empty manifest
    assert log.tier_status("t")[0].remote_objects == 0
    kit.clock.advance(3_600_001)
    assert len(log.clean_remote_orphans().orphan_objects) > 0
    assert _objects(kit.store) == []


# --- without an object store ---------------------------------------------------------------------


def test_a_log_without_an_object_store_says_where_the_data_is(kit):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1000)
    log.tier()
    log.close()
    local_only = kit.open(object_store=None)
    plog = local_only.partition_log("t", 0)
    with pytest.raises(RemoteStorageError, match="object store"):
        local_only.fetch("t", 0, 0)
    assert local_only.fetch("t", 0, plog.first_local_offset()).records
    segments = plog.segment_bases()
    local_only.run_maintenance()  # cannot decide total retention without the store: keeps all
    assert plog.segment_bases() == segments
    with pytest.raises(RemoteStorageError):
        local_only.tier()
    status = local_only.tier_status("t")[0]
    assert status.remote_objects > 0 and status.remote_end_offset == plog.first_local_offset()


def test_an_unusable_object_store_fails_at_open(tmp_path):
    with pytest.raises(ObjectStoreAccessError):
        logstore.open(tmp_path / "d", object_store_url=f"file://{tmp_path}/no-such-dir")


def test_remote_storage_config_is_validated(kit):
    log = kit.open()
    with pytest.raises(logstore.errors.InvalidConfigurationError):
        log.create_topic("t", 1, {"remote.storage.enable": "maybe"})
    with pytest.raises(logstore.errors.InvalidConfigurationError):
        log.create_topic("t", 1, {"local.retention.ms": "-3"})
    described = log.create_topic("t", 1, {"remote.storage.enable": "true"})
    assert described.config["remote.storage.enable"] == "true"
    assert described.config["local.retention.bytes"] == "-2"


def test_background_thread_tiers_and_applies_local_retention(tmp_path, read_all):
    from logstore.backends.memory_store import MemoryObjectStore

    store = MemoryObjectStore()
    with logstore.open(tmp_path / "d", object_store=store, tier_interval_ms=50,
                       maintenance_interval_ms=None) as log:
        log.create_topic("t", 1, TIERED)
        producer = log.producer(linger_ms=0, batch_size=600)
        for i in range(1500):
            producer.send("t", value=b"v%06d" % i, partition=0)
        producer.flush()
        plog = log.partition_log("t", 0)
        deadline = time.monotonic() + 30  # waits for a real thread: polled, not timed
        while plog.first_local_offset() <= 1000 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert plog.first_local_offset() > 1000
        assert [r[2] for r in read_all(log, "t")] == [b"v%06d" % i for i in range(1500)]


def test_dump_names_the_remote_segment_of_tiered_batches(kit):
    from logstore.log.dump import iter_batches

    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1000)
    log.tier()
    plog = log.partition_log("t", 0)
    remote = {r.base_offset: r.next_offset for r in log.metadata.remote_segments()}
    infos = list(iter_batches(plog))
    assert infos[0].base_offset == 0 and infos[-1].last_offset == 999
    for info in infos:
        if info.base_offset < plog.first_local_offset():
            assert info.segment in remote and info.base_offset < remote[info.segment]
        else:
            assert info.segment == plog.first_local_offset()


def test_remote_storage_cannot_be_turned_off_once_on(kit):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    log.alter_topic_config("t", {"local.retention.ms": "1000"})  # other changes are fine
    for change in ({"remote.storage.enable": "false"}, {"remote.storage.enable": None}):
        with pytest.raises(logstore.errors.InvalidConfigurationError, match="cannot be turned"):
            log.alter_topic_config("t", change)
    assert log.describe_topic("t").config["remote.storage.enable"] == "true"
    log.create_topic("u", 1, {})
    log.alter_topic_config("u", {"remote.storage.enable": "true"})  # turning it on is fine


def test_an_idle_pass_takes_no_lease(kit):
    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1000)
    log.tier()
    topic_id = log.metadata.get_topic("t").topic_id
    epoch = log.metadata.read_lease(f"tierer/{topic_id}/0")  # released: None
    calls = []
    real = log.metadata.acquire_lease
    log.metadata.acquire_lease = lambda *a, **k: calls.append(a) or real(*a, **k)  # type: ignore[method-assign]
    assert [p.status for p in log.tier().partitions] == ["up-to-date"]
    assert calls == [] and epoch is None
    kit.produce(log, "t", 500, start=1000)
    assert [p.status for p in log.tier().partitions] == ["tiered"]
    assert len(calls) == 1


def test_a_segment_that_vanishes_before_its_copy_is_skipped_until_the_next_pass(kit, monkeypatch):
    from logstore.log.partition_log import PartitionLog

    log = kit.open()
    log.create_topic("t", 1, TIERED)
    kit.produce(log, "t", 1000)
    real = PartitionLog.export_segment

    def vanished(self, base):
        raise FileNotFoundError(base)

    monkeypatch.setattr(PartitionLog, "export_segment", vanished)
    assert [p.status for p in log.tier().partitions] == ["up-to-date"]
    assert log.metadata.remote_segments() == []
    monkeypatch.setattr(PartitionLog, "export_segment", real)
    assert log.tier().segments_copied > 0


@pytest.mark.parametrize("policy", ["compact", "compact,delete"])
def test_compacted_topics_are_not_tiered(kit, policy):
    """As in Kafka (KIP-405): the cleaner works on local segments only, so tiering a compacted
    topic would keep every old version of every key in the object store."""
    log = kit.open()
    with pytest.raises(logstore.errors.InvalidConfigurationError, match="compacted topics"):
        log.create_topic("t", 1, {"remote.storage.enable": "true", "cleanup.policy": policy})
    log.create_topic("c", 1, {"cleanup.policy": policy})
    with pytest.raises(logstore.errors.InvalidConfigurationError, match="compacted topics"):
        log.alter_topic_config("c", {"remote.storage.enable": "true"})
    log.create_topic("r", 1, TIERED)
    with pytest.raises(logstore.errors.InvalidConfigurationError, match="compacted topics"):
        log.alter_topic_config("r", {"cleanup.policy": policy})
    assert log.describe_topic("r").config["cleanup.policy"] == "delete"


def test_tiering_with_postgresql_metadata(kit, read_all, postgresql_url):
    log = kit.open(metadata_url=postgresql_url)
    log.create_topic("t", 2, {**TIERED, "retention.bytes": "30000"})
    for partition in (0, 1):
        kit.produce(log, "t", 1500, partition=partition)
    before = {p: read_all(log, "t", p) for p in (0, 1)}
    report = log.tier()
    assert len(report.partitions) == 2 and not report.failed
    assert all(p.segments_copied > 3 for p in report.partitions)
    log.close()
    again = kit.open(metadata_url=postgresql_url)
    assert {p: read_all(again, "t", p) for p in (0, 1)} == before
    again.run_maintenance("t")
    for status in again.tier_status("t"):
        assert status.log_start_offset > 0
        assert status.remote_start_offset is not None
        assert status.remote_start_offset <= status.log_start_offset
    rows = again.metadata.remote_segments()
    assert _objects(kit.store) == sorted(r.object_key for r in rows)
