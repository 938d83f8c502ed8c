"""The tierer: copy sealed segments to the object store, then drop local copies by local retention.

For each partition of a topic with ``remote.storage.enable=true``:

1. take the lease ``tierer/<topic_id>/<partition>`` in the metadata store (one tierer per
   partition across processes and hosts; a partition another tierer holds is reported busy);
2. for every sealed local segment past the *tiered end* (the next offset of the last live
   remote segment) and wholly below the last stable offset (remote data is always stable, so
   read_committed readers need no open-transaction state from it), in offset order:

   a. write the remote object (``remote_format``) to an unlinked temporary file, from one read
      snapshot of the segment; batches below the tiered end (a segment the log cleaner merged
      with an already tiered one) are left out, so remote segments never overlap;
   b. record the copy in the manifest as ``copy-started`` (fenced by the lease);
   c. upload it under a fresh key (``keys.object_key``) with ``if-none-match``, retrying
      retriable failures with backoff;
   d. mark it ``copy-finished`` (fenced, and refused if a live segment overlaps): from now on
      readers may use it and local retention may delete the local copy;

3. apply local retention (``log/tiering.py``) and release the lease.

A failure after (b) deletes what it can (manifest ``delete-started``, object, row); a crash
leaves a ``copy-started`` row and perhaps an object, which the orphan cleaner removes. The
lease is coordination; the manifest's compare-and-swap (no overlapping live segments) is what
keeps two tierers from publishing the same offsets twice.

Appends never wait for a tierer: it reads sealed segments over its own connections and holds
the partition's file lock only to unlink local copies.

Thread-safety: a :class:`Tierer` may be used from one thread at a time; several tierers (threads,
processes, hosts) may work on one log.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from logstore.backends.cleaner_records import Lease
from logstore.backends.manifest_records import COPY_FINISHED, COPY_STARTED, RemoteSegment
from logstore.backends.metadata import MetadataStore, TopicRecord
from logstore.backends.object_store import Retrier, RetryPolicy
from logstore.clock import Clock
from logstore.config import TopicConfig
from logstore.errors import (
    LogstoreError,
    PreconditionFailedError,
    StaleVersionError,
    UnknownTopicOrPartitionError,
)
from logstore.log.partition_log import PartitionLog
from logstore.log.rewrite import LogLayout
from logstore.log.segment import SegmentState
from logstore.tier.keys import object_key
from logstore.tier.remote_format import DEFAULT_INDEX_INTERVAL_BYTES, RemoteSegmentWriter
from logstore.tier.remote_storage import RemoteStorage, delete_segment

_log = logging.getLogger("logstore.tier")

#: How long a tierer's lease lasts without renewal (renewed before each copy).
LEASE_DURATION_MS = 60_000
#: How many batches the copy loop handles between two GIL yields.
_YIELD_EVERY_BATCHES = 32
#: Retries of one upload before the copy is abandoned until the next pass.
UPLOAD_RETRY_POLICY = RetryPolicy(max_attempts=6, base_delay_ms=200.0, max_delay_ms=10_000.0,
                                  max_elapsed_ms=120_000.0)


def lease_name(topic_id: str, partition: int) -> str:
    """The metadata-store lease that guards the tiering of one partition."""
    return f"tierer/{topic_id}/{partition}"


def untiered_segments(layout: LogLayout, tiered_end: int | None) -> list[SegmentState]:
    """The segments a tierer copies next, oldest first: sealed, past the tiered end and wholly
    below the last stable offset (remote data never holds an open transaction)."""
    found: list[SegmentState] = []
    for state in layout.sealed:
        next_offset = state.next_offset
        if next_offset is None or next_offset < 0 or next_offset > layout.last_stable_offset:
            break
        if tiered_end is None or next_offset > tiered_end:
            found.append(state)
    return found


def topic_records(access: TierAccess, topic: str | None = None) -> list[TopicRecord]:
    """The stored record of every topic (or of ``topic``: UnknownTopicOrPartitionError if it
    does not exist); topics deleted while listing are left out."""
    names = [topic] if topic is not None else access.list_topics()
    found: list[TopicRecord] = []
    for name in names:
        record = access.metadata.get_topic(name)
        if record is None:
            if topic is not None:
                raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
            continue
        found.append(record)
    return found


class TierAccess(Protocol):
    """What the tierer needs from a Log (``logstore.embedded.Log`` provides it)."""

    @property
    def metadata(self) -> MetadataStore: ...

    @property
    def clock(self) -> Clock: ...

    def list_topics(self) -> list[str]: ...

    def partition_log(self, topic: str, partition: int) -> PartitionLog: ...


@dataclass(frozen=True, slots=True)
class PartitionTiering:
    """What one pass did to one partition. ``status``: ``tiered`` (copied something),
    ``up-to-date``, ``busy`` (another tierer holds the lease), ``failed`` (``error`` says why;
    retried on the next pass) or ``interrupted`` (asked to stop)."""

    topic: str
    partition: int
    status: str
    segments_copied: int = 0
    bytes_copied: int = 0
    local_segments_deleted: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TierReport:
    """One tiering pass over the partitions of remote-storage topics."""

    partitions: tuple[PartitionTiering, ...] = field(default_factory=tuple)
    duration_ms: int = 0

    @property
    def segments_copied(self) -> int:
        return sum(p.segments_copied for p in self.partitions)

    @property
    def bytes_copied(self) -> int:
        return sum(p.bytes_copied for p in self.partitions)

    @property
    def failed(self) -> tuple[PartitionTiering, ...]:
        return tuple(p for p in self.partitions if p.status == "failed")


class Tierer:
    """Copies sealed segments of remote-storage topics (see the module docstring)."""

    def __init__(
        self,
        access: TierAccess,
        storage: RemoteStorage,
        *,
        temp_dir: str | os.PathLike[str] | None = None,
        holder: str | None = None,
        retry_policy: RetryPolicy = UPLOAD_RETRY_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        index_interval_bytes: int = DEFAULT_INDEX_INTERVAL_BYTES,
    ) -> None:
        self._access = access
        self._storage = storage
        self._temp_dir = None if temp_dir is None else Path(temp_dir)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._retrier = Retrier(retry_policy, sleep=sleep, clock=access.clock)
        self._index_interval_bytes = index_interval_bytes

    # --- passes ------------------------------------------------------------------------------

    def targets(self, topic: str | None = None) -> list[tuple[str, str, int, TopicConfig]]:
        """(topic, topic id, partition, config) of every partition to tier (of ``topic``)."""
        found: list[tuple[str, str, int, TopicConfig]] = []
        for record in topic_records(self._access, topic):
            config = TopicConfig.from_overrides(record.configs)
            if config.remote_storage_enable:
                found.extend((record.name, record.topic_id, p, config)
                             for p in range(record.partition_count))
        return found

    def run(
        self,
        topic: str | None = None,
        *,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> TierReport:
        """Tier every partition of the remote-storage topics (or of ``topic``) once.
        ``progress(bytes)`` is called after each upload; ``stop`` ends the pass after the copy
        in progress. Failures of one partition are reported and do not stop the others."""
        started = time.monotonic()
        results = []
        for name, topic_id, partition, _ in self.targets(topic):
            if stop is not None and stop.is_set():
                results.append(PartitionTiering(name, partition, "interrupted"))
                continue
            results.append(self.tier_partition(name, topic_id, partition,
                                               progress=progress, stop=stop))
        return TierReport(tuple(results), int((time.monotonic() - started) * 1000))

    def pending_bytes(self, topic: str | None = None) -> int:
        """Bytes of sealed, stable local segments not tiered yet (the tierer's lag)."""
        total = 0
        for name, topic_id, partition, _ in self.targets(topic):
            plog = self._access.partition_log(name, partition)
            tiered_end = self._tiered_end(topic_id, partition)
            total += sum(s.size_bytes for s in self._candidates(plog, tiered_end))
        return total

    def tier_partition(
        self,
        topic: str,
        topic_id: str,
        partition: int,
        *,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> PartitionTiering:
        """Tier one partition (see the module docstring); never raises a LogstoreError."""
        metadata = self._access.metadata
        clock = self._access.clock
        copied = copied_bytes = 0
        try:
            plog = self._access.partition_log(topic, partition)
            tiered_end = self._tiered_end(topic_id, partition)
            if not self._candidates(plog, tiered_end):
                # Nothing to copy: no lease (an idle pass writes nothing to the metadata
                # store); local retention needs only the partition's own lock.
                local = plog.enforce_local_retention(tiered_end)
                return PartitionTiering(topic, partition, "up-to-date", 0, 0,
                                        local.segments_deleted)
            lease = metadata.acquire_lease(lease_name(topic_id, partition), self.holder,
                                           now_ms=clock.time_ms(), duration_ms=LEASE_DURATION_MS)
            if lease is None:
                return PartitionTiering(topic, partition, "busy")
            try:
                tiered_end = self._tiered_end(topic_id, partition)
                for state in self._candidates(plog, tiered_end):
                    if stop is not None and stop.is_set():
                        return PartitionTiering(topic, partition, "interrupted", copied,
                                                copied_bytes)
                    lease = metadata.renew_lease(lease, now_ms=clock.time_ms(),
                                                 duration_ms=LEASE_DURATION_MS)
                    start = state.base_offset if tiered_end is None else max(
                        state.base_offset, tiered_end)
                    segment = self._copy(plog, topic, topic_id, state.base_offset, start, lease)
                    if segment is None:
                        break  # retention or a merge removed it meanwhile: next pass
                    copied += 1
                    copied_bytes += segment.size_bytes
                    tiered_end = segment.next_offset
                    if progress is not None:
                        progress(segment.size_bytes)
                local = plog.enforce_local_retention(tiered_end)
            finally:
                try:
                    metadata.release_lease(lease)
                except LogstoreError as exc:  # it expires on its own
                    _log.debug("could not release %s: %s", lease.name, exc)
        except LogstoreError as exc:
            _log.warning("tiering %s-%d failed: %s", topic, partition, exc)
            return PartitionTiering(topic, partition, "failed", copied, copied_bytes,
                                    error=str(exc))
        status = "tiered" if copied else "up-to-date"
        return PartitionTiering(topic, partition, status, copied, copied_bytes,
                                local.segments_deleted)

    # --- one partition -----------------------------------------------------------------------

    def _tiered_end(self, topic_id: str, partition: int) -> int | None:
        live = self._access.metadata.remote_segments(topic_id, partition, states=[COPY_FINISHED])
        return max((s.next_offset for s in live), default=None)

    @staticmethod
    def _candidates(plog: PartitionLog, tiered_end: int | None) -> list[SegmentState]:
        return untiered_segments(plog.layout(), tiered_end)

    def _copy(
        self, plog: PartitionLog, topic: str, topic_id: str, base: int, start: int, lease: Lease
    ) -> RemoteSegment | None:
        """Copy one segment (see the module docstring); None if its file is gone."""
        try:
            return self._copy_existing(plog, topic, topic_id, base, start, lease)
        except FileNotFoundError:
            return None

    def _copy_existing(
        self, plog: PartitionLog, topic: str, topic_id: str, base: int, start: int, lease: Lease
    ) -> RemoteSegment:
        metadata = self._access.metadata
        clock = self._access.clock
        with tempfile.TemporaryFile(dir=self._temp_dir) as out:
            with plog.export_segment(base) as export:
                if not export.state.sealed or export.state.next_offset is None:
                    raise StaleVersionError(f"segment {base} of {plog} is not sealed any more")
                writer = RemoteSegmentWriter(out, base_offset=start,
                                             index_interval_bytes=self._index_interval_bytes)
                for count, (base_offset, data) in enumerate(export.rows):
                    if base_offset < start:
                        continue
                    writer.add(data)
                    if count % _YIELD_EVERY_BATCHES == 0:
                        # Let appending threads have the GIL now rather than after the
                        # interpreter's 5 ms switch interval: the copy is background work.
                        time.sleep(0)
                aborted = [(a.producer_id, a.first_offset, a.last_offset)
                           for a in export.aborted if a.last_offset >= start]
                summary = writer.finish(next_offset=export.state.next_offset, aborted=aborted)
            segment_id = uuid.uuid4().hex
            now = clock.time_ms()
            entry = metadata.begin_remote_copy(RemoteSegment(
                segment_id=segment_id, topic_id=topic_id, topic=topic,
                partition=plog.partition, base_offset=summary.base_offset,
                last_offset=summary.last_offset, next_offset=summary.next_offset,
                object_key=object_key(topic, plog.partition, summary.base_offset,
                                      summary.last_offset, segment_id),
                size_bytes=summary.size_bytes, data_bytes=summary.data_bytes,
                max_timestamp=summary.max_timestamp, batch_count=summary.batch_count,
                aborted_count=summary.aborted_count, leader_epoch=plog.leader_epoch,
                state=COPY_STARTED, created_ms=now, updated_ms=now, version=1,
            ), lease=lease)
            try:
                self._upload(entry, out)
                return metadata.finish_remote_copy(entry, updated_ms=clock.time_ms(),
                                                   lease=lease)
            except BaseException:
                self._abandon(entry)
                raise

    def _upload(self, entry: RemoteSegment, data: BinaryIO) -> None:
        store = self._storage.object_store
        key = entry.object_key

        def attempt() -> None:
            data.seek(0)
            try:
                store.put(key, data, if_none_match=True)
            except PreconditionFailedError:
                # Our own earlier attempt may have landed before its answer was lost: the key
                # is unique to this copy, so an object of the right size is that attempt.
                info = store.head(key)
                if info is None or info.size_bytes != entry.size_bytes:
                    raise

        self._retrier.call(attempt, what=f"uploading {key}")

    def _abandon(self, entry: RemoteSegment) -> None:
        """Best effort after a failed copy: delete the manifest row and the object (whatever
        is left is the orphan cleaner's)."""
        try:
            delete_segment(self._storage, entry)
        except LogstoreError as exc:
            _log.info("could not clean up abandoned copy %s: %s", entry.object_key, exc)


__all__ = [
    "LEASE_DURATION_MS",
    "PartitionTiering",
    "TierAccess",
    "TierReport",
    "Tierer",
    "lease_name",
]
