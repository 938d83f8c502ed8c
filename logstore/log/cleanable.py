"""Which part of a compacted partition the log cleaner may clean, and whether it is due.

Vocabulary (Kafka's log cleaner):

* the *clean section* is everything below the cleaner checkpoint: every key there has at most
  one record (its latest as of the last cleaning);
* the *dirty section* runs from the checkpoint (or the log start offset, if higher) to the
  first uncleanable offset;
* the *first uncleanable offset* is the lowest of: the active segment's base offset (the active
  segment is never cleaned), the segment holding the last stable offset (an open transaction's
  data must not be cleaned), and the first segment holding a record younger than
  ``min.compaction.lag.ms``. It is always a segment boundary;
* the *dirty ratio* is dirty bytes / (clean + dirty bytes); a partition is due for cleaning
  when it reaches ``min.cleanable.dirty.ratio``, or when its oldest dirty segment was created
  longer than ``max.compaction.lag.ms`` ago (Kafka uses the first batch's timestamp; the
  segment's creation time is the same moment for segments the log rolled itself).

A pure function of the partition's layout, its config, its checkpoint and the time; it lives in
the core so ``topics describe`` can show the dirty ratio without the cleaner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from logstore.config import TopicConfig
from logstore.log.segment import SegmentState

if TYPE_CHECKING:
    from logstore.log.partition_log import PartitionLog
    from logstore.log.rewrite import LogLayout


@dataclass(frozen=True, slots=True)
class CleanableRange:
    """The clean and dirty sections of one partition at one moment."""

    first_dirty_offset: int
    """Where the dirty section starts: the checkpoint, or the log start offset if higher."""
    first_uncleanable_offset: int
    """Where cleaning must stop (a segment boundary; see the module docstring)."""
    clean_bytes: int
    dirty_bytes: int
    segments: tuple[SegmentState, ...]
    """The sealed segments below the first uncleanable offset, oldest first: what a cleaning
    may rewrite (the clean ones are filtered again with the new keys)."""
    max_lag_exceeded: bool
    """Dirty data has waited longer than ``max.compaction.lag.ms``: clean whatever the ratio."""

    @property
    def dirty_ratio(self) -> float:
        total = self.clean_bytes + self.dirty_bytes
        return self.dirty_bytes / total if total else 0.0

    @property
    def has_dirty(self) -> bool:
        return self.first_dirty_offset < self.first_uncleanable_offset

    def due(self, config: TopicConfig) -> bool:
        """True when the cleaner should clean this partition now."""
        return self.has_dirty and (
            self.max_lag_exceeded or self.dirty_ratio >= config.min_cleanable_dirty_ratio)


def cleanable_range(
    segments: tuple[SegmentState, ...],
    *,
    log_start_offset: int,
    last_stable_offset: int,
    checkpoint: int,
    config: TopicConfig,
    now_ms: int,
) -> CleanableRange:
    """The sections of a partition whose segments (oldest first, the last one active) are
    ``segments``. ``checkpoint`` is the cleaner checkpoint (0 if the partition was never
    cleaned); one outside [log start, log end] is ignored, as Kafka does."""
    sealed = segments[:-1]
    log_end = segments[-1].log_end_offset if segments else log_start_offset
    first_dirty = checkpoint if log_start_offset <= checkpoint <= log_end else log_start_offset
    lag_horizon = now_ms - config.min_compaction_lag_ms
    cleanable: list[SegmentState] = []
    first_uncleanable = log_start_offset
    for state in sealed:
        end = state.next_offset
        if end is None or end < 0 or end > last_stable_offset:
            break  # holds the last stable offset (or is being rolled): nothing from here on
        dirty = end > first_dirty
        if dirty and state.max_timestamp > lag_horizon:
            break  # too young to clean: min.compaction.lag.ms
        cleanable.append(state)
        first_uncleanable = max(end, log_start_offset)
    first_dirty = min(first_dirty, first_uncleanable)
    clean_bytes = dirty_bytes = 0
    first_dirty_created: int | None = None
    for state in cleanable:
        if state.next_offset is not None and state.next_offset > first_dirty:
            dirty_bytes += state.size_bytes
            if first_dirty_created is None:
                first_dirty_created = state.created_ms
        else:
            clean_bytes += state.size_bytes
    max_lag_exceeded = (first_dirty_created is not None
                        and now_ms - first_dirty_created > config.max_compaction_lag_ms)
    return CleanableRange(first_dirty, first_uncleanable, clean_bytes, dirty_bytes,
                          tuple(cleanable), max_lag_exceeded)


def sections(
    log: PartitionLog, config: TopicConfig, checkpoint: int, *, now_ms: int
) -> tuple[LogLayout, CleanableRange]:
    """A partition's layout now, and its clean and dirty sections for ``checkpoint``."""
    layout = log.layout()
    found = cleanable_range(
        layout.segments, log_start_offset=layout.log_start_offset,
        last_stable_offset=layout.last_stable_offset, checkpoint=checkpoint, config=config,
        now_ms=now_ms)
    return layout, found
