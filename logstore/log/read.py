"""The read path of a partition log: fetching batches, offsets by time, the last stable offset.

Reads return whole batches from the one containing the requested offset, up to ``max_bytes``
but at least one batch (KIP-74), across segments, each segment read in one snapshot.

Isolation: ``read_uncommitted`` reads up to the high watermark. ``read_committed`` reads only up
to the last stable offset (LSO: the first offset of the oldest transaction still open in this
partition, else the high watermark) and also returns the transactions aborted in the range, so
the reader can drop their batches (Kafka's fetch does the same; see ``committed_filter``).

The :class:`LogReader` is one collaborator of :class:`~logstore.log.partition_log.PartitionLog`;
it reads through the partition's :class:`~logstore.log.segment_set.SegmentSet`, and below the
first local segment through the partition's remote view (tiered storage).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from logstore.errors import (
    LogstoreError,
    ObjectNotFoundError,
    OffsetOutOfRangeError,
    RemoteStorageError,
    StorageError,
)
from logstore.log.producer_state import AbortedTxn, ProducerEntry
from logstore.log.segment_set import MAX_RETRIES, SegmentSet
from logstore.types import IsolationLevel, OffsetAndTimestamp

if TYPE_CHECKING:
    from logstore.log.tiering import RemoteView
    from logstore.tier.remote_storage import RemoteRead


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Whole batches read from one partition, with the partition's offsets at read time."""

    batches: Sequence[bytes]
    size_bytes: int
    log_start_offset: int
    high_watermark: int
    log_end_offset: int
    last_stable_offset: int = -1
    aborted: Sequence[AbortedTxn] = field(default_factory=tuple)
    """read_committed only: transactions aborted in the range read, by first offset."""

    @property
    def records(self) -> bytes:
        """The batches concatenated, as a fetch response carries them."""
        return b"".join(self.batches)


