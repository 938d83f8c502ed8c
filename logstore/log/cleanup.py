"""Deleting data from a partition log: retention, delete-records and truncation.

* Retention (``cleanup.policy=delete``) drops whole sealed segments, oldest first, whose newest
  timestamp is older than ``retention.ms`` or while the partition is larger than
  ``retention.bytes``; never the active segment.
* delete-records advances the log start offset (never past the high watermark).
* The log start offset is made durable before segment files below it are unlinked, so a crash
  leaves at worst an orphan file that the next pass deletes.
* Truncation (for replication: a follower discarding a divergent suffix) records its target
  first, seals the highest segment with no successor (stopping appenders in every process),
  unlinks segments above the target, cuts the target segment's tail and rebuilds its producer
  state from the segment's snapshot plus the batches that remain, clears the intent and only
  then takes appends again. Whoever finds an unfinished intent finishes it first.

Part of :class:`~logstore.log.partition_log.PartitionLog` (a mixin over its attributes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from logstore.errors import OffsetOutOfRangeError
from logstore.log.producer_state import ProducerEntry, apply
from logstore.log.segment import Segment, SegmentState, segment_file_name
from logstore.records.control import parse_control
from logstore.records.header import parse_header
from logstore.types import RetentionReport

if TYPE_CHECKING:
    from logstore.log.partition_log import PartitionLog


class CleanupMixin:
    """Retention, delete-records and truncation."""

    def delete_records(self: PartitionLog, offset: int) -> int:
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
            self._check_generation()
            state = self._state.advance_log_start(offset)
            self._delete_segments_below(state.log_start_offset)
        return state.log_start_offset

    def enforce_retention(self: PartitionLog) -> RetentionReport:
        """Delete whole sealed segments past ``retention.ms`` / ``retention.bytes`` (oldest first,
        never the active segment) and advance the log start offset past them. Topics with
        remote storage count remote segments too and also apply local retention (see
        ``tiering``); without an attached remote view they keep everything."""
        config = self._config()
        deleted = bytes_deleted = 0
        if config.remote_storage_enable:
            if self.remote is not None:
                return self._enforce_total_retention(self.remote)
            # Without the object store neither total retention (remote bytes count) nor
            # local retention (only tiered copies may go) can be decided: keep everything.
            return RetentionReport(self.topic, self.partition, 0, 0,
                                   self._state.get().log_start_offset)
        if config.deletes:
            with self._lock.hold():
                states = self._sealed_states_locked()
                count = expired_prefix(
                    [(s.max_timestamp, s.size_bytes) for s in states],
                    now_ms=self._clock.time_ms(), retention_ms=config.retention_ms,
                    retention_bytes=config.retention_bytes, extra_bytes=self._active_size())
                if count:
                    new_start = states[count - 1].next_offset
                    if new_start is not None and new_start >= 0:
                        self._state.advance_log_start(new_start)
                deleted, bytes_deleted = self._delete_segments_below(
                    self._state.get().log_start_offset
                )
        return RetentionReport(self.topic, self.partition, deleted, bytes_deleted,
                               self._state.get().log_start_offset)

    def _sealed_states_locked(self: PartitionLog) -> list[SegmentState]:
        """Fresh summaries of the sealed segments, oldest first. Caller holds the lock."""
        # Cached segment states are stale after another process's cleaner merged segments
        # (a merged segment's range and newest timestamp grew).
        self._check_generation()
        self._rescan()
        with self._meta_lock:
            sealed_bases = self._bases[:-1]
        return [self._segment_state(b) for b in sealed_bases]

    def _active_size(self: PartitionLog) -> int:
        with self._meta_lock:
            base = self._bases[-1]
        try:
            return self._segment_state(base).size_bytes
        except FileNotFoundError:
            return 0

    def _delete_segments_below(self: PartitionLog, log_start: int) -> tuple[int, int]:
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
            if (
                not state.sealed
                or state.next_offset is None
                or not 0 <= state.next_offset <= log_start
            ):
                break
            self._unlink_segment(base)
            deleted += 1
            bytes_deleted += state.size_bytes
        if deleted:
            self._rescan()
        return deleted, bytes_deleted

    def _unlink_segment(self: PartitionLog, base: int) -> None:
        with self._meta_lock:
            reader = self._readers.pop(base, None)
            self._sealed.pop(base, None)
        if reader is not None:
            with reader.lock:
                reader.close()
        path = self.directory / segment_file_name(base)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def truncate_to(self: PartitionLog, offset: int) -> None:
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

    def _truncate_locked(self: PartitionLog, offset: int) -> None:
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
                        cut_at = offset if cut is None else min(cut[0], offset)
                        target.truncate_from(cut_at)
                        _rebuild_producer_state(target, cut_at)
                    self._state.finish_truncation()
                    # 3. Only now take appends again (a crash before this leaves the segment
                    # sealed with no successor, which the next appender repairs).
                    with target.write_transaction():
                        target.unseal()
            finally:
                target.close()
        self._reset_caches()


def expired_prefix(
    units: Sequence[tuple[int, int]],
    *,
    now_ms: int,
    retention_ms: int,
    retention_bytes: int,
    extra_bytes: int = 0,
    limit: int | None = None,
) -> int:
    """How many of ``units`` ((newest timestamp, bytes), oldest first) retention removes: the
    longest prefix whose newest records are older than ``retention_ms``, or enough of the
    oldest to bring the total plus ``extra_bytes`` (the active segment) down to
    ``retention_bytes``, whichever is more, and at most ``limit``. -1 disables a bound."""
    limit = len(units) if limit is None else min(limit, len(units))
    count = 0
    if retention_ms >= 0:
        horizon = now_ms - retention_ms
        while count < limit and units[count][0] < horizon:
            count += 1
    if retention_bytes >= 0:
        total = sum(size for _, size in units) + extra_bytes
        by_size = 0
        while by_size < limit and total - units[by_size][1] >= retention_bytes:
            total -= units[by_size][1]
            by_size += 1
        count = max(count, by_size)
    return count


def _rebuild_producer_state(segment: Segment, below: int) -> None:
    """Recompute the segment's producer state from its snapshot and its batches below
    ``below``, and forget aborted transactions whose marker was cut off. Inside a write
    transaction."""
    from logstore.records.reader import decode_batch

    states: dict[int, ProducerEntry] = dict(segment.snapshot_producers())
    for base_offset, data in segment.producer_batches(below=below):
        header = parse_header(data)
        control_type = None
        if header.is_control:
            _, records = decode_batch(data, verify_crc=False)
            control_type = parse_control(records[0].key, records[0].value).type
        outcome = apply(states.get(header.producer_id), header, base_offset,
                        control_type=control_type, check=False)
        if outcome.entry is not None:
            states[header.producer_id] = outcome.entry
    segment.save_producers(list(states.values()), replace_all=True)
    segment.delete_aborted_from(below)
