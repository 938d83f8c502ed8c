"""Damaged data directories: missing segment files, lost WAL files, deleted partition directories
and state files, a lost metadata store. Each damage is reported with a typed error naming the
file; a partition that could hand out an offset twice goes offline while the others serve; and
nothing ever reuses an offset that was acknowledged."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import logstore
from logstore import TopicPartition
from logstore.errors import (
    CorruptFileError,
    InconsistentTopicIdError,
    MissingSegmentError,
    PartitionOfflineError,
    StorageError,
)
from logstore.log.segment import parse_segment_file_name, segment_file_name
from logstore.records.reader import iter_records

WORKERS = Path(__file__).parent.parent / "workers"
LOGSTORE_BIN = Path(sys.executable).parent / "logstore"


def open_log(data: Path) -> logstore.Log:
    return logstore.open(data, maintenance_interval_ms=None, metadata_max_age_ms=0)


def produce(log: logstore.Log, topic: str, count: int, *, partition: int = 0) -> None:
    """``count`` records in batches of about ten (so small segments hold several)."""
    with log.producer(linger_ms=5, batch_size=500) as producer:
        futures = [producer.send(topic, value=b"v%d" % i, key=b"k%d" % i, partition=partition)
                   for i in range(count)]
        producer.flush()
        for future in futures:
            future.result(30)


def partition_dir(data: Path, topic: str, partition: int = 0) -> Path:
    return data / "topics" / topic / str(partition)


def remove_segment(data: Path, topic: str, base: int, partition: int = 0) -> Path:
    path = partition_dir(data, topic, partition) / segment_file_name(base)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def read_all(log: logstore.Log, topic: str, start: int, partition: int = 0) -> list[int]:
    """Offsets of the records readable from ``start`` until the read stops (end or damage)."""
    offsets: list[int] = []
    position = start
    while True:
        try:
            fetched = log.fetch(topic, partition, position, max_bytes=1 << 20)
        except MissingSegmentError:
            return offsets
        if not fetched.records:
            return offsets
        last = position
        for header, records in iter_records(fetched.records, min_offset=position):
            offsets.extend(r.offset for r in records)
            last = header.last_offset
        position = last + 1


def crashed_log(tmp_path: Path, *, partitions: int = 2, count: int = 2000,
                segment_bytes: int = 5000) -> Path:
    """A data directory whose writer was killed with SIGKILL right after its acknowledgements."""
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t", partitions=partitions, config={"segment.bytes": str(segment_bytes)})
    worker = subprocess.run(
        [sys.executable, str(WORKERS / "produce_and_die.py"), str(data), "t", str(count)],
        capture_output=True, text=True, timeout=120, check=False)
    assert worker.stdout.strip() == "acked", worker.stderr
    assert worker.returncode == -9
    return data


# --- a missing segment in the middle: a hole ------------------------------------------------


def test_a_missing_middle_segment_is_a_hole_named_and_the_rest_serves(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t", config={"segment.bytes": "5000"})
        produce(log, "t", 2000)
        bases = log.partition_log("t", 0).segment_bases()
    assert len(bases) > 5
    hole_start, hole_end = bases[len(bases) // 2], bases[len(bases) // 2 + 1]
    path = remove_segment(data, "t", hole_start)
    with open_log(data) as log:
        started = time.monotonic()
        before = read_all(log, "t", 0)
        assert before == list(range(hole_start))  # everything up to the hole
        with pytest.raises(MissingSegmentError) as caught:
            log.fetch("t", 0, hole_start)
        assert time.monotonic() - started < 30  # no spinning
        error = caught.value
        assert (error.start_offset, error.end_offset) == (hole_start, hole_end)
        assert error.path == str(path) and str(path) in str(error)
        assert f"offsets {hole_start} to {hole_end - 1}" in str(error)
        assert read_all(log, "t", hole_end) == list(range(hole_end, 2000))  # after the hole
        description = log.describe_topic("t").partitions[0]
        assert description.missing_ranges == ((hole_start, hole_end),)
        assert description.offline_reason is None
        # Appends go on after the log end: no offset is handed out twice.
        with log.producer() as producer:
            assert producer.send("t", value=b"new", partition=0).result(10).offset == 2000


def test_a_consumer_gets_the_records_before_a_hole_then_a_typed_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t", config={"segment.bytes": "5000"})
        produce(log, "t", 2000)
        bases = log.partition_log("t", 0).segment_bases()
    hole_start = bases[3]
    remove_segment(data, "t", hole_start)
    with open_log(data) as log, log.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition("t", 0)])
        seen: list[int] = []
        deadline = time.monotonic() + 30
        with pytest.raises(MissingSegmentError, match=segment_file_name(hole_start)):
            while time.monotonic() < deadline:
                seen.extend(r.offset for r in consumer.poll(timeout_ms=100))
        assert seen == list(range(hole_start))
        # Seeking past the hole (what an operator would decide) reads on.
        consumer.seek(TopicPartition("t", 0), bases[4])
        after = consumer.poll(timeout_ms=1000)
        assert after and after[0].offset == bases[4]


def test_cli_tail_and_dump_report_a_hole_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t", config={"segment.bytes": "5000"})
        produce(log, "t", 500)
        bases = log.partition_log("t", 0).segment_bases()
    path = remove_segment(data, "t", bases[1])
    for command in (["tail", "t", "--from-beginning"], ["dump", "t", "--partition", "0"]):
        done = subprocess.run([str(LOGSTORE_BIN), "--data-dir", str(data), *command],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 1, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and str(path) in lines[-1], done.stderr
        assert "Traceback" not in done.stderr
    described = subprocess.run(
        [str(LOGSTORE_BIN), "--data-dir", str(data), "topics", "describe", "t"],
        capture_output=True, text=True, timeout=60, check=False)
    assert described.returncode == 0, described.stderr
    assert f"{bases[1]}-{bases[2] - 1}" in described.stdout  # the hole is shown


# --- lost committed records: offline, never reused --------------------------------------------


def test_a_lost_wal_after_a_crash_takes_the_partition_offline(tmp_path: Path) -> None:
    data = crashed_log(tmp_path)
    # Nothing has opened the log since the crash, so the records of partition 0's active
    # segment are still only in its -wal file. Lose it.
    directory = partition_dir(data, "t", 0)
    last = max(b for b in map(parse_segment_file_name, os.listdir(directory)) if b is not None)
    active = directory / segment_file_name(last)
    wal = Path(f"{active}-wal")
    assert wal.stat().st_size > 0
    wal.unlink()
    with open_log(data) as log:
        for call in (lambda: log.fetch("t", 0, 0),
                     lambda: log.append("t", 0, one_batch()),
                     lambda: log.partition_log("t", 0)):
            with pytest.raises(PartitionOfflineError) as caught:
                call()
            assert str(active) in str(caught.value)
            assert "offsets up to 1999" in str(caught.value)
        # The other partition serves; the topic describes with the damage.
        assert len(read_all(log, "t", 0, partition=1)) == 2000
        described = log.describe_topic("t").partitions
        assert described[0].offline_reason is not None and described[1].offline_reason is None


def test_deleted_active_segment_takes_the_partition_offline(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t", config={"segment.bytes": "5000"})
        produce(log, "t", 2000)
        last = log.partition_log("t", 0).segment_bases()[-1]
    path = remove_segment(data, "t", last)
    with open_log(data) as log:
        with pytest.raises(PartitionOfflineError, match=segment_file_name(last)):
            log.append("t", 0, one_batch())
        with pytest.raises(PartitionOfflineError):
            log.fetch("t", 0, 0)
    assert not path.exists()  # nothing was recreated in its place


def test_a_deleted_partition_directory_is_offline_not_recreated(tmp_path: Path) -> None:
    data = crashed_log(tmp_path)
    directory = partition_dir(data, "t", 0)
    import shutil

    shutil.rmtree(directory)
    with open_log(data) as log:
        with pytest.raises(PartitionOfflineError, match="offsets up to 1999"):
            log.append("t", 0, one_batch())
        assert not directory.exists()
        assert len(read_all(log, "t", 0, partition=1)) == 2000


def test_a_deleted_state_file_is_offline(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t")
        produce(log, "t", 100)
    state = partition_dir(data, "t", 0) / "partition.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state}{suffix}").unlink(missing_ok=True)
    with open_log(data) as log:
        with pytest.raises(PartitionOfflineError, match=r"partition\.sqlite"):
            log.fetch("t", 0, 0)  # not "in remote storage", not an empty log
        with pytest.raises(PartitionOfflineError):
            log.append("t", 0, one_batch())


def test_an_interrupted_layout_is_finished_not_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t")
    # As if the creating process died before laying out the partition at all.
    import shutil

    shutil.rmtree(partition_dir(data, "t", 0))
    (data / "doorbells" / "t-0").unlink()
    with open_log(data) as log:
        produce(log, "t", 10)
        assert log.partition_log("t", 0).log_end_offset() == 10


# --- the metadata store lost: never delete data on create -------------------------------------


def test_creating_a_topic_never_deletes_records_of_an_unknown_incarnation(tmp_path) -> None:
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t", partitions=2)
        produce(log, "t", 50)
    for name in ("metadata.db", "metadata.db-wal", "metadata.db-shm"):
        (data / name).unlink(missing_ok=True)
    directory = partition_dir(data, "t", 0)
    with open_log(data) as log:
        with pytest.raises(InconsistentTopicIdError) as caught:
            log.create_topic("t", partitions=2)
        assert str(directory) in str(caught.value)
        assert log.list_topics() == []  # no half topic left behind
    with open_log(data) as log:
        assert log.list_topics() == []
    assert sorted(p.name for p in directory.glob("0*.sqlite"))  # the records are still there


def test_a_deleted_and_recreated_topic_starts_empty(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t")
        produce(log, "t", 20)
        log.delete_topic("t")
        log.create_topic("t")
        assert log.partition_log("t", 0).log_end_offset() == 0
        produce(log, "t", 3)
        assert read_all(log, "t", 0) == [0, 1, 2]
    assert not any((data / "deleted").iterdir())


def test_an_interrupted_deletion_is_finished_by_the_next_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t")
        produce(log, "t", 20)
        topic_id = log.describe_topic("t").topic_id
        # As if the deleting process died after renaming the directory aside.
        log._manager.begin_delete("t", topic_id)
    with open_log(data) as log:
        assert log.list_topics() == []
        assert not any((data / "deleted").iterdir())
        assert not (data / "doorbells" / "t-0").exists()
        log.create_topic("t")
        assert log.partition_log("t", 0).log_end_offset() == 0


def test_a_failed_creation_leaves_no_half_topic(tmp_path: Path, monkeypatch) -> None:
    from logstore.log.manager import LogManager

    data = tmp_path / "data"
    real = LogManager._lay_out_locked

    def lay_out(self: LogManager, topic: str, topic_id: str, partition: int,
                **options: bool) -> None:
        if partition == 3:
            raise StorageError("disk full (simulated)")
        real(self, topic, topic_id, partition, **options)

    with open_log(data) as log:
        monkeypatch.setattr(LogManager, "_lay_out_locked", lay_out)
        with pytest.raises(StorageError, match="simulated"):
            log.create_topic("t", partitions=6)
        monkeypatch.undo()
        assert log.list_topics() == []
        assert not (data / "topics" / "t").exists()
        assert not list((data / "doorbells").iterdir())
        log.create_topic("t", partitions=6)  # and the name is free
        assert log.describe_topic("t").partition_count == 6


# --- damaged bytes --------------------------------------------------------------------------


def test_a_corrupt_segment_is_reported_with_its_file_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t", config={"segment.bytes": "5000"})
        produce(log, "t", 1000)
        bases = log.partition_log("t", 0).segment_bases()
    path = partition_dir(data, "t", 0) / segment_file_name(bases[2])
    for suffix in ("-wal", "-shm"):  # folded into the file when the log closed
        Path(f"{path}{suffix}").unlink()
    size = path.stat().st_size
    with open(path, "r+b") as file:  # overwrite everything after the header page
        file.seek(4096)
        file.write(b"\xff" * (size - 4096))
    with open_log(data) as log:
        with pytest.raises(CorruptFileError) as caught:
            log.fetch("t", 0, bases[2])
        assert str(path) in str(caught.value)
        assert read_all(log, "t", bases[3])[0] == bases[3]


def one_batch() -> bytes:
    from logstore.records.builder import encode_batch

    return encode_batch([(1_700_000_000_000, b"k", b"v", ())])


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch) -> None:
    monkeypatch.delenv("LOGSTORE_DATA_DIR", raising=False)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
