"""Tiered storage under kill -9 (a real subprocess, SIGKILL at an exact point or at random
moments; a shared ``file://`` object store): a crash between an upload and its manifest
commit, or between a manifest delete-started and the object's deletion, never leaves a hole
or a readable stale segment, and the next tierer / the orphan cleaner / the next retention
pass finish the job, leaving the store and the manifest naming exactly the same objects."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from logstore.backends.manifest_records import COPY_FINISHED, COPY_STARTED, DELETE_STARTED

import logstore
from logstore.clock import ManualClock
from logstore.errors import OffsetOutOfRangeError
from logstore.records.builder import encode_batch
from logstore.records.reader import iter_records
from logstore.tier.remote_storage import RemotePartition

WORKERS = Path(__file__).resolve().parent.parent / "workers"
TOPIC = "t"
CONFIG = {
    "remote.storage.enable": "true",
    "segment.bytes": "4096",
    "local.retention.bytes": "0",
    "durability": "os",
}
ROUNDS = int(os.environ.get("LOGSTORE_TIER_KILL_ROUNDS", "10"))
#: How far each worker's clock runs ahead of the previous one's: more than a tierer's lease,
#: so a killed tierer's lease has expired for whoever comes next.
SHIFT_MS = 120_000


# --- helpers ---------------------------------------------------------------------------------


def make_store(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "store"
    root.mkdir()
    return root, f"file://{root}"


def open_log(data: Path, url: str, clock: Any = None) -> logstore.Log:
    return logstore.open(data, object_store_url=url, clock=clock, maintenance_interval_ms=None,
                         tier_interval_ms=None)


def later_clock(shift_ms: int = 3_600_000) -> ManualClock:
    """A clock past the killed worker's lease (and past every manifest time it wrote)."""
    return ManualClock(int(time.time() * 1000) + shift_ms)


def append_numbered(log: logstore.Log, count: int) -> None:
    """Records valued with their own offset, in batches of 10, timestamped now (time-based
    retention must not touch them)."""
    start = log.partition_log(TOPIC, 0).log_end_offset()
    now = int(time.time() * 1000)
    for first in range(start, start + count, 10):
        n = min(10, start + count - first)
        log.append(TOPIC, 0, encode_batch(
            [(now, b"k%d" % ((first + i) % 13), b"%d" % (first + i), ()) for i in range(n)]))


