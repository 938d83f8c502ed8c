"""kill -9 a producing process at random moments: no acknowledged write is ever lost.

Each round starts two producer processes on one partition with small segments (so kills also
land inside rolls): a victim that produces until it is killed with SIGKILL after a random number
of acknowledgements, and a survivor that produces a fixed number of records meanwhile. Every
line a worker prints is a record whose future resolved, i.e. an acknowledged write. After each
round the log is reopened and checked: every acknowledged record is at its offset with its
value, offsets from the log start to the log end have no gaps, and appends continue.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import logstore

WORKER = Path(__file__).resolve().parent.parent / "workers" / "produce_acked.py"
ROUNDS = int(os.environ.get("LOGSTORE_KILL_ROUNDS", "10"))


def start(data: Path, worker: str, count: int, batch: int, cwd: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(data), "t", worker, str(count), str(batch)],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    return proc


def collect(lines: list[str], acked: dict[int, str]) -> None:
    for line in lines:
        if not line.endswith("\n"):
            continue  # cut off by the kill: never fully printed, so never counted
        offset_text, value = line.rstrip("\n").split("\t")
        offset = int(offset_text)
        assert acked.get(offset, value) == value, f"offset {offset} acknowledged twice"
        acked[offset] = value


def stored_records(data: Path) -> tuple[int, int, dict[int, str]]:
    with logstore.open(data, maintenance_interval_ms=None) as log:
        consumer = log.consumer(auto_offset_reset="earliest")
        tp = logstore.TopicPartition("t", 0)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        start = consumer.beginning_offsets([tp])[tp]
        records: dict[int, str] = {}
        while consumer.position(tp) < end:
            for record in consumer.poll(timeout_ms=5000):
                records[record.offset] = record.value.decode()
        return start, end, records


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["fsync", "os"])
def test_kill_9_never_loses_an_acknowledged_write(tmp_path: Path, durability: str) -> None:
    data = tmp_path / "data"
    with logstore.open(data, maintenance_interval_ms=None) as log:
        log.create_topic("t", partitions=1,
                         config={"segment.bytes": "2000", "durability": durability})
    rng = random.Random(f"kill-9-{durability}")
    acked: dict[int, str] = {}
    for round_number in range(ROUNDS):
        victim = start(data, f"v{round_number}", 0, rng.choice([1, 3, 10]), tmp_path)
        survivor = start(data, f"s{round_number}", 150, rng.choice([1, 5]), tmp_path)
        victim_lines: list[str] = []
        for _ in range(rng.randint(1, 300)):
            line = victim.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            victim_lines.append(line)
        os.kill(victim.pid, signal.SIGKILL)
        # Read through the same file objects as readline(): communicate() would bypass what
        # they have already buffered.
        rest = victim.stdout.read()  # type: ignore[union-attr]
        assert victim.wait(timeout=60) == -signal.SIGKILL
        collect(victim_lines + rest.splitlines(keepends=True), acked)
        out = survivor.stdout.read()  # type: ignore[union-attr]
        err = survivor.stderr.read()  # type: ignore[union-attr]
        assert survivor.wait(timeout=120) == 0, err
        collect(out.splitlines(keepends=True), acked)
        for proc in (victim, survivor):
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]

        start_offset, end_offset, stored = stored_records(data)
        assert start_offset == 0
        assert sorted(stored) == list(range(end_offset)), "gap in offsets after a kill"
        missing = {o: v for o, v in acked.items() if stored.get(o) != v}
        assert not missing, f"acknowledged records lost or changed: {sorted(missing)[:10]}"
    # Appends continue after the last kill.
    with logstore.open(data, maintenance_interval_ms=None) as log:
        end = log.describe_topic("t").partitions[0].log_end_offset
        with log.producer(linger_ms=0) as producer:
            assert producer.send("t", value=b"after", partition=0).result(30).offset == end
