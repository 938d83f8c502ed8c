"""A consumer's fetch state: per assigned partition, its position and a buffer of decoded
records, and the reads that fill the buffers.

A partition's position is the offset of the next record ``poll`` returns. Reads fetch whole
batches (up to ``max_partition_fetch_bytes`` per partition, ``fetch_max_bytes`` per poll) from
the fetch position, decode them and skip records below it; control batches are skipped but move
the fetch position past them. Partitions take turns so one busy partition cannot starve others.

A partition without a position starts where ``auto_offset_reset`` says (``earliest``: the log
start offset, ``latest``: the log end offset, ``none``: NoOffsetForPartitionError); so does a
position that fell out of range. A corrupt batch raises CorruptRecordError after the records
before it have been returned, and on every poll until the application seeks past it; so do a
hole and an offline partition (MissingSegmentError, PartitionOfflineError), after the records
of the other partitions read in the same poll.

Quiet partitions cost nothing: a partition where a read found nothing new is skipped until its
doorbell rings (the notifier counts rings per partition, from this process's appends and,
through inotify, other processes'), and every partition is read again at least every
``SWEEP_INTERVAL_MS`` (more with thousands of partitions), in case a writer died between its
commit and its ring. So a consumer of 10,000 mostly idle partitions does not open 10,000
partitions on every poll.

``read_committed`` fetches stop at the last stable offset and drop the batches of aborted
transactions (the log returns which ranges were aborted); ``read_uncommitted`` sees every data
batch. Control batches (transaction markers) are never returned.

Not thread-safe: used by the consumer's poll thread only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from logstore.client.access import ClientAccess
from logstore.errors import (
    CorruptRecordError,
    IllegalStateError,
    LogstoreError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)
from logstore.records.control import parse_control
from logstore.records.header import parse_header
from logstore.records.reader import decode_batch
from logstore.types import ConsumerRecord, IsolationLevel, TopicPartition

RESETS = ("earliest", "latest", "none")
#: How often every assigned partition is read even if it was not rung (see ``_maybe_sweep``).
SWEEP_INTERVAL_MS = 1000
SWEEP_MS_PER_PARTITION = 5


class PartitionState:
    """Fetch state of one assigned partition."""

    __slots__ = ("buffer", "cursor", "doorbell", "error", "next_fetch", "paused", "position",
                 "quiet_rings")

    def __init__(self, doorbell: str = "") -> None:
        self.position: int | None = None
        self.next_fetch = 0
        # Decoded records not yet returned are buffer[cursor:]; they move out by slicing.
        self.buffer: list[ConsumerRecord] = []
        self.cursor = 0
        self.paused = False
        self.error: LogstoreError | None = None
        self.doorbell = doorbell
        # The partition's ring count when a read found nothing new (None: read it next time).
        self.quiet_rings: int | None = None

    def seek(self, offset: int) -> None:
        self.position = self.next_fetch = offset
        self.buffer = []
        self.cursor = 0
        self.error = None
        self.quiet_rings = None


class Fetcher:
    """Positions and buffers of the assigned partitions (see the module docstring)."""

    def __init__(
        self,
        access: ClientAccess,
        *,
        auto_offset_reset: str,
        max_partition_fetch_bytes: int,
        fetch_max_bytes: int,
        check_crcs: bool,
        isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED,
    ) -> None:
        self._access = access
        self.isolation = isolation
        self.auto_offset_reset = auto_offset_reset
        self._max_partition_fetch_bytes = max_partition_fetch_bytes
        self._fetch_max_bytes = fetch_max_bytes
        self._check_crcs = check_crcs
        self.states: dict[TopicPartition, PartitionState] = {}
        self._order: list[TopicPartition] = []
        self._next_index = 0
        self._next_sweep_ms = 0.0

    # --- assignment --------------------------------------------------------------------------

    def add(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            if tp not in self.states:
                log = self._access.partition_log(tp.topic, tp.partition)  # raises if unknown
                self.states[tp] = PartitionState(log.doorbell_path.name)
                self._access.notifier.watch(log.doorbell_path)
        self._reorder()

    def remove(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            if self.states.pop(tp, None) is not None:
                try:
                    log = self._access.partition_log(tp.topic, tp.partition)
                    self._access.notifier.unwatch(log.doorbell_path)
                except Exception:  # noqa: BLE001, S110 - the topic may be gone: nothing to unwatch
                    pass
        self._reorder()

    def _maybe_sweep(self, count: int) -> None:
        """Now and then read every partition again, quiet or not: a writer that died between
        its commit and its ring left records nobody announced (the next open of the partition,
        or the next append to it, rings for them too). The interval grows with the number of
        partitions, so a sweep costs a few percent of the time at most."""
        now = self._access.clock.monotonic_ms()
        if now < self._next_sweep_ms:
            return
        self._next_sweep_ms = now + max(SWEEP_INTERVAL_MS, count * SWEEP_MS_PER_PARTITION)
        for state in self.states.values():
            state.quiet_rings = None

    def _reorder(self) -> None:
        self._order = list(self.states)
        self._next_index = 0

    def state(self, tp: TopicPartition) -> PartitionState:
        state = self.states.get(tp)
        if state is None:
            raise IllegalStateError(f"partition {tp} is not assigned to this consumer")
        return state

    def positions(self) -> dict[TopicPartition, int]:
        """The known positions (for commits)."""
        return {tp: s.position for tp, s in self.states.items() if s.position is not None}

    # --- positions ---------------------------------------------------------------------------

    def position(self, tp: TopicPartition) -> int:
        state = self.state(tp)
        if state.position is None:
            return self.reset(tp, state)
        return state.position

    def reset(self, tp: TopicPartition, state: PartitionState) -> int:
        log = self._access.partition_log(tp.topic, tp.partition)
        if self.auto_offset_reset == "earliest":
            offset = log.log_start_offset
        elif self.auto_offset_reset == "latest":
            offset = (log.last_stable_offset if self.isolation is IsolationLevel.READ_COMMITTED
                      else log.high_watermark)
        else:
            raise NoOffsetForPartitionError(
                f"no position for {tp} and auto_offset_reset is 'none'"
            )
        state.seek(offset)
        return offset

    # --- reading -----------------------------------------------------------------------------

    def collect(self, limit: int) -> list[ConsumerRecord]:
        """Up to ``limit`` buffered or newly read records, partitions taking turns."""
        out: list[ConsumerRecord] = []
        order = self._order
        count = len(order)
        budget = self._fetch_max_bytes
        self._maybe_sweep(count)
        rings = self._access.notifier.rings
        for step in range(count):
            if len(out) >= limit:
                break
            tp = order[(self._next_index + step) % count]
            state = self.states[tp]
            if state.paused:
                continue
            buffered = state.cursor < len(state.buffer)
            if not buffered and state.error is not None:
                error, state.error = state.error, None
                if out:  # return what we have; the next poll raises it again at this position
                    break
                raise error
            if not buffered and budget > 0:
                if state.quiet_rings is not None and state.quiet_rings == rings(state.doorbell):
                    continue  # found nothing new last time, and nobody appended since
                try:
                    budget -= self._fetch(tp, state, budget)
                except LogstoreError as exc:
                    if not out or exc.retriable:
                        raise
                    state.error = exc  # return what was read; the next poll raises it
                    break
            self._take(state, out, limit)
        if count:
            self._next_index = (self._next_index + 1) % count
        return out

    @staticmethod
    def _take(state: PartitionState, out: list[ConsumerRecord], limit: int) -> None:
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

    def _fetch(self, tp: TopicPartition, state: PartitionState, budget: int) -> int:
        """Read and decode batches into the partition's buffer; return the bytes read."""
        if state.position is None:
            self.reset(tp, state)
        log = self._access.partition_log(tp.topic, tp.partition)
        rings = self._access.notifier.rings(state.doorbell)  # before the read: none is missed
        try:
            result = log.read(
                state.next_fetch, max_bytes=min(self._max_partition_fetch_bytes, budget),
                isolation=self.isolation,
            )
        except OffsetOutOfRangeError:
            if self.auto_offset_reset == "none":
                raise
            self.reset(tp, state)
            return 0
        state.quiet_rings = rings if not result.batches else None
        start = state.next_fetch
        topic, partition = tp
        buffer = state.buffer = []
        state.cursor = 0
        aborted = deque(result.aborted)  # read_committed: by first offset
        aborted_producers: set[int] = set()
        for data in result.batches:
            if aborted or aborted_producers:
                header = parse_header(data)
                # Kafka's rule: a producer's batches are dropped from the first offset of its
                # aborted transaction until its abort marker.
                while aborted and aborted[0].first_offset <= header.last_offset:
                    aborted_producers.add(aborted.popleft().producer_id)
                if header.producer_id in aborted_producers and (
                    header.is_transactional or header.is_control
                ):
                    if header.is_control and _is_abort_marker(data):
                        aborted_producers.discard(header.producer_id)
                    state.next_fetch = max(state.next_fetch, header.last_offset + 1)
                    continue
            try:
                header, records = decode_batch(
                    data, verify_crc=self._check_crcs, topic=topic, partition=partition,
                    min_offset=start,
                )
            except CorruptRecordError as exc:
                # As Kafka does: the records before the corrupt batch are returned first, then
                # polls raise until the application seeks past it.
                error = CorruptRecordError(
                    f"corrupt record batch in {tp} at offset {state.next_fetch}: {exc}"
                )
                if not buffer:
                    raise error from exc
                state.error = error
                break
            if not header.is_control:
                buffer.extend(records)
            state.next_fetch = max(state.next_fetch, header.last_offset + 1)
        return result.size_bytes


def _is_abort_marker(data: bytes) -> bool:
    _, records = decode_batch(data, verify_crc=False)
    return bool(records) and parse_control(records[0].key, records[0].value).is_abort
