"""The producer's record accumulator: records are encoded into per-partition batches as they are
sent, and the sender thread drains batches that are ready.

A partition's queue holds batches in send order; every batch but the last is full. A batch is
ready when it is full, when ``linger_ms`` has passed since its first record, or when a flush or
close is in progress. ``buffer_memory`` bounds the bytes of records not yet acknowledged: a send
that would exceed it blocks up to ``max_block_ms`` and then fails with BufferExhaustedError.

Thread-safe: ``append`` is called by any number of application threads, ``drain`` by the sender.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Sequence

from logstore.client.futures import BatchResult
from logstore.errors import BufferExhaustedError, IllegalStateError
from logstore.records.builder import BatchBuilder
from logstore.records.compression import Compression
from logstore.records.header import HEADER_SIZE
from logstore.types import Header, TopicPartition


class ProducerBatch:
    """One batch being filled or waiting to be appended."""

    __slots__ = ("tp", "builder", "result", "created_s", "max_bytes", "reserved_bytes", "attempts")

    def __init__(self, tp: TopicPartition, builder: BatchBuilder, max_bytes: int) -> None:
        self.tp = tp
        self.builder = builder
        self.result = BatchResult()
        self.created_s = time.monotonic()
        self.max_bytes = max_bytes
        self.reserved_bytes = 0
        self.attempts = 0

    def has_room(self, record_size: int) -> bool:
        return self.builder.size_in_bytes + record_size <= self.max_bytes


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an appended record went."""

    result: BatchResult
    delta: int
    new_batch: bool


class RecordAccumulator:
    """Per-partition queues of batches. See the module docstring."""

    def __init__(
        self,
        *,
        batch_size: int,
        linger_ms: float,
        buffer_memory: int,
        compression: Compression,
    ) -> None:
        self._batch_size = batch_size
        self._linger_s = linger_ms / 1000.0
        self._buffer_memory = buffer_memory
        self._compression = compression
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # the sender waits here
        self._space = threading.Condition(self._lock)  # blocked senders wait here
        self._queues: dict[TopicPartition, deque[ProducerBatch]] = {}
        self._in_flight: set[ProducerBatch] = set()
        self._buffered = 0
        self._flushes = 0
        self._closing = False

    def append(
        self,
        tp: TopicPartition,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header],
        *,
        record_size: int,
        max_batch_bytes: int,
        max_block_s: float,
    ) -> Appended:
        """Add a record to the partition's open batch, starting a new batch when it is full."""
        with self._lock:
            if self._closing:
                raise IllegalStateError("the producer is closed")
            if self._buffered + record_size > self._buffer_memory and self._buffered > 0:
                deadline = time.monotonic() + max_block_s
                while self._buffered + record_size > self._buffer_memory and self._buffered > 0:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise BufferExhaustedError(
                            f"producer buffer ({self._buffer_memory} bytes) stayed full for "
                            f"{max_block_s:.3f} s"
                        )
                    self._space.wait(remaining)
                    if self._closing:
                        raise IllegalStateError("the producer is closed")
            queue = self._queues.get(tp)
            if queue is None:
                queue = self._queues[tp] = deque()
            batch = queue[-1] if queue else None
            new_batch = False
            if batch is None or (batch.builder.record_count and not batch.has_room(record_size)):
                limit = max(min(self._batch_size, max_batch_bytes), HEADER_SIZE + record_size)
                batch = ProducerBatch(tp, BatchBuilder(compression=self._compression), limit)
                queue.append(batch)
                new_batch = True
                # Either the previous batch is now full, or the sender must start this batch's
                # linger timer: both need the sender awake.
                self._ready.notify()
            delta = batch.builder.append(timestamp_ms, key, value, headers)
            batch.reserved_bytes += record_size
            self._buffered += record_size
            if not batch.has_room(0):
                self._ready.notify()
            return Appended(batch.result, delta, new_batch)

    def drain(self) -> tuple[list[ProducerBatch], float | None]:
        """Take every ready batch; also return how long until the next one ripens (None: no
        batch is waiting)."""
        now = time.monotonic()
        ready: list[ProducerBatch] = []
        wait_s: float | None = None
        with self._lock:
            urgent = self._flushes > 0 or self._closing
            for tp, queue in self._queues.items():
                while queue:
                    batch = queue[0]
                    full = len(queue) > 1 or not batch.has_room(0)
                    ripe_at = batch.created_s + self._linger_s
                    if full or urgent or ripe_at <= now:
                        ready.append(queue.popleft())
                        self._in_flight.add(batch)
                    else:
                        wait = ripe_at - now
                        wait_s = wait if wait_s is None else min(wait_s, wait)
                        break
        return ready, wait_s

    def wait_for_work(self, timeout_s: float | None) -> None:
        """Block the sender until a batch may be ready, or ``timeout_s`` passes."""
        with self._lock:
            if self._flushes or self._closing:
                return
            if any(len(q) > 1 or (q and not q[0].has_room(0)) for q in self._queues.values()):
                return
            self._ready.wait(timeout_s)

    def wake(self) -> None:
        with self._lock:
            self._ready.notify_all()

    def completed(self, batch: ProducerBatch) -> None:
        """The batch is acknowledged or failed: release its buffer memory."""
        with self._lock:
            self._in_flight.discard(batch)
            self._buffered -= batch.reserved_bytes
            batch.reserved_bytes = 0
            self._space.notify_all()

    def requeue(self, batch: ProducerBatch) -> None:
        """Put a batch whose append failed retriably back at the head of its queue."""
        with self._lock:
            self._in_flight.discard(batch)
            self._queues.setdefault(batch.tp, deque()).appendleft(batch)

    def pending_results(self) -> list[BatchResult]:
        """Results of every batch not yet acknowledged (queued or in flight)."""
        with self._lock:
            results = [b.result for q in self._queues.values() for b in q]
            results.extend(b.result for b in self._in_flight)
            return results

    def begin_flush(self) -> None:
        with self._lock:
            self._flushes += 1
            self._ready.notify_all()

    def end_flush(self) -> None:
        with self._lock:
            self._flushes -= 1

    def close(self) -> None:
        """Refuse new records; everything queued becomes ready."""
        with self._lock:
            self._closing = True
            self._ready.notify_all()
            self._space.notify_all()

    def is_empty(self) -> bool:
        with self._lock:
            return not self._in_flight and not any(self._queues.values())

    def abort(self, error: BaseException) -> None:
        """Fail every queued batch (used when closing without waiting)."""
        with self._lock:
            batches = [b for q in self._queues.values() for b in q]
            for queue in self._queues.values():
                queue.clear()
            for batch in batches:
                self._buffered -= batch.reserved_bytes
            self._space.notify_all()
        for batch in batches:
            batch.result.fail(error)
