"""Fixtures for the tiered-storage tests: a log with a memory object store and a manual clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from logstore.backends.memory_store import MemoryObjectStore

import logstore
from logstore.clock import ManualClock

T0 = 1_700_000_000_000
#: Small segments (many of them) and only the active segment kept locally once tiered.
TIERED = {"remote.storage.enable": "true", "segment.bytes": "4096", "local.retention.bytes": "0"}


class TierKit:
    """Opens logs on one directory and one memory store; writes numbered records."""

    def __init__(self, directory: Path, clock: ManualClock, store: MemoryObjectStore) -> None:
        self.directory = directory
        self.clock = clock
        self.store = store
        self.logs: list[logstore.Log] = []

    def open(self, **options: Any) -> logstore.Log:
        options.setdefault("object_store", self.store)
        log = logstore.open(self.directory, clock=self.clock, maintenance_interval_ms=None,
                            tier_interval_ms=None, **options)
        self.logs.append(log)
        return log

    def produce(self, log: logstore.Log, topic: str, count: int, *, start: int = 0,
                partition: int = 0) -> None:
        """Records ``start .. start+count-1``: key ``k<i % 7>``, value ``v<i>``, a header and
        a timestamp of T0 + i, in small batches."""
        producer = log.producer(linger_ms=0, batch_size=600)
        for i in range(start, start + count):
            producer.send(topic, key=b"k%d" % (i % 7), value=b"v%06d" % i, partition=partition,
                          headers=[("h", b"%d" % i)], timestamp_ms=T0 + i)
        producer.flush()
        producer.close()

    def close(self) -> None:
        for log in self.logs:
            log.close()


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[TierKit]:
    clock = ManualClock(T0)
    tiered = TierKit(tmp_path / "data", clock, MemoryObjectStore(clock=clock))
    yield tiered
    tiered.close()


@pytest.fixture
def read_all() -> Callable[..., list[tuple[int, bytes | None, bytes | None, int, tuple[Any, ...]]]]:
    """``read_all(log, topic, partition=0, isolation_level=...)``: every record from the log
    start as (offset, key, value, timestamp, headers), through a consumer."""

    def read(log: logstore.Log, topic: str, partition: int = 0,
             isolation_level: str = "read_uncommitted") -> list[tuple[Any, ...]]:
        consumer = log.consumer(auto_offset_reset="earliest", isolation_level=isolation_level)
        consumer.assign([(topic, partition)])
        end = (log.partition_log(topic, partition).last_stable_offset
               if isolation_level == "read_committed"
               else log.partition_log(topic, partition).high_watermark)
        out: list[tuple[Any, ...]] = []
        while consumer.position((topic, partition)) < end:
            for r in consumer.poll(timeout_ms=100):
                out.append((r.offset, r.key, r.value, r.timestamp_ms, tuple(r.headers)))
        consumer.close()
        return out

    return read
