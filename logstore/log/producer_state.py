"""Per-partition state of idempotent and transactional producers (Kafka's ProducerStateManager).

For each producer id that wrote to the partition: its current epoch, the sequence number of its
last batch, the offsets of its last five batches (to answer a retried batch with the offsets it
already got), and the first offset of its ongoing transaction (which holds the last stable
offset back). :func:`apply` is the rule book, a pure function used both when appending (inside
the segment's write transaction) and when rebuilding the state after a truncation.

Rules for a batch with producer id >= 0 (``epoch`` and ``base_sequence`` from its header):

* epoch lower than the stored one: the producer was fenced -> ProducerFencedError.
* no state for the producer id (it never wrote here, its state expired, or the topic was
  deleted and re-created): the batch must start a sequence, base sequence 0; any other is
  UnknownProducerIdError (Kafka's UNKNOWN_PRODUCER_ID), which tells the producer to reset its
  sequences (KIP-360) rather than report a gap it cannot fix.
* epoch higher than the stored one: a new epoch; its first batch must have base sequence 0
  (else OutOfOrderSequenceError).
* same epoch: a batch whose sequences equal one of the last five is a duplicate (the retry of an
  append whose acknowledgement was lost): it is not appended again and its original offsets are
  returned. Otherwise its base sequence must follow the last one (else OutOfOrderSequenceError).
  Sequences wrap from 2**31 - 1 to 0.
* a transactional batch starts the producer's transaction in this partition if none is ongoing.
* a control batch (commit/abort marker) ends it; an ABORT marker records the aborted range
  (producer id, first offset, marker offset) for read_committed readers. Markers come from the
  transaction coordinator, in one of two forms. KIP-890's: the coordinator bumped the epoch to
  end the transaction, so the marker's epoch is newer than the stored one; it also fences any
  late batch of the old epoch, and the producer starts its sequences again at 0. Classic (the
  Kafka clients' EndTxn before v5, which cannot hand the producer a new epoch): the marker
  carries the producer's own epoch and the producer goes on with its sequences.
* markers are guarded by *claims*: every claim to write a transaction's markers takes a
  per-transactional-id number that only grows (the coordinator's record version), carried in
  the control record's coordinatorEpoch field (modulo 2**31, compared as serial numbers); the
  partition keeps the highest it has seen per producer (``marker_claim``, -1 when none). A
  marker of an older epoch, or of the same epoch with a claim that is not newer, is skipped: it
  is a marker the partition already has, or a coordinator redoing finished work late, possibly
  after the producer began its next transaction, which it must not end. Only the latest
  claimant completes a transaction, after writing every marker, so a late claimant always
  finds a higher claim in the partitions.
* a transactional batch whose transaction the broker verified at coordinator version ``v``
  (``verified_claim``) is refused when a marker with a higher claim has arrived since: the
  transaction it belongs to has ended (Kafka 3.6's verification guard, KIP-890 part 1).

Values are immutable; nothing here is thread-aware.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from logstore.errors import (
    InvalidTxnStateError,
    OutOfOrderSequenceError,
    ProducerFencedError,
    UnknownProducerIdError,
)
from logstore.records.control import COORDINATOR_EPOCH_LIMIT, ControlRecord, ControlType
from logstore.records.header import BatchHeader

MAX_TRACKED_BATCHES = 5
_SEQUENCE_LIMIT = 1 << 31
#: ``marker_claim`` of a producer no marker has reached yet.
NO_CLAIM = -1


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    """Where one recent batch of a producer went."""

    first_sequence: int
    last_sequence: int
    first_offset: int
    last_offset: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class ProducerEntry:
    """A producer's state in one partition."""

    producer_id: int
    epoch: int
    last_sequence: int = -1
    batches: tuple[BatchMetadata, ...] = ()
    txn_first_offset: int | None = None
    last_timestamp_ms: int = -1  # when it last appended here (expiry)
    marker_claim: int = NO_CLAIM  # the highest claim of a marker seen here

    def to_row(self) -> tuple[int, int, int, str, int | None, int, int]:
        return (self.producer_id, self.epoch, self.last_sequence,
                json.dumps([[b.first_sequence, b.last_sequence, b.first_offset, b.last_offset,
                             b.timestamp_ms] for b in self.batches]),
                self.txn_first_offset, self.last_timestamp_ms, self.marker_claim)

    @classmethod
    def from_row(cls, row: tuple[int, int, int, str, int | None, int, int]) -> ProducerEntry:
        producer_id, epoch, last_sequence, batches, txn_first, last_ts, claim = row
        return cls(producer_id, epoch, last_sequence,
                   tuple(BatchMetadata(*b) for b in json.loads(batches)), txn_first, last_ts,
                   claim)


