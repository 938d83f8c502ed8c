"""Log compaction: Kafka's log cleaner, run as a job (``log.compact()``, ``logstore compact``).

* :mod:`~logstore.compaction.offset_map` — the fixed-memory key -> latest offset map;
* :mod:`~logstore.compaction.batch_filter` — what is kept of each batch;
* :mod:`~logstore.compaction.cleaner` — cleaning one partition, round by round;
* :mod:`~logstore.compaction.job` — leases, checkpoints, every partition;
* :mod:`~logstore.compaction.report` — what a run did.

The segment rewriting itself (atomic, crash-safe, safe with concurrent appends and reads)
is the storage engine's: :mod:`logstore.log.rewrite`.
"""

from logstore.compaction.report import (
    CompactionReport,
    CompactionStatus,
    DueReason,
    PartitionCompaction,
)

__all__ = ["CompactionReport", "CompactionStatus", "DueReason", "PartitionCompaction"]
