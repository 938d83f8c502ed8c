"""Rewriting sealed segments in place, for the log cleaner (compaction).

The cleaner decides which batches to keep; this module changes the files, safely while
producers append and consumers in other processes read:

* A group of consecutive sealed segments ``[target, merged...]`` is rewritten into the
  *target's own file*, in one SQLite write transaction: its batches are kept, overwritten
  (filtered) or deleted, the merged segments' batches are inserted after them, and the summary
  row's range grows to end where the last merged segment ended. Readers in any process see the
  old or the new contents, never a mix (WAL snapshots). The active segment is never touched.
* The merged segments' files are unlinked only after that commit; until then (or after a crash
  in between) they hold the same offsets as the target, uncleaned, which is still a valid log:
  a reader that opens one reads old-but-valid batches.
* The commit happens under the partition lock, after checking that nothing else restructured
  the partition since the cleaner looked at it: the generation is unchanged (truncations and
  other rewrites bump it) and every file of the group is still the one that was read
  (retention may have unlinked some). Otherwise the transaction is rolled back and the result
  says ``applied=False``; nothing changed.
* A merge records its intent in ``partition.sqlite`` before committing. Whoever finds an
  intent (the next process to open the partition, or the next cleaner) unlinks the merged
  files if the target's committed range covers them, and only clears the intent otherwise.
* Every applied rewrite bumps the generation, so other processes drop cached segment states
  (sizes, ranges) and connections to unlinked files.
* Afterwards the target is vacuumed when much of it is free pages, so compaction gives disk
  space back.

Part of :class:`~logstore.log.partition_log.PartitionLog` (a mixin over its attributes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from logstore.errors import InvalidArgumentError, StorageError
from logstore.log.partition_state import MergeIntent
from logstore.log.producer_state import AbortedTxn
from logstore.log.segment import BatchRow, Segment, SegmentState, segment_file_name
from logstore.records.header import parse_header

if TYPE_CHECKING:
    from logstore.log.partition_log import PartitionLog

#: Rows read per query from the target segment while rewriting it (batches are at most
#: max.message.bytes each, so this bounds the memory a rewrite holds at once).
_CHUNK_ROWS = 64
#: Vacuum a rewritten segment when at least this share of its pages is free.
VACUUM_FREE_FRACTION = 0.25

BatchRewrite = Callable[[int, bytes], "bytes | None"]
"""``(base_offset, data) -> data`` to keep the batch as is (the same object), new bytes (same
base offset, same last offset) to replace it, or None to remove it."""


@dataclass(frozen=True, slots=True)
class LogLayout:
    """The partition as the cleaner plans against it (read without the partition lock)."""

    generation: int
    log_start_offset: int
    log_end_offset: int
    last_stable_offset: int
    segments: tuple[SegmentState, ...]
    """Every segment, oldest first; the last one is the active segment."""

    @property
    def sealed(self) -> tuple[SegmentState, ...]:
        return self.segments[:-1]


@dataclass(frozen=True, slots=True)
class RewriteResult:
    """What :meth:`RewriteMixin.rewrite_segments` did."""

    applied: bool
    """False: the partition changed under the cleaner (nothing was written)."""
    generation: int
    """The partition's generation afterwards (the next rewrite must expect it)."""
    bytes_before: int
    bytes_after: int
    batches_removed: int
    batches_rewritten: int
    segments_merged: int


