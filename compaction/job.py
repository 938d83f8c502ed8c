"""The compaction job: clean every due partition of the compacted topics once (``logstore compact
--every`` repeats it: ``logstore.cli.schedule``).

For each partition of a topic with ``cleanup.policy`` containing ``compact``:

1. take the partition's lease ``compactor/<topic_id>/<partition>`` in the metadata store (a
   partition another compactor holds is reported busy and skipped), so one compactor works on
   a partition at a time across processes and hosts;
2. read the cleaner checkpoint (with the earliest delete horizon the last cleaning left in the
   log: a partition whose horizon has passed is due, see
   :func:`~logstore.compaction.cleaner.due_reason`), run a
   :class:`~logstore.compaction.cleaner.PartitionCleaner`, and record each round's new
   checkpoint and horizon fenced by the lease (a compactor that lost its lease cannot move the
   checkpoint);
3. release the lease.

The lease is coordination, not the safety net: every segment rewrite is itself atomic and
checks, under the partition's file lock, that nothing changed since the cleaner looked (see
:mod:`logstore.log.rewrite`). A dry run takes no lease and writes nothing.

One offset map (``memory_bytes``) is allocated per run and reused for every partition.
Thread-safety: a run uses the :class:`~logstore.embedded.Log` from one thread; several runs may
work on one directory from several processes.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from logstore.backends.cleaner_records import CleanerCheckpoint, Lease
from logstore.compaction.cleaner import PartitionCleaner, due_reason
from logstore.compaction.offset_map import OffsetMap, new_offset_map
from logstore.compaction.report import (
    CompactionReport,
    CompactionStatus,
    DueReason,
    PartitionCompaction,
)

from logstore.config import TopicConfig
from logstore.embedded import Log
from logstore.errors import (
    CorruptFileError,
    InconsistentTopicIdError,
    InvalidArgumentError,
    LeaseLostError,
    MissingSegmentError,
    PartitionOfflineError,
    StorageError,
    UnknownTopicOrPartitionError,
)
from logstore.log.cleanable import sections

#: The offset map's default size: 64 MiB holds about 2.5 million keys per round.
DEFAULT_MEMORY_BYTES = 64 * 1024 * 1024
#: How long a compactor's lease lasts without renewal (it renews at a third of it).
LEASE_DURATION_MS = 60_000


def lease_name(topic_id: str, partition: int) -> str:
    """The metadata-store lease that guards the cleaning of one partition."""
    return f"compactor/{topic_id}/{partition}"


@dataclass(frozen=True, slots=True)
class _Target:
    topic: str
    topic_id: str
    partition: int
    config: TopicConfig


def compact(
    log: Log,
    topic: str | None = None,
    partition: int | None = None,
    *,
    dry_run: bool = False,
    force: bool = False,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> CompactionReport:
    """Clean the due partitions of every compacted topic (or of ``topic``, or one
    ``partition`` of it). ``force`` cleans whatever is dirty, due or not.

    ``progress(done_bytes, total_bytes)`` follows the bytes read (the total is an estimate made
    up front); setting ``stop`` ends the run after the segment group in progress. Raises
    InvalidArgumentError for a topic that is not compacted or a partition without a topic.
    """
    targets = _targets(log, topic, partition)
    offset_map = new_offset_map(memory_bytes)
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    total = _estimate(log, targets) if progress is not None else 0
    done = 0

    def advance(size: int) -> None:
        nonlocal done
        done += size
        if progress is not None:
            progress(done, max(total, done))

    results = []
    for target in targets:
        if stop is not None and stop.is_set():
            break
        results.append(_compact_partition(
            log, target, offset_map, holder, dry_run=dry_run, force=force, progress=advance,
            stop=stop))
    return CompactionReport(tuple(results), dry_run)


def _targets(log: Log, topic: str | None, partition: int | None) -> list[_Target]:
    if partition is not None and topic is None:
        raise InvalidArgumentError("a partition needs a topic")
    names = [topic] if topic is not None else log.list_topics()
    targets: list[_Target] = []
    for name in names:
        count, config = log.topic_info(name)
        if not config.compacts:
            if topic is not None:
                raise InvalidArgumentError(
                    f"topic {name!r} is not compacted (cleanup.policy={config.cleanup_policy}); "
                    "set cleanup.policy=compact to compact it")
            continue
        record = log.metadata.get_topic(name)
        if record is None:
            continue  # deleted meanwhile
        if partition is not None and not 0 <= partition < count:
            raise UnknownTopicOrPartitionError(
                f"topic {name!r} has no partition {partition} (it has {count})")
        for p in [partition] if partition is not None else range(count):
            targets.append(_Target(name, record.topic_id, p, config))
    return targets


def due_reasons(log: Log, topic: str) -> dict[int, DueReason | None]:
    """Per partition of the compacted ``topic``: why a run would clean it now, or None if it is
    not due (what ``logstore topics describe`` shows). Raises InvalidArgumentError for a topic
    that is not compacted."""
    now_ms = log.clock.time_ms()
    reasons: dict[int, DueReason | None] = {}
    targets = _targets(log, topic, None)
    checkpoints = log.metadata.cleaner_checkpoints(targets[0].topic_id) if targets else {}
    for target in targets:
        found = checkpoints.get(target.partition)
        try:
            _, section = sections(log.partition_log(target.topic, target.partition),
                                  target.config, _offset(found), now_ms=now_ms)
        except StorageError:  # offline or damaged: describe shows why elsewhere
            reasons[target.partition] = None
            continue
        reasons[target.partition] = due_reason(
            section, target.config, delete_horizon_ms=_horizon(found), now_ms=now_ms)
    return reasons


def _checkpoint(log: Log, target: _Target) -> CleanerCheckpoint | None:
    return log.metadata.cleaner_checkpoints(target.topic_id).get(target.partition)


def _offset(checkpoint: CleanerCheckpoint | None) -> int:
    return checkpoint.offset if checkpoint is not None else 0


def _horizon(checkpoint: CleanerCheckpoint | None) -> int | None:
    return checkpoint.delete_horizon_ms if checkpoint is not None else None


def _estimate(log: Log, targets: list[_Target]) -> int:
    """Bytes a run will read: the dirty sections (map) and the cleanable segments (filter)."""
    total = 0
    now_ms = log.clock.time_ms()
    for target in targets:
        found = _checkpoint(log, target)
        try:
            _, section = sections(log.partition_log(target.topic, target.partition),
                                  target.config, _offset(found), now_ms=now_ms)
        except StorageError:
            continue  # damaged: reported by its run
        if section.has_dirty or (found is not None and found.delete_horizon_passed(now_ms)):
            map_pass = section.dirty_bytes
            filter_pass = section.clean_bytes + section.dirty_bytes
            total += map_pass + filter_pass
    return total


def _compact_partition(
    log: Log,
    target: _Target,
    offset_map: OffsetMap,
    holder: str,
    *,
    dry_run: bool,
    force: bool,
    progress: Callable[[int], None],
    stop: threading.Event | None,
) -> PartitionCompaction:
    store = log.metadata
    clock = log.clock
    lease: Lease | None = None
    if not dry_run:
        lease = store.acquire_lease(lease_name(target.topic_id, target.partition), holder,
                                    now_ms=clock.time_ms(), duration_ms=LEASE_DURATION_MS)
        if lease is None:
            held = store.read_lease(lease_name(target.topic_id, target.partition))
            return PartitionCompaction(
                target.topic, target.partition, CompactionStatus.BUSY,
                f"another compactor ({held.holder if held else 'unknown'}) holds the lease")

    def keep_going() -> bool:
        nonlocal lease
        if stop is not None and stop.is_set():
            return False
        if lease is None:
            return True
        now = clock.time_ms()
        renewed_ms = lease.expires_ms - LEASE_DURATION_MS
        if now - renewed_ms >= LEASE_DURATION_MS // 3:
            try:
                lease = store.renew_lease(lease, now_ms=now, duration_ms=LEASE_DURATION_MS)
            except LeaseLostError:
                return False
        return True

    def save(offset: int, delete_horizon_ms: int | None) -> None:
        store.set_cleaner_checkpoint(target.topic_id, target.partition, offset,
                                     updated_ms=clock.time_ms(), lease=lease,
                                     delete_horizon_ms=delete_horizon_ms)

    try:
        cleaner = PartitionCleaner(
            log.partition_log(target.topic, target.partition), target.config,
            offset_map=offset_map, clock=clock, dry_run=dry_run, force=force,
            progress=progress, keep_going=keep_going)
        found = _checkpoint(log, target)
        return cleaner.clean(_offset(found), save, delete_horizon_ms=_horizon(found))
    except (PartitionOfflineError, MissingSegmentError, CorruptFileError,
            InconsistentTopicIdError) as exc:
        return PartitionCompaction(target.topic, target.partition, CompactionStatus.DAMAGED,
                                   str(exc))
    except LeaseLostError:
        return PartitionCompaction(
            target.topic, target.partition, CompactionStatus.INTERRUPTED,
            "lost the lease to another compactor; the next run goes on")
    finally:
        if lease is not None:
            store.release_lease(lease)
