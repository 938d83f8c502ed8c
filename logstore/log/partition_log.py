"""One partition's local log: an ordered sequence of SQLite segments in one directory.

Layout of ``<data>/topics/<topic>/<partition>/``::

    partition.sqlite                 log start offset, truncation intent, generation
    .lock                            flock for structural changes (roll, truncate, delete)
    .notify                          doorbell: one byte rewritten after every commit, so
                                     consumers in other processes wake through inotify
    00000000000000000000.sqlite      sealed segment (+ -wal, -shm)
    00000000000000052731.sqlite      the active segment: the one with the highest base offset

Invariants:

* The active segment is the segment with the highest base offset; only it takes appends.
  Rolling seals it (``sealed = 1, next_offset = its log end offset``) inside a write transaction
  and then creates the successor; a process that finds the highest segment sealed creates the
  missing successor itself, so a crash between the two steps is harmless.
* Offsets are assigned inside the segment's ``BEGIN IMMEDIATE`` transaction from the stored log
  end offset, so appenders in any number of processes get unique, gap-free, increasing offsets.
* Appends that arrive while a commit is running are committed together in the next transaction
  (group commit): one fsync serves them all.
* The log start offset only moves forward, and is made durable *before* segment files below it
  are unlinked, so a crash leaves at worst an orphan file that the next pass deletes.
* Truncation records its target first and is redone by the next process to find it, so a crash
  in the middle never leaves a half-truncated log that takes appends.
* The doorbell is rung only after a commit returns: inotify events on the ``-wal`` file itself
  fire before the commit is visible to readers, so waking on those would miss records.

Thread-safety: all public methods may be called from any thread. Several processes may open the
same partition directory.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from logstore.clock import SYSTEM_CLOCK, Clock
from logstore.config import TopicConfig
from logstore.errors import (
    InvalidRecordError,
    LogstoreError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    StorageError,
)
from logstore.log.notify import AppendNotifier
from logstore.log.partition_state import PartitionLock, PartitionState
from logstore.log.sqlite_file import TEMP_MARKER
from logstore.log.segment import (
    BatchRow,
    Segment,
    SegmentState,
    parse_segment_file_name,
    segment_file_name,
)
from logstore.records.header import (
    BatchHeader,
    parse_header,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
    validate_batch,
)
from logstore.types import AppendResult, OffsetAndTimestamp, PartitionDescription, RetentionReport

_MAX_RETRIES = 1000
DOORBELL_FILE = ".notify"


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Whole batches read from one partition, with the partition's offsets at read time."""

    batches: Sequence[bytes]
    size_bytes: int
    log_start_offset: int
    high_watermark: int
    log_end_offset: int

    @property
    def records(self) -> bytes:
        """The batches concatenated, as a fetch response carries them."""
        return b"".join(self.batches)


class _Pending:
    """One batch waiting for the group commit."""

    __slots__ = ("data", "header", "result", "error", "done")

    def __init__(self, data: bytes, header: BatchHeader) -> None:
        self.data = data
        self.header = header
        self.result: AppendResult | None = None
        self.error: BaseException | None = None
        self.done = False