class RewriteMixin:
    """In-place segment rewriting for the log cleaner."""

    def layout(self: PartitionLog) -> LogLayout:
        """Generation, offsets and every segment's summary (fresh, not from caches)."""
        self._check_generation()
        generation = self._state.get().generation
        log_end, stable = self.tail_offsets()
        for _ in range(100):
            bases = self.segment_bases()
            try:
                states = tuple(self._fresh_state(base) for base in bases)
            except FileNotFoundError:
                continue  # retention or a merge unlinked one: look again
            return LogLayout(generation, self._state.get().log_start_offset, log_end, stable,
                             states)
        raise StorageError(f"{self}: segment list keeps changing")

    def _fresh_state(self: PartitionLog, base: int) -> SegmentState:
        segment = self._reader(base)
        with segment.lock:
            return segment.state()

    def iter_batches(self: PartitionLog, base: int) -> Iterator[tuple[int, bytes]]:
        """Every (base offset, data) of one segment, in order, from one snapshot.

        Uses a connection of its own, held until the iterator is exhausted or closed. Raises
        FileNotFoundError if the segment is gone.
        """
        segment = Segment.open(self.directory / segment_file_name(base))
        try:
            with segment.read_transaction():
                yield from segment.iter_rows()
        finally:
            segment.close()

    def aborted_transactions(self: PartitionLog, from_offset: int) -> list[AbortedTxn]:
        """Every aborted transaction whose ABORT marker is at or after ``from_offset``, from all
        segments, ordered by first offset."""
        for _ in range(100):
            found: list[AbortedTxn] = []
            try:
                for base in self.segment_bases():
                    segment = self._reader(base)
                    with segment.lock, segment.read_transaction():
                        found.extend(a for a in segment.all_aborted()
                                     if a.last_offset >= from_offset)
            except FileNotFoundError:
                continue
            return sorted(set(found), key=lambda a: (a.first_offset, a.last_offset))
        raise StorageError(f"{self}: segment list keeps changing")

    def finish_pending_merge(self: PartitionLog) -> None:
        """Complete or forget a merge a crashed cleaner left behind (see the module docstring)."""
        if self._state.get().merge_intent is None:
            return
        with self._lock.hold():
            self._resolve_merge_intent_locked()
        self._reset_caches()

    def _resolve_merge_intent_locked(self: PartitionLog) -> None:
        intent = self._state.get().merge_intent
        if intent is None:
            return
        covered = False
        try:
            target = Segment.open(self.directory / segment_file_name(intent.target))
        except FileNotFoundError:
            target = None
        if target is not None:
            try:
                state = target.state()
            finally:
                target.close()
            covered = (state.sealed and state.next_offset is not None
                       and all(state.next_offset > base for base in intent.merged))
        if covered:
            for base in intent.merged:
                self._unlink_segment(base)
        self._state.finish_rewrite()

    def rewrite_segments(
        self: PartitionLog,
        bases: Sequence[int],
        rewrite: BatchRewrite,
        *,
        keep_aborted: Callable[[AbortedTxn], bool],
        expected_generation: int,
        progress: Callable[[int], None] | None = None,
    ) -> RewriteResult:
        """Rewrite the consecutive sealed segments ``bases`` into the first one.

        ``rewrite`` is called once per batch, in offset order; ``keep_aborted`` decides which
        aborted-transaction index entries survive; ``progress`` gets the size of every batch
        read. Nothing is written unless the partition's generation is still
        ``expected_generation`` and the group's files are unchanged at commit time (see the
        module docstring). Not to be called concurrently for one partition from one process.
        """
        bases = list(bases)
        if not bases:
            raise InvalidArgumentError("rewrite_segments needs at least one segment")
        current = self.segment_bases()
        if bases[0] not in current:
            return self._not_applied()
        start = current.index(bases[0])
        if current[start:start + len(bases)] != bases or start + len(bases) >= len(current):
            if not all(b in current for b in bases):
                return self._not_applied()
            raise InvalidArgumentError(
                f"{bases} are not consecutive sealed segments of {self} ({current})")
        paths = [self.directory / segment_file_name(b) for b in bases]
        segments: list[Segment] = []
        try:
            inodes: list[int] = []
            for path in paths:
                try:
                    segments.append(Segment.open(path))
                    inodes.append(os.stat(path).st_ino)
                except FileNotFoundError:
                    return self._not_applied()
            return self._rewrite_group(segments, paths, inodes, rewrite, keep_aborted,
                                       expected_generation, progress)
        finally:
            for segment in segments:
                segment.close()

    def _not_applied(self: PartitionLog) -> RewriteResult:
        return RewriteResult(False, self._state.get().generation, 0, 0, 0, 0, 0)

    def _rewrite_group(
        self: PartitionLog,
        segments: list[Segment],
        paths: list[Path],
        inodes: list[int],
        rewrite: BatchRewrite,
        keep_aborted: Callable[[AbortedTxn], bool],
        expected_generation: int,
        progress: Callable[[int], None] | None,
    ) -> RewriteResult:
        target, merged = segments[0], segments[1:]
        target.set_durability(fsync=True)  # durable before the merged files are unlinked
        target.set_autocheckpoint(0)  # the WAL is folded in after the lock is released
        state = target.begin_write()
        committed = False
        try:
            if not state.sealed:
                target.rollback()
                return self._not_applied()
            before = state.size_bytes
            removed = rewritten = 0
            # 1. The target's own batches, in chunks (rows are changed behind the cursor).
            last_seen = target.base_offset - 1
            while True:
                rows = target.rows_after(last_seen, _CHUNK_ROWS)
                if not rows:
                    break
                for base_offset, data in rows:
                    if progress is not None:
                        progress(len(data))
                    new = rewrite(base_offset, data)
                    if new is data:
                        continue
                    if new is None:
                        removed += 1
                        target.replace_row(base_offset, None)
                    else:
                        rewritten += 1
                        target.replace_row(base_offset, _row(base_offset, new, data))
                last_seen = rows[-1][0]
            # 2. The merged segments' batches, appended after them.
            aborted = [a for a in target.all_aborted() if keep_aborted(a)]
            next_offset = state.next_offset
            producers = None
            for segment in merged:
                with segment.read_transaction() as merged_state:
                    if not merged_state.sealed:
                        target.rollback()
                        return self._not_applied()
                    before += merged_state.size_bytes
                    batch: list[BatchRow] = []
                    for base_offset, data in segment.iter_rows():
                        if progress is not None:
                            progress(len(data))
                        new = rewrite(base_offset, data)
                        if new is None:
                            removed += 1
                            continue
                        if new is not data:
                            rewritten += 1
                        batch.append(_row(base_offset, new, data))
                        if len(batch) >= _CHUNK_ROWS:
                            target.insert_rows(batch)
                            batch = []
                    target.insert_rows(batch)
                    aborted.extend(a for a in segment.all_aborted() if keep_aborted(a))
                    producers = segment.producers()
                    next_offset = merged_state.next_offset
            if next_offset is None or next_offset < 0:
                target.rollback()
                return self._not_applied()
            if producers is not None:
                # The target now ends where the last merged segment ended: its final state.
                target.save_producers(list(producers.values()), replace_all=True)
            original_aborted = target.all_aborted()
            if merged or aborted != original_aborted:
                target.replace_aborted(aborted)
            after = target.set_summary(next_offset=next_offset)
            if not merged and not removed and not rewritten and aborted == original_aborted:
                target.rollback()
                return RewriteResult(True, expected_generation, before, before, 0, 0, 0)
            with self._lock.hold():
                row = self._state.get()
                if (row.generation != expected_generation or row.truncating_to is not None
                        or row.merge_intent is not None
                        or not _same_files(paths, inodes)):
                    target.rollback()
                    return self._not_applied()
                if merged:
                    self._state.begin_merge(MergeIntent(
                        target.base_offset, tuple(s.base_offset for s in merged)))
                try:
                    target.commit()
                    committed = True
                finally:
                    # Unlinks the merged files if the commit made the target cover them.
                    if merged:
                        self._resolve_merge_intent_locked()
                    else:
                        self._state.finish_rewrite()
                generation = self._state.get().generation
        except BaseException:
            if not committed:
                target.rollback()
            raise
        self._reset_caches()
        _shrink(target)
        return RewriteResult(True, generation, before, after.size_bytes, removed, rewritten,
                             len(merged))