@dataclass(frozen=True, slots=True)
class AbortedTxn:
    """A transaction aborted in this partition: its data spans [first_offset, last_offset)."""

    producer_id: int
    first_offset: int
    last_offset: int  # the offset of the ABORT marker


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`apply` decided for one batch."""

    entry: ProducerEntry | None  # the new state (None: unchanged)
    duplicate: BatchMetadata | None = None  # set: do not append; answer with these offsets
    skip: bool = False  # a duplicate marker: do not append, nothing to answer
    aborted: AbortedTxn | None = None


def next_sequence(sequence: int, count: int = 1) -> int:
    return (sequence + count) % _SEQUENCE_LIMIT


def claim_after(claim: int, other: int) -> bool:
    """True if ``claim`` was taken after ``other`` (serial number arithmetic, RFC 1982: the
    two are never 2**30 apart). Every claim is after NO_CLAIM; NO_CLAIM is after none."""
    if claim < 0:
        return False
    if other < 0:
        return True
    return 0 < (claim - other) % COORDINATOR_EPOCH_LIMIT < COORDINATOR_EPOCH_LIMIT // 2


def apply(
    current: ProducerEntry | None,
    header: BatchHeader,
    base_offset: int,
    *,
    marker: ControlRecord | None = None,
    verified_claim: int | None = None,
    check: bool = True,
    now_ms: int | None = None,
) -> Outcome:
    """Apply one batch (to be appended at ``base_offset``) to a producer's state.

    ``marker`` is the parsed record of a control batch. ``verified_claim``: the coordinator
    version at which a transactional batch's transaction was verified (None: not verified).
    With ``check`` False (rebuilding from batches that were accepted before) no rule raises.
    ``now_ms``, the append time, is what idle producers expire by (the batch's own timestamp
    if not given: a producer may write old CreateTime timestamps).
    """
    producer_id, epoch = header.producer_id, header.producer_epoch
    seen_ms = header.max_timestamp if now_ms is None else now_ms
    last_offset = base_offset + header.last_offset_delta
    if header.is_control:
        return _apply_marker(current, header, last_offset, marker, seen_ms)

    first_sequence = header.base_sequence
    last_sequence = next_sequence(first_sequence, header.last_offset_delta)
    if current is None and check and first_sequence != 0:
        raise UnknownProducerIdError(
            f"producer {producer_id} has no state in this partition (it expired, or the topic "
            f"was re-created) and epoch {epoch} starts at sequence {first_sequence}, not 0")
    claim = current.marker_claim if current is not None else NO_CLAIM
    if current is None or epoch > current.epoch:
        if check and first_sequence != 0:
            raise OutOfOrderSequenceError(
                f"producer {producer_id} epoch {epoch} starts at sequence {first_sequence}, "
                "not 0")
        batches: tuple[BatchMetadata, ...] = ()
        txn_first = current.txn_first_offset if current is not None else None
    else:
        if check and epoch < current.epoch:
            raise ProducerFencedError(
                f"producer {producer_id} epoch {epoch} is fenced (epoch {current.epoch} is "
                "current)")
        for batch in current.batches:
            if batch.first_sequence == first_sequence and batch.last_sequence == last_sequence:
                return Outcome(None, duplicate=batch)
        expected = next_sequence(current.last_sequence)
        if check and first_sequence != expected:
            raise OutOfOrderSequenceError(
                f"producer {producer_id} sent sequence {first_sequence}, expected {expected}")
        batches = current.batches
        txn_first = current.txn_first_offset
    if (check and header.is_transactional and verified_claim is not None
            and claim != NO_CLAIM and claim_after(claim, verified_claim)):
        raise InvalidTxnStateError(
            f"producer {producer_id}: the transaction this batch was sent in has ended (a "
            "marker arrived after the batch was verified)")
    if header.is_transactional and txn_first is None:
        txn_first = base_offset
    recent = (*batches, BatchMetadata(first_sequence, last_sequence, base_offset, last_offset,
                                      header.max_timestamp))[-MAX_TRACKED_BATCHES:]
    return Outcome(ProducerEntry(producer_id, epoch, last_sequence, recent, txn_first, seen_ms,
                                 claim))


def _apply_marker(
    current: ProducerEntry | None, header: BatchHeader, last_offset: int,
    marker: ControlRecord | None, seen_ms: int,
) -> Outcome:
    """A COMMIT/ABORT marker (see the module docstring for its rules)."""
    producer_id, epoch = header.producer_id, header.producer_epoch
    claim = marker.coordinator_epoch if marker is not None else NO_CLAIM
    if current is not None and (epoch < current.epoch or (
            epoch == current.epoch and not claim_after(claim, current.marker_claim))):
        return Outcome(None, skip=True)
    first = current.txn_first_offset if current is not None else None
    aborted = None
    if marker is not None and marker.type == ControlType.ABORT and first is not None:
        aborted = AbortedTxn(producer_id, first, last_offset)
    if current is not None and epoch == current.epoch:
        # Classic: the producer goes on with its sequences.
        entry = ProducerEntry(producer_id, epoch, current.last_sequence, current.batches,
                              txn_first_offset=None, last_timestamp_ms=seen_ms,
                              marker_claim=claim)
    else:
        entry = ProducerEntry(producer_id, epoch, last_sequence=-1, batches=(),
                              txn_first_offset=None, last_timestamp_ms=seen_ms,
                              marker_claim=claim)
    return Outcome(entry, aborted=aborted)
