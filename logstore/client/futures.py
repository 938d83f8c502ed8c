"""Futures for produced records.

As in Kafka's Java client, the records of one batch share one :class:`BatchResult` (an event set
when the batch is appended or fails) and each record gets a small :class:`RecordFuture` holding
only its offset delta within the batch: creating a full ``concurrent.futures.Future`` (with its
own condition variable) per record would cost more than encoding the record.

``RecordFuture`` offers the part of the ``concurrent.futures.Future`` interface that makes sense
for a produce: ``result``, ``exception``, ``done`` and ``add_done_callback``. Callbacks run on the
producer's sender thread (or at once, on the caller's thread, if the future is already done):
keep them short.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from logstore.errors import LogstoreTimeoutError
from logstore.types import RecordMetadata


class BatchResult:
    """The outcome of appending one batch to a partition: its base offset or an error.

    Thread-safe.
    """

    __slots__ = (
        "_callbacks",
        "_event",
        "_lock",
        "base_offset",
        "error",
        "log_append_time_ms",
        "partition",
        "topic",
    )

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.base_offset = -1
        self.log_append_time_ms = -1
        self.error: BaseException | None = None
        self._callbacks: list[Callable[[], None]] | None = None

    def done(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float | None) -> bool:
        return self._event.wait(timeout_s)

    def complete(self, base_offset: int, log_append_time_ms: int) -> None:
        self.base_offset = base_offset
        self.log_append_time_ms = log_append_time_ms
        self._finish()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._finish()

    def _finish(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            callback()

    def on_done(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._event.is_set():
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        callback()


class RecordFuture:
    """The eventual :class:`RecordMetadata` of one sent record."""

    __slots__ = ("_batch", "_delta", "_key_size", "_timestamp_ms", "_value_size")

    def __init__(
        self, batch: BatchResult, delta: int, timestamp_ms: int, key_size: int, value_size: int
    ) -> None:
        self._batch = batch
        self._delta = delta
        self._timestamp_ms = timestamp_ms
        self._key_size = key_size
        self._value_size = value_size

    @property
    def topic(self) -> str:
        return self._batch.topic

    @property
    def partition(self) -> int:
        return self._batch.partition

    def done(self) -> bool:
        return self._batch.done()

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Wait for the append (``timeout`` in seconds) and return where the record went.

        Raises the append's error, or LogstoreTimeoutError if it is not done in time.
        """
        batch = self._batch
        if not batch.wait(timeout):
            raise LogstoreTimeoutError(
                f"record to {self.topic}-{self.partition} not acknowledged within {timeout} s"
            )
        if batch.error is not None:
            raise batch.error
        timestamp = (
            batch.log_append_time_ms if batch.log_append_time_ms >= 0 else self._timestamp_ms
        )
        return RecordMetadata(
            self.topic, self.partition, batch.base_offset + self._delta, timestamp,
            self._key_size, self._value_size,
        )

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The append's error (None on success); waits like :meth:`result`."""
        if not self._batch.wait(timeout):
            raise LogstoreTimeoutError(
                f"record to {self.topic}-{self.partition} not acknowledged within {timeout} s"
            )
        return self._batch.error

    def add_done_callback(self, fn: Callable[[RecordFuture], object]) -> None:
        """Call ``fn(self)`` once the record is acknowledged or failed."""
        self._batch.on_done(lambda: fn(self))

    def __repr__(self) -> str:
        state = "pending"
        if self._batch.done():
            state = (
                "failed"
                if self._batch.error
                else f"offset={self._batch.base_offset + self._delta}"
            )
        return f"<RecordFuture {self.topic}-{self.partition} {state}>"
