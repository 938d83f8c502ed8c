"""Fixtures of the compaction tests: a log with a compacted topic on a manual clock, and
``kit``, the helpers to write keyed batches and read the log back (pytest's importlib mode
keeps test modules from importing each other, so helpers travel as a fixture)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import logstore
from logstore.clock import ManualClock
from logstore.records.builder import encode_batch
from logstore.records.header import BatchHeader
from logstore.records.reader import iter_records

Entry = tuple[int, bytes | None, bytes | None]
"""(offset, key, value) of a stored record."""

COMPACTED = {
    "cleanup.policy": "compact",
    "segment.bytes": "100000",
    "min.cleanable.dirty.ratio": "0.01",
}


def write(log: logstore.Log, pairs: Iterable[tuple[bytes, bytes | None]], *, topic: str = "c",
          timestamp_ms: int | None = None, per_batch: int = 1, **options: object) -> None:
    """Append (key, value) pairs to partition 0, ``per_batch`` records per batch."""
    ts = log.clock.time_ms() if timestamp_ms is None else timestamp_ms
    pairs = list(pairs)
    for i in range(0, len(pairs), per_batch):
        chunk = pairs[i:i + per_batch]
        log.append(topic, 0, encode_batch([(ts, k, v, ()) for k, v in chunk], **options))


def batches(log: logstore.Log, *, topic: str = "c") -> list[tuple[BatchHeader, list]]:
    """Every stored batch of partition 0 (control batches too) with its decoded records."""
    plog = log.partition_log(topic, 0)
    offset = plog.log_start_offset
    out = []
    while True:
        fetched = log.fetch(topic, 0, offset, max_bytes=1 << 20)
        if not fetched.records:
            return out
        for header, records in iter_records(fetched.records):
            if header.last_offset >= offset:
                out.append((header, records))
                offset = header.last_offset + 1
        if offset >= fetched.high_watermark:
            return out


def stored(log: logstore.Log, *, topic: str = "c") -> list[Entry]:
    """Every data record of partition 0 as (offset, key, value), in offset order."""
    return [(r.offset, r.key, r.value) for header, records in batches(log, topic=topic)
            if not header.is_control for r in records]


def latest(entries: Iterable[Entry]) -> dict[bytes, bytes]:
    """The current value of every key (a tombstone deletes it)."""
    state: dict[bytes, bytes] = {}
    for _, key, value in entries:
        assert key is not None
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def roll(log: logstore.Log, *, topic: str = "c") -> None:
    log.partition_log(topic, 0).roll()


@pytest.fixture
def kit() -> SimpleNamespace:
    return SimpleNamespace(write=write, batches=batches, stored=stored, latest=latest, roll=roll,
                           COMPACTED=COMPACTED)


@pytest.fixture
def clog(tmp_path: Path, clock: ManualClock) -> Iterator[logstore.Log]:
    """A log on a manual clock, without background maintenance, with topic ``c`` (one
    partition, ``cleanup.policy=compact``, cleaned at any dirty ratio)."""
    opened = logstore.open(tmp_path / "data", clock=clock, maintenance_interval_ms=None)
    opened.create_topic("c", partitions=1, config=COMPACTED)
    yield opened
    opened.close()
