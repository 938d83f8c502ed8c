"""kill -9 of ``logstore serve`` during acks=all produce: every acknowledged record is there after
a restart, exactly once, at the offset it was acknowledged at; and during the transactions of
one transactional producer: every committed transaction is read once, none is left open.

A confluent-kafka idempotent producer (acks=all) in the test process produces to two
partitions with small segments (so kills also land inside rolls) and records every delivery
report. Each round SIGKILLs the broker after a random number of acknowledgements, while
requests are in flight, and restarts it on the same data directory and port; the producer
reconnects and retries what was not acknowledged. At the end the producer is flushed, a last
batch is produced (produce goes on, at the next offsets), the broker is stopped cleanly and the
directory is read through the embedded API: offsets have no gaps, and every acknowledged value
is at its acknowledged offset and nowhere else (retries across a crash were recognised as
duplicates).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

import logstore

LOGSTORE_BIN = Path(sys.executable).parent / "logstore"
ROUNDS = int(os.environ.get("LOGSTORE_BROKER_KILL_ROUNDS", "4"))
PARTITIONS = 2
TOPIC = "t"
START_TIMEOUT_S = 60
FLUSH_TIMEOUT_S = 90
#: Records produced and not yet acknowledged, at most: enough to keep requests in flight at the
#: kill, few enough for the flush after the last restart to be quick.
MAX_OUTSTANDING = 1000


def start_broker(data: Path, port: int, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``logstore serve`` on ``port`` (0: any); returns it and its port once it listens."""
    with log_path.open("w") as stderr:
        proc = subprocess.Popen(
            [str(LOGSTORE_BIN), "--data-dir", str(data), "serve", "--listen",
             f"127.0.0.1:{port}", "--no-auto-create-topics"],
            stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", log_path.read_text())
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise AssertionError(f"the broker did not start: {log_path.read_text()}")


class Deliveries:
    """Every delivery report: the acknowledged (partition, offset) of each value, and the
    values that failed."""

    def __init__(self) -> None:
        self.acked: dict[bytes, tuple[int, int]] = {}
        self.failed: dict[bytes, KafkaError] = {}

    def report(self, error: KafkaError | None, message: Any) -> None:
        value = message.value()
        assert value not in self.acked, f"{value!r} reported twice"
        if error is not None:
            self.failed[value] = error
        else:
            self.acked[value] = (message.partition(), message.offset())


def produce(producer: Producer, value: bytes, deliveries: Deliveries) -> None:
    while True:
        try:
            producer.produce(TOPIC, key=value, value=value, on_delivery=deliveries.report)
            return
        except BufferError:
            producer.poll(0.05)  # the local queue is full while the broker is away


def stored_records(data: Path) -> dict[int, tuple[int, int, dict[int, bytes]]]:
    """Per partition: (log start, log end, offset -> value), read through the embedded API."""
    stored = {}
    with logstore.open(data, maintenance_interval_ms=None) as log:
        consumer = log.consumer(auto_offset_reset="earliest")
        for partition in range(PARTITIONS):
            tp = logstore.TopicPartition(TOPIC, partition)
            consumer.assign([tp])
            start = consumer.beginning_offsets([tp])[tp]
            end = consumer.end_offsets([tp])[tp]
            records: dict[int, bytes] = {}
            while consumer.position(tp) < end:
                for record in consumer.poll(timeout_ms=5000):
                    records[record.offset] = record.value
            stored[partition] = (start, end, records)
        consumer.close()
    return stored


@pytest.mark.slow
def test_kill_9_of_the_broker_loses_no_acknowledged_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with logstore.open(data, maintenance_interval_ms=None) as log:
        log.create_topic(TOPIC, partitions=PARTITIONS, config={"segment.bytes": "20000"})
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    proc, port = start_broker(data, 0, tmp_path / "broker-0.log")
    deliveries = Deliveries()
    producer = Producer({
        "bootstrap.servers": f"127.0.0.1:{port}", "enable.idempotence": True, "acks": "all",
        "linger.ms": 2, "batch.num.messages": 50, "message.timeout.ms": FLUSH_TIMEOUT_S * 1000,
        "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200, "retry.backoff.ms": 20})
    sent = 0
    try:
        for round_number in range(ROUNDS):
            target = len(deliveries.acked) + rng.randint(1, 2000)
            while len(deliveries.acked) < target:
                if sent - len(deliveries.acked) < MAX_OUTSTANDING:
                    produce(producer, b"%d-%d" % (round_number, sent), deliveries)
                    sent += 1
                    producer.poll(0)
                else:
                    producer.poll(0.01)
            # Requests are in flight: kill the broker mid-produce, then serve the directory
            # again on the same port (the producer knows only that address).
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
            proc, _ = start_broker(data, port, tmp_path / f"broker-{round_number + 1}.log")
        assert producer.flush(FLUSH_TIMEOUT_S) == 0, "messages still unacknowledged"
        # Produce goes on after the last restart, at the next offsets.
        ends = {p: max((o for q, o in deliveries.acked.values() if q == p), default=-1) + 1
                for p in range(PARTITIONS)}
        after = [b"after-%d" % i for i in range(20)]
        for value in after:
            produce(producer, value, deliveries)
        assert producer.flush(FLUSH_TIMEOUT_S) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, (tmp_path / f"broker-{ROUNDS}.log").read_text()
    assert not deliveries.failed, f"seed {seed}: {list(deliveries.failed.items())[:5]}"
    assert len(deliveries.acked) == sent + len(after)
    for partition in range(PARTITIONS):
        new = sorted(o for v, (p, o) in deliveries.acked.items() if v in after and p == partition)
        assert new == list(range(ends[partition], ends[partition] + len(new))), f"seed {seed}"

    stored = stored_records(data)
    for partition, (start, end, records) in stored.items():
        assert start == 0
        assert sorted(records) == list(range(end)), f"seed {seed}: a gap in partition {partition}"
        counts = Counter(records.values())
        for value, (acked_partition, offset) in deliveries.acked.items():
            if acked_partition == partition:
                assert records.get(offset) == value, f"seed {seed}: {value!r} lost at {offset}"
                assert counts[value] == 1, f"seed {seed}: {value!r} stored {counts[value]} times"


def committed_values(data: Path) -> tuple[list[bytes], int, int]:
    """The read_committed values of partition 0, its last stable offset and high watermark."""
    with logstore.open(data, maintenance_interval_ms=None) as log:
        partition = log.partition_log(TOPIC, 0)
        stable, high = partition.last_stable_offset, partition.high_watermark
        consumer = log.consumer(auto_offset_reset="earliest",
                                isolation_level="read_committed")
        tp = logstore.TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        values: list[bytes] = []
        while consumer.position(tp) < stable:
            values.extend(record.value for record in consumer.poll(timeout_ms=5000))
        consumer.close()
    return values, stable, high



class Restarts:
    """The broker process, killed and restarted on the same port from any thread."""

    def __init__(self, data: Path, logs: Path) -> None:
        self._data, self._logs = data, logs
        self._lock = threading.Lock()
        self.kills = 0
        self.proc, self.port = start_broker(data, 0, logs / "broker-0.log")

    def kill_and_restart(self) -> None:
        with self._lock:
            os.kill(self.proc.pid, signal.SIGKILL)
            assert self.proc.wait(timeout=30) == -signal.SIGKILL
            self.kills += 1
            self.proc, _ = start_broker(self._data, self.port,
                                        self._logs / f"broker-{self.kills}.log")

    def stop(self) -> int:
        with self._lock:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=60)


def commit_or_abort(producer: Producer, values: list[bytes], committed: list[bytes],
                    aborted: list[bytes]) -> None:
    """Commit the open transaction, retrying while the client says the error is retriable, and
    abort it when the client says it must be aborted."""
    for _ in range(20):
        try:
            producer.commit_transaction(FLUSH_TIMEOUT_S)
        except KafkaException as exc:
            error = exc.args[0]
            if error.retriable():
                continue
            if error.txn_requires_abort():
                producer.abort_transaction(FLUSH_TIMEOUT_S)
                aborted.extend(values)
                return
            raise
        committed.extend(values)
        return
    raise AssertionError("the commit kept failing")


@pytest.mark.slow
def test_kill_9_of_the_broker_during_transactions_of_one_producer(tmp_path: Path) -> None:
    """One confluent-kafka transactional producer runs transaction after transaction (classic
    ends: it keeps its epoch) while the broker is SIGKILLed and restarted, inside transactions
    and while commits are in flight. Afterwards read_committed holds every committed
    transaction exactly once and in order, nothing of the aborted ones, and no transaction is
    left open (the last stable offset is the high watermark)."""
    data = tmp_path / "data"
    with logstore.open(data, maintenance_interval_ms=None) as log:
        log.create_topic(TOPIC, partitions=1, config={"segment.bytes": "20000"})
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    broker = Restarts(data, tmp_path)
    producer = Producer({
        "bootstrap.servers": f"127.0.0.1:{broker.port}", "transactional.id": "crash-tx",
        "linger.ms": 2, "message.timeout.ms": FLUSH_TIMEOUT_S * 1000,
        "transaction.timeout.ms": FLUSH_TIMEOUT_S * 1000,
        "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200, "retry.backoff.ms": 20})
    committed: list[bytes] = []
    aborted: list[bytes] = []
    try:
        producer.init_transactions(FLUSH_TIMEOUT_S)
        for number in range(ROUNDS * 4):
            values = [b"t%d-%d" % (number, i) for i in range(rng.randint(1, 300))]
            kill_at = rng.randrange(len(values)) if number % 4 == 1 else None
            producer.begin_transaction()
            for i, value in enumerate(values):
                if i == kill_at:
                    broker.kill_and_restart()  # inside the transaction
                produce(producer, value, Deliveries())
            killer = None
            if number % 4 == 3:  # while the commit's requests are in flight
                killer = threading.Timer(rng.uniform(0, 0.02), broker.kill_and_restart)
                killer.start()
            commit_or_abort(producer, values, committed, aborted)
            if killer is not None:
                killer.join(START_TIMEOUT_S)
    finally:
        producer.flush(10)
        exit_code = broker.stop()
    assert exit_code == 0
    assert broker.kills == 2 * ROUNDS
    values, stable, high = committed_values(data)
    assert stable == high, f"seed {seed}: a transaction was left open"
    assert values == committed, f"seed {seed}: committed transactions differ"
    assert not set(values) & set(aborted), f"seed {seed}: aborted records were read"
