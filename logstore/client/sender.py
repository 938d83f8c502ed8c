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

Retriable append failures (a database locked by another process) are retried with backoff
until the batch's ``delivery_timeout_ms`` runs out; other failures fail the batch's futures.

Thread-safe.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from logstore.client.access import ClientAccess
from logstore.client.accumulator import ProducerBatch, RecordAccumulator
from logstore.errors import LogstoreError
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
        self._locks_lock = threading.Lock()
        self._partition_locks: dict[TopicPartition, threading.Lock] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=MAX_APPEND_THREADS, thread_name_prefix=f"logstore-append-{name}"
        )
        self._thread = threading.Thread(target=self._run, name=f"logstore-sender-{name}",
                                        daemon=True)
        self._thread.start()

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
        try:
            datas = [batch.build(self._compression) for batch in batches]
        except Exception as exc:  # an encoding bug must fail the futures, not hang them
            self._fail(batches, exc)
            return
        deadline = min(b.created_s for b in batches) + self._delivery_timeout_s
        while True:
            try:
                log = self._access.partition_log(tp.topic, tp.partition)
                results = log.append_many(datas, verify_records=False)
            except LogstoreError as exc:
                if exc.retriable and time.monotonic() + self._retry_backoff_s < deadline:
                    time.sleep(self._retry_backoff_s)
                    continue
                self._fail(batches, exc)
                return
            except Exception as exc:  # a bug must not kill the thread and hang every future
                self._fail(batches, exc)
                return
            for batch, result in zip(batches, results, strict=True):
                batch.result.complete(result.base_offset, result.log_append_time_ms)
                self._accumulator.completed(batch)
            return

    def _fail(self, batches: list[ProducerBatch], error: BaseException) -> None:
        for batch in batches:
            batch.result.fail(error)
            self._accumulator.completed(batch)
