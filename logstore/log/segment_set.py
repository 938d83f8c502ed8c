"""The segments of one partition: which must exist, their cached states, and connections to them.

A :class:`SegmentSet` is the one place that knows a partition's segments (Kafka's
``LogSegments`` inside ``LocalLog``). The append, read, retention, rewrite and tiering paths
(``append``, ``read``, ``cleanup``, ``rewrite``, ``tiering``) are collaborators that go through
it; none of them lists the directory or opens a segment itself.

**The list.** Which segments exist is the durable segment list in ``partition.sqlite`` (see
``partition_state``), not the directory: a segment file is created before it is listed and
unlisted before it is unlinked, under the partition lock. Reading the list costs a
``data_version`` check (about 2 us) unless another connection changed it. Consequences:

* a listed segment whose file is missing is damage: reads of its offsets raise
  :class:`~logstore.errors.MissingSegmentError` naming the file and the offsets (a *hole*; the
  rest of the partition keeps serving), and a missing active segment takes the partition
  offline (:class:`~logstore.errors.PartitionOfflineError`), because appending would hand its
  offsets out again;
* a file that vanishes under a reader and is no longer listed was deleted on purpose
  (retention, a cleaner merge, local retention of tiered segments, in any process):
  :meth:`SegmentSet.retrying` looks again. Nothing loops on a missing file.

**Caches, per process.** The summary rows of sealed segments (they change only through
rewrites and truncations, which bump the partition's *generation*, so every process drops its
caches), up to ``max_open_segments`` reader connections in LRU order, and the writer connection
of the active segment. Every connection counts against a
:class:`~logstore.log.handles.FileBudget`, which may close idle ones; users take a
connection's ``lock`` and check that it is still open (:meth:`SegmentSet.locked` does both).

Thread-safe: the caches are guarded by one lock; each connection by its own ``Segment.lock``.
Structural changes (creating, unlisting, unlinking) take the partition's ``flock`` (``lock``)
first.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from logstore.errors import (
    LogstoreError,
    MissingSegmentError,
    PartitionOfflineError,
    StorageError,
    UnknownTopicOrPartitionError,
)
from logstore.log.handles import FileBudget
from logstore.log.partition_state import PartitionLock, PartitionState
from logstore.log.producer_state import ProducerEntry
from logstore.log.segment import (
    Segment,
    SegmentState,
    parse_segment_file_name,
    segment_file_name,
    segment_files,
)

#: How often an operation looks again after segment files vanished under it before giving up.
MAX_RETRIES = 1000

T = TypeVar("T")


class SegmentSet:
    """The segments of one partition directory (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        *,
        state: PartitionState,
        lock: PartitionLock,
        budget: FileBudget,
        name: str,
        max_open_segments: int = 4,
    ) -> None:
        self.directory = directory
        self.state = state
        self.lock = lock
        self.budget = budget
        self._name = name
        self._max_open_segments = max(1, max_open_segments)
        self._meta_lock = threading.Lock()  # guards _sealed, _readers, _writer, _generation
        self._sealed: dict[int, SegmentState] = {}
        self._readers: OrderedDict[int, Segment] = OrderedDict()
        self._writer: Segment | None = None
        self._generation = state.get().generation

    def __repr__(self) -> str:
        return self._name

    # --- the list ------------------------------------------------------------------------------

    def path(self, base: int) -> Path:
        return self.directory / segment_file_name(base)

    def bases(self) -> list[int]:
        """The segments that must exist, oldest first (the durable list, read now)."""
        bases = list(self.state.get().segments)
        if not bases:
            raise PartitionOfflineError(
                f"{self}: the segment list in {self.state.path} is empty: the partition has no "
                "segments (run 'logstore check')", path=str(self.state.path))
        return bases

    def first_base(self) -> int:
        """The base offset of the lowest segment."""
        return self.bases()[0]

    def last_base(self) -> int:
        """The base offset of the highest segment (the active one)."""
        return self.bases()[-1]

    def base_for(self, offset: int) -> int:
        """The base of the segment that would hold ``offset`` (the first one if it is lower)."""
        bases = self.bases()
        return bases[max(bisect.bisect_right(bases, offset) - 1, 0)]

    def next_base(self, base: int) -> int | None:
        """The base of the segment listed after ``base`` (None: it is the last)."""
        bases = self.bases()
        index = bisect.bisect_right(bases, base)
        return bases[index] if index < len(bases) else None

    def files(self) -> list[int]:
        """Base offsets of the segment files in the directory (listed or not), ascending.
        FileNotFoundError if the directory is gone."""
        return segment_files(self.directory)

    def missing(self) -> list[tuple[int, int | None]]:
        """Listed segments whose file is gone: (base, the next listed base or None)."""
        bases = self.bases()
        return [(base, bases[i + 1] if i + 1 < len(bases) else None)
                for i, base in enumerate(bases) if not self.path(base).exists()]

    def missing_error(self, base: int) -> LogstoreError:
        """The error for a listed segment whose file is gone (see the module docstring)."""
        path = self.path(base)
        if self.state.replaced():
            return UnknownTopicOrPartitionError(
                f"{self}: its directory {self.directory} is gone or was replaced (the topic was "
                "deleted, or the directory was removed)")
        following = self.next_base(base)
        if following is None:
            return PartitionOfflineError(
                f"{self} is offline: its active segment {path} is missing, so new records would "
                f"reuse offsets from {base} on (run 'logstore check', then 'logstore repair')",
                path=str(path))
        return MissingSegmentError(
            f"{self}: offsets {base} to {following - 1} are missing: segment file {path} is gone "
            "(the rest of the partition is readable; see 'logstore check')",
            path=str(path), start_offset=base, end_offset=following)

    def hole_error(self, start: int, end: int | None) -> MissingSegmentError:
        """The error for offsets that no listed segment covers (the list and the segments'
        ranges disagree)."""
        upto = "the end of the log" if end is None else str(end - 1)
        return MissingSegmentError(
            f"{self}: offsets {start} to {upto} are missing: no segment covers them (expected "
            f"{self.path(start)}; see 'logstore check')",
            path=str(self.path(start)), start_offset=start, end_offset=-1 if end is None else end)

    def retrying(self, operation: Callable[[], T]) -> T:
        """Run ``operation``; when a segment file vanished under it (FileNotFoundError with the
        file's path), retry if the segment was unlisted meanwhile (deleted on purpose), and
        raise the damage error if it is still listed."""
        for _ in range(MAX_RETRIES):
            try:
                return operation()
            except FileNotFoundError as exc:
                self.raise_if_listed(exc)
        raise StorageError(f"{self}: segment list keeps changing")

    def raise_if_listed(self, exc: FileNotFoundError) -> None:
        """Turn a vanished segment that is still listed into its damage error."""
        name = Path(str(exc.filename if exc.filename is not None else exc.args[0])).name
        base = parse_segment_file_name(name)
        if base is not None and base in self.state.get().segments:
            raise self.missing_error(base) from None

    # --- the generation ----------------------------------------------------------------------

    def check_generation(self) -> None:
        """Drop cached states and connections if another process restructured the partition."""
        if self.state.get().generation != self._generation:
            self.reset()

    def reset(self) -> None:
        """Drop every cached state and connection."""
        with self._meta_lock:
            readers = list(self._readers.values())
            self._readers.clear()
            self._sealed.clear()
            writer, self._writer = self._writer, None
            self._generation = self.state.get().generation
        for segment in readers + ([writer] if writer is not None else []):
            with segment.lock:
                segment.close()

    # --- connections -------------------------------------------------------------------------

    def open_segment(self, base: int, *, pooled: bool) -> Segment:
        """Open the segment at ``base``: FileNotFoundError if it was unlisted meanwhile, the
        damage error if it is listed but its file is gone. ``pooled`` connections count
        against the file budget (which may close them while idle)."""
        try:
            return Segment.open(self.path(base), budget=self.budget if pooled else None)
        except FileNotFoundError as exc:
            self.raise_if_listed(exc)
            raise

    def open_own(self, base: int) -> Segment:
        """A connection of the caller's own (not cached, not closed by the budget; the caller
        closes it)."""
        return self.open_segment(base, pooled=False)

    def reader(self, base: int) -> Segment:
        """A cached read connection to the segment at ``base`` (see :meth:`open_segment`).
        Prefer :meth:`locked`: the budget may close it before its lock is taken."""
        with self._meta_lock:
            segment = self._readers.get(base)
            if segment is not None and not segment.closed:
                self._readers.move_to_end(base)
                segment.touch()
                return segment
        segment = self.open_segment(base, pooled=True)
        evicted: list[Segment] = []
        with self._meta_lock:
            existing = self._readers.get(base)
            if existing is not None and not existing.closed:
                evicted.append(segment)
                segment = existing
            else:
                self._readers[base] = segment
                log_start = self.state.get().log_start_offset
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

    @contextmanager
    def locked(self, base: int) -> Iterator[Segment]:
        """The reader of ``base``, open, with its lock held."""
        for _ in range(MAX_RETRIES):
            segment = self.reader(base)
            with segment.lock:
                if segment.closed:  # closed by the budget between lookup and lock
                    continue
                yield segment
                return
        raise StorageError(f"{self}: could not keep a connection to segment {base} open")

    @contextmanager
    def reading(self, base: int) -> Iterator[tuple[Segment, SegmentState]]:
        """The reader of ``base``, locked, inside a read snapshot: (segment, its state)."""
        with self.locked(base) as segment, segment.read_transaction() as state:
            yield segment, state

    def last(self) -> tuple[int, SegmentState]:
        """The base offset and the summary of the highest segment, read now."""
        def attempt() -> tuple[int, SegmentState]:
            base = self.last_base()
            with self.locked(base) as segment:
                return base, segment.state()

        return self.retrying(attempt)

    def state_of(self, base: int) -> SegmentState:
        """The summary of a segment (cached once sealed); FileNotFoundError if gone."""
        with self._meta_lock:
            cached = self._sealed.get(base)
        if cached is not None:
            return cached
        with self.locked(base) as segment:
            state = segment.state()
        if state.sealed:
            with self._meta_lock:
                self._sealed[base] = state
        return state

    def fresh_state(self, base: int) -> SegmentState:
        """The summary of a segment read now (not from the cache)."""
        with self.locked(base) as segment:
            return segment.state()

    def forget_state(self, base: int) -> None:
        with self._meta_lock:
            self._sealed.pop(base, None)

    def sealed_states(self) -> list[SegmentState]:
        """Fresh summaries of the sealed segments, oldest first (caller holds ``lock``)."""
        # Cached segment states are stale after another process's cleaner merged segments
        # (a merged segment's range and newest timestamp grew).
        self.check_generation()
        return self.retrying(lambda: [self.state_of(b) for b in self.bases()[:-1]])

    def active_size(self) -> int:
        """Bytes in the active segment."""
        return self.retrying(lambda: self.state_of(self.last_base()).size_bytes)

    # --- the writer ------------------------------------------------------------------------

    def cached_writer(self) -> Segment | None:
        with self._meta_lock:
            writer = self._writer
        return writer if writer is not None and not writer.closed else None

    def install_writer(self, segment: Segment) -> Segment:
        """Make ``segment`` the writer unless another thread installed one first; return the
        writer to use (``segment`` is closed if it lost)."""
        with self._meta_lock:
            if self._writer is not None and not self._writer.closed:
                winner = self._writer
            else:
                self._writer = winner = segment
        if winner is not segment:
            segment.close()
        return winner

    def drop_writer(self, writer: Segment) -> None:
        with self._meta_lock:
            if self._writer is writer:
                self._writer = None
        with writer.lock:
            writer.close()

    def take_writer(self) -> None:
        """Close the writer connection (truncation: every writer must reopen)."""
        with self._meta_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            with writer.lock:
                writer.close()

    # --- structure (caller holds ``lock``) ---------------------------------------------------

    def create(
        self, base: int, *, created_ms: int, producers: Sequence[ProducerEntry] = ()
    ) -> None:
        """Create the segment file for ``base`` (if missing), then list it."""
        Segment.create(self.directory, base, created_ms=created_ms, producers=producers)
        self.state.add_segment(base)

    def unlink(self, bases: Iterable[int]) -> None:
        """Unlist segments, then close this process's connections to them and remove their
        files (a crash in between leaves unlisted files, which the next open removes)."""
        bases = list(bases)
        if not bases:
            return
        self.state.remove_segments(bases)
        for base in bases:
            self.remove_files(base)

    def remove_files(self, base: int) -> None:
        """Remove the files of a segment that is not listed (any more)."""
        with self._meta_lock:
            reader = self._readers.pop(base, None)
            self._sealed.pop(base, None)
        if reader is not None:
            with reader.lock:
                reader.close()
        path = self.path(base)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def delete_below(self, log_start: int) -> tuple[int, int]:
        """Unlink sealed segments that end at or below ``log_start``; (count, bytes). Caller
        holds ``lock``."""
        bases = self.bases()
        doomed: list[int] = []
        size = 0
        for index, base in enumerate(bases[:-1]):
            try:
                state = self.state_of(base)
            except FileNotFoundError:
                continue  # unlisted meanwhile
            except MissingSegmentError:
                # A hole: it ends where the next listed segment starts. Below the log start
                # it is unreadable anyway, and unlisting it is what deletion does.
                if bases[index + 1] <= log_start:
                    doomed.append(base)
                    continue
                break
            if not state.sealed or state.next_offset is None or not (
                0 <= state.next_offset <= log_start
            ):
                break
            doomed.append(base)
            size += state.size_bytes
        self.unlink(doomed)
        return len(doomed), size

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection. Idempotent."""
        with self._meta_lock:
            segments = list(self._readers.values())
            self._readers.clear()
            writer, self._writer = self._writer, None
        if writer is not None:
            segments.append(writer)
        for segment in segments:
            with segment.lock:
                segment.close()
