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
  (producer id, first offset, marker offset) for read_committed readers. Markers are written by
  the transaction coordinator with the epoch it bumped at the end of the transaction (KIP-890),
  so they also fence any late batch of the old epoch. A marker whose epoch is not newer than the
  stored one is a duplicate (a coordinator redoing its work, possibly after the producer began
  its next transaction at that epoch) and is skipped.

Values are immutable; nothing here is thread-aware.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from logstore.errors import OutOfOrderSequenceError, ProducerFencedError, UnknownProducerIdError
from logstore.records.header import BatchHeader

MAX_TRACKED_BATCHES = 5
_SEQUENCE_LIMIT = 1 << 31


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

    def to_row(self) -> tuple[int, int, int, str, int | None, int]:
        return (self.producer_id, self.epoch, self.last_sequence,
                json.dumps([[b.first_sequence, b.last_sequence, b.first_offset, b.last_offset,
                             b.timestamp_ms] for b in self.batches]),
                self.txn_first_offset, self.last_timestamp_ms)

    @classmethod
    def from_row(cls, row: tuple[int, int, int, str, int | None, int]) -> ProducerEntry:
        producer_id, epoch, last_sequence, batches, txn_first, last_ts = row
        return cls(producer_id, epoch, last_sequence,
                   tuple(BatchMetadata(*b) for b in json.loads(batches)), txn_first, last_ts)


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


def apply(
    current: ProducerEntry | None,
    header: BatchHeader,
    base_offset: int,
    *,
    control_type: int | None = None,
    check: bool = True,
    now_ms: int | None = None,
) -> Outcome:
    """Apply one batch (to be appended at ``base_offset``) to a producer's state.

    ``control_type`` is the marker type (0 abort, 1 commit) of a control batch. With ``check``
    False (rebuilding from batches that were accepted before) no rule raises. ``now_ms``, the
    append time, is what idle producers expire by (the batch's own timestamp if not given: a
    producer may write old CreateTime timestamps).
    """
    producer_id, epoch = header.producer_id, header.producer_epoch
    seen_ms = header.max_timestamp if now_ms is None else now_ms
    last_offset = base_offset + header.last_offset_delta
    if header.is_control:
        # A genuine marker is always newer than every batch of its transaction (the
        # coordinator bumps the epoch to end it), so one that is not newer than the stored
        # epoch is a coordinator redoing finished work: it must not end the producer's next
        # transaction, which already runs at that epoch.
        if current is not None and epoch <= current.epoch:
            return Outcome(None, skip=True)
        first = current.txn_first_offset if current is not None else None
        aborted = None
        if control_type == 0 and first is not None:
            aborted = AbortedTxn(producer_id, first, last_offset)
        entry = ProducerEntry(producer_id, max(epoch, current.epoch if current else epoch),
                              last_sequence=-1, batches=(), txn_first_offset=None,
                              last_timestamp_ms=seen_ms)
        return Outcome(entry, aborted=aborted)

    first_sequence = header.base_sequence
    last_sequence = next_sequence(first_sequence, header.last_offset_delta)
    if current is None and check and first_sequence != 0:
        raise UnknownProducerIdError(
            f"producer {producer_id} has no state in this partition (it expired, or the topic "
            f"was re-created) and epoch {epoch} starts at sequence {first_sequence}, not 0")
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
    if header.is_transactional and txn_first is None:
        txn_first = base_offset
    recent = (*batches, BatchMetadata(first_sequence, last_sequence, base_offset, last_offset,
                                      header.max_timestamp))[-MAX_TRACKED_BATCHES:]
    return Outcome(ProducerEntry(producer_id, epoch, last_sequence, recent, txn_first, seen_ms))
