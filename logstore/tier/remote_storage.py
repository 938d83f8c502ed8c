"""Reading tiered data: remote segments listed in the manifest, fetched with ranged GETs.

A :class:`RemoteStorage` belongs to one :class:`~logstore.embedded.Log` opened with an object
store. It holds the object store, the metadata store (for the manifest), a bounded
:class:`~logstore.tier.cache.ChunkCache` of object bytes (``remote_cache_bytes``) and a small
LRU of parsed segment indexes. :meth:`RemoteStorage.partition` gives the
:class:`RemotePartition` a partition log consults for offsets below its first local segment.

Reads (:meth:`RemotePartition.read`) find the live (copy-finished) remote segment holding the
offset, look up the index entry at or before it (the index is one ranged GET of the object's
tail, cached), and cut whole batches out of the data with ranged GETs of aligned chunks through
the cache, so the bytes returned are exactly the stored batches, as a local read returns them.
A read that continues where the previous one ended (a sequential consumer) starts at the byte
where that one stopped and keeps the next ``READAHEAD_CHUNKS`` chunks loading in the
background, and near a segment's end the next segment's index and first chunk; any other read
prefetches one chunk.

The manifest view is cached per partition for ``manifest_max_age_ms`` and reloaded at once on a
miss, so segments tiered by another process are found immediately and deletions within that
age. An object deleted by total retention under a reader surfaces as ObjectNotFoundError, which
the reader turns into a reload and, for offsets now below the log start, OffsetOutOfRangeError.

Thread-safety: every method may be called from any thread.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from logstore.backends.manifest_records import COPY_FINISHED, DELETE_STARTED, RemoteSegment
from logstore.backends.object_store import ObjectStore
from logstore.clock import Clock
from logstore.errors import CorruptRecordError, RemoteStorageError, StaleVersionError
from logstore.log.producer_state import AbortedTxn
from logstore.records.header import LENGTH_OFFSET, LOG_OVERHEAD, parse_header
from logstore.records.reader import decode_batch
from logstore.tier.cache import DEFAULT_CACHE_BYTES, DEFAULT_CHUNK_BYTES, ChunkCache, Loader
from logstore.tier.remote_format import RemoteIndex, iter_frames, parse_tail, tail_range
from logstore.types import OffsetAndTimestamp

if TYPE_CHECKING:
    from logstore.backends.metadata import MetadataStore

#: The smallest ranged read (enough for many batch headers; the cache rounds to chunks).
_MIN_READ_BYTES = 64 * 1024
#: How many chunks a sequential reader keeps loading ahead of its position.
READAHEAD_CHUNKS = 4
#: Parsed indexes kept per process (each is a few KiB to a few hundred KiB).
INDEX_CACHE_ENTRIES = 512


@dataclass(frozen=True, slots=True)
class RemoteRead:
    """Whole batches cut from one remote segment: ``next_offset`` is where the next read
    starts (past the last batch returned, or the segment's end when its data ran out)."""

    batches: Sequence[bytes]
    size_bytes: int
    next_offset: int
    segment_end: bool


class RemoteStorage:
    """The object store, manifest access and caches of one Log (see the module docstring)."""

    def __init__(
        self,
        object_store: ObjectStore,
        metadata: MetadataStore,
        *,
        clock: Clock,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        manifest_max_age_ms: int = 1000,
    ) -> None:
        self.object_store = object_store
        self.metadata = metadata
        self.clock = clock
        self.cache = ChunkCache(max_bytes=cache_bytes, chunk_bytes=chunk_bytes)
        self.manifest_max_age_ms = manifest_max_age_ms
        self._indexes: OrderedDict[str, RemoteIndex] = OrderedDict()
        self._lock = threading.Lock()

    def partition(self, topic: str, topic_id: str, partition: int) -> RemotePartition:
        """The remote view of one partition incarnation."""
        return RemotePartition(self, topic, topic_id, partition)

    def index(self, segment: RemoteSegment) -> RemoteIndex:
        """The parsed index of a remote segment (one ranged GET, then cached)."""
        key = segment.object_key
        with self._lock:
            cached = self._indexes.get(key)
            if cached is not None:
                self._indexes.move_to_end(key)
                return cached
        start, end = tail_range(segment.size_bytes, segment.data_bytes)
        blob = self.object_store.get(key, start=start, end=end)
        try:
            index = parse_tail(blob, size_bytes=segment.size_bytes, data_bytes=segment.data_bytes)
        except CorruptRecordError as exc:
            raise RemoteStorageError(f"remote segment {key} has a damaged index: {exc}") from exc
        if (index.summary.base_offset, index.summary.next_offset) != (
                segment.base_offset, segment.next_offset):
            raise RemoteStorageError(
                f"remote segment {key} covers [{index.summary.base_offset}, "
                f"{index.summary.next_offset}) but the manifest says [{segment.base_offset}, "
                f"{segment.next_offset})")
        with self._lock:
            self._indexes[key] = index
            while len(self._indexes) > INDEX_CACHE_ENTRIES:
                self._indexes.popitem(last=False)
        return index

    def read_data(self, segment: RemoteSegment, start: int, end: int) -> bytes:
        """Bytes [start, end) of a remote segment's data section, through the cache."""
        load = self._loader(segment.object_key)
        if self.cache.max_bytes == 0:  # nothing to keep: fetch exactly what was asked
            end = min(end, segment.data_bytes)
            return load(start, end) if start < end else b""
        return self.cache.read(segment.object_key, start, end, size=segment.data_bytes,
                               load=load)

    def prefetch(self, segment: RemoteSegment, position: int) -> None:
        """Load the chunk holding data byte ``position`` in the background."""
        self.cache.prefetch(segment.object_key, self.cache.chunk_index(position),
                            size=segment.data_bytes, load=self._loader(segment.object_key))

    def _loader(self, key: str) -> Loader:
        """Ranged GETs of one object."""
        return lambda start, end: self.object_store.get(key, start=start, end=end)

    def prefetch_segment(self, segment: RemoteSegment) -> None:
        """Load a segment's index and first chunk in the background (a reader is about to
        cross into it)."""
        if self.cache.max_bytes == 0:
            return
        with self._lock:
            cached = segment.object_key in self._indexes
        if not cached:
            self.cache.submit(lambda: self.index(segment))
        self.prefetch(segment, 0)

    def forget(self, segment: RemoteSegment) -> None:
        """Drop a segment's cached index (it was deleted)."""
        with self._lock:
            self._indexes.pop(segment.object_key, None)

    def close(self) -> None:
        """Stop prefetching and drop the caches (the object store is the caller's)."""
        self.cache.close()
        with self._lock:
            self._indexes.clear()


def delete_segment(storage: RemoteStorage, segment: RemoteSegment) -> bool:
    """Delete one remote segment: manifest ``delete-started`` first (readers stop using it),
    then the object, then the manifest row. Idempotent; a crash anywhere leaves either a
    ``delete-started`` row to finish or an object for the orphan cleaner. Returns False if
    the row changed under us (another deleter, or a copy that finished meanwhile)."""
    try:
        marked = storage.metadata.begin_remote_delete(segment,
                                                      updated_ms=storage.clock.time_ms())
    except StaleVersionError:
        return False
    if marked is None:
        return False  # someone else finished the deletion
    storage.forget(marked)
    storage.object_store.delete(marked.object_key)
    storage.metadata.delete_remote_segment(marked.segment_id)
    return True


class RemotePartition:
    """The live remote segments of one partition and reads from them."""

    def __init__(self, storage: RemoteStorage, topic: str, topic_id: str, partition: int) -> None:
        self.storage = storage
        self.topic = topic
        self.topic_id = topic_id
        self.partition = partition
        self._lock = threading.Lock()
        # One immutable snapshot of the live rows (loaded at, rows by base offset, their base
        # offsets), replaced whole: a reader never pairs rows of one load with bases of another.
        self._view: tuple[int | None, tuple[RemoteSegment, ...], tuple[int, ...]] = (
            None, (), ())
        self._resume: tuple[str, int, int] = ("", -1, 0)

    # --- the manifest view -------------------------------------------------------------------

    def segments(self, *, refresh: bool = False) -> tuple[RemoteSegment, ...]:
        """The live (copy-finished) remote segments, by base offset."""
        return self._load(refresh)[1]

    def _load(
        self, refresh: bool
    ) -> tuple[int | None, tuple[RemoteSegment, ...], tuple[int, ...]]:
        now = self.storage.clock.time_ms()
        with self._lock:
            view = self._view
        loaded_ms = view[0]
        if (not refresh and loaded_ms is not None
                and now - loaded_ms < self.storage.manifest_max_age_ms):
            return view
        found = sorted(
            self.storage.metadata.remote_segments(
                self.topic_id, self.partition, states=[COPY_FINISHED]),
            key=lambda s: s.base_offset)
        view = (now, tuple(found), tuple(s.base_offset for s in found))
        with self._lock:
            self._view = view
        return view

    def segment_for(self, offset: int, *, reload_on_miss: bool = True) -> RemoteSegment | None:
        """The live remote segment whose range holds ``offset`` (reloading the manifest view
        once on a miss, unless told not to)."""
        for refresh in (False, True) if reload_on_miss else (False,):
            _, segments, bases = self._load(refresh)
            index = bisect.bisect_right(bases, offset) - 1
            if index >= 0 and offset < segments[index].next_offset:
                return segments[index]
        return None

    def segment_bases(self) -> list[int]:
        """Base offsets of the live remote segments, oldest first."""
        return [s.base_offset for s in self.segments()]

    def tiered_end(self) -> int | None:
        """One past the last offset held remotely (None when nothing is)."""
        segments = self.segments()
        return segments[-1].next_offset if segments else None  # rows never overlap

    def retention_units(self) -> list[tuple[int, int, int]]:
        """(next offset, max timestamp, size) of every live remote segment, by offset."""
        return [(s.next_offset, s.max_timestamp, s.size_bytes)
                for s in self.segments(refresh=True)]

    def delete_below(self, log_start: int) -> tuple[int, int]:
        """Delete the remote segments wholly below ``log_start`` (live ones and deletions left
        unfinished); return (count, bytes). Copies still in progress are left to the orphan
        cleaner."""
        deleted = deleted_bytes = 0
        for segment in self.storage.metadata.remote_segments(
                self.topic_id, self.partition, states=[COPY_FINISHED, DELETE_STARTED]):
            if segment.next_offset <= log_start and delete_segment(self.storage, segment):
                deleted += 1
                deleted_bytes += segment.size_bytes
        if deleted:
            self.segments(refresh=True)
        return deleted, deleted_bytes

    # --- reads -------------------------------------------------------------------------------

    def read(
        self, offset: int, *, max_bytes: int, end_offset: int, first: bool = True
    ) -> RemoteRead:
        """Whole batches from the one containing ``offset``, within one remote segment, up to
        ``max_bytes`` (at least one batch when ``first``), with base offsets below
        ``end_offset``. Raises RemoteStorageError when no live segment holds ``offset`` and
        ObjectNotFoundError when the object vanished (deleted by retention meanwhile)."""
        segment = self.segment_for(offset)
        if segment is None:
            raise RemoteStorageError(
                f"no remote segment of {self.topic}-{self.partition} holds offset {offset}")
        position = self._resume_position(segment, offset)
        if position is None:
            position = self.storage.index(segment).position_for(offset)
        batches: list[bytes] = []
        total = 0
        next_offset = offset
        stop = position  # where the next read of this segment would start
        for pos, data, base, last in self._walk(segment, position, max_bytes):
            size = len(data)
            if last < offset:
                stop = pos + size
                continue
            if base >= end_offset or (total + size > max_bytes and not (first and not batches)):
                stop = pos
                segment_end = False
                break
            batches.append(data)
            total += size
            next_offset = last + 1
            stop = pos + size
            if total >= max_bytes:
                segment_end = stop >= segment.data_bytes
                break
        else:
            segment_end = True
        if segment_end and next_offset < end_offset:
            next_offset = max(next_offset, segment.next_offset)
        self._maybe_prefetch(segment, offset, stop, next_offset, segment_end)
        return RemoteRead(batches, total, next_offset, segment_end)

    def _walk(
        self, segment: RemoteSegment, position: int, want_bytes: int
    ) -> Iterator[tuple[int, bytes, int, int]]:
        """Every whole batch of the segment's data from byte ``position`` (a batch boundary) to
        the end, as (position, bytes, base offset, last offset), fetched ``want_bytes`` at a
        time (the cache rounds to chunks). Damage raises RemoteStorageError."""
        data_end = segment.data_bytes
        buf = b""
        buf_pos = position  # buf holds data[buf_pos : buf_pos + len(buf)]
        want = max(want_bytes, _MIN_READ_BYTES)
        while buf_pos + len(buf) < data_end:
            have_end = buf_pos + len(buf)
            buf += self.storage.read_data(segment, have_end, min(data_end, have_end + want))
            # Later fetches of this walk usually complete one batch cut off at the end: ask
            # for that batch's missing bytes, not another full window.
            want = _MIN_READ_BYTES
            try:
                frames = list(iter_frames(buf, 0, len(buf),
                                          final=buf_pos + len(buf) >= data_end))
            except CorruptRecordError as exc:
                raise RemoteStorageError(
                    f"remote segment {segment.object_key} is damaged near byte {buf_pos}: {exc}"
                ) from exc
            consumed = 0
            for pos, size, base, last in frames:
                consumed = pos + size
                yield buf_pos + pos, buf[pos:consumed], base, last
            buf = buf[consumed:]
            buf_pos += consumed
            if len(buf) >= LOG_OVERHEAD:  # a cut-off batch: its length says what is missing
                want = max(want, LOG_OVERHEAD + int.from_bytes(
                    buf[LENGTH_OFFSET:LOG_OVERHEAD], "big", signed=True) - len(buf))

    def _resume_position(self, segment: RemoteSegment, offset: int) -> int | None:
        """The byte position where the previous read of this partition stopped, if this read
        continues it (saves scanning from the index entry, up to 256 KiB before)."""
        with self._lock:
            key, next_offset, position = self._resume
        return position if key == segment.object_key and next_offset == offset else None

    def _maybe_prefetch(
        self, segment: RemoteSegment, offset: int, stop: int, next_offset: int,
        segment_end: bool,
    ) -> None:
        """Read ahead: a read that continues the previous one (a sequential consumer) gets the
        next ``READAHEAD_CHUNKS`` chunks loading in the background, any other read one chunk;
        near the end of a segment, the next segment's index and first chunk too."""
        with self._lock:
            sequential = offset == self._resume[1]
            self._resume = (segment.object_key, next_offset, stop)
        chunk = self.storage.cache.chunk_bytes
        ahead = READAHEAD_CHUNKS if sequential else 1
        for i in range(ahead + 1):  # the chunk holding `stop` first (usually cached already)
            position = stop + i * chunk
            if position >= segment.data_bytes:
                break
            self.storage.prefetch(segment, position)
        if sequential and (segment_end or stop + ahead * chunk >= segment.data_bytes):
            following = self.segment_for(segment.next_offset, reload_on_miss=False)
            if following is not None:
                self.storage.prefetch_segment(following)

    def aborted_between(self, start: int, end: int) -> list[AbortedTxn]:
        """Aborted transactions recorded in remote segments whose data may lie in
        [start, end): marker at or after ``start``, first offset before ``end``. Only segments
        that hold markers of aborts are fetched."""
        found: list[AbortedTxn] = []
        for segment in self.segments():
            if segment.aborted_count == 0 or segment.next_offset <= start:
                continue
            found.extend(self.storage.index(segment).aborted_between(start, end))
        return found

    def offset_for_timestamp(self, timestamp_ms: int, *, below: int,
                             log_start: int) -> OffsetAndTimestamp | None:
        """The earliest offset below ``below`` (the first local offset) whose record timestamp
        is >= ``timestamp_ms``, from the remote segments; None if none is."""
        for segment in self.segments():
            if segment.base_offset >= below or segment.max_timestamp < timestamp_ms:
                continue
            if segment.next_offset <= log_start:
                continue
            index = self.storage.index(segment)
            position = index.position_for_timestamp(timestamp_ms)
            if position is None:
                continue
            found = self._scan_for_time(segment, position, timestamp_ms, max(log_start,
                                                                              segment.base_offset))
            if found is not None:
                return found
        return None

    def _scan_for_time(self, segment: RemoteSegment, position: int, timestamp_ms: int,
                       min_offset: int) -> OffsetAndTimestamp | None:
        for _pos, data, _base, last in self._walk(segment, position,
                                                  self.storage.cache.chunk_bytes):
            header = parse_header(data)
            if header.is_control or header.max_timestamp < timestamp_ms or last < min_offset:
                continue
            _, records = decode_batch(data, verify_crc=False, min_offset=min_offset)
            for record in records:
                if record.timestamp_ms >= timestamp_ms:
                    return OffsetAndTimestamp(record.offset, record.timestamp_ms)
        return None


__all__ = ["RemotePartition", "RemoteRead", "RemoteStorage", "delete_segment"]
