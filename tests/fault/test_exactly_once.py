"""Exactly-once across real processes: a transactional copier killed with SIGKILL at random
points many times, and zombie fencing between two processes with one transactional id."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import logstore
from logstore.types import TopicPartition

WORKERS = Path(__file__).resolve().parent.parent / "workers"
PARTITIONS = 3
PER_PARTITION = 400


@pytest.fixture(params=["sqlite", "postgresql"])
def metadata_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgresql_url") if request.param == "postgresql" else None


def copier(tmp_path: Path, metadata_url: str | None, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, str(WORKERS / "copier.py"), str(tmp_path / "data"), "in", "out",
               "copier-1", *extra]
    if metadata_url:
        command += ["--metadata-url", metadata_url]
    return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout lines, read by a thread (so waiting for one can time out)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    return lines


def read_all(log: logstore.Log, topic: str, isolation: str) -> dict[int, list[bytes]]:
    consumer = log.consumer(auto_offset_reset="earliest", isolation_level=isolation)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    values: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for record in consumer.poll(timeout_ms=2000):
            values[record.partition].append(record.value)
    consumer.close()
    return values


@pytest.mark.slow
def test_a_copier_killed_at_random_points_copies_every_record_exactly_once(
    tmp_path: Path, metadata_url: str | None
) -> None:
    with logstore.open(tmp_path / "data", metadata_url=metadata_url,
                       maintenance_interval_ms=None) as log:
        log.create_topic("in", partitions=PARTITIONS)
        log.create_topic("out", partitions=PARTITIONS)
        with log.producer(linger_ms=5) as producer:
            for p in range(PARTITIONS):
                for i in range(PER_PARTITION):
                    producer.send("in", value=b"%d-%d" % (p, i), partition=p)
    rng = random.Random(f"copier-{metadata_url is None}")
    kills = 0
    for _ in range(8):
        proc = copier(tmp_path, metadata_url, "--batch", "10", "--txn-delay-ms", "30")
        lines = lines_of(proc)
        assert lines.get(timeout=60) == "ready"
        try:
            for _ in range(rng.randint(0, 12)):  # let it commit some transactions, or none
                lines.get(timeout=5)
        except queue.Empty:
            pass  # nothing left to copy
        # Kill at a random moment of the next transaction (often while it is open).
        time.sleep(rng.uniform(0, 0.05))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()  # type: ignore[union-attr]
        kills += 1
    final = copier(tmp_path, metadata_url, "--exit-when-idle")
    _out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err

    with logstore.open(tmp_path / "data", metadata_url=metadata_url,
                       maintenance_interval_ms=None) as log:
        committed = read_all(log, "out", "read_committed")
        everything = read_all(log, "out", "read_uncommitted")
        for p in range(PARTITIONS):
            assert committed[p] == [b"copy:%d-%d" % (p, i) for i in range(PER_PARTITION)], (
                f"partition {p}: the committed output is not exactly one copy, in order")
        aborted = sum(len(v) for v in everything.values()) - PARTITIONS * PER_PARTITION
        print(f"{kills} kills; records of aborted transactions visible to read_uncommitted: "
              f"{aborted}")
        assert aborted > 0, "no kill landed inside an open transaction: the test lost its point"
        assert all(part.last_stable_offset == part.high_watermark
                   for part in log.describe_topic("out").partitions), "a transaction hangs"


ZOMBIE = '''
import sys, logstore
log = logstore.open(sys.argv[1], metadata_url=sys.argv[2] or None, maintenance_interval_ms=None)
producer = log.producer(transactional_id="shared", linger_ms=0)
producer.init_transactions()
producer.begin_transaction()
producer.send("t", value=b"from-zombie", partition=0).result(10)
print("sent", flush=True)
sys.stdin.readline()  # wait until the new instance has taken over
try:
    producer.send("t", value=b"late", partition=0).result(10)
    producer.commit_transaction()
    print("committed", flush=True)
except logstore.ProducerFencedError as exc:
    print("fenced", type(exc).__name__, flush=True)
'''


@pytest.mark.slow
def test_a_new_instance_fences_the_zombie_of_its_transactional_id(
    tmp_path: Path, metadata_url: str | None
) -> None:
    with logstore.open(tmp_path / "data", metadata_url=metadata_url,
                       maintenance_interval_ms=None) as log:
        log.create_topic("t", partitions=1)
        zombie = subprocess.Popen(
            [sys.executable, "-c", ZOMBIE, str(tmp_path / "data"), metadata_url or ""],
            cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        assert zombie.stdout is not None and zombie.stdin is not None
        assert zombie.stdout.readline().strip() == "sent"
        assert log.describe_topic("t").partitions[0].last_stable_offset == 0, "open transaction"
        successor = log.producer(transactional_id="shared", linger_ms=0)
        successor.init_transactions()  # aborts the zombie's open transaction and fences it
        assert log.describe_topic("t").partitions[0].last_stable_offset == \
            log.describe_topic("t").partitions[0].high_watermark
        zombie.stdin.write("go\n")
        zombie.stdin.flush()
        out, err = zombie.communicate(timeout=60)
        assert out.strip() == "fenced ProducerFencedError", err
        with successor.transaction():
            successor.send("t", value=b"from-successor", partition=0)
        values = read_all_partition(log, "t")
        assert values == [b"from-successor"], "the zombie's records are aborted"
        successor.close()


def read_all_partition(log: logstore.Log, topic: str) -> list[bytes]:
    consumer = log.consumer(auto_offset_reset="earliest", isolation_level="read_committed")
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    end = consumer.end_offsets([tp])[tp]
    values = []
    while consumer.position(tp) < end:
        values.extend(r.value for r in consumer.poll(timeout_ms=2000))
    consumer.close()
    return values
