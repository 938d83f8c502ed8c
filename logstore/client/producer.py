"""The embedded producer: ``send`` collects records into per-partition batches (see
``accumulator``) and a background sender (see ``sender``) encodes and appends ready batches.

Delivery: a record's future completes when its batch is durably appended (as the topic's
``durability`` says), with the record's offset. Producers are idempotent by default
(``enable_idempotence``, as in Kafka 3+): batches carry a producer id and per-partition
sequence numbers, so a retried append is never written twice. With ``transactional_id`` the
producer writes transactions (see ``transactions``): read_committed consumers see all of a
transaction's records or none. Retriable failures (a database locked by another
process) are retried with backoff until ``delivery_timeout_ms``; other failures fail the batch.
Records of one partition are appended in send order.

Recovery (KIP-360): when a partition no longer knows the producer (its topic was deleted and
re-created, or the producer's state there expired), an idempotent producer bumps its epoch,
restarts its sequences at 0 and sends the batch again, without duplicates; a transactional one
fails the batch and the transaction must be aborted (see ``sender``).

Time: ``linger_ms``, ``retry_backoff_ms`` and ``delivery_timeout_ms`` run on the log's clock
(a ManualClock drives them in tests); the timeouts of ``flush``, ``close`` and
``max_block_ms`` bound how long a call blocks and are real time.

Lifetime: closing the log closes its producers. A producer dropped without ``close`` still
sends what it buffered, then its thread ends.

Thread-safe: any number of threads may call ``send``; ``flush`` and ``close`` may be called from
any thread (but not from a future's callback, which runs on the sender thread).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from logstore.client.access import ClientAccess
from logstore.client.accumulator import RecordAccumulator
from logstore.client.futures import RecordFuture
from logstore.client.partitioner import StickyPartitioner, partition_for_key
from logstore.client.sender import Sender
from logstore.client.transactions import TransactionManager
from logstore.clock import SystemClock
from logstore.errors import (
    IllegalStateError,
    InvalidArgumentError,
    LogstoreTimeoutError,
    RecordTooLargeError,
    TransactionAbortedError,
    UnknownTopicOrPartitionError,
)
from logstore.records.builder import estimate_record_size
from logstore.records.compression import Compression
from logstore.records.header import HEADER_SIZE
from logstore.types import ConsumerGroupMetadata, Header, OffsetAndMetadata, TopicPartition

Serializer = Callable[[Any], bytes | None]

_BYTES_LIKE = (bytes, bytearray, memoryview)
_INT64_MAX = (1 << 63) - 1
# An upper bound of a record's encoded size without key, value and headers: length prefix (5),
# attributes (1), timestamp delta (10), offset delta (5), key and value lengths (5 each), header
# count (1). send() adds the key and value lengths to it instead of computing exact varints.
_MAX_RECORD_OVERHEAD = 32
_time_ns = time.time_ns
# Real time, not the log's clock: how fresh the cached partition count is, is no semantic of the
# log (as in TopicCache), and send() reads it once per record, where the clock costs more.
_monotonic = time.monotonic
_TOPIC_INFO_MAX_AGE_S = 1.0


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
        enable_idempotence: bool = True,
        transactional_id: str | None = None,
        transaction_timeout_ms: int = 60_000,
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
        self._key_serializer = key_serializer
        self._value_serializer = value_serializer
        self._serializing = key_serializer is not None or value_serializer is not None
        self._system_clock = isinstance(self._clock, SystemClock)
        self._partitioner = StickyPartitioner()
        self._topic_info: dict[str, tuple[int, int, float]] = {}
        self._accumulator = RecordAccumulator(
            batch_size=batch_size, linger_ms=linger_ms, buffer_memory=buffer_memory,
            clock=self._clock,
        )
        self._closed = False
        self._close_lock = threading.Lock()
        if transactional_id is not None and not enable_idempotence:
            raise InvalidArgumentError("a transactional producer is always idempotent")
        self._sender = Sender(
            self._accumulator, access, compression=self._compression,
            delivery_timeout_ms=delivery_timeout_ms, retry_backoff_ms=retry_backoff_ms,
            name=self.client_id,
        )
        self._transactions: TransactionManager | None = None
        try:
            if transactional_id is not None:
                self._transactions = TransactionManager(
                    access.transaction_coordinator, self._sender, self._clock,
                    transactional_id=transactional_id, timeout_ms=transaction_timeout_ms,
                )
            elif enable_idempotence:
                identity = access.transaction_coordinator.init_producer_id(None, 0)
                self._sender.set_identity(identity.producer_id, identity.epoch,
                                          transactional=False)
            access.clients.add_producer(self._sender)
        except BaseException:
            self._closed = True
            self._sender.close(0)
            raise
        # Dropped without close(): the sender still sends what it holds, then its thread ends.
        # The finalizer holds the sender, never this object.
        self._finalizer = weakref.finalize(self, self._sender.begin_close)
        self._finalizer.atexit = False

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
        ``max_block_ms`` while the buffer is full. When this record starts a new batch because
        the previous one is full, the full batch is appended before ``send`` returns (its
        future completes then, or fails with the append's error).
        """
        # This runs once per record: keep the common path (bytes, no headers, no serializers,
        # the system clock) to a handful of cheap checks.
        if self._closed:
            raise IllegalStateError("cannot send: the producer is closed")
        if self._serializing:
            if self._key_serializer is not None:
                key = self._key_serializer(key)
            if self._value_serializer is not None:
                value = self._value_serializer(value)
        size = _MAX_RECORD_OVERHEAD
        if key is not None:
            if type(key) is not bytes:
                key = _to_bytes(key, "key")
            size += len(key)
        if value is not None:
            if type(value) is not bytes:
                value = _to_bytes(value, "value")
            size += len(value)
        if headers:
            header_list: Sequence[Header] = _normalize_headers(headers)
            size = estimate_record_size(key, value, header_list)
        else:
            header_list = ()
        if timestamp_ms is None:
            timestamp_ms = _time_ns() // 1_000_000 if self._system_clock else self._clock.time_ms()
        elif type(timestamp_ms) is not int or not 0 <= timestamp_ms <= _INT64_MAX:
            raise InvalidArgumentError(
                f"timestamp_ms must be an int between 0 and 2**63-1, got {timestamp_ms!r}"
            )

        info = self._topic_info.get(topic)
        if info is None or info[2] < _monotonic():
            info = self._refresh_topic(topic)
        partition_count = info[0]
        if partition is None:
            if key is not None:
                partition = partition_for_key(key, partition_count)
            else:
                partition = self._partitioner.partition(topic, partition_count)
        elif type(partition) is not int:
            raise InvalidArgumentError(f"partition must be an int, got {partition!r}")
        elif not 0 <= partition < partition_count:
            info = self._refresh_topic(topic)
            partition_count = info[0]
            if not 0 <= partition < partition_count:
                raise UnknownTopicOrPartitionError(
                    f"topic {topic!r} has {partition_count} partitions; partition {partition} "
                    "does not exist"
                )
        if size + HEADER_SIZE > info[1]:
            exact = estimate_record_size(key, value, header_list)
            if exact + HEADER_SIZE > info[1]:
                raise RecordTooLargeError(
                    f"record of about {exact + HEADER_SIZE} bytes exceeds max.message.bytes="
                    f"{info[1]} of topic {topic!r}"
                )
            size = exact
        if self._transactions is not None:
            self._transactions.register(TopicPartition(topic, partition))
        result, delta, new_batch, full_waiting = self._accumulator.append(
            topic, partition, (timestamp_ms, key, value, header_list), size, info[1],
            self._max_block_s,
        )
        if new_batch:
            if key is None:
                self._partitioner.on_new_batch(topic, partition_count, partition)
            if full_waiting:
                # Caller runs: append the full batch now, on this thread (see sender).
                self._sender.append_ready(TopicPartition(topic, partition))
        return RecordFuture(
            result, delta, timestamp_ms,
            -1 if key is None else len(key), -1 if value is None else len(value),
        )

    def _refresh_topic(self, topic: str) -> tuple[int, int, float]:
        """(partition count, max.message.bytes, expiry) of a topic, fetched from the log."""
        if not isinstance(topic, str):
            raise InvalidArgumentError(f"topic must be a str, got {type(topic).__name__}")
        count, config = self._access.topic_info(topic)
        info = (count, config.max_message_bytes, _monotonic() + _TOPIC_INFO_MAX_AGE_S)
        self._topic_info[topic] = info
        return info

    # --- transactions ------------------------------------------------------------------------

    def init_transactions(self) -> None:
        """Register this transactional id and fence its earlier instances (their sends and
        commits fail with ProducerFencedError; a transaction they left open is aborted)."""
        self._transaction_manager().init()

    def begin_transaction(self) -> None:
        self._transaction_manager().begin()

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata],
        group: str | ConsumerGroupMetadata,
    ) -> None:
        """Offsets that become ``group``'s committed offsets only if the transaction commits
        (consume-transform-produce). Pass ``consumer.group_metadata()`` so the offsets are
        refused if that consumer was fenced out of its group (KIP-447)."""
        self._transaction_manager().send_offsets(offsets, group)

    def commit_transaction(self) -> None:
        """Send every record of the transaction, then commit it: read_committed consumers see
        them all (and the offsets sent to it are committed) or, if this raises, none."""
        self._transaction_manager().commit(self.flush)

    def abort_transaction(self) -> None:
        """Abort the transaction: its records are never seen by read_committed consumers."""
        manager = self._transaction_manager()
        manager.abort(
            lambda: self._accumulator.abort(TransactionAbortedError("the transaction was aborted")),
            self.flush,
        )

    @contextmanager
    def transaction(self) -> Iterator[Producer]:
        """``with producer.transaction():`` begins; commits on success, aborts on exception."""
        self.begin_transaction()
        try:
            yield self
        except BaseException:
            self.abort_transaction()
            raise
        self.commit_transaction()

    def _transaction_manager(self) -> TransactionManager:
        if self._closed or self._sender.closing:
            raise IllegalStateError("the producer is closed")
        if self._transactions is None:
            raise IllegalStateError("this producer has no transactional_id")
        return self._transactions

    def partitions_for(self, topic: str) -> set[int]:
        """The partitions of ``topic``."""
        return set(range(self._refresh_topic(topic)[0]))

    # --- flush and close -----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Send everything buffered now and wait (``timeout`` seconds) until it is acknowledged
        or failed. Raises LogstoreTimeoutError if the time runs out."""
        self._accumulator.begin_flush()
        try:
            # Real time: the timeout bounds how long the caller waits, whatever the clock says.
            deadline = None if timeout is None else time.monotonic() + timeout
            for result in self._accumulator.pending_results():
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not result.wait(remaining):
                    raise LogstoreTimeoutError(f"flush did not complete within {timeout} s")
        finally:
            self._accumulator.end_flush()

    def close(self, timeout: float | None = None) -> None:
        """Send what is buffered (waiting up to ``timeout`` seconds of real time; 0 fails it
        instead; what is still unsent then fails with LogstoreTimeoutError) and stop the
        sender. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer.detach()
        if timeout == 0:
            self._sender.abandon(IllegalStateError("the producer was closed before sending"))
        self._sender.close(timeout)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