def read_from_start(log: logstore.Log) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record from the log start to the high watermark, via fetch, checking that the
    offsets are contiguous (no hole: this topic is never compacted)."""
    plog = log.partition_log(TOPIC, 0)
    start, end = plog.layout().log_start_offset, plog.high_watermark
    out: list[tuple[int, bytes | None, bytes | None]] = []
    offset = start
    while offset < end:
        fetched = log.fetch(TOPIC, 0, offset, max_bytes=16384)
        assert fetched.records, f"empty fetch at {offset} below {end}"
        for header, records in iter_records(fetched.records, allow_partial_tail=False):
            for record in records:
                if record.offset < offset:
                    continue
                assert record.offset == offset, f"hole: {record.offset} after {offset - 1}"
                out.append((record.offset, record.key, record.value))
                offset += 1
            assert offset == header.last_offset + 1, f"batch {header} ends at {offset}"
    return out


def check_numbered(log: logstore.Log) -> int:
    """Every record from the log start is readable and holds its own offset; returns how
    many there are."""
    records = read_from_start(log)
    bad = [(o, k, v) for o, k, v in records if (k, v) != (b"k%d" % (o % 13), b"%d" % o)]
    assert bad == [], bad[:5]
    return len(records)


def fetch_map(log: logstore.Log, offsets: list[int]) -> dict[int, bytes]:
    return {o: log.fetch(TOPIC, 0, o, max_bytes=3000).records for o in offsets}


def stored_objects(root: Path) -> set[str]:
    """Every file under the store root (objects and leftover temporary files)."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def run_worker(tmp_path: Path, mode: str, data: Path, url: str, *extra: str) -> str:
    """Run tier_crash.py to its SIGKILL; return its output."""
    worker = subprocess.run(
        [sys.executable, str(WORKERS / "tier_crash.py"), mode, str(data), url, TOPIC, *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert worker.returncode == -signal.SIGKILL, (worker.returncode, worker.stdout,
                                                  worker.stderr)
    assert worker.stdout.startswith("ready"), worker.stdout + worker.stderr
    return worker.stdout


def check_store_matches_manifest(log: logstore.Log, root: Path) -> None:
    """Only copy-finished rows; each names an object, and every file in the store is one."""
    rows = log.metadata.remote_segments()
    assert {r.state for r in rows} <= {COPY_FINISHED}, rows
    assert stored_objects(root) == {r.object_key for r in rows}
    store = log.object_store
    assert store is not None
    assert {o.key for o in store.list("")} == {r.object_key for r in rows}


def check_live_rows(log: logstore.Log) -> None:
    """Copy-finished rows never overlap, and they hold every offset from the log start to the
    first local offset."""
    plog = log.partition_log(TOPIC, 0)
    live = sorted((r for r in log.metadata.remote_segments() if r.state == COPY_FINISHED),
                  key=lambda r: r.base_offset)
    for row, following in itertools.pairwise(live):
        assert row.next_offset <= following.base_offset, (row, following)
    layout = plog.layout()
    first_local = layout.segments[0].base_offset
    if first_local > layout.log_start_offset:
        covering = [r for r in live if r.next_offset > layout.log_start_offset]
        assert covering, f"nothing holds [{layout.log_start_offset}, {first_local})"
        assert covering[0].base_offset <= layout.log_start_offset
        for row, following in itertools.pairwise(covering):
            assert row.next_offset == following.base_offset, (row, following)
        assert covering[-1].next_offset >= first_local


# --- a. killed between the upload and the manifest commit -------------------------------------


def test_kill_between_upload_and_manifest_commit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    root, url = make_store(tmp_path)
    with open_log(data, url) as log:
        log.create_topic(TOPIC, partitions=1, config=CONFIG)
        append_numbered(log, 1000)
        sealed = [s.base_offset for s in log.partition_log(TOPIC, 0).layout().sealed]
        assert len(sealed) >= 3
        expected = read_from_start(log)
        probes = sorted({0, 1, 57, 499, 998, 999, 1000} | set(sealed)
                        | {b - 1 for b in sealed if b})
        fetched_before = fetch_map(log, probes)

    run_worker(tmp_path, "copy-commit", data, url)

    with open_log(data, url, later_clock()) as log:
        plog = log.partition_log(TOPIC, 0)
        [stale] = log.metadata.remote_segments()
        assert (stale.state, stale.base_offset) == (COPY_STARTED, 0)
        store = log.object_store
        assert store is not None
        info = store.head(stale.object_key)
        assert info is not None and info.size_bytes == stale.size_bytes
        # No hole: nothing was dropped locally, and the stale row is not read.
        assert plog.first_local_offset() == 0
        [status] = log.tier_status(TOPIC)
        assert (status.remote_objects, status.copies_in_progress) == (0, 1)
        assert status.remote_start_offset is None
        assert read_from_start(log) == expected
        assert fetch_map(log, probes) == fetched_before

        # The next tierer copies everything again, segment 0 under a new key.
        report = log.tier(TOPIC)
        assert report.failed == ()
        assert report.segments_copied == len(sealed)
        live = [r for r in log.metadata.remote_segments() if r.state == COPY_FINISHED]
        assert [r.base_offset for r in live] == sealed
        assert live[0].segment_id != stale.segment_id
        assert live[0].object_key != stale.object_key
        assert plog.first_local_offset() == live[-1].next_offset > 0
        assert read_from_start(log) == expected
        assert fetch_map(log, probes) == fetched_before

        dry = log.clean_remote_orphans(grace_ms=0, dry_run=True)
        assert dry.stale_copies == (stale.object_key,)
        assert store.head(stale.object_key) is not None

        cleaned = log.clean_remote_orphans(grace_ms=0)
        assert cleaned.stale_copies == (stale.object_key,)
        assert cleaned.unfinished_deletes == () and cleaned.orphan_objects == ()
        assert cleaned.errors == ()
        assert store.head(stale.object_key) is None
        assert all(r.segment_id != stale.segment_id for r in log.metadata.remote_segments())
        check_store_matches_manifest(log, root)
        [status] = log.tier_status(TOPIC)
        assert (status.remote_objects, status.copies_in_progress) == (len(sealed), 0)
        assert read_from_start(log) == expected
        assert fetch_map(log, probes) == fetched_before

    # And a fresh Log (cold caches) reads the same.
    with open_log(data, url, later_clock()) as log:
        assert read_from_start(log) == expected
        assert fetch_map(log, probes) == fetched_before


# --- b. killed between the manifest's delete-started and the object's deletion -----------------


@pytest.mark.parametrize("finisher", ["orphan-cleaner", "maintenance"])
def test_kill_between_delete_started_and_object_delete(tmp_path: Path, finisher: str) -> None:
    data = tmp_path / "data"
    root, url = make_store(tmp_path)
    with open_log(data, url) as log:
        log.create_topic(TOPIC, partitions=1, config=CONFIG)
        append_numbered(log, 1500)
        report = log.tier(TOPIC)
        assert report.failed == ()
        expected = read_from_start(log)
        rows = log.metadata.remote_segments()
        assert len(rows) >= 6 and all(r.state == COPY_FINISHED for r in rows)
        [status] = log.tier_status(TOPIC)
        # Total retention keeps the last `keep` remote segments and the active one: the slack
        # of half a segment keeps the arithmetic off the edges.
        keep = len(rows) // 2
        slack = min(r.size_bytes for r in rows) // 2
        limit = sum(r.size_bytes for r in rows[-keep:]) + status.local_bytes - slack
        new_start = rows[-keep].base_offset
        log.alter_topic_config(TOPIC, {"retention.bytes": str(limit)})

    run_worker(tmp_path, "delete-object", data, url)

    with open_log(data, url, later_clock()) as log:
        plog = log.partition_log(TOPIC, 0)
        assert plog.layout().log_start_offset == new_start
        assert read_from_start(log) == expected[new_start:]
        for offset in (new_start, new_start + 1, new_start + 200):
            assert log.fetch(TOPIC, 0, offset, max_bytes=1).records
        for offset in (0, 1, new_start - 1):
            with pytest.raises(OffsetOutOfRangeError):
                log.fetch(TOPIC, 0, offset)
        consumer = log.consumer(auto_offset_reset="earliest")
        consumer.assign([logstore.TopicPartition(TOPIC, 0)])
        assert consumer.poll(timeout_ms=1000)[0].offset == new_start
        consumer.close()

        after = log.metadata.remote_segments()
        deleting = [r for r in after if r.state == DELETE_STARTED]
        assert [(r.segment_id, r.base_offset) for r in deleting] == [(rows[0].segment_id, 0)]
        [dying] = deleting
        store = log.object_store
        assert store is not None
        assert store.head(dying.object_key) is not None  # the object outlived the kill
        remote = plog.remote
        assert isinstance(remote, RemotePartition)
        assert dying.segment_id not in {s.segment_id for s in remote.segments(refresh=True)}
        # The deletion stopped at the first segment: the rest below the start are still live.
        assert [r.segment_id for r in after if r.state == COPY_FINISHED] == [
            r.segment_id for r in rows[1:]]

        if finisher == "orphan-cleaner":
            cleaned = log.clean_remote_orphans(grace_ms=0)
            assert cleaned.unfinished_deletes == (dying.object_key,)
            assert cleaned.stale_copies == () and cleaned.orphan_objects == ()
            assert cleaned.errors == ()
            assert store.head(dying.object_key) is None
            assert [r.segment_id for r in log.metadata.remote_segments()] == [
                r.segment_id for r in rows[1:]]
            check_store_matches_manifest(log, root)
            assert read_from_start(log) == expected[new_start:]
        # The next retention pass deletes what is left below the log start.
        log.run_maintenance(TOPIC)
        assert store.head(dying.object_key) is None
        remaining = log.metadata.remote_segments()
        assert [r.segment_id for r in remaining] == [r.segment_id for r in rows[-keep:]]
        check_store_matches_manifest(log, root)
        assert plog.layout().log_start_offset == new_start
        assert read_from_start(log) == expected[new_start:]


# --- c. killed at random moments of a tier + retention loop -----------------------------------


@pytest.mark.slow
def test_kill_9_at_random_moments_of_tiering_and_retention(tmp_path: Path) -> None:
    data = tmp_path / "data"
    root, url = make_store(tmp_path)
    rng = random.Random("tier-kill")
    base_ms = int(time.time() * 1000)
    with open_log(data, url, ManualClock(base_ms)) as log:
        log.create_topic(TOPIC, partitions=1, config={**CONFIG, "retention.bytes": "30000"})
    passes = debris = 0
    for round_number in range(1, ROUNDS + 1):
        shift = round_number * SHIFT_MS
        out = run_worker(tmp_path, "loop", data, url, "--shift-ms", str(shift),
                         "--kill-after", f"{rng.uniform(0.05, 1.0):.3f}",
                         "--records", str(rng.randrange(50, 400)))
        passes += out.count("pass")
        # A clock past the killed worker's (and its lease), before the next worker's.
        with open_log(data, url, ManualClock(base_ms + shift + SHIFT_MS // 2)) as log:
            count = check_numbered(log)
            check_live_rows(log)
            report = log.clean_remote_orphans(grace_ms=0)
            assert report.errors == (), report
            debris += report.total
            check_store_matches_manifest(log, root)
            check_live_rows(log)
            assert check_numbered(log) == count
    # The loop really tiered and really applied total retention.
    with open_log(data, url, ManualClock(base_ms + (ROUNDS + 1) * SHIFT_MS)) as log:
        log.run_maintenance(TOPIC)
        layout = log.partition_log(TOPIC, 0).layout()
        rows = log.metadata.remote_segments()
        assert layout.log_start_offset > 0
        assert rows and all(r.next_offset > layout.log_start_offset for r in rows)
        check_store_matches_manifest(log, root)
        check_numbered(log)
    assert passes > 0
    print(f"{ROUNDS} kills, {passes} passes, {debris} pieces of debris cleaned")
