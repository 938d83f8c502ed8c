"""Stored state of the log cleaner: value types shared by the metadata store and the compactor
(``logstore.compaction``).

:class:`Lease` is a generic named lease: whoever holds the lease ``name`` owns the work it
names until ``expires_ms``. The log cleaner takes ``compactor/<topic_id>/<partition>`` before
cleaning a partition; later features reuse leases for partition leadership. A lease is taken
with :meth:`MetadataStore.acquire_lease`, kept with ``renew_lease`` and given up with
``release_lease``. Its ``epoch`` is the fencing token: it grows by one every time the lease is
taken after being free, expired or released (never on a renewal), so a holder that lost its
lease, even one that later took it again, carries a stale epoch, and every write fenced by the
lease (:meth:`MetadataStore.set_cleaner_checkpoint` with ``lease=``) checks holder and epoch in
the same database transaction.

:class:`CleanerCheckpoint` records how far the log of a partition is clean (Kafka's
cleaner-offset-checkpoint): every offset below ``offset`` has been compacted. It is keyed by the
topic's incarnation id (``TopicRecord.topic_id``), so a topic deleted and created again under
the same name starts with no checkpoints.

Times are milliseconds from the caller's clock (``logstore.clock``); the store never reads a
clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Longest lease name and holder (the columns are VARCHAR(255)).
LEASE_NAME_MAX_LENGTH = 255
LEASE_HOLDER_MAX_LENGTH = 255
#: A topic id is a uuid4 in its 36-character text form (``topics.topic_id``).
TOPIC_ID_MAX_LENGTH = 36


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease as held: ``holder`` has held ``name`` since ``acquired_ms`` (the start of this
    ``epoch``; renewals keep it) until ``expires_ms``.

    A lease whose ``expires_ms`` has passed may be taken over by another holder (with the next
    epoch) but, until someone does, its holder can still renew it and its fenced writes still
    succeed: the epoch, not the clock, is what fences.
    """

    name: str
    holder: str
    epoch: int
    acquired_ms: int
    expires_ms: int

    def expired(self, now_ms: int) -> bool:
        """True once ``now_ms`` reaches ``expires_ms`` (the lease may then be taken over)."""
        return self.expires_ms <= now_ms


@dataclass(frozen=True, slots=True)
class CleanerCheckpoint:
    """How far the log of one partition is clean: offsets below ``offset`` are compacted.

    ``topic_id`` is the topic's incarnation id, ``updated_ms`` when the checkpoint was written.
    ``delete_horizon_ms`` is the earliest KIP-534 delete horizon the cleaner left in the log (a
    tombstone or transaction marker it keeps until then), None if it left none: once it
    passes, the partition is due for cleaning whatever its dirty ratio (as Kafka 3.x).
    """

    topic_id: str
    partition: int
    offset: int
    updated_ms: int
    delete_horizon_ms: int | None = None

    def delete_horizon_passed(self, now_ms: int) -> bool:
        """True once ``now_ms`` reaches the earliest delete horizon (there is one)."""
        return self.delete_horizon_ms is not None and self.delete_horizon_ms <= now_ms
