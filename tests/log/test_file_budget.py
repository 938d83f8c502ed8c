"""The storage engine's file-descriptor budget: many partitions at a small ``ulimit -n``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import logstore
from logstore import TopicPartition
from logstore.errors import TooManyOpenFilesError
from logstore.log.handles import FileBudget


class FakeHandle:
    def __init__(self, budget: FileBudget, cost: int = 3) -> None:
        self.budget = budget
        self.lock = threading.Lock()
        self.open = True
        budget.opened(self, cost)

    def try_close_idle(self) -> bool:
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self.open:
                self.open = False
                self.budget.closed(self)
        finally:
            self.lock.release()
        return True


def test_the_budget_closes_the_least_recently_used_idle_handles() -> None:
    budget = FileBudget(30)
    handles = [FakeHandle(budget) for _ in range(10)]  # 30 files: full
    assert budget.open_files == 30 and all(h.open for h in handles)
    budget.used(handles[0])  # 0 is now the most recently used
    with handles[1].lock:  # 1 is busy
        FakeHandle(budget)
        FakeHandle(budget)
    assert budget.open_files <= 30
    assert handles[0].open and handles[1].open  # recent and busy ones stay
    assert not handles[2].open and not handles[3].open  # the oldest idle ones went
    assert budget.evictions == 2


def test_the_budget_is_soft_when_everything_is_busy() -> None:
    budget = FileBudget(16)
    handles = [FakeHandle(budget, 8) for _ in range(2)]
    with handles[0].lock, handles[1].lock:
        extra = FakeHandle(budget, 8)
    assert extra.open and budget.open_files == 24  # over, rather than failing or blocking


def test_many_partitions_within_a_small_budget(tmp_path: Path) -> None:
    """300 partitions, each needing about 7 descriptors open at once, served by 60."""
    with logstore.open(tmp_path / "data", maintenance_interval_ms=None,
                       max_open_files=60) as log:
        log.create_topic("t", partitions=300, config={"durability": "os"})
        with log.producer(linger_ms=5) as producer:
            futures = [producer.send("t", value=b"%d" % p, partition=p) for p in range(300)]
            producer.flush()
            assert [f.result(30).offset for f in futures] == [0] * 300
        with log.consumer(auto_offset_reset="earliest") as consumer:
            consumer.assign([TopicPartition("t", p) for p in range(300)])
            seen: dict[int, bytes] = {}
            while len(seen) < 300:
                for record in consumer.poll(timeout_ms=1000):
                    seen[record.partition] = record.value
        assert seen == {p: b"%d" % p for p in range(300)}
        budget = log._manager.budget
        assert budget.open_files <= 60 + 8  # soft: a handle in use may overshoot briefly
        assert budget.evictions > 0


WORKER = textwrap.dedent("""
    import json, os, resource, sys, logstore
    from logstore import TopicPartition
    limit, partitions, data = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    budget = int(sys.argv[4]) if len(sys.argv) > 4 else None
    try:
        with logstore.open(data, maintenance_interval_ms=None, max_open_files=budget) as log:
            log.create_topic("t", partitions=partitions, config={"durability": "os"})
            with log.producer(linger_ms=20) as producer:
                for p in range(partitions):
                    producer.send("t", value=b"%d" % p, partition=p)
                producer.flush()
            with log.consumer(auto_offset_reset="earliest") as consumer:
                consumer.assign([TopicPartition("t", p) for p in range(partitions)])
                seen = set()
                while len(seen) < partitions:
                    seen.update(r.partition for r in consumer.poll(timeout_ms=1000))
            fds = len(os.listdir("/proc/self/fd"))
            print(json.dumps({"ok": True, "fds": fds, "seen": len(seen)}))
    except logstore.LogstoreError as exc:
        print(json.dumps({"ok": False, "type": type(exc).__name__, "message": str(exc)}))
""")


def run_worker(tmp_path: Path, *args: object) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, *map(str, args)],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_one_process_serves_thousands_of_partitions_at_ulimit_256(tmp_path: Path) -> None:
    """The default budget (three quarters of ``ulimit -n``) at a quarter of the usual 1024:
    2,000 partitions produced to and consumed from. (``python -m bench.partitions`` runs the
    10,000-partition case at 1024.)"""
    result = run_worker(tmp_path, 256, 2000, tmp_path / "data")
    assert result == {"ok": True, "fds": result["fds"], "seen": 2000}, result
    assert isinstance(result["fds"], int) and result["fds"] <= 256


def test_running_out_of_descriptors_is_its_own_clear_error(tmp_path: Path) -> None:
    """A budget larger than the process may hold: the error says what to do."""
    result = run_worker(tmp_path, 64, 100, tmp_path / "data", 10_000)
    assert result["ok"] is False, result
    assert result["type"] == TooManyOpenFilesError.__name__, result
    assert "ulimit -n" in str(result["message"]) and "max_open_files" in str(result["message"])


def test_a_partition_log_works_after_the_budget_closed_its_files(tmp_path: Path) -> None:
    """Everything a partition holds (state, writer, readers, doorbell) can be closed under it
    and comes back on the next use."""
    with logstore.open(tmp_path / "data", maintenance_interval_ms=None,
                       max_open_files=16) as log:
        log.create_topic("a", config={"segment.bytes": "2000"})
        log.create_topic("b")
        for round_ in range(5):
            for topic in ("a", "b"):
                with log.producer(linger_ms=0) as producer:
                    for i in range(20):
                        producer.send(topic, value=b"%d-%d-" % (round_, i) + b"x" * 100,
                                      partition=0)
            assert log.fetch("a", 0, 0, max_bytes=1 << 20).high_watermark == 20 * (round_ + 1)
        assert log._manager.budget.evictions > 0
        assert len(log.partition_log("a", 0).segment_bases()) > 1
        assert os.path.exists(log.partition_log("a", 0).doorbell_path)
