"""The local side of tiered storage: exporting sealed segments, local and total retention.

With ``remote.storage.enable=true`` a partition's offsets live in two places: remote segments
(listed in the manifest, read through :class:`~logstore.tier.remote_storage.RemotePartition`,
attached as ``PartitionLog.remote``) and local segments. Invariants:

* The **log start offset** (``partition.sqlite``) stays the start of the whole log, remote
  included. The **first local offset** is the base offset of the lowest local segment; reads
  below it (and at or above the log start) go to the remote segments.
* **Local retention** (``local.retention.ms`` / ``local.retention.bytes``) deletes only local
  segments that are sealed and wholly tiered (their next offset is at most the tiered end:
  the end of the copy-finished remote segments); it never moves the log start offset.
* **Total retention** (``retention.ms`` / ``retention.bytes``) counts remote segments and the
  local segments not yet tiered; it advances the log start offset first (durably), then
  deletes local segments below it and lastly remote ones (manifest ``delete-started`` first,
  then the object, then the manifest row), so a crash in between leaves objects for the orphan
  cleaner, never a readable hole.
* Reading a segment for upload uses a connection of its own and one read snapshot, so the
  upload sees one consistent version of the segment even if the log cleaner rewrites it.

:class:`LocalTiering` is a collaborator of :class:`~logstore.log.partition_log.PartitionLog`
over its :class:`~logstore.log.segment_set.SegmentSet`; it also holds the partition's remote
view. Thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from logstore.clock import Clock
from logstore.config import TopicConfig
from logstore.log.cleanup import expired_prefix
from logstore.log.producer_state import AbortedTxn
from logstore.log.segment import SegmentState
from logstore.log.segment_set import SegmentSet
from logstore.types import OffsetAndTimestamp, RetentionReport

if TYPE_CHECKING:
    from logstore.tier.remote_storage import RemoteRead


class RemoteView(Protocol):
    """What a partition log needs from its remote segments (``tier.remote_storage``)."""

    def read(self, offset: int, *, max_bytes: int, end_offset: int,
             first: bool = True) -> RemoteRead:
        ...

    def aborted_between(self, start: int, end: int) -> list[AbortedTxn]:
        ...

    def offset_for_timestamp(self, timestamp_ms: int, *, below: int,
                             log_start: int) -> OffsetAndTimestamp | None:
        ...

    def tiered_end(self) -> int | None:
        ...

    def segment_bases(self) -> list[int]:
        """Base offsets of the live remote segments, oldest first."""
        ...

    def retention_units(self) -> list[tuple[int, int, int]]:
        """(next offset, max timestamp, size) of every live remote segment, by offset."""
        ...

    def delete_below(self, log_start: int) -> tuple[int, int]:
        """Delete remote segments wholly below ``log_start``; (count, bytes)."""
        ...


@dataclass(frozen=True, slots=True)
class SegmentExport:
    """One consistent read of a sealed segment for upload."""

    state: SegmentState
    rows: Iterator[tuple[int, bytes]]
    aborted: Sequence[AbortedTxn]


class LocalTiering:
    """The local/remote boundary, export for the tierer, local and total retention."""

    def __init__(
        self,
        segments: SegmentSet,
        *,
        topic: str,
        partition: int,
        config: Callable[[], TopicConfig],
        clock: Clock,
    ) -> None:
        self._segments = segments
        self._topic = topic
        self._partition = partition
        self._config = config
        self._clock = clock
        self.remote: RemoteView | None = None

    def __repr__(self) -> str:
        return repr(self._segments)

    def first_local_offset(self) -> int:
        """The base offset of the lowest local segment (as last scanned)."""
        return self._segments.first_base()

    @contextmanager
    def export_segment(self, base: int) -> Iterator[SegmentExport]:
        """Read a segment for upload: its summary, its rows and its aborted transactions,
        all from one snapshot of a connection of its own. Raises FileNotFoundError if gone."""
        segment = self._segments.open_own(base)
        try:
            with segment.read_transaction() as state:
                aborted = segment.all_aborted()
                yield SegmentExport(state, segment.iter_rows(), aborted)
        finally:
            segment.close()

    def enforce_local_retention(self, tiered_end: int | None) -> RetentionReport:
        """Delete local copies of tiered segments past ``local.retention.ms`` /
        ``local.retention.bytes`` (oldest first, only sealed segments wholly below
        ``tiered_end``). The log start offset does not move."""
        segments = self._segments
        config = self._config()
        deleted = bytes_deleted = 0
        if tiered_end is not None:
            with segments.lock.hold():
                states = segments.sealed_states()
                tiered = 0
                while (tiered < len(states) and states[tiered].next_offset is not None
                       and 0 <= states[tiered].next_offset <= tiered_end):
                    tiered += 1
                count = expired_prefix(
                    [(s.max_timestamp, s.size_bytes) for s in states],
                    now_ms=self._clock.time_ms(),
                    retention_ms=config.effective_local_retention_ms,
                    retention_bytes=config.effective_local_retention_bytes,
                    extra_bytes=segments.active_size(), limit=tiered)
                segments.unlink(state.base_offset for state in states[:count])
                deleted = count
                bytes_deleted = sum(state.size_bytes for state in states[:count])
        return RetentionReport(self._topic, self._partition, deleted, bytes_deleted,
                               segments.state.get().log_start_offset)

    def enforce_total_retention(self) -> RetentionReport:
        """``retention.ms`` / ``retention.bytes`` over remote and local segments (see the
        module docstring), then local retention. Without a remote view nothing can be decided
        (remote bytes count, and only tiered copies may go locally): everything is kept."""
        segments = self._segments
        remote = self.remote
        if remote is None:
            return RetentionReport(self._topic, self._partition, 0, 0,
                                   segments.state.get().log_start_offset)
        config = self._config()
        deleted = bytes_deleted = 0
        tiered_end = remote.tiered_end()
        if config.deletes:
            with segments.lock.hold():
                states = segments.sealed_states()
                log_start = segments.state.get().log_start_offset
                units = [u for u in remote.retention_units() if u[0] > log_start]
                for state in states:
                    if state.next_offset is None or state.next_offset < 0:
                        continue
                    if tiered_end is None or state.next_offset > tiered_end:
                        units.append((state.next_offset, state.max_timestamp, state.size_bytes))
                units.sort()
                count = expired_prefix(
                    [(u[1], u[2]) for u in units], now_ms=self._clock.time_ms(),
                    retention_ms=config.retention_ms, retention_bytes=config.retention_bytes,
                    extra_bytes=segments.active_size())
                if count:
                    segments.state.advance_log_start(units[count - 1][0])
                deleted, bytes_deleted = segments.delete_below(
                    segments.state.get().log_start_offset)
        # Remote deletions need no lock: the log start offset is already durable, so nothing
        # below it is readable whatever a crash leaves behind.
        remote_deleted, remote_bytes = remote.delete_below(segments.state.get().log_start_offset)
        local = self.enforce_local_retention(tiered_end)
        return RetentionReport(
            self._topic, self._partition, deleted + remote_deleted + local.segments_deleted,
            bytes_deleted + remote_bytes + local.bytes_deleted,
            segments.state.get().log_start_offset)