class LogReader:
    """Reads and offset queries of one partition. Thread-safe."""

    def __init__(self, segments: SegmentSet, *, remote: Callable[[], RemoteView | None]) -> None:
        self._segments = segments
        self._remote = remote

    def __repr__(self) -> str:
        return repr(self._segments)

    def tail_offsets(self) -> tuple[int, int]:
        """(log end offset, last stable offset), read together from the active segment."""
        segments = self._segments
        segments.check_generation()

        def attempt() -> tuple[int, int]:
            for _ in range(MAX_RETRIES):
                base = segments.last_base()
                with segments.reading(base) as (segment, state):
                    unstable = segment.first_unstable_offset()
                log_end = state.log_end_offset
                stable = log_end if unstable is None else min(unstable, log_end)
                if not state.sealed or segments.last_base() == base:
                    # Sealed, successor not created yet: a roll in progress, or a crash in
                    # between. Its producer state is final, so the stable offset holds.
                    return log_end, stable
            raise StorageError(f"{self}: segment list keeps changing")

        return segments.retrying(attempt)

    def producer_states(self) -> dict[int, ProducerEntry]:
        """The state of every producer that wrote to this partition (from the active segment)."""
        segments = self._segments

        def attempt() -> dict[int, ProducerEntry]:
            with segments.reading(segments.last_base()) as (segment, _):
                return segment.producers()

        return segments.retrying(attempt)

    def log_end_offset(self) -> int:
        """One past the last offset appended (by any process)."""
        return self.tail_offsets()[0]

    def read(
        self,
        offset: int,
        *,
        max_bytes: int,
        max_offset: int | None = None,
        isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED,
    ) -> ReadResult:
        """Whole batches from the one containing ``offset``, up to ``max_bytes`` in total (at
        least one batch if any is readable), bounded by the high watermark (read_uncommitted)
        or the last stable offset (read_committed) and by ``max_offset`` if given.

        Raises OffsetOutOfRangeError if ``offset`` is below the log start offset or above the
        log end offset.
        """
        segments = self._segments
        log_end, stable = self.tail_offsets()
        log_start = segments.state.get().log_start_offset
        if offset < log_start or offset > log_end:
            raise OffsetOutOfRangeError(
                f"offset {offset} is out of range for {self} [{log_start}, {log_end}]",
                offset=offset, log_start_offset=log_start, log_end_offset=log_end,
            )
        committed = isolation is IsolationLevel.READ_COMMITTED
        end = stable if committed else log_end
        if max_offset is not None:
            end = min(end, max_offset)
        batches: list[bytes] = []
        aborted: list[AbortedTxn] = []
        total = 0
        position = offset
        vanished = 0
        remote_reads = 0
        while (position < end and total < max_bytes) or (position < end and not batches):
            if position < segments.first_base():
                remote_got = self._read_remote(position, max_bytes - total, end, not batches)
                remote_reads += 1
                if remote_got is None:  # deleted by retention meanwhile; the log start moved
                    if batches:
                        break
                    log_start = segments.state.get().log_start_offset
                    raise OffsetOutOfRangeError(
                        f"offset {position} was deleted from {self} (log start {log_start})",
                        offset=position, log_start_offset=log_start, log_end_offset=log_end)
                batches.extend(remote_got.batches)
                total += remote_got.size_bytes
                position = max(position, remote_got.next_offset)
                # Unlike Kafka's remote fetch (one remote segment per fetch), a read goes on
                # into the next segment, remote or local, so it returns exactly the bytes a
                # local read would have.
                if not remote_got.segment_end or remote_reads > MAX_RETRIES:
                    break
                continue
            base = segments.base_for(position)
            if base > position:
                # The segment list moved on since first_base() above (local copies dropped
                # after tiering, or retention, in another process): the offset is below the
                # first local segment now. Look again rather than read from the next segment,
                # which would skip the offsets in between.
                vanished += 1
                if vanished > MAX_RETRIES:
                    raise StorageError(f"{self}: segment list keeps changing")
                continue
            try:
                with segments.reading(base) as (segment, state):
                    got, size, next_position, limited = segment.read_from(
                        position, max_bytes=max_bytes - total, end_offset=end,
                        first=not batches)
            except FileNotFoundError as exc:
                # Deleted under us by retention, or merged into its predecessor by the log
                # cleaner, in another process (it is no longer listed): look again.
                segments.raise_if_listed(exc)
                log_start = segments.state.get().log_start_offset
                if position < log_start:
                    if batches:
                        break
                    raise OffsetOutOfRangeError(
                        f"offset {position} was deleted from {self} (log start {log_start})",
                        offset=position, log_start_offset=log_start, log_end_offset=log_end,
                    ) from None
                vanished += 1
                if vanished > MAX_RETRIES:
                    raise StorageError(f"{self}: segment list keeps changing") from None
                continue
            except StorageError:
                if batches:  # return what was read; the next read starts at the damage
                    break
                raise
            batches.extend(got)
            total += size
            if got:
                position = next_position
            if limited:
                break
            if not state.sealed or state.next_offset is None or state.next_offset < 0:
                break
            following = max(position, state.next_offset)
            if not got and following < end and segments.base_for(following) == base:
                # Nothing left here, and no listed segment starts where this one says the
                # next one does: offsets are missing. Report them rather than spin.
                if batches:
                    break
                raise segments.hole_error(following, segments.next_base(base))
            position = following
        remote = self._remote()
        if committed and batches:
            aborted = self._aborted_between(offset, position, stable)
            if remote_reads and remote is not None:
                aborted = sorted(set(aborted) | set(remote.aborted_between(offset, position)),
                                 key=lambda a: (a.first_offset, a.last_offset))
        return ReadResult(batches, total, log_start, log_end, log_end, stable, tuple(aborted))

    def _read_remote(
        self, position: int, max_bytes: int, end: int, first: bool
    ) -> RemoteRead | None:
        """Read below the first local offset from the remote segments; None when the offset
        was deleted meanwhile (it is below the log start offset now)."""
        remote = self._remote()
        if remote is None:
            raise RemoteStorageError(
                f"offset {position} of {self} is in remote storage (the first local offset is "
                f"{self._segments.first_base()}): open the log with an object store to read it "
                "(object_store_url=, or --object-store / LOGSTORE_OBJECT_STORE in the CLI)")
        error: LogstoreError | None = None
        for _ in range(3):
            try:
                return remote.read(position, max_bytes=max_bytes, end_offset=end, first=first)
            except (ObjectNotFoundError, RemoteStorageError) as exc:
                # Deleted by total retention in another process, or tiered segments not yet
                # in this process's manifest view: look again before deciding.
                error = exc
                if position < self._segments.state.get().log_start_offset:
                    return None
        raise error if error is not None else StorageError(f"{self}: remote read failed")

    def _aborted_between(self, start: int, end: int, stable: int) -> list[AbortedTxn]:
        """Aborted transactions with data in [start, end): their markers lie at or after
        ``start`` and (being stable) before ``stable``, in any segment from ``start`` on.
        A segment that vanished meanwhile was deleted by retention (nothing of [start, end)
        is left in it) or merged into its predecessor by the log cleaner: look again."""
        segments = self._segments

        def attempt() -> list[AbortedTxn]:
            bases = [b for b in segments.bases() if b <= stable]
            first = bisect.bisect_right(bases, start) - 1
            found: list[AbortedTxn] = []
            for base in bases[max(first, 0):]:
                with segments.reading(base) as (segment, _):
                    found.extend(segment.aborted_between(start, end))
            return sorted(found, key=lambda a: a.first_offset)

        return segments.retrying(attempt)

    def offset_for_timestamp(self, timestamp_ms: int) -> OffsetAndTimestamp | None:
        """The earliest offset whose record timestamp is >= ``timestamp_ms`` (None if none)."""
        segments = self._segments
        segments.check_generation()
        remote = self._remote()
        # One listing per attempt, for the remote part and the local one alike: a segment
        # whose local copy goes away meanwhile (tiered, or deleted by retention) means the
        # listing is stale, and searching on would skip that segment's offsets.
        for _ in range(MAX_RETRIES):
            log_start = segments.state.get().log_start_offset
            bases = segments.bases()
            if remote is not None:
                found = remote.offset_for_timestamp(
                    timestamp_ms, below=bases[0], log_start=log_start)
                if found is not None:
                    return found
            try:
                return self._local_offset_for_timestamp(bases, timestamp_ms, log_start)
            except FileNotFoundError as exc:
                segments.raise_if_listed(exc)  # still listed: damage, not a move
                continue
        raise StorageError(f"{self}: segment list keeps changing")

    def _local_offset_for_timestamp(self, bases: Sequence[int], timestamp_ms: int,
                                    log_start: int) -> OffsetAndTimestamp | None:
        """The earliest offset with a timestamp >= ``timestamp_ms`` in these local segments;
        FileNotFoundError if one of them is gone."""
        from logstore.records.reader import decode_batch

        segments = self._segments
        for base in bases:
            if segments.state_of(base).max_timestamp < timestamp_ms:
                continue
            with segments.reading(base) as (segment, _):
                batch = segment.first_batch_at_or_after_time(timestamp_ms)
            if batch is None:
                continue
            _, records = decode_batch(batch[1], verify_crc=False, min_offset=log_start)
            for record in records:
                if record.timestamp_ms >= timestamp_ms:
                    return OffsetAndTimestamp(record.offset, record.timestamp_ms)
        return None

    def max_timestamp_offset(self) -> OffsetAndTimestamp | None:
        """The offset and timestamp of the record with the largest timestamp in the local
        segments (the first such record; ListOffsets' MAX_TIMESTAMP, KIP-734), None when the
        partition holds no data record."""
        from logstore.records.reader import decode_batch

        segments = self._segments
        segments.check_generation()
        log_start = segments.state.get().log_start_offset
        best: tuple[int, int] | None = None  # (max timestamp, base)
        for base in segments.bases():
            try:
                state = segments.state_of(base)
            except FileNotFoundError:
                continue
            if state.is_empty or state.max_timestamp < 0:
                continue
            if best is None or state.max_timestamp > best[0]:
                best = (state.max_timestamp, base)
        if best is None:
            return None
        timestamp, base = best
        try:
            with segments.reading(base) as (segment, _):
                batch = segment.first_batch_at_or_after_time(timestamp)
        except FileNotFoundError:
            return None
        if batch is None:
            return None
        _, records = decode_batch(batch[1], verify_crc=False, min_offset=log_start)
        for record in records:
            if record.timestamp_ms == timestamp:
                return OffsetAndTimestamp(record.offset, record.timestamp_ms)
        return None
