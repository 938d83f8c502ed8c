"""Several OS processes sharing one data directory (real subprocesses)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import logstore
from logstore.log.notify import AppendNotifier

WORKERS = Path(__file__).resolve().parent.parent / "workers"


def spawn(script: str, *args: object, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKERS / script), *map(str, args)],
        cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def test_processes_appending_to_one_partition_get_unique_gap_free_offsets(tmp_path):
    data = tmp_path / "data"
    with logstore.open(data, maintenance_interval_ms=None) as log:
        # Small segments so the processes also race on rolls.
        log.create_topic("t", partitions=1, config={"segment.bytes": "4000", "durability": "os"})
    workers = [spawn("produce_acked.py", data, "t", w, 400, 5, cwd=tmp_path) for w in range(4)]
    acked: dict[int, str] = {}
    for proc in workers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        for line in out.splitlines()[1:]:
            offset, value = line.split("\t")
            assert int(offset) not in acked, f"offset {offset} given twice"
            acked[int(offset)] = value
    assert sorted(acked) == list(range(1600)), "offsets are not gap-free"
    for worker in range(4):  # each process's own records got increasing offsets
        mine = sorted(
            (int(v.split("-")[1]), o) for o, v in acked.items() if v.startswith(f"{worker}-")
        )
        assert [o for _, o in mine] == sorted(o for _, o in mine)
    with logstore.open(data, maintenance_interval_ms=None) as log:
        consumer = log.consumer(auto_offset_reset="earliest")
        consumer.assign([logstore.TopicPartition("t", 0)])
        stored: dict[int, str] = {}
        while len(stored) < 1600:
            records = consumer.poll(timeout_ms=5000)
            assert records, "records missing"
            stored.update((r.offset, r.value.decode()) for r in records)
        assert stored == acked
        assert len(log.partition_log("t", 0).segment_bases()) >= 5, "rolls were not exercised"


def test_a_consumer_wakes_up_for_a_record_appended_by_another_process(tmp_path):
    data = tmp_path / "data"
    with logstore.open(data, maintenance_interval_ms=None) as log:
        log.create_topic("t", partitions=1)
        consumer = log.consumer(auto_offset_reset="latest")
        consumer.assign([logstore.TopicPartition("t", 0)])
        assert consumer.poll(timeout_ms=0) == []
        worker = spawn("append_one.py", data, "t", "from-elsewhere", cwd=tmp_path)
        assert worker.stdout.readline().strip() == "ready"
        notifier = log.notifier
        sequence = notifier.sequence()
        worker.stdin.write("go\n")
        worker.stdin.flush()
        started = time.monotonic()
        records = consumer.poll(timeout_ms=60_000)
        waited = time.monotonic() - started
        assert [r.value for r in records] == [b"from-elsewhere"]
        # Liveness, not speed: a missed wake-up would only return at the 60 s timeout.
        assert waited < 30, f"poll was not woken by the other process's append ({waited:.1f} s)"
        assert notifier.cross_process
        assert notifier.sequence() != sequence
        worker.communicate(timeout=30)


def test_inotify_reports_another_processes_append(tmp_path):
    data = tmp_path / "data"
    with logstore.open(data, maintenance_interval_ms=None) as log:
        log.create_topic("t", partitions=1)
        doorbell = log.partition_log("t", 0).doorbell_path
    notifier = AppendNotifier(fallback_poll_ms=60_000)
    try:
        notifier.watch(doorbell)
        assert notifier.cross_process
        worker = spawn("append_one.py", data, "t", "x", cwd=tmp_path)
        assert worker.stdout.readline().strip() == "ready"
        sequence = notifier.sequence()
        worker.stdin.write("go\n")
        worker.stdin.flush()
        # Nothing in this process appends: only inotify can move the sequence.
        assert notifier.wait(sequence, 30.0)
        worker.communicate(timeout=30)
    finally:
        notifier.close()


def test_poll_waits_without_burning_cpu(log):
    log.create_topic("t", partitions=2)
    consumer = log.consumer(auto_offset_reset="latest")
    consumer.assign([logstore.TopicPartition("t", 0), logstore.TopicPartition("t", 1)])
    cpu_before = time.process_time()
    assert consumer.poll(timeout_ms=1000) == []
    cpu_used = time.process_time() - cpu_before
    # A busy loop would use about a second of CPU here.
    assert cpu_used < 0.3, f"poll used {cpu_used:.3f} s of CPU while waiting"


def signal_when_waiting(log, monkeypatch) -> threading.Event:
    """An event set when a consumer of ``log`` starts waiting for data."""
    waiting = threading.Event()
    original = log.notifier.wait

    def wait(sequence: int, timeout_s: float) -> bool:
        waiting.set()
        return original(sequence, timeout_s)

    monkeypatch.setattr(log.notifier, "wait", wait)
    return waiting


def test_close_from_another_thread_stops_a_blocked_poll(log, monkeypatch):
    log.create_topic("t", partitions=1)
    consumer = log.consumer()
    consumer.assign([logstore.TopicPartition("t", 0)])
    waiting = signal_when_waiting(log, monkeypatch)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(consumer.poll(timeout_ms=60_000)))
    thread.start()
    assert waiting.wait(30)
    consumer.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert result == [[]]


def test_a_record_appended_in_this_process_wakes_a_waiting_poll(log, monkeypatch):
    log.create_topic("t", partitions=1)
    consumer = log.consumer(auto_offset_reset="latest")
    consumer.assign([logstore.TopicPartition("t", 0)])
    consumer.poll(timeout_ms=0)
    producer = log.producer(linger_ms=0)
    waiting = signal_when_waiting(log, monkeypatch)

    def send_once_waiting() -> None:
        waiting.wait(30)
        producer.send("t", value=b"hi", partition=0)

    sender = threading.Thread(target=send_once_waiting)
    sender.start()
    records = consumer.poll(timeout_ms=30_000)
    sender.join()
    assert [r.value for r in records] == [b"hi"]
