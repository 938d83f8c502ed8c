"""PartitionLog: offsets, reads, rolls, validation, retention, delete-records, truncation."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from logstore.errors import (
    CorruptRecordError,
    InvalidRecordError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from logstore.log.partition_state import PartitionState
from logstore.log.segment import Segment, segment_file_name
from logstore.records.header import parse_header, validate_batch
from logstore.records.reader import decode_batch


def values_of(result) -> list[tuple[int, bytes | None]]:
    out = []
    for data in result.batches:
        _, records = decode_batch(data)
        out.extend((r.offset, r.value) for r in records)
    return out


def read_all(log) -> list[tuple[int, bytes | None]]:
    records: list[tuple[int, bytes | None]] = []
    offset = log.log_start_offset
    end = log.log_end_offset()
    while offset < end:
        result = log.read(offset, max_bytes=1 << 20)
        got = [r for r in values_of(result) if r[0] >= offset]
        assert got, f"no progress reading at {offset}"
        records.extend(got)
        offset = got[-1][0] + 1
    return records


def test_append_assigns_contiguous_offsets_and_reads_stored_bytes(partitions, batch):
    log = partitions.open()
    first = log.append(batch([b"a", b"b", b"c"]))
    second = log.append(batch([b"d"]))
    assert (first.base_offset, first.last_offset) == (0, 2)
    assert (second.base_offset, second.last_offset) == (3, 3)
    assert log.log_end_offset() == 4 == log.high_watermark
    result = log.read(0, max_bytes=1 << 20)
    assert [parse_header(b).base_offset for b in result.batches] == [0, 3]
    assert values_of(result) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
    for data in result.batches:  # stored bytes are valid batches with the assigned offsets
        validate_batch(data)
        assert parse_header(data).partition_leader_epoch == 0


def test_records_and_offsets_survive_reopen(partitions, batch):
    log = partitions.open()
    for i in range(5):
        log.append(batch([b"v%d" % i]))
    log.close()
    reopened = partitions.open()
    assert reopened.log_end_offset() == 5
    assert reopened.append(batch([b"next"])).base_offset == 5
    assert [v for _, v in read_all(reopened)] == [b"v0", b"v1", b"v2", b"v3", b"v4", b"next"]


def test_read_out_of_range_and_at_end(partitions, batch):
    log = partitions.open()
    log.append(batch([b"a", b"b"]))
    assert log.read(2, max_bytes=100).batches == []
    with pytest.raises(OffsetOutOfRangeError) as info:
        log.read(3, max_bytes=100)
    assert info.value.log_end_offset == 2
    log.delete_records(1)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(0, max_bytes=100)


def test_read_mid_batch_returns_the_whole_batch(partitions, batch):
    log = partitions.open()
    log.append(batch([b"a", b"b", b"c"]))
    result = log.read(1, max_bytes=1 << 20)
    assert len(result.batches) == 1
    assert parse_header(result.batches[0]).base_offset == 0


def test_max_bytes_returns_at_least_one_batch_then_stops(partitions, batch):
    log = partitions.open()
    sizes = [len(batch([b"x" * 100])) for _ in range(1)]
    for _ in range(10):
        log.append(batch([b"x" * 100]))
    one = log.read(0, max_bytes=1)
    assert len(one.batches) == 1
    three = log.read(0, max_bytes=sizes[0] * 3 + 5)
    assert len(three.batches) == 3
    assert three.size_bytes == sizes[0] * 3


def test_rolls_on_segment_bytes_and_reads_across_segments(partitions, batch):
    partitions.configure(segment_bytes=1000)
    log = partitions.open()
    for i in range(50):
        log.append(batch([b"%03d" % i + b"y" * 90]))
    bases = log.segment_bases()
    assert len(bases) > 5
    assert bases == sorted(bases) and bases[0] == 0
    assert [o for o, _ in read_all(log)] == list(range(50))
    # A read that spans several segments in one call
    many = log.read(0, max_bytes=1 << 20)
    assert [o for o, _ in values_of(many)] == list(range(50))
    description = log.describe()
    assert description.segment_count == len(bases)
    assert description.size_bytes == sum(len(b) for b in many.batches)


def test_a_batch_larger_than_segment_bytes_gets_its_own_segment(partitions, batch):
    partitions.configure(segment_bytes=100)
    log = partitions.open()
    log.append(batch([b"a"]))
    log.append(batch([b"b" * 500]))
    log.append(batch([b"c"]))
    assert log.segment_bases() == [0, 1, 2]
    assert [v for _, v in read_all(log)] == [b"a", b"b" * 500, b"c"]


def test_rolls_on_segment_ms(partitions, batch, clock):
    partitions.configure(segment_ms=60_000)
    log = partitions.open()
    log.append(batch([b"a"]))
    clock.advance(59_999)
    log.append(batch([b"b"]))
    assert log.segment_bases() == [0]
    clock.advance(1)
    log.append(batch([b"c"]))
    assert log.segment_bases() == [0, 2]


def test_explicit_roll_of_an_empty_segment_is_a_no_op(partitions, batch):
    log = partitions.open()
    log.roll()
    assert log.segment_bases() == [0]
    log.append(batch([b"a"]))
    log.roll()
    assert log.segment_bases() == [0, 1]
    assert log.append(batch([b"b"])).base_offset == 1


def test_invalid_batches_are_rejected_and_change_nothing(partitions, batch):
    partitions.configure(max_message_bytes=200)
    log = partitions.open()
    good = batch([b"a"])
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        log.append(bytes(corrupt))
    with pytest.raises(CorruptRecordError):
        log.append(good[:-3])
    with pytest.raises(InvalidRecordError):
        log.append(good + good)
    with pytest.raises(RecordTooLargeError):
        log.append(batch([b"x" * 300]))
    assert log.log_end_offset() == 0
    assert log.append(good).base_offset == 0


def test_log_append_time_stamps_batches(partitions, batch, clock):
    partitions.configure(message_timestamp_type="LogAppendTime")
    log = partitions.open()
    log.append(batch([b"a", b"b"], timestamp_ms=5))
    data = log.read(0, max_bytes=1 << 20).batches[0]
    header = validate_batch(data)  # CRC was rewritten
    assert header.timestamp_type == 1
    assert header.max_timestamp == clock.time_ms()
    _, records = decode_batch(data)
    assert {r.timestamp_ms for r in records} == {clock.time_ms()}


def test_concurrent_appends_share_commits(partitions, batch, monkeypatch):
    log = partitions.open()
    inserts = []
    original = Segment.insert

    def counting_insert(self, rows):
        inserts.append(len(rows))
        return original(self, rows)

    monkeypatch.setattr(Segment, "insert", counting_insert)
    results: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(100):
            r = log.append(batch([b"%d-%d" % (n, i)]))
            with lock:
                results.append(r.base_offset)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(800))
    assert sum(inserts) == 800
    assert len(inserts) < 800, "no commit carried more than one append"


def test_delete_records_advances_log_start_and_drops_whole_segments(partitions, batch):
    partitions.configure(segment_bytes=200)
    log = partitions.open()
    for i in range(20):
        log.append(batch([b"v%02d" % i + b"p" * 80]))
    before = log.segment_bases()
    assert log.delete_records(7) == 7
    assert log.log_start_offset == 7
    after = log.segment_bases()
    assert len(after) < len(before)
    assert after[0] <= 7
    with pytest.raises(OffsetOutOfRangeError):
        log.read(6, max_bytes=100)
    assert read_all(log)[0][0] == 7
    assert log.delete_records(3) == 7, "the log start offset never moves back"
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records(21)
    assert log.delete_records(-1) == 20
    assert log.read(20, max_bytes=100).batches == []


def test_retention_ms_deletes_old_sealed_segments_but_never_the_active_one(
    partitions, batch, clock
):
    partitions.configure(segment_bytes=200, retention_ms=1000)
    log = partitions.open()
    now = clock.time_ms()
    for _i in range(6):
        log.append(batch([b"old" + b"p" * 90], timestamp_ms=now - 5000))
    log.append(batch([b"new" + b"p" * 90], timestamp_ms=now))
    segments_before = log.segment_bases()
    report = log.enforce_retention()
    assert report.segments_deleted == len(segments_before) - 1
    assert log.segment_bases() == segments_before[-1:]
    assert log.log_start_offset == segments_before[-1]
    # Everything is old now, but the active segment stays.
    clock.advance(10_000)
    assert log.enforce_retention().segments_deleted == 0
    assert log.segment_bases() == segments_before[-1:]


def test_retention_bytes_keeps_the_newest_segments(partitions, batch):
    partitions.configure(segment_bytes=300, retention_bytes=600)
    log = partitions.open()
    for i in range(20):
        log.append(batch([b"%02d" % i + b"p" * 100]))
    log.enforce_retention()
    remaining = read_all(log)
    total = log.describe().size_bytes
    assert total >= 600 - 300 and total <= 600 + 300
    assert remaining[-1][0] == 19
    assert [o for o, _ in remaining] == list(range(remaining[0][0], 20))


def test_retention_ignored_unless_policy_deletes(partitions, batch, clock):
    partitions.configure(segment_bytes=200, retention_ms=-1)
    log = partitions.open()
    for _i in range(5):
        log.append(batch([b"p" * 100], timestamp_ms=0))
    assert log.enforce_retention().segments_deleted == 0


def test_truncate_within_the_active_segment(partitions, batch):
    log = partitions.open()
    for i in range(5):
        log.append(batch([b"v%d" % i]))
    log.truncate_to(3)
    assert log.log_end_offset() == 3
    assert log.append(batch([b"new"])).base_offset == 3
    assert [v for _, v in read_all(log)] == [b"v0", b"v1", b"v2", b"new"]


def test_truncate_across_segments_and_mid_batch(partitions, batch):
    partitions.configure(segment_bytes=200)
    log = partitions.open()
    for i in range(10):
        log.append(batch([b"a%d" % i + b"p" * 60, b"b%d" % i + b"p" * 60]))  # 2 per batch
    assert len(log.segment_bases()) > 3
    log.truncate_to(7)  # offset 7 is the second record of the batch at 6: the batch goes
    assert log.log_end_offset() == 6
    assert max(log.segment_bases()) <= 6
    assert log.append(batch([b"next"])).base_offset == 6
    assert [o for o, _ in read_all(log)] == list(range(7))


def test_truncate_below_log_start_restarts_the_log(partitions, batch):
    log = partitions.open()
    for i in range(5):
        log.append(batch([b"v%d" % i]))
    log.delete_records(4)
    log.truncate_to(2)
    assert log.log_start_offset == 2 and log.log_end_offset() == 2
    assert log.append(batch([b"x"])).base_offset == 2


def test_an_interrupted_truncation_is_finished_on_open(partitions, batch):
    log = partitions.open()
    for i in range(6):
        log.append(batch([b"v%d" % i]))
    log.close()
    # A crash right after the intent was recorded:
    state = PartitionState.open(partitions.directory)
    state.begin_truncation(2)
    state.close()
    reopened = partitions.open()
    assert reopened.log_end_offset() == 2
    assert reopened.append(batch([b"x"])).base_offset == 2


def test_a_crash_between_seal_and_successor_is_repaired(partitions, batch):
    log = partitions.open()
    log.append(batch([b"a", b"b"]))
    log.close()
    segment = Segment.open(partitions.directory / segment_file_name(0))
    with segment.write_transaction():
        segment.seal(2)
    segment.close()
    reopened = partitions.open()
    assert reopened.log_end_offset() == 2
    assert reopened.append(batch([b"c"])).base_offset == 2
    assert reopened.segment_bases() == [0, 2]
    assert [v for _, v in read_all(reopened)] == [b"a", b"b", b"c"]


def test_stale_temporary_files_are_removed_on_open(partitions):
    partitions.open().close()
    stale = partitions.directory / f".{segment_file_name(5)}.tmp-{2**22 + 12345}-1"
    stale.write_bytes(b"half a segment")
    ours = partitions.directory / f".{segment_file_name(6)}.tmp-{os.getpid()}-1"
    ours.write_bytes(b"being created")
    partitions.open()
    assert not stale.exists()
    assert ours.exists(), "a live process's temporary file must be left alone"


def test_offset_for_timestamp(partitions, batch):
    partitions.configure(segment_bytes=300)
    log = partitions.open()
    for i in range(10):
        log.append(batch([b"%d" % i + b"p" * 100], timestamp_ms=1000 + 10 * i))
    assert log.offset_for_timestamp(0).offset == 0
    found = log.offset_for_timestamp(1045)
    assert (found.offset, found.timestamp_ms) == (5, 1050)
    assert log.offset_for_timestamp(1090).offset == 9
    assert log.offset_for_timestamp(1091) is None


def test_two_handles_on_one_directory_behave_like_two_processes(partitions, batch):
    partitions.configure(segment_bytes=300)
    a = partitions.open()
    b = partitions.open()
    for i in range(20):
        (a if i % 2 else b).append(batch([b"%02d" % i + b"p" * 100]))
    assert a.log_end_offset() == b.log_end_offset() == 20
    assert a.segment_bases() == b.segment_bases()
    assert [v[:2] for _, v in read_all(b)] == [b"%02d" % i for i in range(20)]
    a.delete_records(10)
    assert b.log_start_offset == 10
    with pytest.raises(OffsetOutOfRangeError):
        b.read(9, max_bytes=100)
    assert read_all(b)[0][0] == 10


def test_create_is_idempotent(tmp_path: Path, clock):
    from logstore.log.partition_log import PartitionLog

    directory = tmp_path / "p"
    PartitionLog.create(directory, topic_id="x", created_ms=clock.time_ms())
    PartitionLog.create(directory, topic_id="x", created_ms=clock.time_ms())
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) == [
        segment_file_name(0), "partition.sqlite",
    ]


def test_a_segment_unlinked_while_it_is_being_opened_is_not_found(tmp_path, monkeypatch):
    """Another process's retention may unlink a segment between SQLite's connect and its first
    read (SQLite then fails to fstat it); that is a vanished segment, which readers retry."""
    import logstore.log.segment as segment_module

    path = Segment.create(tmp_path, 0, created_ms=0)
    real = segment_module.set_persist_wal

    def unlink_first(conn):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        real(conn)

    monkeypatch.setattr(segment_module, "set_persist_wal", unlink_first)
    with pytest.raises(FileNotFoundError):
        Segment.open(path)
