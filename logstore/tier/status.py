"""Where a partition's data lives: local and remote offset ranges, bytes, objects, tierer lag.

Read from the manifest (metadata store) and the local segments only; it needs no object store,
so ``logstore tier status`` works on any host that sees the data directory.

Thread-safe (it only reads).
"""

from __future__ import annotations

from dataclasses import dataclass

from logstore.backends.manifest_records import COPY_FINISHED, COPY_STARTED
from logstore.config import TopicConfig
from logstore.tier.tierer import TierAccess, topic_records, untiered_segments


@dataclass(frozen=True, slots=True)
class PartitionTierStatus:
    """One partition's tiering state.

    ``remote_start_offset`` / ``remote_end_offset`` bound the live remote segments (None when
    there are none); the local range is [``first_local_offset``, ``log_end_offset``).
    ``lag_bytes`` / ``lag_segments``: sealed, stable local segments not tiered yet.
    """

    topic: str
    partition: int
    remote_storage_enable: bool
    log_start_offset: int
    first_local_offset: int
    log_end_offset: int
    local_bytes: int
    local_segments: int
    remote_start_offset: int | None
    remote_end_offset: int | None
    remote_bytes: int
    remote_objects: int
    copies_in_progress: int
    lag_segments: int
    lag_bytes: int


def tier_status(access: TierAccess, topic: str | None = None) -> list[PartitionTierStatus]:
    """The status of every partition (of ``topic``); raises UnknownTopicOrPartitionError for
    an unknown ``topic``."""
    metadata = access.metadata
    out: list[PartitionTierStatus] = []
    for record in topic_records(access, topic):
        name = record.name
        enabled = TopicConfig.from_overrides(record.configs).remote_storage_enable
        rows = metadata.remote_segments(record.topic_id)
        for partition in range(record.partition_count):
            mine = [r for r in rows if r.partition == partition]
            live = [r for r in mine if r.state == COPY_FINISHED]
            layout = access.partition_log(name, partition).layout()
            tiered_end = max((r.next_offset for r in live), default=None)
            lag = untiered_segments(layout, tiered_end)
            out.append(PartitionTierStatus(
                topic=name,
                partition=partition,
                remote_storage_enable=enabled,
                log_start_offset=layout.log_start_offset,
                first_local_offset=layout.segments[0].base_offset,
                log_end_offset=layout.log_end_offset,
                local_bytes=sum(s.size_bytes for s in layout.segments),
                local_segments=len(layout.segments),
                remote_start_offset=min((r.base_offset for r in live), default=None),
                remote_end_offset=tiered_end,
                remote_bytes=sum(r.size_bytes for r in live),
                remote_objects=len(live),
                copies_in_progress=sum(1 for r in mine if r.state == COPY_STARTED),
                lag_segments=len(lag) if enabled else 0,
                lag_bytes=sum(s.size_bytes for s in lag) if enabled else 0,
            ))
    return out
