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

:class:`SegmentRewriter` is a collaborator of :class:`~logstore.log.partition_log.PartitionLog`
over its :class:`~logstore.log.segment_set.SegmentSet`. Thread-safe, but one rewrite at a time
per partition and process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from logstore.errors import InvalidArgumentError, StorageError
from logstore.log.partition_state import MergeIntent
from logstore.log.producer_state import AbortedTxn
from logstore.log.segment import BatchRow, Segment, SegmentState
from logstore.log.segment_set import SegmentSet
from logstore.records.header import parse_header

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
    """What :meth:`SegmentRewriter.rewrite_segments` did."""

    applied: bool
    """False: the partition changed under the cleaner (nothing was written)."""
    generation: int
    """The partition's generation afterwards (the next rewrite must expect it)."""
    bytes_before: int
    bytes_after: int
    batches_removed: int
    batches_rewritten: int
    segments_merged: int


class SegmentRewriter:
    """In-place segment rewriting for the log cleaner."""

    def __init__(
        self, segments: SegmentSet, *, tail_offsets: Callable[[], tuple[int, int]]
    ) -> None:
        self._segments = segments
        self._tail_offsets = tail_offsets

    def __repr__(self) -> str:
        return repr(self._segments)

    def layout(self) -> LogLayout:
        """Generation, offsets and every segment's summary (fresh, not from caches)."""
        segments = self._segments
        segments.check_generation()
        generation = segments.state.get().generation
        log_end, stable = self._tail_offsets()

        def attempt() -> LogLayout:
            states = tuple(segments.fresh_state(base) for base in segments.bases())
            return LogLayout(generation, segments.state.get().log_start_offset, log_end,
                             stable, states)

        return segments.retrying(attempt)

    def iter_batches(self, base: int) -> Iterator[tuple[int, bytes]]:
        """Every (base offset, data) of one segment, in order, from one snapshot.

        Uses a connection of its own, held until the iterator is exhausted or closed. Raises
        FileNotFoundError if the segment is gone.
        """
        segment = self._segments.open_own(base)
        try:
            with segment.read_transaction():
                yield from segment.iter_rows()
        finally:
            segment.close()

    def aborted_transactions(self, from_offset: int) -> list[AbortedTxn]:
        """Every aborted transaction whose ABORT marker is at or after ``from_offset``, from all
        segments, ordered by first offset."""
        segments = self._segments

        def attempt() -> list[AbortedTxn]:
            found: list[AbortedTxn] = []
            for base in segments.bases():
                with segments.reading(base) as (segment, _):
                    found.extend(a for a in segment.all_aborted()
                                 if a.last_offset >= from_offset)
            return sorted(set(found), key=lambda a: (a.first_offset, a.last_offset))

        return segments.retrying(attempt)

    def finish_pending_merge(self) -> None:
        """Complete or forget a merge a crashed cleaner left behind (see the module docstring)."""
        if self._segments.state.get().merge_intent is None:
            return
        with self._segments.lock.hold():
            self.resolve_merge_intent_locked()
        self._segments.reset()

    def resolve_merge_intent_locked(self) -> None:
        intent = self._segments.state.get().merge_intent
        if intent is None:
            return
        covered = False
        try:
            target = self._segments.open_own(intent.target)
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
            # Unlisted (with the intent cleared) before the files go: a crash in between
            # leaves unlisted files, which the next open removes.
            self._segments.state.finish_rewrite(removed=intent.merged)
            for base in intent.merged:
                self._segments.remove_files(base)
        else:
            self._segments.state.finish_rewrite()

    def rewrite_segments(
        self,
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
        current = self._segments.bases()
        if bases[0] not in current:
            return self._not_applied()
        start = current.index(bases[0])
        if current[start:start + len(bases)] != bases or start + len(bases) >= len(current):
            if not all(b in current for b in bases):
                return self._not_applied()
            raise InvalidArgumentError(
                f"{bases} are not consecutive sealed segments of {self} ({current})")
        paths = [self._segments.path(b) for b in bases]
        segments: list[Segment] = []
        try:
            inodes: list[int] = []
            for base, path in zip(bases, paths, strict=True):
                try:
                    segments.append(self._segments.open_own(base))
                    inodes.append(os.stat(path).st_ino)
                except FileNotFoundError:
                    return self._not_applied()
            return self._rewrite_group(segments, paths, inodes, rewrite, keep_aborted,
                                       expected_generation, progress)
        finally:
            for segment in segments:
                segment.close()

    def _not_applied(self) -> RewriteResult:
        return RewriteResult(False, self._segments.state.get().generation, 0, 0, 0, 0, 0)

    def _rewrite_group(
        self,
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
            with self._segments.lock.hold():
                row = self._segments.state.get()
                if (row.generation != expected_generation or row.truncating_to is not None
                        or row.merge_intent is not None
                        or not _same_files(paths, inodes)):
                    target.rollback()
                    return self._not_applied()
                if merged:
                    self._segments.state.begin_merge(MergeIntent(
                        target.base_offset, tuple(s.base_offset for s in merged)))
                try:
                    target.commit()
                    committed = True
                finally:
                    # Unlinks the merged files if the commit made the target cover them.
                    if merged:
                        self.resolve_merge_intent_locked()
                    else:
                        self._segments.state.finish_rewrite()
                generation = self._segments.state.get().generation
        except BaseException:
            if not committed:
                target.rollback()
            raise
        self._segments.reset()
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
