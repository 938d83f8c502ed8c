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

:class:`Retention` and :class:`Truncation` are collaborators of
:class:`~logstore.log.partition_log.PartitionLog` over its
:class:`~logstore.log.segment_set.SegmentSet`. Thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from logstore.clock import Clock
from logstore.config import TopicConfig
from logstore.errors import OffsetOutOfRangeError
from logstore.log.producer_state import ProducerEntry, apply
from logstore.log.segment import Segment
from logstore.log.segment_set import SegmentSet
from logstore.records.control import parse_control
from logstore.records.header import parse_header
from logstore.types import RetentionReport

if TYPE_CHECKING:
    from logstore.log.tiering import LocalTiering


class Retention:
    """Retention and delete-records of one partition."""

    def __init__(
        self,
        segments: SegmentSet,
        *,
        topic: str,
        partition: int,
        config: Callable[[], TopicConfig],
        clock: Clock,
        high_watermark: Callable[[], int],
        tiering: LocalTiering,
    ) -> None:
        self._segments = segments
        self._topic = topic
        self._partition = partition
        self._config = config
        self._clock = clock
        self._high_watermark = high_watermark
        self._tiering = tiering

    def __repr__(self) -> str:
        return repr(self._segments)

    def delete_records(self, offset: int) -> int:
        """Advance the log start offset to ``offset`` (-1: the high watermark); return it.

        Whole segments below it are deleted; records below it in the first remaining segment
        stay on disk but are no longer readable.
        """
        segments = self._segments
        high_watermark = self._high_watermark()
        if offset == -1:
            offset = high_watermark
        if offset < 0 or offset > high_watermark:
            raise OffsetOutOfRangeError(
                f"cannot delete records up to {offset}: high watermark of {self} is "
                f"{high_watermark}",
                offset=offset, log_start_offset=segments.state.get().log_start_offset,
                log_end_offset=high_watermark,
            )
        with segments.lock.hold():
            segments.check_generation()
            state = segments.state.advance_log_start(offset)
            segments.delete_below(state.log_start_offset)
        return state.log_start_offset

    def enforce_retention(self) -> RetentionReport:
        """Delete whole sealed segments past ``retention.ms`` / ``retention.bytes`` (oldest first,
        never the active segment) and advance the log start offset past them. Topics with
        remote storage count remote segments too and also apply local retention (see
        ``tiering``); without an attached remote view they keep everything."""
        segments = self._segments
        config = self._config()
        deleted = bytes_deleted = 0
        if config.remote_storage_enable:
            return self._tiering.enforce_total_retention()
        if config.deletes:
            with segments.lock.hold():
                states = segments.sealed_states()
                count = expired_prefix(
                    [(s.max_timestamp, s.size_bytes) for s in states],
                    now_ms=self._clock.time_ms(), retention_ms=config.retention_ms,
                    retention_bytes=config.retention_bytes, extra_bytes=segments.active_size())
                if count:
                    new_start = states[count - 1].next_offset
                    if new_start is not None and new_start >= 0:
                        segments.state.advance_log_start(new_start)
                deleted, bytes_deleted = segments.delete_below(
                    segments.state.get().log_start_offset)
        return RetentionReport(self._topic, self._partition, deleted, bytes_deleted,
                               segments.state.get().log_start_offset)


class Truncation:
    """Truncation of one partition (for replication), crash-safe through a recorded intent."""

    def __init__(
        self,
        segments: SegmentSet,
        *,
        clock: Clock,
        log_end_offset: Callable[[], int],
        truncated: Callable[[int], None],
    ) -> None:
        self._segments = segments
        self._clock = clock
        self._log_end_offset = log_end_offset
        self._truncated = truncated

    def __repr__(self) -> str:
        return repr(self._segments)

    def truncate_to(self, offset: int) -> None:
        """Remove every batch at or above ``offset`` (for replication: a follower discarding a
        divergent suffix). Batches are never split: if ``offset`` falls inside a batch the
        whole batch goes, so the new log end offset is at most ``offset``. Below the log start
        offset the log is emptied and restarts at ``offset``.
        """
        if offset < 0:
            raise OffsetOutOfRangeError(f"cannot truncate to negative offset {offset}")
        segments = self._segments
        with segments.lock.hold():
            if offset >= self._log_end_offset():
                return
            segments.state.begin_truncation(offset)
            self.finish_locked(offset)

    def finish_pending(self) -> None:
        """Finish a truncation another process (or a crash) left half done, if any."""
        segments = self._segments
        with segments.lock.hold():
            pending = segments.state.get().truncating_to
            if pending is not None:
                self.finish_locked(pending)

    def finish_locked(self, offset: int) -> None:
        """Carry out a recorded truncation. Idempotent; the caller holds the lock."""
        segments = self._segments
        bases = list(segments.state.get().segments)
        segments.take_writer()
        # 1. Stop appenders in every process: seal the highest segment with no successor.
        if bases:
            top = segments.open_own(bases[-1])
            try:
                with top.lock, top.write_transaction() as state:
                    if not state.sealed:
                        top.seal(-1)
            finally:
                top.close()
        log_start = segments.state.get().log_start_offset
        keep = [b for b in bases if b <= offset]
        if offset < log_start or not keep:
            # 2a. Everything goes; the log restarts at `offset`.
            segments.unlink(reversed(bases))
            for base in segments.files():  # unlisted by an earlier, interrupted attempt
                segments.remove_files(base)
            segments.create(offset, created_ms=self._clock.time_ms())
            segments.state.finish_truncation(log_start_offset=offset)
            log_end = offset
        else:
            # 2b. Drop whole segments above the target, then the tail of the target segment.
            segments.unlink([b for b in reversed(bases) if b > keep[-1]])
            for base in segments.files():  # unlisted by an earlier, interrupted attempt
                if base > keep[-1]:
                    segments.remove_files(base)
            target = segments.open_own(keep[-1])
            try:
                with target.lock:
                    with target.write_transaction():
                        cut = target.batch_containing(offset)
                        cut_at = offset if cut is None else min(cut[0], offset)
                        target.truncate_from(cut_at)
                        _rebuild_producer_state(target, cut_at)
                    segments.state.finish_truncation()
                    # 3. Only now take appends again (a crash before this leaves the segment
                    # sealed with no successor, which the next appender repairs).
                    with target.write_transaction() as state:
                        target.unseal()
                    log_end = state.log_end_offset
            finally:
                target.close()
        segments.reset()
        self._truncated(log_end)


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
        marker = None
        if header.is_control:
            _, records = decode_batch(data, verify_crc=False)
            marker = parse_control(records[0].key, records[0].value)
        outcome = apply(states.get(header.producer_id), header, base_offset,
                        marker=marker, check=False)
        if outcome.entry is not None:
            states[header.producer_id] = outcome.entry
    segment.save_producers(list(states.values()), replace_all=True)
    segment.delete_aborted_from(below)