def _row(base_offset: int, data: bytes, original: bytes) -> BatchRow:
    """The row of a kept or rewritten batch, which must span exactly the original's offsets."""
    header = parse_header(data)
    if data is not original:
        was = parse_header(original)
        if (header.base_offset, header.last_offset) != (was.base_offset, was.last_offset):
            raise StorageError(
                f"the cleaner rewrote the batch at offsets {was.base_offset}..{was.last_offset} "
                f"as {header.base_offset}..{header.last_offset}")
    elif header.base_offset != base_offset:
        raise StorageError(f"the batch stored at {base_offset} says it starts at "
                           f"{header.base_offset}")
    return BatchRow(base_offset, header.last_offset, header.max_timestamp, header.record_count,
                    header.producer_id, header.attributes, data)


def _same_files(paths: list[Path], inodes: list[int]) -> bool:
    for path, inode in zip(paths, inodes, strict=True):
        try:
            if os.stat(path).st_ino != inode:
                return False
        except FileNotFoundError:
            return False
    return True


def _shrink(segment: Segment) -> None:
    """Give the space of removed batches back (best effort: a busy file is left for later)."""
    try:
        if segment.free_fraction() >= VACUUM_FREE_FRACTION:
            segment.vacuum()
        segment.checkpoint()
    except StorageError:
        pass
