"""Stored state of transactional producers: value types shared by the metadata store and the
transaction coordinator (``logstore.coordinator``).

A transactional id is one row (:class:`TransactionRecord`). The coordinator changes it only
through :meth:`MetadataStore.update_transaction`: it reads the record under the id's lock,
computes a :class:`TxnUpdate` with a pure function (``logstore.coordinator.txn_state``), and the
store writes it in the same transaction, together with any group offsets a commit makes
visible. Producer ids come from a one-row counter (:meth:`MetadataStore.allocate_producer_id`,
or the allocator the store hands to a step), unique across processes and hosts.

Identities: a producer holds a :class:`ProducerIdAndEpoch`. Every bump of the epoch (at init,
at the end of every transaction as in KIP-890, and when the coordinator aborts a timed-out
transaction) records the identity it replaced (``previous_*``) and why (``last_bump``), which
is how the coordinator tells a retry or an adoption from a zombie.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from logstore.backends.group_records import CommittedOffset

from logstore.types import TopicPartition

EMPTY = "Empty"
ONGOING = "Ongoing"
PREPARE_COMMIT = "PrepareCommit"
PREPARE_ABORT = "PrepareAbort"
COMPLETE_COMMIT = "CompleteCommit"
COMPLETE_ABORT = "CompleteAbort"
TXN_STATES = (EMPTY, ONGOING, PREPARE_COMMIT, PREPARE_ABORT, COMPLETE_COMMIT, COMPLETE_ABORT)
PREPARE_STATES = (PREPARE_COMMIT, PREPARE_ABORT)
COMPLETE_STATES = (COMPLETE_COMMIT, COMPLETE_ABORT)

#: Why the epoch was last bumped: a new instance initialized (the old one is fenced), the
#: producer ended a transaction (KIP-890), or the coordinator aborted a timed-out transaction
#: (the producer may adopt the new epoch by aborting).
BUMP_INIT = "init"
BUMP_END = "end"
BUMP_TIMEOUT = "timeout"
BUMP_REASONS = (BUMP_INIT, BUMP_END, BUMP_TIMEOUT)

TRANSACTIONAL_ID_MAX_LENGTH = 255
#: Kafka's ``transaction.max.timeout.ms`` default (15 minutes).
MAX_TRANSACTION_TIMEOUT_MS = 900_000
#: Producer epochs are int16 in RecordBatch v2. The last value is only ever used for the
#: markers of a producer id's last transaction: the producer is then handed a new producer id.
MAX_PRODUCER_EPOCH = 32767
#: The first producer id the allocator hands out.
FIRST_PRODUCER_ID = 1000
#: ``previous_producer_id`` / ``next_producer_id`` when there is none.
NO_PRODUCER_ID = -1

ProducerIdAllocator = Callable[[], int]
"""Returns a fresh, never used producer id (inside the store's transaction)."""

PendingOffsets = Mapping[str, Mapping[TopicPartition, CommittedOffset]]
"""Offsets sent to a transaction: group id -> partition -> offset."""


@dataclass(frozen=True, slots=True)
class ProducerIdAndEpoch:
    """A producer's identity: what its batches carry and what it presents to the coordinator."""

    producer_id: int
    epoch: int


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """The row of one transactional id.

    ``producer_id``/``producer_epoch``: the current identity. In a Prepare state it is the
    identity the markers carry (already bumped); if ``next_producer_id`` is set (the bump
    reached :data:`MAX_PRODUCER_EPOCH`), completion hands the producer ``(next_producer_id, 0)``.
    ``previous_producer_id``/``previous_epoch``: the identity the last bump replaced.
    ``partitions`` and ``pending_offsets`` belong to the transaction in progress (empty outside
    Ongoing and the Prepare states). ``start_ms``: when it became Ongoing (-1 when none is).
    ``version`` is the compare-and-swap counter (1 on creation, bumped by every write).
    """

    transactional_id: str
    producer_id: int
    producer_epoch: int
    state: str = EMPTY
    timeout_ms: int = 60_000
    partitions: frozenset[TopicPartition] = frozenset()
    pending_offsets: PendingOffsets = field(default_factory=dict)
    start_ms: int = -1
    update_ms: int = 0
    last_bump: str = BUMP_INIT
    previous_producer_id: int = NO_PRODUCER_ID
    previous_epoch: int = -1
    next_producer_id: int = NO_PRODUCER_ID
    version: int = 0

    @property
    def identity(self) -> ProducerIdAndEpoch:
        return ProducerIdAndEpoch(self.producer_id, self.producer_epoch)

    @property
    def previous_identity(self) -> ProducerIdAndEpoch:
        return ProducerIdAndEpoch(self.previous_producer_id, self.previous_epoch)

    @property
    def identity_after_completion(self) -> ProducerIdAndEpoch:
        """The identity the producer uses once the transaction in a Prepare state completes."""
        if self.next_producer_id != NO_PRODUCER_ID:
            return ProducerIdAndEpoch(self.next_producer_id, 0)
        return self.identity

    def timed_out(self, now_ms: int) -> bool:
        """An Ongoing transaction older than its timeout."""
        return self.state == ONGOING and self.start_ms + self.timeout_ms < now_ms


@dataclass(frozen=True, slots=True)
class TxnUpdate:
    """What one coordinator step writes.

    ``record``: the new row (its ``version`` is ignored: the store bumps it), or None to leave
    it alone. ``commit_offsets``: group offsets that become committed in the same database
    transaction (a transaction's pending offsets at CompleteCommit); a group that does not exist
    is created (Empty, generation 0), as a commit by a client without group management does.
    """

    record: TransactionRecord | None = None
    commit_offsets: PendingOffsets = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return self.record is None and not self.commit_offsets
