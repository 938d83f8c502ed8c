"""One partition's local log: an ordered sequence of SQLite segments in one directory.

Layout of ``<data>/topics/<topic>/<partition>/``::

    partition.sqlite                 log start offset, the segment list, truncation and merge
                                     intents, generation (see partition_state)
    .lock                            flock for structural changes (roll, truncate, delete)
    00000000000000000000.sqlite      sealed segment (+ -wal, -shm)
    00000000000000052731.sqlite      the active segment: the one with the highest base offset

and its doorbell ``<data>/doorbells/<topic>-<partition>``: rewritten with the log end offset
after every commit, so consumers in other processes wake through inotify and the next open can
tell whether committed records were lost (see ``doorbell``).

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
* The log cleaner rewrites sealed segments in place, one SQLite transaction per group of
  segments, and bumps the generation (see ``rewrite``): readers see old or new contents.
* With tiered storage, offsets below the first local segment (and at or above the log start
  offset) are read from the remote segments (``tiering``, ``logstore.tier``).
* The doorbell is rung only after a commit returns: inotify events on the ``-wal`` file itself
  fire before the commit is visible to readers, so waking on those would miss records.
* Which segments exist is the durable segment list, never the directory: a listed segment
  whose file is missing is a hole (reads there raise MissingSegmentError), a missing active
  segment or a log end below the doorbell's checkpoint takes the partition offline
  (PartitionOfflineError), and nothing ever hands an offset out twice (see ``recovery``).
* Every connection counts against a file budget (``handles``): idle ones are closed in LRU
  order and reopened on use, so a process can serve thousands of partitions.

Structure (Kafka's LocalLog / LogSegments / UnifiedLog split, as composed collaborators): a
:class:`~logstore.log.segment_set.SegmentSet` knows the segments, caches their states and
connections and retries when files vanish; around it an
:class:`~logstore.log.append.Appender` (validation, group commit, rolls), a
:class:`~logstore.log.read.LogReader` (reads, offsets, the last stable offset),
:class:`~logstore.log.cleanup.Retention` and :class:`~logstore.log.cleanup.Truncation`, a
:class:`~logstore.log.rewrite.SegmentRewriter` (the log cleaner's in-place rewrites) and a
:class:`~logstore.log.tiering.LocalTiering` (the local side of tiered storage). None of them
reaches into another; this facade wires them and is the public interface.

Thread-safety: all public methods may be called from any thread. Several processes may open the
same partition directory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from logstore.clock import SYSTEM_CLOCK, Clock
from logstore.config import TopicConfig
from logstore.errors import LogstoreError, StorageError, UnknownTopicOrPartitionError
from logstore.log import doorbell
from logstore.log.append import Appender
from logstore.log.checkpointer import Checkpointer, process_checkpointer
from logstore.log.cleanup import Retention, Truncation
from logstore.log.doorbell import Doorbell, LogEndCheckpoint
from logstore.log.handles import FileBudget, process_budget
from logstore.log.notify import AppendNotifier
from logstore.log.partition_state import STATE_FILE, PartitionLock, PartitionState
from logstore.log.producer_state import AbortedTxn, ProducerEntry
from logstore.log.read import LogReader, ReadResult
from logstore.log.recovery import recover
from logstore.log.rewrite import BatchRewrite, LogLayout, RewriteResult, SegmentRewriter
from logstore.log.segment import Segment
from logstore.log.segment_set import SegmentSet
from logstore.log.sqlite_file import fsync_dir
from logstore.log.tiering import LocalTiering, RemoteView, SegmentExport
from logstore.types import (
    AppendResult,
    IsolationLevel,
    OffsetAndTimestamp,
    PartitionDescription,
    RetentionReport,
)

DOORBELL_FILE = ".notify"

_log = logging.getLogger("logstore.log")


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
        doorbell_path: Path | None = None,
        budget: FileBudget | None = None,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        """Open the partition in ``directory`` (laid out by :meth:`create`). Raises
        FileNotFoundError if it has no ``partition.sqlite``, PartitionOfflineError if its files
        are missing or damaged (see ``recovery``)."""
        self.directory = directory
        self.topic = topic
        self.partition = partition
        self._notifier = notifier
        self._clock = clock
        self._closed = False
        budget = budget or process_budget()
        name = f"PartitionLog({topic}-{partition})"
        self.doorbell_path = doorbell_path or directory / DOORBELL_FILE
        state = PartitionState.open(directory, budget=budget)
        try:
            topic_id = state.get().topic_id
        except BaseException:
            state.close()
            raise
        self._doorbell = Doorbell(self.doorbell_path, topic_id=topic_id, budget=budget)
        self._segments = SegmentSet(directory, state=state, lock=PartitionLock(directory),
                                    budget=budget, name=name, max_open_segments=max_open_segments)
        self._reader = LogReader(self._segments, remote=lambda: self._tiering.remote)
        self._tiering = LocalTiering(self._segments, topic=topic, partition=partition,
                                     config=config, clock=clock)
        self._truncation = Truncation(self._segments, clock=clock,
                                      log_end_offset=self._reader.log_end_offset,
                                      truncated=self._ring)
        self._appender = Appender(
            self._segments, topic=topic, config=config, clock=clock, committed=self._ring,
            finish_truncation=self._truncation.finish_pending, leader_epoch=leader_epoch,
            checkpointer=checkpointer or process_checkpointer())
        self._retention = Retention(
            self._segments, topic=topic, partition=partition, config=config, clock=clock,
            high_watermark=self._reader.log_end_offset, tiering=self._tiering)
        self._rewriter = SegmentRewriter(self._segments, tail_offsets=self._reader.tail_offsets)
        try:
            checkpoint = doorbell.read_checkpoint(self.doorbell_path)
            log_end = recover(self._segments, truncation=self._truncation,
                              rewriter=self._rewriter, clock=clock, checkpoint=checkpoint)
            if checkpoint is not None and checkpoint.log_end_offset < log_end:
                # A writer died between its commit and its ring: ring for it, so readers that
                # skip quiet partitions see those records.
                self._doorbell.ring(log_end, self._segments.state.get().truncations)
        except BaseException:
            self.close()
            raise

    # --- creation ------------------------------------------------------------------------------

    @staticmethod
    def create(
        directory: Path, *, topic_id: str, created_ms: int, base_offset: int = 0,
        doorbell_path: Path | None = None, sync: bool = True,
    ) -> None:
        """Lay out an empty partition (idempotent): the directory, its first segment, its state
        file listing it, and last its doorbell. ``sync=False`` leaves the doorbells directory's
        fsync to the caller (laying out many partitions)."""
        directory.mkdir(parents=True, exist_ok=True)
        if not (directory / STATE_FILE).exists():
            Segment.create(directory, base_offset, created_ms=created_ms, sync_dir=False)
            PartitionState.create(directory, topic_id=topic_id, log_start_offset=base_offset,
                                  segments=[base_offset], sync_dir=False)
            fsync_dir(directory)
        path = doorbell_path or directory / DOORBELL_FILE
        recorded = doorbell.read_checkpoint(path)
        if recorded is None or recorded.topic_id != topic_id:
            doorbell.create(path, LogEndCheckpoint(topic_id, base_offset, 0), sync=sync)

    # --- appends -------------------------------------------------------------------------------

    @property
    def leader_epoch(self) -> int:
        """The leader epoch stamped into appended batches."""
        return self._appender.leader_epoch

    def append(self, batch: bytes, *, verify_records: bool = True,
               verified_claim: int | None = None) -> AppendResult:
        """Append one RecordBatch v2 and return the offsets assigned to it (see
        :meth:`Appender.append`)."""
        return self._appender.append(batch, verify_records=verify_records,
                                     verified_claim=verified_claim)

    def append_many(
        self, batches: Sequence[bytes], *, verify_records: bool = True,
        verified_claim: int | None = None,
    ) -> list[AppendResult]:
        """Append several batches in order; raise the first batch's error, if any (the batches
        before it are appended)."""
        return self._appender.append_many(batches, verify_records=verify_records,
                                          verified_claim=verified_claim)

    def append_each(
        self, batches: Sequence[bytes], *, verify_records: bool = True,
        verified_claim: int | None = None,
    ) -> list[AppendResult | LogstoreError]:
        """Append several batches in order, in one transaction; return each one's result or
        the error that rejected it (the others are appended regardless)."""
        return self._appender.append_each(batches, verify_records=verify_records,
                                          verified_claim=verified_claim)

    def roll(self) -> None:
        """Seal the active segment now (if it holds anything) and start a new one."""
        self._appender.roll()

    def _ring(self, log_end_offset: int) -> None:
        """Tell waiting readers, here and in other processes, that a commit is visible, and
        record the log end it reached (the doorbell's checkpoint)."""
        # The doorbell first: a reader woken here may skip partitions whose ring count did not
        # move, and readers elsewhere wake on the doorbell's write. Never raises: the records
        # are committed whatever happens here (a missed ring only delays readers).
        try:
            self._doorbell.ring(log_end_offset, self._segments.state.get().truncations)
        except LogstoreError as exc:
            _log.warning("%s: could not ring the doorbell: %s", self, exc)
        if self._notifier is not None:
            self._notifier.notify(self.doorbell_path.name)

    # --- reads and offsets -----------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._segments.state.get().log_start_offset

    def log_end_offset(self) -> int:
        """One past the last offset appended (by any process)."""
        return self._reader.log_end_offset()

    @property
    def high_watermark(self) -> int:
        """Equal to the log end offset until replication exists."""
        return self._reader.log_end_offset()

    @property
    def last_stable_offset(self) -> int:
        """The first offset of the oldest open transaction, else the high watermark."""
        return self._reader.tail_offsets()[1]

    def tail_offsets(self) -> tuple[int, int]:
        """(log end offset, last stable offset), read together from the active segment."""
        return self._reader.tail_offsets()

    def read(
        self,
        offset: int,
        *,
        max_bytes: int,
        max_offset: int | None = None,
        isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED,
    ) -> ReadResult:
        """Whole batches from ``offset`` (see :meth:`LogReader.read`)."""
        return self._reader.read(offset, max_bytes=max_bytes, max_offset=max_offset,
                                 isolation=isolation)

    def offset_for_timestamp(self, timestamp_ms: int) -> OffsetAndTimestamp | None:
        """The earliest offset whose record timestamp is >= ``timestamp_ms`` (None if none)."""
        return self._reader.offset_for_timestamp(timestamp_ms)

    def max_timestamp_offset(self) -> OffsetAndTimestamp | None:
        """The offset and timestamp of the record with the largest timestamp (local
        segments), None if there is none."""
        return self._reader.max_timestamp_offset()

    def producer_states(self) -> dict[int, ProducerEntry]:
        """The state of every producer that wrote to this partition (from the active segment)."""
        return self._reader.producer_states()

    # --- deletion ------------------------------------------------------------------------------

    def delete_records(self, offset: int) -> int:
        """Advance the log start offset to ``offset`` (-1: the high watermark); return it."""
        return self._retention.delete_records(offset)

    def enforce_retention(self) -> RetentionReport:
        """Delete whole sealed segments past the topic's retention (see ``cleanup``)."""
        return self._retention.enforce_retention()

    def truncate_to(self, offset: int) -> None:
        """Remove every batch at or above ``offset`` (see :meth:`Truncation.truncate_to`)."""
        self._truncation.truncate_to(offset)

    # --- the log cleaner -------------------------------------------------------------------------

    def layout(self) -> LogLayout:
        """Generation, offsets and every segment's summary (fresh, not from caches)."""
        return self._rewriter.layout()

    def iter_batches(self, base: int) -> Iterator[tuple[int, bytes]]:
        """Every (base offset, data) of one segment, from one snapshot of its own connection."""
        return self._rewriter.iter_batches(base)

    def aborted_transactions(self, from_offset: int) -> list[AbortedTxn]:
        """Every aborted transaction whose ABORT marker is at or after ``from_offset``."""
        return self._rewriter.aborted_transactions(from_offset)

    def finish_pending_merge(self) -> None:
        """Complete or forget a merge a crashed cleaner left behind."""
        self._rewriter.finish_pending_merge()

    def rewrite_segments(
        self,
        bases: Sequence[int],
        rewrite: BatchRewrite,
        *,
        keep_aborted: Callable[[AbortedTxn], bool],
        expected_generation: int,
        progress: Callable[[int], None] | None = None,
    ) -> RewriteResult:
        """Rewrite consecutive sealed segments into the first (see ``rewrite``)."""
        return self._rewriter.rewrite_segments(
            bases, rewrite, keep_aborted=keep_aborted, expected_generation=expected_generation,
            progress=progress)

    # --- tiered storage --------------------------------------------------------------------------

    @property
    def remote(self) -> RemoteView | None:
        """The remote segments below the first local one (None: this process cannot read them)."""
        return self._tiering.remote

    def attach_remote(self, remote: RemoteView | None) -> None:
        """Serve offsets below the first local segment from ``remote`` (None: nobody can)."""
        self._tiering.remote = remote

    def first_local_offset(self) -> int:
        """The base offset of the lowest local segment (as last scanned)."""
        return self._tiering.first_local_offset()

    def export_segment(self, base: int) -> AbstractContextManager[SegmentExport]:
        """Read a sealed segment for upload from one snapshot (see ``tiering``)."""
        return self._tiering.export_segment(base)

    def enforce_local_retention(self, tiered_end: int | None) -> RetentionReport:
        """Delete local copies of tiered segments past the local retention."""
        return self._tiering.enforce_local_retention(tiered_end)

    # --- description and lifecycle --------------------------------------------------------------

    def describe(self) -> PartitionDescription:
        """Log start / end offsets, high watermark, bytes, segment count and holes."""
        log_end, stable = self.tail_offsets()
        segments = self._segments
        bases = segments.bases()
        missing = segments.missing()
        gone = {base for base, _ in missing}
        size = 0
        for base in bases:
            if base in gone:
                continue
            try:
                size += segments.state_of(base).size_bytes
            except (FileNotFoundError, StorageError):
                continue  # deleted meanwhile, or vanished since it was checked
        return PartitionDescription(
            partition=self.partition,
            log_start_offset=segments.state.get().log_start_offset,
            log_end_offset=log_end,
            high_watermark=log_end,
            size_bytes=size,
            segment_count=len(bases),
            last_stable_offset=stable,
            missing_ranges=tuple((base, end if end is not None else log_end)
                                 for base, end in missing),
        )

    def segment_bases(self) -> list[int]:
        """Base offsets of the segments (the durable list), oldest first."""
        return self._segments.bases()

    def close(self, *, deleted: bool = False) -> None:
        """Close every connection. Idempotent; later calls raise StorageError, or
        UnknownTopicOrPartitionError if ``deleted`` (the topic is being deleted)."""
        if self._closed:
            return
        self._closed = True
        error = UnknownTopicOrPartitionError(f"{self} was deleted") if deleted else None
        self._appender.close(error)
        self._segments.close()
        self._segments.state.close(error)
        self._doorbell.close()

    def __repr__(self) -> str:
        return f"PartitionLog({self.topic}-{self.partition})"

    __str__ = __repr__


__all__ = ["PartitionLog", "ReadResult"]
