"""The producer's record accumulator: records are collected into per-partition batches as they
are sent, and the sender thread drains the batches that are ready.

``send`` only stores the record tuple ``(timestamp_ms, key, value, headers)`` in the partition's
open batch; the sender encodes a whole batch in one call when it sends it (in C when the
accelerator is built). Batch sizes are tracked with an upper bound of each record's encoded size,
so a built batch is never larger than its limit.

A partition's queue holds batches in send order; every batch but the last is full. The last
one is also the partition's "open" batch, which ``append`` fills without looking at the queue;
invariant: a batch stops being open (the pointer is cleared) in the same critical section in
which it leaves its queue. A batch is
ready when it is full, when ``linger_ms`` has passed since its first record, or when a flush or
close is in progress. ``buffer_memory`` bounds the (estimated) bytes of records not yet
acknowledged: a send that would exceed it blocks up to ``max_block_ms`` and then fails with
BufferExhaustedError.

Time: ``linger_ms`` is measured on the log's clock (``Clock.monotonic_ms``), read once per batch,
never per record, so a test drives it with a ManualClock; ``max_block_ms`` bounds how long
``send`` blocks its caller and is real time.

Thread-safe: ``append`` is called by any number of application threads, ``drain`` by the sender.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

from logstore.client.futures import BatchResult
from logstore.clock import Clock, ClockCondition
from logstore.errors import BufferExhaustedError, IllegalStateError
from logstore.records.builder import build_batch, encode_records
from logstore.records.compression import Compression
from logstore.records.header import HEADER_SIZE, TRANSACTIONAL_MASK
from logstore.types import Header, TopicPartition

Record = tuple[int, bytes | None, bytes | None, Sequence[Header]]


class ProducerBatch:
    """One batch being filled or waiting to be appended."""

    __slots__ = ("created_ms", "max_bytes", "records", "reserved_bytes", "result", "size", "tp")

    def __init__(self, tp: TopicPartition, max_bytes: int, created_ms: float) -> None:
        self.tp = tp
        self.records: list[Record] = []
        self.size = HEADER_SIZE  # upper bound of the encoded, uncompressed batch
        self.max_bytes = max_bytes
        self.result = BatchResult(tp.topic, tp.partition)
        self.created_ms = created_ms  # on the producer's clock (monotonic_ms)
        self.reserved_bytes = 0

    def is_full(self) -> bool:
        return self.size >= self.max_bytes

    def build(
        self, compression: Compression, *, producer_id: int = -1, producer_epoch: int = -1,
        base_sequence: int = -1, transactional: bool = False,
    ) -> bytes:
        """Encode the batch (records section, compression, header, CRC)."""
        records = self.records
        base_timestamp = records[0][0]
        section, max_timestamp = encode_records(records, base_timestamp)
        return build_batch(
            section, len(records), base_timestamp_ms=base_timestamp,
            max_timestamp_ms=max_timestamp, compression=compression,
            attributes=TRANSACTIONAL_MASK if transactional else 0,
            producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=base_sequence,
        )


class RecordAccumulator:
    """Per-partition queues of batches. See the module docstring."""

    def __init__(
        self, *, batch_size: int, linger_ms: float, buffer_memory: int, clock: Clock
    ) -> None:
        self._batch_size = batch_size
        self._linger_ms = linger_ms
        self._buffer_memory = buffer_memory
        self._clock = clock
        self._lock = threading.Lock()
        self._ready = ClockCondition(clock, self._lock)  # the sender waits here
        self._space = threading.Condition(self._lock)  # blocked senders wait here
        # topic -> per-partition queues (a list indexed by partition, grown on demand)
        self._topics: dict[str, list[deque[ProducerBatch] | None]] = {}
        # topic -> the open (last) batch of each partition, for the fast path of append()
        self._open: dict[str, list[ProducerBatch | None]] = {}
        self._in_flight: set[ProducerBatch] = set()
        self._buffered = 0
        self._flushes = 0
        self._closing = False

    def append(
        self,
        topic: str,
        partition: int,
        record: Record,
        record_size: int,
        max_batch_bytes: int,
        max_block_s: float,
    ) -> tuple[BatchResult, int, bool, bool]:
        """Add a record to the partition's open batch, starting a new batch when it is full.

        Returns (the batch's result, the record's offset delta, whether a batch was started,
        whether a full batch now waits to be appended).
        """
        with self._lock:
            # The common case, once per record: the open batch has room.
            opened = self._open.get(topic)
            if opened is not None and partition < len(opened):
                batch = opened[partition]
                if batch is not None:
                    size = batch.size + record_size
                    buffered = self._buffered + record_size
                    if size <= batch.max_bytes and buffered <= self._buffer_memory and not (
                        self._closing
                    ):
                        records = batch.records
                        records.append(record)
                        batch.size = size
                        batch.reserved_bytes += record_size
                        self._buffered = buffered
                        return batch.result, len(records) - 1, False, False
            return self._append(topic, partition, record, record_size, max_batch_bytes,
                                max_block_s)

    def _append(
        self,
        topic: str,
        partition: int,
        record: Record,
        record_size: int,
        max_batch_bytes: int,
        max_block_s: float,
    ) -> tuple[BatchResult, int, bool, bool]:
        """:meth:`append` for everything but the common case; the caller holds the lock."""
        if self._closing:
            raise IllegalStateError("the producer is closed")
        if self._buffered + record_size > self._buffer_memory and self._buffered > 0:
            self._wait_for_space(record_size, max_block_s)
        queues = self._topics.get(topic)
        if queues is None or partition >= len(queues):
            queues = self._grow(topic, partition)
        queue = queues[partition]
        if queue is None:
            queue = queues[partition] = deque()
        batch = queue[-1] if queue else None
        if batch is None or (batch.size + record_size > batch.max_bytes and batch.records):
            limit = max(min(self._batch_size, max_batch_bytes), HEADER_SIZE + record_size)
            batch = ProducerBatch(TopicPartition(topic, partition), limit,
                                  self._clock.monotonic_ms())
            queue.append(batch)
            self._open_batches(topic, partition)[partition] = batch
            new_batch = True
            # The background sender must start this batch's linger timer.
            self._ready.notify()
        else:
            new_batch = False
        records = batch.records
        delta = len(records)
        records.append(record)
        batch.size += record_size
        batch.reserved_bytes += record_size
        self._buffered += record_size
        return batch.result, delta, new_batch, len(queue) > 1

    def _open_batches(self, topic: str, partition: int) -> list[ProducerBatch | None]:
        opened = self._open.setdefault(topic, [])
        opened.extend([None] * (partition + 1 - len(opened)))
        return opened

    def _grow(self, topic: str, partition: int) -> list[deque[ProducerBatch] | None]:
        queues = self._topics.setdefault(topic, [])
        queues.extend([None] * (partition + 1 - len(queues)))
        return queues

    def _wait_for_space(self, record_size: int, max_block_s: float) -> None:
        # Real time: max_block_ms bounds how long the caller is blocked, whatever the clock says.
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

    def _queues(self) -> list[deque[ProducerBatch]]:
        return [q for queues in self._topics.values() for q in queues if q]

    def ready_partitions(self) -> list[TopicPartition]:
        """Partitions whose oldest batch is ready."""
        ready: list[TopicPartition] = []
        with self._lock:
            now = self._clock.monotonic_ms()
            urgent = self._flushes > 0 or self._closing
            for queue in self._queues():
                batch = queue[0]
                if (len(queue) > 1 or urgent or batch.created_ms + self._linger_ms <= now
                        or batch.is_full()):
                    ready.append(batch.tp)
        return ready

    def drain_partition(self, tp: TopicPartition) -> list[ProducerBatch]:
        """Take the partition's ready batches, oldest first.

        Callers hold the partition's append lock, so batches of one partition are appended in
        the order they were taken.
        """
        taken: list[ProducerBatch] = []
        with self._lock:
            now = self._clock.monotonic_ms()
            queues = self._topics.get(tp.topic)
            queue = queues[tp.partition] if queues and tp.partition < len(queues) else None
            urgent = self._flushes > 0 or self._closing
            while queue:
                batch = queue[0]
                if len(queue) > 1 or urgent or batch.is_full() or (
                    batch.created_ms + self._linger_ms <= now
                ):
                    taken.append(queue.popleft())
                    self._in_flight.add(batch)
                else:
                    break
            if taken and not queue:
                # The open batch was taken: later records must start a new one.
                self._open[tp.topic][tp.partition] = None
        return taken

    def wait_for_work(self) -> None:
        """Block the sender until a batch may be ready: one was started or filled, a flush or
        close began, or the linger of the oldest waiting batch ran out on the clock."""
        with self._lock:
            queues = self._queues()
            # Only queued batches can be ready: while a flush (or close) waits for batches
            # that are already being appended, returning at once would spin this thread and
            # starve the waiting thread of the GIL.
            if queues and (self._flushes or self._closing or any(
                    len(q) > 1 or q[0].is_full() for q in queues)):
                return
            if self._closing and not self._in_flight and not queues:
                return  # drained: the sender's thread may end
            wait_ms = None
            if queues:
                # Read under the lock (see ClockCondition): a clock advanced after this read
                # notifies this wait.
                now = self._clock.monotonic_ms()
                ripe_at = min(q[0].created_ms for q in queues) + self._linger_ms
                if ripe_at <= now:
                    return
                wait_ms = ripe_at - now
            self._ready.wait_ms(wait_ms)

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
            if self._closing:
                self._ready.notify_all()  # a closing sender waits for the last appends

    def pending_results(self) -> list[BatchResult]:
        """Results of every batch not yet acknowledged (queued or in flight)."""
        with self._lock:
            results = [b.result for q in self._queues() for b in q]
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

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (records are refused)."""
        return self._closing

    def drained(self) -> bool:
        """Closed, and every batch appended or failed: nothing is left for the sender."""
        with self._lock:
            return self._closing and not self._in_flight and not self._queues()

    def abort(self, error: BaseException) -> None:
        """Fail every queued batch (used when closing without waiting)."""
        with self._lock:
            batches = [b for q in self._queues() for b in q]
            for queue in self._queues():
                queue.clear()
            for opened in self._open.values():
                opened[:] = [None] * len(opened)
            for batch in batches:
                self._buffered -= batch.reserved_bytes
            self._space.notify_all()
        for batch in batches:
            batch.result.fail(error)
