"""The log cleaner across processes: kill -9 anywhere in a compaction leaves a readable log
with every key's latest value and a clean re-run; a consumer in another process reading
from the beginning while appends and compactions go on always sees a valid log."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
from logstore.compaction import CompactionStatus

import logstore
from logstore.clock import ManualClock
from logstore.records.builder import encode_batch
from logstore.records.reader import iter_records

WORKERS = Path(__file__).resolve().parent.parent / "workers"
ROUNDS = int(os.environ.get("LOGSTORE_KILL_ROUNDS", "10"))
CONFIG = {"cleanup.policy": "compact", "segment.bytes": "6000", "delete.retention.ms": "0",
          "min.cleanable.dirty.ratio": "0.01"}


def stored(log: logstore.Log) -> list[tuple[int, bytes | None, bytes | None]]:
    out: list[tuple[int, bytes | None, bytes | None]] = []
    offset, end = 0, log.partition_log("c", 0).high_watermark
    while offset < end:
        fetched = log.fetch("c", 0, offset, max_bytes=1 << 20)
        before = offset
        for header, records in iter_records(fetched.records, allow_partial_tail=False):
            out.extend((r.offset, r.key, r.value) for r in records if r.offset >= offset)
            offset = max(offset, header.last_offset + 1)
        assert offset > before, (
            f"no progress reading at {offset} below {end}: "
            f"{log.partition_log('c', 0).layout().segments}")
    return out


def latest(entries) -> dict[bytes, bytes]:
    state: dict[bytes, bytes] = {}
    for _, key, value in entries:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def check_log(log: logstore.Log, written: list[tuple[bytes, bytes | None]]) -> None:
    """Every stored record is the one written at its offset, the state is the written state,
    and the segments tile the offsets (no merged segment left over next to its target)."""
    records = stored(log)
    assert [o for o, _, _ in records] == sorted({o for o, _, _ in records})
    assert all(written[o] == (k, v) for o, k, v in records)
    assert latest(records) == latest((i, k, v) for i, (k, v) in enumerate(written))
    segments = log.partition_log("c", 0).layout().segments
    for segment, following in pairwise(segments):
        assert segment.next_offset == following.base_offset, segments


@pytest.mark.slow
def test_kill_9_during_compaction_leaves_a_valid_log_and_a_clean_rerun(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = random.Random("kill-compactor")
    written: list[tuple[bytes, bytes | None]] = []
    # The parent's clock runs ahead of the workers' so a killed worker's lease has expired
    # when the parent cleans after it (a real restart waits for the lease to expire).
    clock = ManualClock(int(time.time() * 1000) + 3_600_000)
    with logstore.open(data, maintenance_interval_ms=None) as log:
        log.create_topic("c", partitions=1, config=CONFIG)
    killed = 0
    for round_number in range(ROUNDS):
        with logstore.open(data, maintenance_interval_ms=None) as log:
            for _ in range(rng.randint(300, 900)):
                key = b"k%d" % rng.randrange(60)
                value = None if rng.random() < 0.05 else b"r%d-%d" % (round_number, len(written))
                log.append("c", 0, encode_batch([(0, key, value, ())]))
                written.append((key, value))
            log.partition_log("c", 0).roll()
        worker = subprocess.Popen([sys.executable, str(WORKERS / "compact_once.py"), str(data)],
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        assert worker.stdout is not None and worker.stderr is not None
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        for _ in range(rng.randint(1, 2000)):
            line = worker.stdout.readline()
            if not line or line.strip() == "done":
                break
        else:
            worker.kill()
            killed += 1
        worker.stdout.read()
        code = worker.wait(timeout=120)
        assert code in (0, -signal.SIGKILL), worker.stderr.read()
        worker.stdout.close()
        worker.stderr.close()
        clock.advance(120_000)
        with logstore.open(data, clock=clock, maintenance_interval_ms=None) as log:
            check_log(log, written)
            report = log.compact(force=True).partitions[0]
            assert report.status is CompactionStatus.CLEANED, report
            check_log(log, written)
            below = [k for o, k, _ in stored(log) if o < report.checkpoint_offset]
            assert len(below) == len(set(below)), "a key twice in the clean section"
    assert killed >= ROUNDS // 2, f"only {killed} of {ROUNDS} rounds killed the compactor"


@pytest.mark.slow
def test_a_reader_in_another_process_sees_a_valid_log_during_compaction(tmp_path: Path) -> None:
    data = tmp_path / "data"
    keys = 40
    with logstore.open(data, maintenance_interval_ms=None) as log:
        log.create_topic("c", partitions=1, config=CONFIG)
        next_offset = 0

        def append(count: int) -> None:
            nonlocal next_offset
            for _ in range(count):
                i = next_offset
                log.append("c", 0, encode_batch([(0, b"k%d" % (i % keys), b"%d" % i, ())]))
                next_offset += 1

        append(1500)
        log.partition_log("c", 0).roll()
        reader = subprocess.Popen(
            [sys.executable, str(WORKERS / "read_loop.py"), str(data), "1000000", str(keys)],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert reader.stdout is not None and reader.stderr is not None
        try:
            assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
            passes_before = 0
            for _ in range(12):
                append(250)
                log.partition_log("c", 0).roll()
                report = log.compact().partitions[0]
                assert report.status is CompactionStatus.CLEANED, report
                line = reader.stdout.readline()
                assert line.startswith("ok"), line + reader.stderr.read()
                passes_before += 1
        finally:
            reader.kill()
            reader.wait(timeout=60)
            reader.stdout.close()
            reader.stderr.close()
        assert passes_before == 12
        assert len(stored(log)) < 2 * keys  # it really was compacted meanwhile
