"""``Log.check`` / ``logstore check`` find damage; ``Log.repair`` / ``logstore repair`` apply the
operator's choice: adopt (keep what is readable, never reuse an offset) or truncate (cut at the
first damage, reuse offsets from there)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

import logstore
from logstore import TopicPartition
from logstore.errors import InvalidArgumentError, PartitionOfflineError
from logstore.log.check import ProblemKind
from logstore.log.segment import segment_file_name

LOGSTORE_BIN = Path(sys.executable).parent / "logstore"
WORKERS = Path(__file__).parent.parent / "workers"


def open_log(data: Path) -> logstore.Log:
    return logstore.open(data, maintenance_interval_ms=None, metadata_max_age_ms=0)


def filled(tmp_path: Path, count: int = 1000) -> tuple[Path, list[int]]:
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t", partitions=2, config={"segment.bytes": "5000"})
        with log.producer(batch_size=500) as producer:
            for p in range(2):
                for i in range(count):
                    producer.send("t", value=b"v%d" % i, partition=p)
        bases = log.partition_log("t", 0).segment_bases()
    assert len(bases) >= 4
    return data, bases


def segment(data: Path, base: int, partition: int = 0) -> Path:
    return data / "topics" / "t" / str(partition) / segment_file_name(base)


def remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def offsets(log: logstore.Log, partition: int = 0) -> list[int]:
    """Every offset a consumer reads from the beginning (it must not stop on damage)."""
    with log.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition("t", partition)])
        found: list[int] = []
        while True:
            records = consumer.poll(timeout_ms=300)
            if not records:
                return found
            found.extend(r.offset for r in records)


def append_one(log: logstore.Log, partition: int = 0) -> int:
    with log.producer() as producer:
        return producer.send("t", value=b"new", partition=partition).result(10).offset


def kinds(check) -> set[ProblemKind]:
    return {p.kind for p in check.problems}


def test_a_healthy_log_checks_clean(tmp_path: Path) -> None:
    data, _ = filled(tmp_path)
    with open_log(data) as log:
        checks = log.check()
    assert [(c.topic, c.partition, c.problems) for c in checks] == [("t", 0, ()), ("t", 1, ())]
    assert all(c.batches_checked > 0 and c.log_end_offset == 1000 for c in checks)


def test_a_hole_adopted_becomes_a_gap_and_offsets_are_not_reused(tmp_path: Path) -> None:
    data, bases = filled(tmp_path)
    remove(segment(data, bases[2]))
    with open_log(data) as log:
        check = log.check("t", 0)[0]
        assert kinds(check) == {ProblemKind.MISSING_SEGMENT}
        problem = check.problems[0]
        assert (problem.start_offset, problem.end_offset) == (bases[2], bases[3])
        assert problem.path == str(segment(data, bases[2]))
        planned = log.repair("t", 0, action="adopt", dry_run=True)[0]
        assert not planned.applied and not segment(data, bases[2]).exists()
        assert [s.reuses_offsets for s in planned.steps] == [False]
        done = log.repair("t", 0, action="adopt")[0]
        assert done.applied and done.after is not None and not done.after.damaged
        assert offsets(log) == [o for o in range(1000) if not bases[2] <= o < bases[3]]
        assert append_one(log) == 1000


def test_a_hole_truncated_cuts_the_log_and_reuses_offsets(tmp_path: Path) -> None:
    data, bases = filled(tmp_path)
    remove(segment(data, bases[2]))
    with open_log(data) as log:
        planned = log.repair("t", 0, action="truncate", dry_run=True)[0]
        assert [s.reuses_offsets for s in planned.steps] == [True]
        assert f"at offset {bases[2]}" in planned.steps[0].description
        log.repair("t", 0, action="truncate")
        assert log.check("t", 0)[0].problems == ()
        assert offsets(log) == list(range(bases[2]))
        assert append_one(log) == bases[2]
        assert offsets(log, partition=1) == list(range(1000))  # the other partition untouched


def crashed(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    with open_log(data) as log:
        log.create_topic("t", partitions=2, config={"segment.bytes": "5000"})
    done = subprocess.run(
        [sys.executable, str(WORKERS / "produce_and_die.py"), str(data), "t", "2000"],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.strip() == "acked", done.stderr
    return data


def lose_active_wal(data: Path) -> int:
    """Delete partition 0's active segment's -wal (after a crash); return its base."""
    directory = data / "topics" / "t" / "0"
    base = max(int(p.name[:20]) for p in directory.glob("0*.sqlite"))
    Path(f"{directory / segment_file_name(base)}-wal").unlink()
    return base


def test_lost_records_adopted_leave_a_gap_up_to_the_checkpoint(tmp_path: Path) -> None:
    data = crashed(tmp_path)
    lose_active_wal(data)
    with open_log(data) as log:
        check = log.check("t", 0)[0]
        assert check.offline and kinds(check) == {ProblemKind.LOST_RECORDS}
        lost = check.problems[0]
        assert lost.end_offset == 2000 and lost.start_offset < 2000
        log.repair("t", 0, action="adopt")
        assert not log.check("t", 0)[0].damaged
        assert offsets(log) == list(range(lost.start_offset))
        assert append_one(log) == 2000  # never an offset that was handed out


def test_lost_records_truncated_accept_the_loss(tmp_path: Path) -> None:
    data = crashed(tmp_path)
    lose_active_wal(data)
    with open_log(data) as log:
        with pytest.raises(PartitionOfflineError):
            log.fetch("t", 0, 0)
        lost = log.check("t", 0)[0].problems[0]
        log.repair("t", 0, action="truncate")
        assert append_one(log) == lost.start_offset


def test_a_deleted_partition_directory_adopted_restarts_at_its_checkpoint(tmp_path) -> None:
    data = crashed(tmp_path)
    shutil.rmtree(data / "topics" / "t" / "0")
    with open_log(data) as log:
        assert kinds(log.check("t", 0)[0]) == {ProblemKind.MISSING_DIRECTORY}
        log.repair("t", 0, action="adopt")
        assert append_one(log) == 2000
        assert offsets(log, partition=1) == list(range(2000))


def test_a_deleted_state_file_adopted_is_rebuilt_from_the_segments(tmp_path: Path) -> None:
    data, _ = filled(tmp_path)
    remove(data / "topics" / "t" / "0" / "partition.sqlite")
    with open_log(data) as log:
        assert kinds(log.check("t", 0)[0]) == {ProblemKind.MISSING_STATE}
        log.repair("t", 0, action="adopt")
        assert not log.check("t", 0)[0].damaged
        assert offsets(log) == list(range(1000))
        assert append_one(log) == 1000


def test_a_bad_batch_is_found_by_its_crc_and_adopted_as_a_gap(tmp_path: Path) -> None:
    data, bases = filled(tmp_path)
    path = segment(data, bases[1])
    conn = apsw.Connection(str(path))
    victim, last, blob = conn.execute(
        "SELECT base_offset, last_offset, data FROM batches ORDER BY base_offset LIMIT 1 "
        "OFFSET 2").fetchone()
    # Flip a byte of the records (the CRC covers them): a bit rot SQLite cannot see.
    rotten = bytearray(blob)
    rotten[70] ^= 0xFF
    conn.execute("UPDATE batches SET data = ? WHERE base_offset = ?", (bytes(rotten), victim))
    conn.close()
    with open_log(data) as log:
        check = log.check("t", 0)[0]
        assert kinds(check) == {ProblemKind.BAD_BATCH}
        assert (check.problems[0].start_offset, check.problems[0].end_offset) == (victim,
                                                                                 last + 1)
        log.repair("t", 0, action="adopt")
        assert not log.check("t", 0)[0].damaged
        assert offsets(log) == [o for o in range(1000) if not victim <= o <= last]
        kept = list(path.parent.glob(path.name + ".damaged-*"))
        assert kept, "the damaged original is kept aside"


def test_a_corrupt_file_is_salvaged_or_truncated(tmp_path: Path) -> None:
    data, bases = filled(tmp_path)
    path = segment(data, bases[1])
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink()
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.seek(size // 2)
        file.write(b"\x00" * (size - size // 2))
    with open_log(data) as log:
        check = log.check("t", 0)[0]
        assert ProblemKind.CORRUPT_FILE in kinds(check)
        truncate = log.repair("t", 0, action="truncate", dry_run=True)[0]
        assert f"at offset {bases[1]}" in truncate.steps[0].description
        log.repair("t", 0, action="adopt")
        assert not log.check("t", 0)[0].damaged
        read = offsets(log)
        assert read[:bases[1]] == list(range(bases[1]))  # before the damage: all there
        assert read[-(1000 - bases[2]):] == list(range(bases[2], 1000))  # after it: all there
        assert append_one(log) == 1000


def test_a_topic_whose_metadata_was_lost_is_adopted_with_its_records(tmp_path) -> None:
    data, _ = filled(tmp_path)
    with open_log(data) as log:
        topic_id = log.describe_topic("t").topic_id
    for name in ("metadata.db", "metadata.db-wal", "metadata.db-shm"):
        (data / name).unlink(missing_ok=True)
    with open_log(data) as log:
        found = log.check()
        assert [(c.topic, kinds(c)) for c in found] == [("t", {ProblemKind.FOREIGN_TOPIC_ID})]
        with pytest.raises(InvalidArgumentError, match="only --adopt"):
            log.repair("t", action="truncate")
        log.repair("t", action="adopt")
        assert log.describe_topic("t").topic_id == topic_id
        assert offsets(log) == list(range(1000))
        assert [c.problems for c in log.check()] == [(), ()]


def run_cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LOGSTORE_BIN), "--data-dir", str(data), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_reports_then_repairs_only_when_told(tmp_path: Path) -> None:
    data, bases = filled(tmp_path)
    assert run_cli(data, "check").returncode == 0
    remove(segment(data, bases[2]))
    checked = run_cli(data, "check")
    assert checked.returncode == 1
    assert "t-0: DAMAGED" in checked.stdout and "t-1: ok" in checked.stdout
    assert f"offsets {bases[2]} to {bases[3] - 1}" in checked.stdout
    undecided = run_cli(data, "repair", "t")
    assert undecided.returncode == 2
    assert "with --adopt:" in undecided.stdout and "[reuses offsets]" in undecided.stdout
    assert "choose --adopt or --truncate" in undecided.stderr
    dry = run_cli(data, "repair", "t", "--adopt", "--dry-run")
    assert dry.returncode == 0 and run_cli(data, "check").returncode == 1
    done = run_cli(data, "repair", "t", "--adopt")
    assert done.returncode == 0, done.stderr
    assert run_cli(data, "check", "--format", "json").returncode == 0
