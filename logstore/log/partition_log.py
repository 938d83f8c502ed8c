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
* The log cleaner rewrites sealed segments in place, one SQLite transaction per group of
  segments, and bumps the generation (see ``rewrite``): readers see old or new contents.
* With tiered storage, offsets below the first local segment (and at or above the log start
  offset) are read from the remote segments (``tiering``, ``logstore.tier``).
* The doorbell is rung only after a commit returns: inotify events on the ``-wal`` file itself
  fire before the commit is visible to readers, so waking on those would miss records.

Thread-safety: all public methods may be called from any thread. Several processes may open the
same partition directory.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from logstore.clock import SYSTEM_CLOCK, Clock
from logstore.config import TopicConfig
from logstore.errors import StorageError
from logstore.log.append import AppendMixin, _Pending
from logstore.log.cleanup import CleanupMixin
from logstore.log.notify import AppendNotifier
from logstore.log.partition_state import PartitionLock, PartitionState
from logstore.log.read import ReadMixin, ReadResult
from logstore.log.rewrite import RewriteMixin
from logstore.log.segment import (
    Segment,
    SegmentState,
    parse_segment_file_name,
    segment_file_name,
)
from logstore.log.sqlite_file import TEMP_MARKER
from logstore.log.tiering import TieringMixin
from logstore.types import PartitionDescription

DOORBELL_FILE = ".notify"


class PartitionLog(AppendMixin, ReadMixin, CleanupMixin, RewriteMixin, TieringMixin):
    """The local log of one partition. See the module docstring for the invariants.

    The append path is in ``append``, the read path in ``read``, deletion and truncation in
    ``cleanup``, in-place rewriting for the log cleaner in ``rewrite``, the local side of
    tiered storage in ``tiering`` (mixins); this module holds the segment list, caches and
    lifecycle.
    """

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
            self._resolve_merge_intent_locked()
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


    # --- append ------------------------------------------------------------------------------


    # --- read --------------------------------------------------------------------------------


    # --- deletion ----------------------------------------------------------------------------


    # --- truncation --------------------------------------------------------------------------


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
        log_end, stable = self.tail_offsets()
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
            last_stable_offset=stable,
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


__all__ = ["PartitionLog", "ReadResult"]
