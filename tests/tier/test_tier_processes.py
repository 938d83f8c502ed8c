"""Tiered storage across processes sharing one data directory and one ``file://`` object store:
while this process appends, tiers and drops local copies, a reader in another process reads
the partition from offset 0 over and over (fetch loops and a consumer) and never sees a gap,
an error or a wrong value, though the segments it reads move from local files to remote
objects under it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from logstore.backends.manifest_records import COPY_FINISHED

import logstore
from logstore.records.builder import encode_batch

WORKERS = Path(__file__).resolve().parent.parent / "workers"
TOPIC = "t"
CONFIG = {
    "remote.storage.enable": "true",
    "segment.bytes": "4096",
    # Two segments' worth stays local: everything older is read from the object store.
    "local.retention.bytes": "8192",
    "durability": "os",
}
ROUNDS = 30


def append_numbered(log: logstore.Log, count: int) -> int:
    """Records valued with their own offset, in batches of 10; returns the new end."""
    start = log.partition_log(TOPIC, 0).log_end_offset()
    now = int(time.time() * 1000)
    for first in range(start, start + count, 10):
        n = min(10, start + count - first)
        log.append(TOPIC, 0, encode_batch(
            [(now, b"k%d" % (first + i), b"%d" % (first + i), ()) for i in range(n)]))
    return start + count


class Lines:
    """Collects a subprocess's stdout lines in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self._stdout = proc.stdout
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for line in self._stdout:
            with self._cond:
                self.lines.append(line.strip())
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<eof>")
            self._cond.notify_all()

    def join(self) -> None:
        self._thread.join(timeout=60)
        self._stdout.close()

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out; reader said: {self.lines[-5:]}")
                self._cond.wait(remaining)
            return list(self.lines)


def test_a_reader_in_another_process_reads_across_tiering_without_gaps(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = tmp_path / "store"
    store.mkdir()
    url = f"file://{store}"
    with logstore.open(data, object_store_url=url, maintenance_interval_ms=None,
                       tier_interval_ms=None) as log:
        log.create_topic(TOPIC, partitions=1, config=CONFIG)
        end = append_numbered(log, 1200)  # local only, a few segments, before the reader starts
        stderr_path = tmp_path / "reader.stderr"
        with open(stderr_path, "w") as stderr_file:
            reader = subprocess.Popen(
                [sys.executable, str(WORKERS / "tier_reader.py"), str(data), url, TOPIC,
                 "seed-1"],
                cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr_file, text=True)
        lines = Lines(reader)
        try:
            lines.wait_for(lambda got: bool(got) and got[0] in ("ready", "<eof>"), 60)
            assert lines.lines[0] == "ready", lines.lines
            tiered = 0
            for _ in range(ROUNDS):
                end = append_numbered(log, 300)
                report = log.tier(TOPIC)
                assert report.failed == (), report
                tiered += report.segments_copied
                # Let the reader get through a pass now and then on this state.
                time.sleep(0.02)
            # Three more passes: the last two (one of each kind) began after the last tiering.
            done = sum(1 for line in lines.lines if line.startswith("ok"))
            got = lines.wait_for(
                lambda got: "<eof>" in got or any(line.startswith("bad") for line in got)
                or sum(1 for line in got if line.startswith("ok")) >= done + 3, 120)
            still_running = reader.poll() is None
        finally:
            reader.kill()
            reader.wait(timeout=60)
            lines.join()
        stderr = stderr_path.read_text()
        bad = [line for line in got if not line.startswith(("ok", "ready"))]
        if bad or not still_running:
            pytest.fail("the reader failed:\n" + "\n".join(bad).replace(" | ", "\n")
                        + "\n" + stderr, pytrace=False)
        passes = [line.split() for line in got if line.startswith("ok")]
        # Every pass read every offset from 0 to the end it saw, each with its own value.
        assert all(int(p[1]) == int(p[2]) for p in passes)

        plog = log.partition_log(TOPIC, 0)
        first_local = plog.first_local_offset()
        live = [r for r in log.metadata.remote_segments() if r.state == COPY_FINISHED]
        assert tiered == len(live) and live[0].base_offset == 0
        assert first_local > 1200 and plog.layout().log_start_offset == 0
        # The reader really read remote data: passes that started with offsets below the first
        # local segment already gone, and passes during which local copies went away.
        remote_passes = [p for p in passes if int(p[3]) > 0]
        moved_under = [p for p in passes if int(p[4]) > int(p[3])]
        assert len(remote_passes) >= 2, passes
        assert {p[5] for p in remote_passes} == {"fetch", "consumer"}, passes
        assert moved_under, passes
        for last in passes[-2:]:
            assert [int(x) for x in last[1:5]] == [end, end, first_local, first_local], passes
        assert {p[5] for p in passes[-2:]} == {"fetch", "consumer"}
        print(f"{len(passes)} passes, {len(remote_passes)} with remote data, "
              f"{len(moved_under)} with local copies dropped during the pass")
