"""The embedded producer: ``send`` encodes records into per-partition batches and a background
sender thread appends ready batches to the partition logs.

Delivery: a record's future completes when its batch is durably appended (as the topic's
``durability`` says), with the record's offset. Retriable failures (a database locked by another
process) are retried with backoff until ``delivery_timeout_ms``; other failures fail the batch.
Records of one partition are appended in send order.

Thread-safe: any number of threads may call ``send``; ``flush`` and ``close`` may be called from
any thread (but not from a future's callback, which runs on the sender thread).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Sequence

from logstore.client.accumulator import ProducerBatch, RecordAccumulator
from logstore.client.access import ClientAccess
from logstore.client.futures import RecordFuture
from logstore.client.partitioner import StickyPartitioner, partition_for_key
from logstore.errors import (
    IllegalStateError,
    InvalidArgumentError,
    LogstoreError,
    LogstoreTimeoutError,
    RecordTooLargeError,
)
from logstore.records.builder import estimate_record_size
from logstore.records.compression import Compression
from logstore.records.header import HEADER_SIZE
from logstore.types import Header, TopicPartition

Serializer = Callable[[Any], bytes | None]

_BYTES_LIKE = (bytes, bytearray, memoryview)
_TOPIC_INFO_MAX_AGE_S = 1.0
_MAX_SENDER_THREADS = 4


class Producer:
    """Publishes records to the topics of one log. Use as a context manager, or call close()."""

    def __init__(
        self,
        access: ClientAccess,
        *,
        linger_ms: float = 5,
        batch_size: int = 512 * 1024,
        compression_type: str = "none",
        buffer_memory: int = 64 * 1024 * 1024,
        max_block_ms: float = 60_000,
        delivery_timeout_ms: float = 120_000,
        retry_backoff_ms: float = 100,
        key_serializer: Serializer | None = None,
        value_serializer: Serializer | None = None,
        client_id: str | None = None,
    ) -> None:
        _require_number("linger_ms", linger_ms, minimum=0)
        _require_number("batch_size", batch_size, minimum=1)
        _require_number("buffer_memory", buffer_memory, minimum=1)
        _require_number("max_block_ms", max_block_ms, minimum=0)
        _require_number("delivery_timeout_ms", delivery_timeout_ms, minimum=0)
        _require_number("retry_backoff_ms", retry_backoff_ms, minimum=0)
        self._access = access
        self._clock = access.clock
        self.client_id = client_id or f"producer-{id(self):x}"
        self._compression = Compression.from_name(compression_type)
        self._max_block_s = max_block_ms / 1000.0
        self._delivery_timeout_s = delivery_timeout_ms / 1000.0
        self._retry_backoff_s = retry_backoff_ms / 1000.0
        self._key_serializer = key_serializer
        self._value_serializer = value_serializer
        self._partitioner = StickyPartitioner()
        self._topic_info: dict[str, tuple[int, int, float]] = {}
        self._accumulator = RecordAccumulator(
            batch_size=batch_size,
            linger_ms=linger_ms,
            buffer_memory=buffer_memory,
            compression=self._compression,
        )
        self._closed = False
        self._close_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._sender = threading.Thread(
            target=self._run_sender, name=f"logstore-sender-{self.client_id}", daemon=True
        )
        self._sender.start()

    # --- sending -----------------------------------------------------------------------------

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: Iterable[tuple[str, Any]] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordFuture:
        """Queue a record; return a future of its :class:`RecordMetadata`.

        The partition is ``partition`` if given, else Kafka's murmur2 hash of the key, else the
        sticky partition (KIP-480). Raises at once for an unknown topic or partition, a record
        larger than the topic's ``max.message.bytes``, or bad argument types; blocks up to
        ``max_block_ms`` while the buffer is full.
        """
        if self._closed:
            raise IllegalStateError("cannot send: the producer is closed")
        if self._key_serializer is not None:
            key = self._key_serializer(key)
        if self._value_serializer is not None:
            value = self._value_serializer(value)
        if key is not None and type(key) is not bytes:
            key = _to_bytes(key, "key")
        if value is not None and type(value) is not bytes:
            value = _to_bytes(value, "value")
        header_list: Sequence[Header] = _normalize_headers(headers) if headers else ()
        if timestamp_ms is None:
            timestamp_ms = self._clock.time_ms()
        elif isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int) or timestamp_ms < 0:
            raise InvalidArgumentError(f"timestamp_ms must be a non-negative int, got {timestamp_ms!r}")

        partition_count, max_message_bytes = self._info(topic)
        if partition is None:
            if key is not None:
                partition = partition_for_key(key, partition_count)
            else:
                partition = self._partitioner.partition(topic, partition_count)
        elif isinstance(partition, bool) or not isinstance(partition, int):
            raise InvalidArgumentError(f"partition must be an int, got {partition!r}")
        elif not 0 <= partition < partition_count:
            partition_count, max_message_bytes = self._info(topic, refresh=True)
            if not 0 <= partition < partition_count:
                from logstore.errors import UnknownTopicOrPartitionError

                raise UnknownTopicOrPartitionError(
                    f"topic {topic!r} has {partition_count} partitions; partition {partition} "
                    "does not exist"
                )

        record_size = estimate_record_size(key, value, header_list)
        if record_size + HEADER_SIZE > max_message_bytes:
            raise RecordTooLargeError(
                f"record of about {record_size + HEADER_SIZE} bytes exceeds max.message.bytes="
                f"{max_message_bytes} of topic {topic!r}"
            )
        tp = TopicPartition(topic, partition)
        appended = self._accumulator.append(
            tp, timestamp_ms, key, value, header_list,
            record_size=record_size, max_batch_bytes=max_message_bytes,
            max_block_s=self._max_block_s,
        )
        if appended.new_batch and key is None:
            self._partitioner.on_new_batch(topic, partition_count, partition)
        return RecordFuture(
            appended.result, appended.delta, timestamp_ms, topic, partition,
            -1 if key is None else len(key), -1 if value is None else len(value),
        )

    def _info(self, topic: str, *, refresh: bool = False) -> tuple[int, int]:
        cached = self._topic_info.get(topic)
        now = time.monotonic()
        if cached is None or refresh or cached[2] < now:
            count, config = self._access.topic_info(topic)
            cached = (count, config.max_message_bytes, now + _TOPIC_INFO_MAX_AGE_S)
            self._topic_info[topic] = cached
        return cached[0], cached[1]

    def partitions_for(self, topic: str) -> set[int]:
        """The partitions of ``topic``."""
        return set(range(self._info(topic, refresh=True)[0]))

    # --- flush and close -----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Send everything buffered now and wait (``timeout`` seconds) until it is acknowledged
        or failed. Raises LogstoreTimeoutError if the time runs out."""
        self._accumulator.begin_flush()
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            for result in self._accumulator.pending_results():
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not result.wait(remaining):
                    raise LogstoreTimeoutError(f"flush did not complete within {timeout} s")
        finally:
            self._accumulator.end_flush()

    def close(self, timeout: float | None = None) -> None:
        """Send what is buffered (waiting up to ``timeout`` seconds; 0 fails it instead) and stop
        the sender. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._accumulator.close()
        if timeout == 0:
            self._accumulator.abort(IllegalStateError("the producer was closed before sending"))
        self._sender.join(timeout)
        if self._sender.is_alive():
            self._accumulator.abort(
                LogstoreTimeoutError(f"the producer was closed after waiting {timeout} s")
            )
            self._accumulator.wake()
            self._sender.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the sender thread -----------------------------------------------------------------------

    def _run_sender(self) -> None:
        accumulator = self._accumulator
        while True:
            batches, wait_s = accumulator.drain()
            if batches:
                self._append_all(batches)
                continue
            if self._closed and accumulator.is_empty():
                return
            accumulator.wait_for_work(wait_s)

    def _append_all(self, batches: list[ProducerBatch]) -> None:
        by_partition: dict[TopicPartition, list[ProducerBatch]] = {}
        for batch in batches:
            by_partition.setdefault(batch.tp, []).append(batch)
        groups = list(by_partition.values())
        if len(groups) == 1:
            self._append_partition(groups[0])
            return
        # Commits of different partitions are independent SQLite transactions and release the
        # GIL while they fsync, so appending them concurrently overlaps their fsyncs.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=_MAX_SENDER_THREADS, thread_name_prefix=f"logstore-append-{self.client_id}"
            )
        list(self._pool.map(self._append_partition, groups))

    def _append_partition(self, batches: list[ProducerBatch]) -> None:
        tp = batches[0].tp
        try:
            datas = [b.builder.build() for b in batches]
        except LogstoreError as exc:
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
            except Exception as exc:  # a bug must not kill the sender and hang every future
                self._fail(batches, exc)
                return
            for batch, result in zip(batches, results):
                batch.result.complete(result.base_offset, result.log_append_time_ms)
                self._accumulator.completed(batch)
            return

    def _fail(self, batches: list[ProducerBatch], error: BaseException) -> None:
        for batch in batches:
            batch.result.fail(error)
            self._accumulator.completed(batch)


def _to_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, _BYTES_LIKE):
        return bytes(value)
    if isinstance(value, str):
        raise InvalidArgumentError(
            f"{what} must be bytes, got str (encode it, or pass {what}_serializer=str.encode)"
        )
    raise InvalidArgumentError(f"{what} must be bytes or None, got {type(value).__name__}")


def _normalize_headers(headers: Iterable[tuple[str, Any]]) -> list[Header]:
    result: list[Header] = []
    for item in headers:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"headers must be (str, bytes | None) pairs, got {item!r}"
            ) from None
        if not isinstance(name, str):
            raise InvalidArgumentError(f"header name must be str, got {type(name).__name__}")
        if value is not None and type(value) is not bytes:
            value = _to_bytes(value, f"header {name!r} value")
        result.append((name, value))
    return result


def _require_number(name: str, value: object, *, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise InvalidArgumentError(f"{name} must be a number >= {minimum}, got {value!r}")
