"""The producer's sender: encodes ready batches and appends them to the partition logs.

Who appends:

* A ``send`` that fills a batch appends the full batches of that partition itself, on the
  caller's thread ("caller runs"), before it returns. In CPython a background thread that
  needs the GIL back while the application thread is busy producing waits up to the switch
  interval (5 ms) for it, once per hand-off; appending on the producing thread costs no
  hand-off at all, and the SQLite I/O of the append releases the GIL for other threads.
* A background thread appends what nobody else does: batches whose ``linger_ms`` ran out, and
  everything on ``flush`` and ``close``. Several partitions' appends run on a small pool, so
  their fsyncs overlap.

Order: every drain-and-append of a partition happens under that partition's append lock, so a
partition's batches are appended in the order they were filled, whoever appends them.

Retriable append failures (a database locked by another process) are retried with the same
bytes, with backoff, until the batch's ``delivery_timeout_ms`` runs out: an idempotent producer's
batch carries its producer id and sequence, so a retry of an append that did happen (its answer
was lost) is recognised by the partition and answered with the original offsets. Other failures
fail the batch's futures; a rejected batch gives its sequence numbers back, so the next batch of
the partition follows the last one appended.

Sequences: an idempotent producer numbers each partition's records from 0 in every epoch; a
batch gets its base sequence when it is encoded, under the partition's append lock, so the
numbers follow append order.

Thread-safe.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from logstore.client.access import ClientAccess
from logstore.client.accumulator import ProducerBatch, RecordAccumulator
from logstore.errors import LogstoreError
from logstore.log.producer_state import next_sequence
from logstore.records.compression import Compression
from logstore.types import TopicPartition

MAX_APPEND_THREADS = 4


class Sender:
    """Appends ready batches (see the module docstring)."""

    def __init__(
        self,
        accumulator: RecordAccumulator,
        access: ClientAccess,
        *,
        compression: Compression,
        delivery_timeout_s: float,
        retry_backoff_s: float,
        name: str,
    ) -> None:
        self._accumulator = accumulator
        self._access = access
        self._compression = compression
        self._delivery_timeout_s = delivery_timeout_s
        self._retry_backoff_s = retry_backoff_s
        self._closing = False
        self._identity = (-1, -1)  # (producer id, epoch); -1: not idempotent
        self._transactional = False
        self._sequences: dict[TopicPartition, int] = {}
        # transactional producers: batch failures since the last take_failures()
        self.failures: list[BaseException] = []
        self._locks_lock = threading.Lock()
        self._partition_locks: dict[TopicPartition, threading.Lock] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=MAX_APPEND_THREADS, thread_name_prefix=f"logstore-append-{name}"
        )
        self._thread = threading.Thread(target=self._run, name=f"logstore-sender-{name}",
                                        daemon=True)
        self._thread.start()

    def set_identity(self, producer_id: int, epoch: int, *, transactional: bool) -> None:
        """Use this producer identity for the next batches; sequences start again at 0."""
        with self._locks_lock:
            locks = list(self._partition_locks.values())
        for lock in locks:  # wait until no append is encoding with the old identity
            lock.acquire()
        try:
            self._identity = (producer_id, epoch)
            self._transactional = transactional
            self._sequences.clear()
        finally:
            for lock in locks:
                lock.release()

    def take_failures(self) -> list[BaseException]:
        """The batch failures since the last call (a transaction must not commit after one)."""
        failures, self.failures = self.failures, []
        return failures

    def append_ready(self, tp: TopicPartition) -> None:
        """Append the partition's ready batches now, on the calling thread."""
        with self._partition_lock(tp):
            batches = self._accumulator.drain_partition(tp)
            if batches:
                self._append(tp, batches)

    def close(self, timeout_s: float | None) -> bool:
        """Send what is queued, then stop. Returns False if ``timeout_s`` ran out first."""
        self._closing = True
        self._accumulator.close()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def join(self) -> None:
        """Wait for the background thread and the append threads to finish."""
        self._thread.join()
        self._pool.shutdown(wait=True)

    def _partition_lock(self, tp: TopicPartition) -> threading.Lock:
        lock = self._partition_locks.get(tp)
        if lock is None:
            with self._locks_lock:
                lock = self._partition_locks.setdefault(tp, threading.Lock())
        return lock

    def _run(self) -> None:
        accumulator = self._accumulator
        while True:
            partitions, wait_s = accumulator.ready_partitions()
            if partitions:
                if len(partitions) == 1:
                    self.append_ready(partitions[0])
                else:
                    list(self._pool.map(self.append_ready, partitions))
                continue
            if self._closing and accumulator.is_empty():
                return
            accumulator.wait_for_work(wait_s)

    def _append(self, tp: TopicPartition, batches: list[ProducerBatch]) -> None:
        producer_id, epoch = self._identity
        first_sequence = self._sequences.get(tp, 0)
        sequences = []
        try:
            datas = []
            sequence = first_sequence
            for batch in batches:
                sequences.append(sequence if producer_id >= 0 else -1)
                datas.append(batch.build(
                    self._compression, producer_id=producer_id, producer_epoch=epoch,
                    base_sequence=sequences[-1], transactional=self._transactional,
                ))
                sequence = next_sequence(sequence, len(batch.records))
        except Exception as exc:  # an encoding bug must fail the futures, not hang them
            self._fail(batches, exc)
            return
        if producer_id >= 0:
            self._sequences[tp] = sequence
        deadline = min(b.created_s for b in batches) + self._delivery_timeout_s
        while True:
            try:
                log = self._access.partition_log(tp.topic, tp.partition)
                results = log.append_each(datas, verify_records=False)
            except LogstoreError as exc:
                if exc.retriable and time.monotonic() + self._retry_backoff_s < deadline:
                    time.sleep(self._retry_backoff_s)
                    continue
                self._fail(batches, exc)
                self._give_back(tp, sequences[0])
                return
            except Exception as exc:  # a bug must not kill the thread and hang every future
                self._fail(batches, exc)
                self._give_back(tp, sequences[0])
                return
            rejected = False
            for batch, result, base in zip(batches, results, sequences, strict=True):
                if isinstance(result, LogstoreError):
                    self._fail([batch], result)
                    if not rejected:
                        self._give_back(tp, base)
                        rejected = True
                else:
                    batch.result.complete(result.base_offset, result.log_append_time_ms)
                    self._accumulator.completed(batch)
            return

    def _give_back(self, tp: TopicPartition, sequence: int) -> None:
        """The batch numbered from ``sequence`` (and every later one) was not appended."""
        if sequence >= 0:
            self._sequences[tp] = sequence

    def _fail(self, batches: list[ProducerBatch], error: BaseException) -> None:
        if self._transactional:
            self.failures.append(error)
        for batch in batches:
            batch.result.fail(error)
            self._accumulator.completed(batch)
