"""Cleaning one partition: Kafka's log cleaner, one round at a time.

A round:

1. Read the partition's layout and its :class:`~logstore.log.cleanable.CleanableRange` from the
   cleaner checkpoint, and decide whether it is due (:func:`due_reason`: the dirty ratio,
   ``max.compaction.lag.ms``, or the earliest delete horizon the last cleaning left in the log
   has passed); unless forced, stop here when it is not.
2. Build the offset map over the dirty section: for every key, its latest offset. Control
   batches and batches of aborted transactions are skipped. The map has a fixed size; when it
   fills, the round stops at that batch boundary (the *map end*) and the rest of the dirty
   section is left to the next round, in the same run.
3. Filter every cleanable segment from the log start up to the map end, oldest first, with a
   :class:`~logstore.compaction.batch_filter.BatchFilter`, rewriting groups of consecutive
   segments whose total size fits ``segment.bytes`` into one segment each
   (:meth:`PartitionLog.rewrite_segments`, which is atomic and crash-safe on its own).
4. Record the map end as the new cleaner checkpoint, with the earliest delete horizon the
   filter left in the log (through ``save_checkpoint``).

Between segments (building the map) and groups (rewriting) the cleaner asks ``keep_going``
(the job renews its lease there and honours a shutdown request). If the partition changed
under it (a retention pass, a truncation, another cleaner) a rewrite is refused and the round
ends as interrupted; what was already rewritten is valid and the next run starts again from
the checkpoint. Re-cleaning is idempotent: delete horizons already set are kept.

Not thread-safe: one cleaner per partition at a time (the job's lease ensures it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from logstore.compaction.batch_filter import AbortedIndex, BatchFilter, FilterStats
from logstore.compaction.offset_map import OffsetMap
from logstore.compaction.report import CompactionStatus, DueReason, PartitionCompaction

from logstore.clock import Clock
from logstore.config import TopicConfig
from logstore.errors import InvalidArgumentError
from logstore.log.cleanable import CleanableRange, sections
from logstore.log.partition_log import PartitionLog
from logstore.log.producer_state import AbortedTxn
from logstore.log.rewrite import LogLayout
from logstore.log.segment import SegmentState
from logstore.records.header import parse_header
from logstore.records.reader import decode_batch


@dataclass(slots=True)
class _Totals:
    bytes_before: int = 0
    bytes_after: int = 0
    segments_merged: int = 0
    rounds: int = 0
    stats: list[FilterStats] = field(default_factory=list)
    delete_horizon_ms: int | None = None
    """The earliest delete horizon in the log as last recorded (or, in a dry run, as it would
    be recorded)."""
    filtered_horizon_ms: int | None = None
    """The earliest delete horizon the last completed filter pass left in the log."""

    def sum(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.stats)


def due_reason(
    section: CleanableRange, config: TopicConfig, *, delete_horizon_ms: int | None, now_ms: int
) -> DueReason | None:
    """Why a partition whose sections are ``section`` is due for cleaning at ``now_ms``, or
    None if it is not. ``delete_horizon_ms`` is the earliest delete horizon recorded with its
    checkpoint: once it passed, the partition is due even with no dirty data, as long as it
    has cleanable segments (Kafka 3.x schedules such logs too)."""
    if section.has_dirty:
        if section.dirty_ratio >= config.min_cleanable_dirty_ratio:
            return DueReason.DIRTY_RATIO
        if section.max_lag_exceeded:
            return DueReason.MAX_COMPACTION_LAG
    if delete_horizon_ms is not None and delete_horizon_ms <= now_ms and section.segments:
        return DueReason.DELETE_HORIZON
    return None


class PartitionCleaner:
    """Cleans one partition (see the module docstring).

    ``progress`` receives the number of bytes read as the cleaner goes (for a progress bar);
    ``keep_going`` is asked between segment groups and stops the run when it says False.
    """

    def __init__(
        self,
        log: PartitionLog,
        config: TopicConfig,
        *,
        offset_map: OffsetMap,
        clock: Clock,
        dry_run: bool = False,
        force: bool = False,
        progress: Callable[[int], None] | None = None,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> None:
        self._log = log
        self._config = config
        self._map = offset_map
        self._clock = clock
        self._dry_run = dry_run
        self._force = force
        self._progress = progress
        self._keep_going = keep_going

    def _sections(self, checkpoint: int) -> tuple[LogLayout, CleanableRange]:
        return sections(self._log, self._config, checkpoint, now_ms=self._clock.time_ms())

    def clean(
        self,
        checkpoint: int,
        save_checkpoint: Callable[[int, int | None], None],
        *,
        delete_horizon_ms: int | None = None,
    ) -> PartitionCompaction:
        """Clean from ``checkpoint`` as far as the partition is cleanable, if it is due (or
        forced). ``delete_horizon_ms`` is the earliest delete horizon recorded with the
        checkpoint; ``save_checkpoint(offset, delete_horizon_ms)`` records each round's map end
        and the earliest horizon its filter left in the log (never called in a dry run)."""
        started = time.monotonic()
        log = self._log
        if not self._dry_run:
            log.finish_pending_merge()
        layout, section = self._sections(checkpoint)
        now_ms = self._clock.time_ms()
        due = due_reason(section, self._config, delete_horizon_ms=delete_horizon_ms,
                         now_ms=now_ms)
        if due is None and self._force and section.segments:
            due = DueReason.FORCED

        def result(status: CompactionStatus, reason: str, totals: _Totals | None = None,
                   end: int = section.first_dirty_offset) -> PartitionCompaction:
            horizon = delete_horizon_ms if totals is None else totals.delete_horizon_ms
            totals = totals or _Totals()
            return PartitionCompaction(
                log.topic, log.partition, status, reason, section.dirty_ratio,
                section.first_dirty_offset, end, totals.bytes_before, totals.bytes_after,
                totals.sum("records_removed"), totals.sum("tombstones_removed"),
                totals.sum("markers_removed"), totals.sum("batches_removed"),
                totals.sum("batches_rewritten"), totals.segments_merged, totals.rounds,
                int((time.monotonic() - started) * 1000), due, horizon)

        if due is None:
            waiting = _waiting_for(delete_horizon_ms, now_ms)
            if not section.has_dirty:
                return result(CompactionStatus.CLEAN, f"no cleanable dirty data{waiting}")
            return result(CompactionStatus.NOT_DUE, (
                f"dirty ratio {section.dirty_ratio:.2f} is below min.cleanable.dirty.ratio "
                f"{self._config.min_cleanable_dirty_ratio:g}{waiting}"))
        totals = _Totals(delete_horizon_ms=delete_horizon_ms)
        current = section
        while True:
            totals.rounds += 1
            aborted = AbortedIndex(log.aborted_transactions(layout.log_start_offset))
            map_end = self._build_map(current, aborted)
            if map_end is None or not self._filter(layout, current, map_end, aborted, totals):
                return result(CompactionStatus.INTERRUPTED,
                              "the partition changed meanwhile or the run was stopped; "
                              "the next run goes on", totals, checkpoint)
            totals.delete_horizon_ms = totals.filtered_horizon_ms
            if self._dry_run:
                return result(CompactionStatus.DRY_RUN,
                              f"{due.description}; nothing was written", totals, map_end)
            save_checkpoint(map_end, totals.delete_horizon_ms)
            checkpoint = map_end
            if map_end >= current.first_uncleanable_offset or not self._keep_going():
                break
            layout, current = self._sections(checkpoint)
            if not current.has_dirty:
                break
        return result(CompactionStatus.CLEANED,
                      f"{due.description}; clean up to offset {checkpoint}", totals, checkpoint)

    # --- the offset map --------------------------------------------------------------------

    def _build_map(self, section: CleanableRange, aborted: AbortedIndex) -> int | None:
        """Fill the map from the dirty section; return the map end (see the module docstring),
        or None if ``keep_going`` said stop between two segments."""
        offset_map = self._map
        offset_map.clear()
        first_dirty = section.first_dirty_offset
        complete = False  # at least one batch is in the map
        for state in section.segments:
            if state.next_offset is None or state.next_offset <= first_dirty:
                continue  # clean
            if not self._keep_going():  # also renews the lease on long map builds
                return None
            for base, data in self._batches(state.base_offset):
                header = parse_header(data)
                if (header.last_offset < first_dirty or header.is_control
                        or aborted.holds(header)):
                    continue
                _, records = decode_batch(data, verify_crc=False)
                keyed = [r for r in records if r.key is not None]
                keys: list[bytes] = [r.key for r in keyed]  # type: ignore[misc]
                if offset_map.put_many(keys, [r.offset for r in keyed]) < len(keys):
                    if not complete:
                        raise InvalidArgumentError(
                            f"the cleaner's offset map ({offset_map.memory_bytes} bytes, "
                            f"{offset_map.capacity} keys) cannot hold the batch at offset "
                            f"{base} of {self._log} ({len(keys)} keys): give the cleaner more "
                            "memory")
                    return base
                complete = True
        return section.first_uncleanable_offset

    def _batches(self, base: int) -> Iterator[tuple[int, bytes]]:
        """One segment's batches, reporting their sizes to ``progress``."""
        for base_offset, data in self._log.iter_batches(base):
            if self._progress is not None:
                self._progress(len(data))
            yield base_offset, data

    # --- filtering and rewriting -----------------------------------------------------------

    def _filter(
        self, layout: LogLayout, section: CleanableRange, map_end: int, aborted: AbortedIndex,
        totals: _Totals,
    ) -> bool:
        """Filter the segments below ``map_end``; False if interrupted."""
        log = self._log
        producers = log.producer_states()
        last_batches = {e.batches[-1].first_offset for e in producers.values() if e.batches}
        batch_filter = BatchFilter(
            self._map, now_ms=self._clock.time_ms(),
            delete_retention_ms=self._config.delete_retention_ms,
            aborted=aborted, last_batch_offsets=last_batches,
            tail_offset=section.first_uncleanable_offset - 1)
        totals.stats.append(batch_filter.stats)
        generation = layout.generation
        for group in _groups([s for s in section.segments if s.base_offset < map_end],
                             self._config.segment_bytes):
            if not self._keep_going():
                return False
            bases = [s.base_offset for s in group]
            if self._dry_run:
                before = batch_filter.stats.bytes_read
                written = batch_filter.stats.bytes_written
                for base in bases:
                    for base_offset, data in self._batches(base):
                        batch_filter(base_offset, data)
                size = sum(s.size_bytes for s in group)
                totals.bytes_before += size
                # Estimated: the rows' bytes shrink as the batches do (SQLite overhead aside).
                totals.bytes_after += max(0, size - (batch_filter.stats.bytes_read - before)
                                          + (batch_filter.stats.bytes_written - written))
                totals.segments_merged += len(group) - 1
                continue
            done = log.rewrite_segments(
                bases, batch_filter, keep_aborted=batch_filter.keep_aborted,
                expected_generation=generation, progress=self._progress)
            if not done.applied:
                return False
            generation = done.generation
            totals.bytes_before += done.bytes_before
            totals.bytes_after += done.bytes_after
            totals.segments_merged += done.segments_merged
        # Every segment that can hold a delete horizon (every cleaned one) lies below the map
        # end, so this pass saw all of them: what it left is the log's earliest horizon.
        totals.filtered_horizon_ms = batch_filter.earliest_delete_horizon_ms
        if not self._dry_run:
            return self._merge_small(map_end, generation, totals)
        return True

    def _merge_small(self, map_end: int, generation: int, totals: _Totals) -> bool:
        """Merge consecutive cleaned segments that now fit ``segment.bytes`` together (the
        groups above were sized before cleaning, as Kafka does; this pass uses the sizes after
        it). False if interrupted."""
        log = self._log
        layout = log.layout()
        if layout.generation != generation:
            return False
        cleaned = [s for s in layout.sealed
                   if s.next_offset is not None and 0 <= s.next_offset <= map_end]
        for group in _groups(cleaned, self._config.segment_bytes):
            if len(group) < 2:
                continue
            if not self._keep_going():
                return False
            done = log.rewrite_segments(
                [s.base_offset for s in group], _unchanged, keep_aborted=_keep,
                expected_generation=generation)
            if not done.applied:
                return False
            generation = done.generation
            totals.bytes_after += done.bytes_after - done.bytes_before
            totals.segments_merged += done.segments_merged
        return True


def _waiting_for(delete_horizon_ms: int | None, now_ms: int) -> str:
    """The end of a not-due reason: when the recorded delete horizon makes it due."""
    if delete_horizon_ms is None or delete_horizon_ms <= now_ms:
        return ""
    return f"; due when the delete horizon passes in {delete_horizon_ms - now_ms} ms"


def _unchanged(base_offset: int, data: bytes) -> bytes:
    return data


def _keep(txn: AbortedTxn) -> bool:
    return True


def _groups(segments: list[SegmentState], max_bytes: int) -> list[list[SegmentState]]:
    """Consecutive segments whose total size fits ``max_bytes`` (at least one per group)."""
    groups: list[list[SegmentState]] = []
    size = 0
    for state in segments:
        if groups and size + state.size_bytes <= max_bytes:
            groups[-1].append(state)
            size += state.size_bytes
        else:
            groups.append([state])
            size = state.size_bytes
    return groups
