"""What a compaction run did (or, with ``dry_run``, would do): per partition and in total."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass


class CompactionStatus(str, enum.Enum):
    """The outcome for one partition."""

    CLEANED = "cleaned"
    """Cleaned up to the first uncleanable offset (possibly in several rounds)."""
    DRY_RUN = "dry-run"
    """Nothing written; the figures say what one round would do."""
    NOT_DUE = "not-due"
    """Dirty ratio below ``min.cleanable.dirty.ratio``, ``max.compaction.lag.ms`` not reached
    and no delete horizon passed."""
    CLEAN = "clean"
    """No cleanable dirty data (everything is clean, too young, or in the active segment) and
    no delete horizon passed."""
    BUSY = "busy"
    """Another compactor holds this partition's lease."""
    INTERRUPTED = "interrupted"
    """Stopped early: the partition changed under the cleaner (retention, truncation, another
    cleaner), the lease was lost, or a shutdown was requested. Whatever was cleaned is kept;
    the next run goes on."""
    DAMAGED = "damaged"
    """The partition's files are missing or damaged (offline, or a hole in the range to clean;
    see ``logstore check``): not cleaned."""


class DueReason(str, enum.Enum):
    """Why the cleaner cleaned a partition (or would clean it now)."""

    DIRTY_RATIO = "dirty-ratio"
    """The dirty ratio reached ``min.cleanable.dirty.ratio``."""
    MAX_COMPACTION_LAG = "max-compaction-lag"
    """Dirty data waited longer than ``max.compaction.lag.ms``."""
    DELETE_HORIZON = "delete-horizon"
    """The earliest delete horizon the last cleaning left in the log passed: tombstones or
    transaction markers can go (Kafka 3.x schedules such logs too)."""
    FORCED = "forced"
    """Not due by any rule, cleaned because ``force`` was given."""

    @property
    def description(self) -> str:
        return _DUE_DESCRIPTIONS[self]


_DUE_DESCRIPTIONS = {
    DueReason.DIRTY_RATIO: "dirty ratio reached min.cleanable.dirty.ratio",
    DueReason.MAX_COMPACTION_LAG: "dirty data older than max.compaction.lag.ms",
    DueReason.DELETE_HORIZON: "delete horizon passed",
    DueReason.FORCED: "forced",
}


@dataclass(frozen=True, slots=True)
class PartitionCompaction:
    """One partition's result. Byte figures are segment sizes on disk (SQLite pages)."""

    topic: str
    partition: int
    status: CompactionStatus
    reason: str = ""
    dirty_ratio: float = 0.0
    """Before the run."""
    first_dirty_offset: int = 0
    """The cleaner checkpoint (or log start offset) before the run."""
    checkpoint_offset: int = 0
    """The cleaner checkpoint after the run (what a dry run would record)."""
    bytes_before: int = 0
    bytes_after: int = 0
    records_removed: int = 0
    tombstones_removed: int = 0
    markers_removed: int = 0
    batches_removed: int = 0
    batches_rewritten: int = 0
    segments_merged: int = 0
    rounds: int = 0
    duration_ms: int = 0
    due: DueReason | None = None
    """Why the partition was cleaned (or, in a dry run, would be); None if it was not due."""
    delete_horizon_ms: int | None = None
    """The earliest delete horizon left in the log: after the run if it cleaned (what it
    recorded with the checkpoint), else as recorded before; None if there is none. The
    partition becomes due when it passes."""

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["status"] = self.status.value
        out["due"] = None if self.due is None else self.due.value
        return out


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """Every partition a run looked at."""

    partitions: tuple[PartitionCompaction, ...]
    dry_run: bool = False

    @property
    def cleaned(self) -> tuple[PartitionCompaction, ...]:
        done = (CompactionStatus.CLEANED, CompactionStatus.DRY_RUN)
        return tuple(p for p in self.partitions if p.status in done)

    @property
    def bytes_before(self) -> int:
        return sum(p.bytes_before for p in self.cleaned)

    @property
    def bytes_after(self) -> int:
        return sum(p.bytes_after for p in self.cleaned)

    @property
    def records_removed(self) -> int:
        return sum(p.records_removed for p in self.partitions)

    @property
    def tombstones_removed(self) -> int:
        return sum(p.tombstones_removed for p in self.partitions)

    def to_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "records_removed": self.records_removed,
            "tombstones_removed": self.tombstones_removed,
            "partitions": [p.to_dict() for p in self.partitions],
        }
