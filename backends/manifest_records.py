"""The tiered-segment manifest: which remote segments (objects in the object store) hold which
offsets of a partition. Value types shared by the metadata store and the tierer
(``logstore.tier``).

A :class:`RemoteSegment` is one row of the manifest (table ``remote_segments``): an immutable
object holding the batches of offsets ``[base_offset, next_offset)`` of one partition of one
topic incarnation (``topic_id``). Its ``state`` moves one way:

``copy-started`` (:data:`COPY_STARTED`)
    An upload is in progress. The object may or may not exist (yet), may be partial, and is
    never read. Entries in this state may overlap each other (two tierers racing to copy the
    same range) but they are not part of the log.
``copy-finished`` (:data:`COPY_FINISHED`)
    The object is complete and live: readers use it. The live segments of a partition never
    overlap; the store refuses, in the same transaction, any copy whose range overlaps a live
    segment (so of two racing copies of one range the first to finish wins and the other's
    finish fails with :class:`~logstore.errors.StaleVersionError`).
``delete-started`` (:data:`DELETE_STARTED`)
    Being deleted: readers must not use it any more; the object may still exist. Once the
    object is deleted the row is removed (``delete_remote_segment``).

Lifecycle: ``begin_remote_copy`` (insert, copy-started, version 1) -> upload the object ->
``finish_remote_copy`` (copy-finished) -> ... -> ``begin_remote_delete`` (delete-started) ->
delete the object -> ``delete_remote_segment`` (row gone). An abandoned copy goes
copy-started -> delete-started directly. Every transition is a compare-and-swap on ``version``
(1 at insert, +1 per transition). Because the manifest row is written before the object and
removed only after it, a crash at any point leaves at worst an orphan object (or a stale
copy-started / delete-started row to clean up), never a hole in a partition's live offsets.
Deleting a topic deletes its manifest rows; its objects become orphans for a cleaner to remove.

``topic`` is the topic's name at copy time (object keys contain it); the row is keyed by
``topic_id`` so a topic deleted and created again under the same name has an empty manifest.
Times are milliseconds from the caller's clock; the store never reads a clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final


class RemoteSegmentState(str, Enum):
    """The states of a manifest row (see the module docstring). ``RemoteSegment.state`` holds
    the plain string value."""

    COPY_STARTED = "copy-started"
    COPY_FINISHED = "copy-finished"
    DELETE_STARTED = "delete-started"


COPY_STARTED: Final = RemoteSegmentState.COPY_STARTED.value
COPY_FINISHED: Final = RemoteSegmentState.COPY_FINISHED.value
DELETE_STARTED: Final = RemoteSegmentState.DELETE_STARTED.value
#: Every state, in lifecycle order.
REMOTE_SEGMENT_STATES: Final = (COPY_STARTED, COPY_FINISHED, DELETE_STARTED)

#: Longest segment id (a uuid4 in hex is 32 characters; the column is VARCHAR(32)).
SEGMENT_ID_MAX_LENGTH: Final = 32
#: Longest object key (the column is VARCHAR(1024), S3's limit).
OBJECT_KEY_MAX_LENGTH: Final = 1024
#: Kafka's "no leader epoch" and "no timestamp" (the smallest values those fields accept).
NO_LEADER_EPOCH: Final = -1
NO_TIMESTAMP: Final = -1


@dataclass(frozen=True, slots=True)
class RemoteSegment:
    """One manifest row: the object ``object_key`` holds offsets ``[base_offset, next_offset)``
    of ``topic``/``partition`` (incarnation ``topic_id``).

    ``last_offset`` is the last offset of the last batch (``base_offset - 1`` if the segment
    holds no batch), ``next_offset`` the first offset after the segment (``> last_offset``; it
    may exceed ``last_offset + 1`` when compaction or aborted transactions left a gap).
    ``size_bytes`` is the object's size and ``data_bytes`` the batches' part of it (the rest is
    the index). ``max_timestamp`` is the largest batch max timestamp (-1: none), for time-based
    retention and offset-for-timestamp; ``batch_count`` and ``aborted_count`` describe the
    content; ``leader_epoch`` is the partition leader epoch of the last batch (-1: none).
    ``state`` is one of :data:`REMOTE_SEGMENT_STATES`; ``version`` the compare-and-swap counter.
    """

    segment_id: str
    topic_id: str
    topic: str
    partition: int
    base_offset: int
    last_offset: int
    next_offset: int
    object_key: str
    size_bytes: int
    data_bytes: int
    max_timestamp: int
    batch_count: int
    aborted_count: int
    leader_epoch: int
    state: str
    created_ms: int
    updated_ms: int
    version: int

    @property
    def is_live(self) -> bool:
        """True if readers may use the segment (state copy-finished)."""
        return self.state == COPY_FINISHED

    def overlaps(self, base_offset: int, next_offset: int) -> bool:
        """True if the segment shares an offset with ``[base_offset, next_offset)``."""
        return self.base_offset < next_offset and base_offset < self.next_offset
