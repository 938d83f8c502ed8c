"""The embedded consumer: manually assigned partitions, positions, seeks and polling.

``poll`` returns records from the assigned partitions in offset order per partition, taking
partitions in turn so one busy partition cannot starve the others. It reads whole batches (up to
``max_partition_fetch_bytes`` per partition) and buffers decoded records beyond ``max_records``
for the next poll. When nothing is readable it sleeps on the log's append notifier, which wakes
it when this process or another one appends to a watched partition: no busy loop.

Positions: a partition's position is the offset of the next record ``poll`` will return. A
partition without one (just assigned) starts where ``auto_offset_reset`` says: ``earliest`` (the
log start offset), ``latest`` (the log end offset) or ``none`` (raise NoOffsetForPartitionError).
A position that falls out of range (retention deleted it) is reset the same way.

Control records (transaction markers) take offsets but are never returned. A corrupt batch
raises CorruptRecordError (after the records before it have been returned) on every poll until
the application seeks past it.

Not thread-safe, like Kafka's consumer: use it from one thread (``close`` may be called from
another to stop a blocked ``poll``).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator, Mapping

from logstore.client.access import ClientAccess
from logstore.errors import (
    CorruptRecordError,
    IllegalStateError,
    InvalidArgumentError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)
from logstore.records.reader import decode_batch
from logstore.types import ConsumerRecord, IsolationLevel, OffsetAndTimestamp, TopicPartition

Deserializer = Callable[[bytes | None], Any]

_RESETS = ("earliest", "latest", "none")


class _Assigned:
    """Fetch state of one assigned partition."""

    __slots__ = ("position", "next_fetch", "buffer", "cursor", "paused", "error")

    def __init__(self) -> None:
        self.position: int | None = None
        self.next_fetch = 0
        # Decoded records not yet returned are buffer[cursor:]; they move out by slicing.
        self.buffer: list[ConsumerRecord] = []
        self.cursor = 0
        self.paused = False
        # A corrupt batch found after good records: raised once those have been returned.
        self.error: CorruptRecordError | None = None


class Consumer:
    """Reads records from assigned partitions of one log."""

    def __init__(
        self,
        access: ClientAccess,
        *,
        auto_offset_reset: str = "latest",
        max_poll_records: int = 500,
        max_partition_fetch_bytes: int = 1024 * 1024,
        fetch_max_bytes: int = 50 * 1024 * 1024,
        isolation_level: str = "read_uncommitted",
        check_crcs: bool = True,
        key_deserializer: Deserializer | None = None,
        value_deserializer: Deserializer | None = None,
        consumer_timeout_ms: float | None = None,
        client_id: str | None = None,
    ) -> None:
        if auto_offset_reset not in _RESETS:
            raise InvalidArgumentError(
                f"auto_offset_reset must be one of {', '.join(_RESETS)}; got {auto_offset_reset!r}"
            )
        for name, value in (("max_poll_records", max_poll_records),
                            ("max_partition_fetch_bytes", max_partition_fetch_bytes),
                            ("fetch_max_bytes", fetch_max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive int, got {value!r}")
        try:
            self.isolation_level = IsolationLevel(isolation_level)
        except ValueError:
            raise InvalidArgumentError(
                "isolation_level must be 'read_uncommitted' or 'read_committed'; "
                f"got {isolation_level!r}"
            ) from None
        self._access = access
        self.client_id = client_id or f"consumer-{id(self):x}"
        self._auto_offset_reset = auto_offset_reset
        self._max_poll_records = max_poll_records
        self._max_partition_fetch_bytes = max_partition_fetch_bytes
        self._fetch_max_bytes = fetch_max_bytes
        self._check_crcs = check_crcs
        self._key_deserializer = key_deserializer
        self._value_deserializer = value_deserializer
        self._consumer_timeout_ms = consumer_timeout_ms
        self._assigned: dict[TopicPartition, _Assigned] = {}
        self._order: list[TopicPartition] = []
        self._next_index = 0
        self._closed = False

    # --- assignment --------------------------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Consume exactly these partitions (replacing any earlier assignment)."""
        self._ensure_open()
        wanted = [_as_tp(tp) for tp in partitions]
        for tp in wanted:
            self._access.partition_log(tp.topic, tp.partition)  # raises if unknown
        for tp in list(self._assigned):
            if tp not in wanted:
                self._unwatch(tp)
                del self._assigned[tp]
        for tp in wanted:
            if tp not in self._assigned:
                self._assigned[tp] = _Assigned()
                self._access.notifier.watch(self._access.partition_log(*tp).doorbell_path)
        self._order = list(self._assigned)
        self._next_index = 0

    def assignment(self) -> set[TopicPartition]:
        """The assigned partitions."""
        return set(self._assigned)

    def unassign(self) -> None:
        self.assign([])

    def _unwatch(self, tp: TopicPartition) -> None:
        try:
            self._access.notifier.unwatch(self._access.partition_log(*tp).doorbell_path)
        except Exception:  # the topic may be gone; nothing to unwatch then
            pass

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop returning records from these partitions until resumed."""
        for tp in partitions:
            self._state(tp).paused = True

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._state(tp).paused = False

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, s in self._assigned.items() if s.paused}

    # --- positions ---------------------------------------------------------------------------

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make ``offset`` the next offset ``poll`` returns from ``partition``."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError(f"offset must be a non-negative int, got {offset!r}")
        state = self._state(partition)
        state.position = offset
        state.next_fetch = offset
        state.buffer = []
        state.cursor = 0

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Seek to the log start offset (all assigned partitions if none are named)."""
        targets = list(partitions) or list(self._assigned)
        for tp, offset in self.beginning_offsets(targets).items():
            self.seek(tp, offset)

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        """Seek to the log end offset (all assigned partitions if none are named)."""
        targets = list(partitions) or list(self._assigned)
        for tp, offset in self.end_offsets(targets).items():
            self.seek(tp, offset)

    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record ``poll`` will return from ``partition``."""
        state = self._state(partition)
        if state.position is None:
            return self._reset(_as_tp(partition), state)
        return state.position

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The log start offset of each partition."""
        return {
            tp: self._access.partition_log(tp.topic, tp.partition).log_start_offset
            for tp in map(_as_tp, partitions)
        }

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset after the last readable record (the high watermark) of each partition."""
        return {
            tp: self._access.partition_log(tp.topic, tp.partition).high_watermark
            for tp in map(_as_tp, partitions)
        }

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """For each partition, the earliest offset whose timestamp is >= the given time (ms),
        or None when no such record exists."""
        result: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, ts in timestamps.items():
            tp = _as_tp(tp)
            if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
                raise InvalidArgumentError(f"timestamp for {tp} must be a non-negative int")
            result[tp] = self._access.partition_log(tp.topic, tp.partition).offset_for_timestamp(ts)
        return result

    def _reset(self, tp: TopicPartition, state: _Assigned) -> int:
        log = self._access.partition_log(tp.topic, tp.partition)
        if self._auto_offset_reset == "earliest":
            offset = log.log_start_offset
        elif self._auto_offset_reset == "latest":
            offset = log.high_watermark
        else:
            raise NoOffsetForPartitionError(
                f"no position for {tp} and auto_offset_reset is 'none'"
            )
        state.position = state.next_fetch = offset
        state.buffer = []
        state.cursor = 0
        return offset

    # --- polling -----------------------------------------------------------------------------

    def poll(self, timeout_ms: float = 0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Records from the assigned partitions, waiting up to ``timeout_ms`` for some to arrive.

        Returns at most ``max_records`` (default ``max_poll_records``); an empty list when the
        timeout passes with nothing new.
        """
        self._ensure_open()
        limit = self._max_poll_records if max_records is None else max_records
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgumentError(f"max_records must be a positive int, got {max_records!r}")
        if not self._assigned:
            raise IllegalStateError("poll() needs assigned partitions: call assign() first")
        notifier = self._access.notifier
        deadline = time.monotonic() + max(0.0, timeout_ms) / 1000.0
        while True:
            sequence = notifier.sequence()
            records = self._collect(limit)
            if records or self._closed:
                return records
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return records
            notifier.wait(sequence, remaining)

    def _collect(self, limit: int) -> list[ConsumerRecord]:
        out: list[ConsumerRecord] = []
        order = self._order
        count = len(order)
        budget = self._fetch_max_bytes
        for step in range(count):
            if len(out) >= limit:
                break
            tp = order[(self._next_index + step) % count]
            state = self._assigned[tp]
            if state.paused:
                continue
            buffered = state.cursor < len(state.buffer)
            if not buffered and state.error is not None:
                error, state.error = state.error, None
                if out:  # return what we have; the next poll raises it again at this position
                    break
                raise error
            if not buffered and budget > 0:
                budget -= self._fetch(tp, state, budget)
            self._take(state, out, limit)
        if count:
            self._next_index = (self._next_index + 1) % count
        if self._key_deserializer is not None or self._value_deserializer is not None:
            out = [self._deserialize(r) for r in out]
        return out

    def _take(self, state: _Assigned, out: list[ConsumerRecord], limit: int) -> None:
        buffer = state.buffer
        start = state.cursor
        stop = min(len(buffer), start + limit - len(out))
        if stop > start:
            out.extend(buffer[start:stop] if start or stop < len(buffer) else buffer)
        if stop < len(buffer):
            state.cursor = stop
            state.position = buffer[stop].offset
        else:
            state.buffer = []
            state.cursor = 0
            if state.position is not None:
                state.position = state.next_fetch

    def _fetch(self, tp: TopicPartition, state: _Assigned, budget: int) -> int:
        """Read and decode batches into the partition's buffer; return the bytes read."""
        if state.position is None:
            self._reset(tp, state)
        log = self._access.partition_log(tp.topic, tp.partition)
        try:
            result = log.read(
                state.next_fetch, max_bytes=min(self._max_partition_fetch_bytes, budget)
            )
        except OffsetOutOfRangeError:
            if self._auto_offset_reset == "none":
                raise
            self._reset(tp, state)
            return 0
        start = state.next_fetch
        topic, partition = tp
        buffer = state.buffer = []
        state.cursor = 0
        for data in result.batches:
            try:
                header, records = decode_batch(
                    data, verify_crc=self._check_crcs, topic=topic, partition=partition,
                    min_offset=start,
                )
            except CorruptRecordError as exc:
                # As Kafka does: the records before the corrupt batch are returned first, then
                # polls raise until the application seeks past it.
                if not buffer:
                    raise CorruptRecordError(
                        f"corrupt record batch in {tp} at offset {state.next_fetch}: {exc}"
                    ) from exc
                state.error = CorruptRecordError(
                    f"corrupt record batch in {tp} at offset {state.next_fetch}: {exc}"
                )
                break
            if not header.is_control:
                buffer.extend(records)
            state.next_fetch = max(state.next_fetch, header.last_offset + 1)
        return result.size_bytes

    def _deserialize(self, record: ConsumerRecord) -> ConsumerRecord:
        key, value = record.key, record.value
        if self._key_deserializer is not None:
            key = self._key_deserializer(key)
        if self._value_deserializer is not None:
            value = self._value_deserializer(value)
        return record._replace(key=key, value=value)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Records forever (or until ``consumer_timeout_ms`` passes with none, or close())."""
        while not self._closed:
            records = self.poll(
                timeout_ms=1000 if self._consumer_timeout_ms is None else self._consumer_timeout_ms
            )
            if not records and self._consumer_timeout_ms is not None:
                return
            yield from records

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the assignment. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for tp in list(self._assigned):
            self._unwatch(tp)
        self._assigned.clear()
        self._order = []
        self._access.notifier.notify()  # wake a poll blocked in another thread

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ensure_open(self) -> None:
        if self._closed:
            raise IllegalStateError("the consumer is closed")

    def _state(self, partition: TopicPartition) -> _Assigned:
        state = self._assigned.get(_as_tp(partition))
        if state is None:
            raise IllegalStateError(f"partition {partition} is not assigned to this consumer")
        return state


def _as_tp(value: object) -> TopicPartition:
    if isinstance(value, TopicPartition):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        topic, partition = value
        if isinstance(topic, str) and isinstance(partition, int) and not isinstance(partition, bool):
            return TopicPartition(topic, partition)
    raise InvalidArgumentError(f"expected a TopicPartition, got {value!r}")