class PartitionLog:
    """The local log of one partition. See the module docstring for the invariants."""

    def __init__(
        self,
        directory: Path,
        *,
        topic: str,
        partition: int,
        config: Callable[[], TopicConfig],
        clock: Clock = SYSTEM_CLOCK,
        notifier: AppendNotifier | None = None,
        leader_epoch: int = 0,
        max_open_segments: int = 4,
    ) -> None:
        self.directory = directory
        self.topic = topic
        self.partition = partition
        self.leader_epoch = leader_epoch
        self._config = config
        self._clock = clock
        self._notifier = notifier
        self._max_open_segments = max(1, max_open_segments)
        self._state = PartitionState.open(directory)
        self._lock = PartitionLock(directory)
        self.doorbell_path = directory / DOORBELL_FILE
        self._doorbell_fd = _open_doorbell(self.doorbell_path)
        self._meta_lock = threading.Lock()  # guards _bases, _sealed, _generation, _writer swap
        self._bases: list[int] = []
        self._sealed: dict[int, SegmentState] = {}
        self._readers: OrderedDict[int, Segment] = OrderedDict()
        self._writer: Segment | None = None
        self._generation = self._state.get().generation
        self._commit_cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._committing = False
        self._closed = False
        self._recover()

    # --- creation and recovery ---------------------------------------------------------------

    @staticmethod
    def create(directory: Path, *, topic_id: str, created_ms: int, base_offset: int = 0) -> None:
        """Lay out an empty partition directory (idempotent)."""
        directory.mkdir(parents=True, exist_ok=True)
        os.close(_open_doorbell(directory / DOORBELL_FILE))
        PartitionState.create(directory, topic_id=topic_id, log_start_offset=base_offset)
        if not any(parse_segment_file_name(n) is not None for n in os.listdir(directory)):
            Segment.create(directory, base_offset, created_ms=created_ms)

    def _recover(self) -> None:
        with self._lock.hold():
            self._remove_stale_temp_files()
            pending = self._state.get().truncating_to
            if pending is not None:
                self._truncate_locked(pending)
            self._rescan()
            if not self._bases:
                Segment.create(
                    self.directory, self._state.get().log_start_offset,
                    created_ms=self._clock.time_ms(),
                )
                self._rescan()
            self._delete_segments_below(self._state.get().log_start_offset)

    def _remove_stale_temp_files(self) -> None:
        for name in os.listdir(self.directory):
            if TEMP_MARKER not in name or not name.startswith("."):
                continue
            pid_text = name.rsplit(TEMP_MARKER, 1)[1].split("-", 1)[0]
            if pid_text.isdigit() and _process_alive(int(pid_text)):
                continue
            (self.directory / name).unlink(missing_ok=True)

    # --- offsets -----------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._state.get().log_start_offset

    def log_end_offset(self) -> int:
        """One past the last offset appended (by any process)."""
        self._check_generation()
        for _ in range(_MAX_RETRIES):
            with self._meta_lock:
                if not self._bases:
                    self._rescan_unlocked()
                base = self._bases[-1]
            try:
                seg = self._reader(base)
            except FileNotFoundError:
                self._rescan()
                continue
            with seg.lock:
                state = seg.state()
            if not state.sealed:
                return state.log_end_offset
            self._rescan()
            with self._meta_lock:
                if self._bases[-1] == base:
                    # Sealed, successor not created yet: a roll in progress, or a crash in between.
                    return state.log_end_offset
        raise StorageError(f"{self}: segment list keeps changing")

    @property
    def high_watermark(self) -> int:
        """Equal to the log end offset until replication exists."""
        return self.log_end_offset()

    @property
    def last_stable_offset(self) -> int:
        """Equal to the high watermark until transactions exist."""
        return self.high_watermark

    # --- append ------------------------------------------------------------------------------

    def append(self, batch: bytes, *, verify_records: bool = True) -> AppendResult:
        """Append one RecordBatch v2 and return the offsets assigned to it.

        The batch is validated (framing, CRC, size against ``max.message.bytes``; with
        ``verify_records`` also every record). Durable when this returns, as the topic's
        ``durability`` says. Concurrent calls share commits.
        """
        return self.append_many([batch], verify_records=verify_records)[0]

    def append_many(
        self, batches: Sequence[bytes], *, verify_records: bool = True
    ) -> list[AppendResult]:
        """Append several batches in order, atomically (one transaction)."""
        config = self._config()
        mine = [_Pending(b, self._validate(b, config, verify_records)) for b in batches]
        if not mine:
            return []
        group: list[_Pending] | None = None
        with self._commit_cond:
            if self._closed:
                raise StorageError(f"{self} is closed")
            self._queue.extend(mine)
            while not mine[-1].done:
                if not self._committing:
                    self._committing = True
                    group, self._queue = self._queue, []
                    break
                self._commit_cond.wait()
        if group is not None:
            try:
                self._commit_group(group)
            except BaseException as exc:  # every waiter of this commit gets its failure
                for pending in group:
                    pending.error = exc
            finally:
                with self._commit_cond:
                    self._committing = False
                    for pending in group:
                        pending.done = True
                    self._commit_cond.notify_all()
            if group[0].error is None:
                self._ring()
        results = []
        for pending in mine:
            if pending.error is not None:
                raise pending.error
            if pending.result is None:
                # The commit that carried these rows was cut short; they were not written.
                raise StorageError(f"{self}: append was not committed")
            results.append(pending.result)
        return results

    def _ring(self) -> None:
        """Tell waiting readers, here and in other processes, that a commit is visible."""
        if self._notifier is not None:
            self._notifier.notify()
        try:
            os.pwrite(self._doorbell_fd, b"\x01", 0)
        except OSError:
            pass  # readers elsewhere fall back to their poll interval

    def _validate(self, batch: bytes, config: TopicConfig, verify_records: bool) -> BatchHeader:
        header = validate_batch(batch)
        if header.size_bytes != len(batch):
            raise InvalidRecordError(
                f"expected exactly one record batch, got {len(batch)} bytes for a "
                f"{header.size_bytes}-byte batch"
            )
        if len(batch) > config.max_message_bytes:
            raise RecordTooLargeError(
                f"record batch of {len(batch)} bytes exceeds max.message.bytes="
                f"{config.max_message_bytes} of topic {self.topic}"
            )
        if header.record_count == 0:
            raise InvalidRecordError("a record batch must hold at least one record")
        if header.record_count != header.last_offset_delta + 1:
            raise InvalidRecordError(
                f"record count {header.record_count} does not match lastOffsetDelta "
                f"{header.last_offset_delta}"
            )
        if verify_records:
            from logstore.records.reader import decode_batch

            _, records = decode_batch(batch, verify_crc=False)
            for expected, record in enumerate(records):
                if record.offset != expected:
                    raise InvalidRecordError(
                        f"record {expected} has offset delta {record.offset}; deltas must be "
                        "0, 1, 2, ..."
                    )
        return header

    def _commit_group(self, group: list[_Pending]) -> None:
        config = self._config()
        incoming = sum(len(p.data) for p in group)
        for _ in range(_MAX_RETRIES):
            writer = self._writer_segment()
            roll = sealed = False
            results: list[AppendResult] = []
            with writer.lock:
                writer.set_durability(fsync=config.fsync)
                with writer.write_transaction() as state:
                    now = self._clock.time_ms()
                    if state.sealed:
                        sealed = True
                    elif not state.is_empty and (
                        state.size_bytes + incoming > config.segment_bytes
                        or now - state.created_ms >= config.segment_ms
                    ):
                        roll = True
                    else:
                        rows, results = self._assign_offsets(group, state.log_end_offset, now,
                                                             config)
                        writer.insert(rows)
            if sealed:
                self._drop_writer(writer)
                continue
            if roll:
                self._roll(expected_base=writer.base_offset)
                continue
            for pending, result in zip(group, results, strict=True):
                pending.result = result
            return
        raise StorageError(f"{self}: could not find the active segment")

    def _assign_offsets(
        self, group: list[_Pending], next_offset: int, now_ms: int, config: TopicConfig
    ) -> tuple[list[BatchRow], list[AppendResult]]:
        rows: list[BatchRow] = []
        results: list[AppendResult] = []
        log_start = self._state.get().log_start_offset
        for pending in group:
            header = pending.header
            data = bytearray(pending.data)
            set_base_offset(data, 0, next_offset)
            set_partition_leader_epoch(data, 0, self.leader_epoch)
            max_timestamp = header.max_timestamp
            append_time = -1
            attributes = header.attributes
            if config.log_append_time:
                set_log_append_time(data, 0, now_ms)
                max_timestamp = append_time = now_ms
                attributes = parse_header(data).attributes
            last = next_offset + header.last_offset_delta
            rows.append(BatchRow(next_offset, last, max_timestamp, header.record_count,
                                 header.producer_id, attributes, data))
            results.append(AppendResult(next_offset, last, append_time, log_start))
            next_offset = last + 1
        return rows, results

    def _writer_segment(self) -> Segment:
        with self._meta_lock:
            writer = self._writer
        if writer is not None and not writer.closed:
            return writer
        for _ in range(_MAX_RETRIES):
            self._rescan()
            with self._meta_lock:
                base = self._bases[-1]
            try:
                segment = Segment.open(self.directory / segment_file_name(base))
            except FileNotFoundError:
                continue
            # Checked after opening: a truncation creates segments only after recording its
            # intent, so a segment made by an unfinished truncation is never written to.
            if self._state.get().truncating_to is not None:
                segment.close()
                with self._lock.hold():
                    pending = self._state.get().truncating_to
                    if pending is not None:
                        self._truncate_locked(pending)
                continue
            with segment.lock:
                state = segment.state()
            if state.sealed:
                segment.close()
                self._create_successor(base)
                continue
            with self._meta_lock:
                if self._writer is not None and not self._writer.closed:
                    segment.close()
                    return self._writer
                self._writer = segment
            return segment
        raise StorageError(f"{self}: could not open the active segment")

    def _drop_writer(self, writer: Segment) -> None:
        with self._meta_lock:
            if self._writer is writer:
                self._writer = None
        with writer.lock:
            writer.close()

    def _create_successor(self, base: int) -> None:
        """The highest segment is sealed: make sure its successor exists."""
        with self._lock.hold():
            self._rescan()
            with self._meta_lock:
                if self._bases[-1] != base:
                    return
            segment = Segment.open(self.directory / segment_file_name(base))
            try:
                with segment.lock:
                    state = segment.state()
                if not state.sealed:
                    return
                successor = state.next_offset
                if successor is None or successor < 0:
                    successor = state.log_end_offset
                Segment.create(self.directory, successor, created_ms=self._clock.time_ms())
                segment.checkpoint()
            finally:
                segment.close()
            self._rescan()

    def roll(self) -> None:
        """Seal the active segment now (if it holds anything) and start a new one."""
        self._roll(expected_base=None)

    def _roll(self, *, expected_base: int | None) -> None:
        with self._lock.hold():
            writer = self._writer_segment()
            if expected_base is not None and writer.base_offset != expected_base:
                return  # somebody else rolled already
            successor = None
            with writer.lock:
                with writer.write_transaction() as state:
                    if not state.sealed and not state.is_empty:
                        writer.seal(state.log_end_offset)
                        successor = state.log_end_offset
            self._drop_writer(writer)
            if successor is not None:
                Segment.create(self.directory, successor, created_ms=self._clock.time_ms())
                self._remember_sealed(writer.base_offset)
            self._rescan()

    # --- read --------------------------------------------------------------------------------

    def read(self, offset: int, *, max_bytes: int, max_offset: int | None = None) -> ReadResult:
        """Whole batches from the one containing ``offset``, up to ``max_bytes`` in total (at
        least one batch if any is readable). ``max_offset`` bounds what may be returned (batches
        starting at or after it are not); the high watermark bounds it otherwise.

        Raises OffsetOutOfRangeError if ``offset`` is below the log start offset or above the
        log end offset.
        """
        log_end = self.log_end_offset()
        log_start = self._state.get().log_start_offset
        if offset < log_start or offset > log_end:
            raise OffsetOutOfRangeError(
                f"offset {offset} is out of range for {self} [{log_start}, {log_end}]",
                offset=offset, log_start_offset=log_start, log_end_offset=log_end,
            )
        end = log_end if max_offset is None else min(log_end, max_offset)
        batches: list[bytes] = []
        total = 0
        position = offset
        while position < end and total < max_bytes or (position < end and not batches):
            base = self._segment_base_for(position)
            if base is None:
                break
            try:
                segment = self._reader(base)
            except FileNotFoundError:
                # Deleted under us by retention in another process.
                self._rescan()
                log_start = self._state.get().log_start_offset
                if position < log_start and not batches:
                    raise OffsetOutOfRangeError(
                        f"offset {position} was deleted from {self} (log start {log_start})",
                        offset=position, log_start_offset=log_start, log_end_offset=log_end,
                    ) from None
                break
            with segment.lock:
                with segment.read_transaction() as state:
                    got, size, next_position, limited = segment.read_from(
                        position, max_bytes=max_bytes - total, end_offset=end, first=not batches
                    )
            batches.extend(got)
            total += size
            if got:
                position = next_position
            if limited:
                break
            if not state.sealed or state.next_offset is None or state.next_offset < 0:
                break
            position = max(position, state.next_offset)
        return ReadResult(batches, total, log_start, log_end, log_end)

    def _segment_base_for(self, offset: int) -> int | None:
        with self._meta_lock:
            if not self._bases:
                self._rescan_unlocked()
            index = bisect.bisect_right(self._bases, offset) - 1
            if index < 0:
                return self._bases[0] if self._bases else None
            return self._bases[index]

    def offset_for_timestamp(self, timestamp_ms: int) -> OffsetAndTimestamp | None:
        """The earliest offset whose record timestamp is >= ``timestamp_ms`` (None if none)."""
        from logstore.records.reader import decode_batch

        self._check_generation()
        log_start = self._state.get().log_start_offset
        with self._meta_lock:
            bases = list(self._bases)
        for base in bases:
            try:
                state = self._segment_state(base)
                if state.max_timestamp < timestamp_ms:
                    continue
                segment = self._reader(base)
            except FileNotFoundError:
                continue
            with segment.lock:
                with segment.read_transaction():
                    found = segment.first_batch_at_or_after_time(timestamp_ms)
            if found is None:
                continue
            _, records = decode_batch(found[1], verify_crc=False, min_offset=log_start)
            for record in records:
                if record.timestamp_ms >= timestamp_ms:
                    return OffsetAndTimestamp(record.offset, record.timestamp_ms)
        return None

    # --- deletion ----------------------------------------------------------------------------

    def delete_records(self, offset: int) -> int:
        """Advance the log start offset to ``offset`` (-1: the high watermark); return it.

        Whole segments below it are deleted; records below it in the first remaining segment
        stay on disk but are no longer readable.
        """
        high_watermark = self.high_watermark
        if offset == -1:
            offset = high_watermark
        if offset < 0 or offset > high_watermark:
            raise OffsetOutOfRangeError(
                f"cannot delete records up to {offset}: high watermark of {self} is "
                f"{high_watermark}",
                offset=offset, log_start_offset=self.log_start_offset,
                log_end_offset=high_watermark,
            )
        with self._lock.hold():
            state = self._state.advance_log_start(offset)
            self._delete_segments_below(state.log_start_offset)
        return state.log_start_offset

    def enforce_retention(self) -> RetentionReport:
        """Delete whole sealed segments past ``retention.ms`` / ``retention.bytes`` (oldest first,
        never the active segment) and advance the log start offset past them."""
        config = self._config()
        deleted = bytes_deleted = 0
        if config.deletes:
            with self._lock.hold():
                self._rescan()
                with self._meta_lock:
                    sealed_bases = self._bases[:-1]
                states = [self._segment_state(b) for b in sealed_bases]
                count = 0
                if config.retention_ms >= 0:
                    horizon = self._clock.time_ms() - config.retention_ms
                    while count < len(states) and states[count].max_timestamp < horizon:
                        count += 1
                if config.retention_bytes >= 0:
                    total = sum(s.size_bytes for s in states) + self._active_size()
                    by_size = 0
                    for state in states:
                        if total - state.size_bytes < config.retention_bytes:
                            break
                        total -= state.size_bytes
                        by_size += 1
                    count = max(count, by_size)
                if count:
                    new_start = states[count - 1].next_offset
                    if new_start is not None and new_start >= 0:
                        self._state.advance_log_start(new_start)
                deleted, bytes_deleted = self._delete_segments_below(
                    self._state.get().log_start_offset
                )
        return RetentionReport(self.topic, self.partition, deleted, bytes_deleted,
                               self._state.get().log_start_offset)

    def _active_size(self) -> int:
        with self._meta_lock:
            base = self._bases[-1]
        try:
            return self._segment_state(base).size_bytes
        except FileNotFoundError:
            return 0

    def _delete_segments_below(self, log_start: int) -> tuple[int, int]:
        """Unlink sealed segments that end at or below ``log_start``. Caller holds the lock."""
        self._rescan()
        with self._meta_lock:
            candidates = self._bases[:-1]
        deleted = bytes_deleted = 0
        for base in candidates:
            try:
                state = self._segment_state(base)
            except FileNotFoundError:
                continue
            if not state.sealed or state.next_offset is None or not 0 <= state.next_offset <= log_start:
                break
            self._unlink_segment(base)
            deleted += 1
            bytes_deleted += state.size_bytes
        if deleted:
            self._rescan()
        return deleted, bytes_deleted

    def _unlink_segment(self, base: int) -> None:
        with self._meta_lock:
            reader = self._readers.pop(base, None)
            self._sealed.pop(base, None)
        if reader is not None:
            with reader.lock:
                reader.close()
        path = self.directory / segment_file_name(base)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    # --- truncation --------------------------------------------------------------------------

    def truncate_to(self, offset: int) -> None:
        """Remove every batch at or above ``offset`` (for replication: a follower discarding a
        divergent suffix). Batches are never split: if ``offset`` falls inside a batch the
        whole batch goes, so the new log end offset is at most ``offset``. Below the log start
        offset the log is emptied and restarts at ``offset``.
        """
        if offset < 0:
            raise OffsetOutOfRangeError(f"cannot truncate to negative offset {offset}")
        with self._lock.hold():
            if offset >= self.log_end_offset():
                return
            self._state.begin_truncation(offset)
            self._truncate_locked(offset)

    def _truncate_locked(self, offset: int) -> None:
        """Carry out a recorded truncation. Idempotent; the caller holds the lock."""
        self._rescan()
        with self._meta_lock:
            bases = list(self._bases)
            writer, self._writer = self._writer, None
        if writer is not None:
            with writer.lock:
                writer.close()
        # 1. Stop appenders in every process: seal the highest segment with no successor.
        if bases:
            top = Segment.open(self.directory / segment_file_name(bases[-1]))
            try:
                with top.lock, top.write_transaction() as state:
                    if not state.sealed:
                        top.seal(-1)
            finally:
                top.close()
        log_start = self._state.get().log_start_offset
        keep = [b for b in bases if b <= offset]
        if offset < log_start or not keep:
            # 2a. Everything goes; the log restarts at `offset`.
            for base in reversed(bases):
                self._unlink_segment(base)
            Segment.create(self.directory, offset, created_ms=self._clock.time_ms())
            self._state.finish_truncation(log_start_offset=offset)
        else:
            # 2b. Drop whole segments above the target, then the tail of the target segment.
            for base in reversed(bases):
                if base > keep[-1]:
                    self._unlink_segment(base)
            target = Segment.open(self.directory / segment_file_name(keep[-1]))
            try:
                with target.lock:
                    with target.write_transaction():
                        cut = target.batch_containing(offset)
                        target.truncate_from(offset if cut is None else min(cut[0], offset))
                    self._state.finish_truncation()
                    # 3. Only now take appends again (a crash before this leaves the segment
                    # sealed with no successor, which the next appender repairs).
                    with target.write_transaction():
                        target.unseal()
            finally:
                target.close()
        self._reset_caches()

    # --- maintenance of in-process caches -----------------------------------------------------

    def _check_generation(self) -> None:
        generation = self._state.get().generation
        if generation != self._generation:
            self._reset_caches()

    def _reset_caches(self) -> None:
        with self._meta_lock:
            readers = list(self._readers.values())
            self._readers.clear()
            self._sealed.clear()
            writer, self._writer = self._writer, None
            self._generation = self._state.get().generation
            self._rescan_unlocked()
        for segment in readers + ([writer] if writer is not None else []):
            with segment.lock:
                segment.close()

    def _rescan(self) -> None:
        with self._meta_lock:
            self._rescan_unlocked()

    def _rescan_unlocked(self) -> None:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            raise StorageError(f"partition directory {self.directory} is gone") from None
        self._bases = sorted(b for b in map(parse_segment_file_name, names) if b is not None)
        if not self._bases:
            raise StorageError(f"partition directory {self.directory} has no segments")

    def _reader(self, base: int) -> Segment:
        with self._meta_lock:
            segment = self._readers.get(base)
            if segment is not None and not segment.closed:
                self._readers.move_to_end(base)
                return segment
        segment = Segment.open(self.directory / segment_file_name(base))
        evicted: list[Segment] = []
        with self._meta_lock:
            existing = self._readers.get(base)
            if existing is not None and not existing.closed:
                evicted.append(segment)
                segment = existing
            else:
                self._readers[base] = segment
                log_start = self._state.get().log_start_offset
                for old_base in list(self._readers):
                    if len(self._readers) <= self._max_open_segments:
                        break
                    old = self._readers[old_base]
                    if old is segment or not old.lock.acquire(blocking=False):
                        continue
                    old.lock.release()
                    del self._readers[old_base]
                    evicted.append(old)
                # Connections to segments below the log start keep deleted files' space in use.
                for old_base in [b for b in self._readers if b < log_start and b != base]:
                    evicted.append(self._readers.pop(old_base))
        for old in evicted:
            with old.lock:
                old.close()
        return segment

    def _segment_state(self, base: int) -> SegmentState:
        with self._meta_lock:
            cached = self._sealed.get(base)
        if cached is not None:
            return cached
        segment = self._reader(base)
        with segment.lock:
            state = segment.state()
        if state.sealed:
            with self._meta_lock:
                self._sealed[base] = state
        return state

    def _remember_sealed(self, base: int) -> None:
        with self._meta_lock:
            self._sealed.pop(base, None)

    # --- description and lifecycle --------------------------------------------------------------

    def describe(self) -> PartitionDescription:
        """Log start / end offsets, high watermark, bytes and segment count."""
        log_end = self.log_end_offset()
        bases = self.segment_bases()  # rescans: other processes may have deleted segments
        size = 0
        for base in bases:
            try:
                size += self._segment_state(base).size_bytes
            except FileNotFoundError:
                continue
        return PartitionDescription(
            partition=self.partition,
            log_start_offset=self._state.get().log_start_offset,
            log_end_offset=log_end,
            high_watermark=log_end,
            size_bytes=size,
            segment_count=len(bases),
        )

    def segment_bases(self) -> list[int]:
        """Base offsets of the segments on disk, oldest first."""
        self._rescan()
        with self._meta_lock:
            return list(self._bases)

    def close(self) -> None:
        """Close every connection. Idempotent; appends after close raise StorageError."""
        with self._commit_cond:
            if self._closed:
                return
            self._closed = True
        with self._meta_lock:
            segments = list(self._readers.values())
            self._readers.clear()
            writer, self._writer = self._writer, None
        if writer is not None:
            segments.append(writer)
        for segment in segments:
            with segment.lock:
                segment.close()
        self._state.close()
        os.close(self._doorbell_fd)

    def __repr__(self) -> str:
        return f"PartitionLog({self.topic}-{self.partition})"

    __str__ = __repr__


def _open_doorbell(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["PartitionLog", "ReadResult", "LogstoreError"]
