"""The transaction coordinator's state machine (Kafka's, with KIP-890's epoch bump at the end of
every transaction) as pure functions.

Each step takes the transactional id's record as read under its lock (None: unknown id), the
request, the current time and an allocator of fresh producer ids, and returns the
:class:`TxnUpdate` to write plus a result. Nothing here does I/O, so every transition is tested
with plain values; ``transaction_coordinator`` runs the steps inside the metadata store's
transaction and writes the markers between them.

Protocol outcomes (fenced, aborted, invalid state, concurrent) are *returned* as exception
instances, like ``group_state`` does, and raised by the coordinator after the store call; only
invalid arguments raise inside a step (nothing is written then).

States and transitions::

    (none) --init--> Empty
    Empty | CompleteCommit | CompleteAbort --init--> Empty (epoch+1, "init": fences)
    Empty | CompleteCommit | CompleteAbort --add_partitions / add_offsets--> Ongoing
    Ongoing --add_partitions / add_offsets--> Ongoing
    Ongoing --end(commit)--> PrepareCommit (epoch+1, "end") --markers, complete--> CompleteCommit
    Ongoing --end(abort)--> PrepareAbort (epoch+1, "end") --markers, complete--> CompleteAbort
    Ongoing --classic end(commit / abort)--> PrepareCommit / PrepareAbort (same epoch)
        --markers, complete--> CompleteCommit / CompleteAbort
    Ongoing --timed out / force abort--> PrepareAbort (epoch+1, "timeout") --> CompleteAbort
    Ongoing --init--> PrepareAbort (epoch+1, "init") --> CompleteAbort --> Empty (epoch+1)
    PrepareX --init / complete_pending--> CompleteX (markers written again first)
    Empty | CompleteCommit | CompleteAbort --unused for transactional.id.expiration.ms-->
        (none): the row is deleted (:func:`expired`); a later init starts afresh

Rules:

* A request carries the producer's identity (producer id, epoch). It is *current* if it equals
  the record's. It is the *previous* identity (the one the last bump replaced) of a
  transaction that is Prepare*/Complete*: after an "end" bump that is the producer retrying
  end_transaction (the same decision succeeds again, returning the same identity; the other
  decision is InvalidTxnStateError); after a "timeout" bump it is the owner of a transaction
  the coordinator aborted (TransactionAbortedError, except end_transaction(abort), which
  succeeds and hands it the bumped identity: it adopts it). Anything else, including every
  identity replaced by an "init" bump, is ProducerFencedError.
* Markers carry the bumped epoch, so a delayed write of a finished transaction (older epoch)
  can never join the next one. Classic ends (``bump=False``: Kafka clients whose EndTxn, before
  v5, cannot hand them a new epoch) keep the producer's epoch: their markers carry it, and a
  retried classic end of a completed transaction with the same decision succeeds (Kafka's
  rule). A producer never holds epoch 32767
  (:data:`MAX_PRODUCER_EPOCH`): a bump that reaches it is used for markers only and the
  producer is handed a new producer id with epoch 0 (allocated at prepare time, taken over at
  completion); an init bump that would reach it allocates the new producer id at once.
* Pending offsets become the groups' committed offsets in the same write as CompleteCommit;
  an abort drops them.
* Writing markers takes a *claim*: the step that prepares the transaction, or a later
  :func:`claim` (a retry, recovery, another process), writes the record, and the record's new
  version is the claim. Markers carry it (``producer_state`` skips a marker whose claim is
  older than one the partition has seen from that producer), and only the latest claimant may
  complete: completion is a compare-and-swap on (state, identity, version), so of several
  processes finishing the same prepared transaction exactly one completes it, after writing
  every marker, and a stalled earlier claimant can never end the producer's next transaction.
* Expiry (Kafka's ``transactional.id.expiration.ms``) removes only an id with no transaction
  in progress whose record was last written that long ago, and only at the version that was
  judged (the store's compare-and-swap), so an id a producer uses meanwhile stays. An expired id
  has no memory of its producer id or epochs: its next init gets a new producer id, epoch 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from logstore.backends.group_records import GROUP_ID_MAX_LENGTH, CommittedOffset, GroupSnapshot
from logstore.backends.txn_records import (
    BUMP_END,
    BUMP_INIT,
    BUMP_TIMEOUT,
    COMPLETE_ABORT,
    COMPLETE_COMMIT,
    COMPLETE_STATES,
    EMPTY,
    MAX_PRODUCER_EPOCH,
    MAX_TRANSACTION_TIMEOUT_MS,
    NO_PRODUCER_ID,
    ONGOING,
    PREPARE_ABORT,
    PREPARE_COMMIT,
    PREPARE_STATES,
    ProducerIdAllocator,
    ProducerIdAndEpoch,
    TransactionRecord,
    TxnUpdate,
)
from logstore.errors import (
    CommitFailedError,
    ConcurrentTransactionsError,
    InvalidArgumentError,
    InvalidGroupIdError,
    InvalidTxnStateError,
    LogstoreError,
    ProducerFencedError,
    TransactionAbortedError,
    TransactionalIdNotFoundError,
)
from logstore.types import TopicPartition

NO_GENERATION = -1
#: Kafka's ``transactional.id.expiration.ms`` default (7 days).
DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS = 7 * 24 * 60 * 60 * 1000
#: States in which a transactional id may expire: no transaction in progress.
EXPIRABLE_STATES = (EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT)


@dataclass(frozen=True, slots=True)
class Completion:
    """A transaction in a Prepare state: write these markers, then complete it.

    ``producer_id``/``producer_epoch`` are the markers' (the bumped epoch, or the producer's
    own after a classic end); ``result`` is the identity the producer uses once the transaction
    is complete. ``claim``: the record version that entitles this holder to write the markers
    and complete (None: not claimed yet, take one with :func:`claim` first).
    """

    transactional_id: str
    producer_id: int
    producer_epoch: int
    commit: bool
    partitions: tuple[TopicPartition, ...]
    result: ProducerIdAndEpoch
    claim: int | None = None

    @property
    def claim_number(self) -> int:
        """The claim; InvalidTxnStateError if none was taken yet."""
        if self.claim is None:
            raise InvalidTxnStateError(
                f"the completion of {self.transactional_id!r} holds no claim")
        return self.claim


def completion_of(record: TransactionRecord, *, claim: int | None = None) -> Completion:
    """The work that finishes ``record``, which must be in a Prepare state."""
    if record.state not in PREPARE_STATES:
        raise InvalidTxnStateError(
            f"transactional id {record.transactional_id!r} is {record.state}, not prepared"
        )
    return Completion(
        transactional_id=record.transactional_id,
        producer_id=record.producer_id,
        producer_epoch=record.producer_epoch,
        commit=record.state == PREPARE_COMMIT,
        partitions=tuple(sorted(record.partitions)),
        result=record.identity_after_completion,
        claim=claim,
    )


def _claimed(written: TransactionRecord) -> Completion:
    """The completion of a prepared record this step writes: its new version is the claim."""
    return completion_of(written, claim=written.version + 1)


# --- validation ----------------------------------------------------------------------------------


def check_timeout(timeout_ms: object) -> int:
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or not (
        1 <= timeout_ms <= MAX_TRANSACTION_TIMEOUT_MS
    ):
        raise InvalidArgumentError(
            f"transaction timeout must be an int of 1 to {MAX_TRANSACTION_TIMEOUT_MS} ms, "
            f"got {timeout_ms!r}"
        )
    return timeout_ms


def expired(record: TransactionRecord, now_ms: int, expiration_ms: int) -> bool:
    """True if ``record``'s transactional id may be removed at ``now_ms``: no transaction in
    progress, and its record not written for ``expiration_ms`` (an init and the first send or
    offsets of every transaction write it)."""
    return record.state in EXPIRABLE_STATES and record.update_ms + expiration_ms <= now_ms


def check_identity(producer_id: object, epoch: object) -> ProducerIdAndEpoch:
    if isinstance(producer_id, bool) or not isinstance(producer_id, int) or producer_id < 0:
        raise InvalidArgumentError(f"producer id must be an int >= 0, got {producer_id!r}")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not (
        0 <= epoch <= MAX_PRODUCER_EPOCH
    ):
        raise InvalidArgumentError(
            f"producer epoch must be an int of 0 to {MAX_PRODUCER_EPOCH}, got {epoch!r}"
        )
    return ProducerIdAndEpoch(producer_id, epoch)


def _check_partition(tp: object) -> TopicPartition:
    if not (isinstance(tp, TopicPartition) and isinstance(tp.topic, str) and tp.topic
            and isinstance(tp.partition, int) and not isinstance(tp.partition, bool)
            and tp.partition >= 0):
        raise InvalidArgumentError(f"expected a TopicPartition, got {tp!r}")
    return tp


def check_partitions(partitions: Iterable[TopicPartition]) -> frozenset[TopicPartition]:
    if isinstance(partitions, (str, bytes, TopicPartition)):
        raise InvalidArgumentError(f"expected an iterable of TopicPartition, got {partitions!r}")
    return frozenset(_check_partition(tp) for tp in partitions)


def check_group_id(group_id: object) -> str:
    if not isinstance(group_id, str) or not 1 <= len(group_id) <= GROUP_ID_MAX_LENGTH:
        raise InvalidGroupIdError(
            f"group id must be a string of 1 to {GROUP_ID_MAX_LENGTH} characters, got {group_id!r}"
        )
    return group_id


def check_offsets(
    offsets: Mapping[TopicPartition, CommittedOffset]
) -> dict[TopicPartition, CommittedOffset]:
    if not isinstance(offsets, Mapping):
        raise InvalidArgumentError(f"offsets must be a mapping, got {type(offsets).__name__}")
    for tp, committed in offsets.items():
        _check_partition(tp)
        # Checked in full: a value the store cannot encode and decode would spoil the row.
        if not (isinstance(committed, CommittedOffset) and isinstance(committed.metadata, str)
                and all(isinstance(n, int) and not isinstance(n, bool) for n in (
                    committed.offset, committed.leader_epoch, committed.commit_ms))
                and committed.offset >= 0):
            raise InvalidArgumentError(
                f"offset of {tp} must be a CommittedOffset with an offset >= 0, got {committed!r}"
            )
    return dict(offsets)


# --- who is asking -------------------------------------------------------------------------------

_CURRENT = "current"
_ENDED = "ended"  # the previous identity, replaced by its own end_transaction
_TIMED_OUT = "timed out"  # the previous identity, replaced by a timeout (or forced) abort


def _caller(
    record: TransactionRecord | None, tid: str, producer_id: int, epoch: int
) -> tuple[TransactionRecord, str] | LogstoreError:
    """The record and who the caller is to it, or the error for a caller that is not known."""
    if record is None:
        return TransactionalIdNotFoundError(
            f"transactional id {tid!r} is unknown (never initialized, or expired after "
            "transactional.id.expiration.ms unused): call init_producer_id first"
        )
    identity = ProducerIdAndEpoch(producer_id, epoch)
    if identity == record.identity:
        return record, _CURRENT
    if identity == record.previous_identity and record.state in PREPARE_STATES + COMPLETE_STATES:
        if record.last_bump == BUMP_END:
            return record, _ENDED
        if record.last_bump == BUMP_TIMEOUT:
            return record, _TIMED_OUT
    return ProducerFencedError(
        f"producer {producer_id} epoch {epoch} is fenced: transactional id {tid!r} has moved "
        f"on to producer {record.producer_id} epoch {record.producer_epoch}"
    )


def _aborted(tid: str) -> TransactionAbortedError:
    return TransactionAbortedError(
        f"the transaction of {tid!r} timed out and was aborted: abort it to continue"
    )


def _ended(tid: str, producer_id: int, epoch: int) -> ProducerFencedError:
    return ProducerFencedError(
        f"producer {producer_id} epoch {epoch} of {tid!r} ended its transaction: it must use the "
        "identity end_transaction returned"
    )


# --- transitions ---------------------------------------------------------------------------------


def _prepare(
    record: TransactionRecord, commit: bool, reason: str, now_ms: int,
    allocate: ProducerIdAllocator, *, bump: bool = True,
) -> TransactionRecord:
    """Ongoing -> PrepareCommit/PrepareAbort with the epoch bumped for the markers (or kept,
    for a classic end: the last bump stays what it was)."""
    state = PREPARE_COMMIT if commit else PREPARE_ABORT
    if not bump:
        return replace(record, state=state, update_ms=now_ms)
    epoch = record.producer_epoch + 1
    next_producer_id = NO_PRODUCER_ID
    if epoch >= MAX_PRODUCER_EPOCH:
        # The last epoch of this producer id: markers only. (min() keeps a producer that
        # somehow holds the last epoch working: its markers then reuse that epoch.)
        epoch = min(epoch, MAX_PRODUCER_EPOCH)
        next_producer_id = allocate()
    return replace(
        record,
        producer_epoch=epoch,
        state=state,
        update_ms=now_ms,
        last_bump=reason,
        previous_producer_id=record.producer_id,
        previous_epoch=record.producer_epoch,
        next_producer_id=next_producer_id,
    )


def _begin(record: TransactionRecord, now_ms: int) -> TransactionRecord:
    return replace(record, state=ONGOING, partitions=frozenset(), pending_offsets={},
                   start_ms=now_ms, update_ms=now_ms)


def _outcome(record: TransactionRecord) -> ProducerIdAndEpoch | Completion:
    """What a retry (or adoption) of the transaction's end gets: the work still to do, or the
    identity the producer uses next."""
    if record.state in PREPARE_STATES:
        return completion_of(record)
    return record.identity


# --- steps ---------------------------------------------------------------------------------------


def init_producer_id(
    record: TransactionRecord | None,
    tid: str,
    timeout_ms: int,
    now_ms: int,
    allocate: ProducerIdAllocator,
) -> tuple[TxnUpdate, ProducerIdAndEpoch | Completion]:
    """Register a producer instance for ``tid``, fencing every earlier one.

    Returns the new identity, or a :class:`Completion` when a transaction must be finished
    first (an Ongoing one is aborted: moved to PrepareAbort here); the coordinator then
    finishes it and calls this step again.
    """
    check_timeout(timeout_ms)
    if record is None:
        created = TransactionRecord(
            transactional_id=tid, producer_id=allocate(), producer_epoch=0,
            timeout_ms=timeout_ms, update_ms=now_ms, last_bump=BUMP_INIT,
        )
        return TxnUpdate(created), created.identity
    if record.state == ONGOING:
        prepared = _prepare(record, False, BUMP_INIT, now_ms, allocate)
        return TxnUpdate(prepared), _claimed(prepared)
    if record.state in PREPARE_STATES:
        return TxnUpdate(), completion_of(record)
    producer_id, epoch = record.producer_id, record.producer_epoch + 1
    if epoch >= MAX_PRODUCER_EPOCH:
        producer_id, epoch = allocate(), 0
    bumped = replace(
        record,
        producer_id=producer_id,
        producer_epoch=epoch,
        state=EMPTY,
        timeout_ms=timeout_ms,
        partitions=frozenset(),
        pending_offsets={},
        start_ms=-1,
        update_ms=now_ms,
        last_bump=BUMP_INIT,
        previous_producer_id=record.producer_id,
        previous_epoch=record.producer_epoch,
        next_producer_id=NO_PRODUCER_ID,
    )
    return TxnUpdate(bumped), bumped.identity


def add_partitions(
    record: TransactionRecord | None,
    tid: str,
    producer_id: int,
    epoch: int,
    partitions: Iterable[TopicPartition],
    now_ms: int,
) -> tuple[TxnUpdate, LogstoreError | None]:
    """Add partitions to the transaction, starting one if none is ongoing."""
    check_identity(producer_id, epoch)
    wanted = check_partitions(partitions)
    started = _ongoing(record, tid, producer_id, epoch, now_ms)
    if isinstance(started, LogstoreError):
        return TxnUpdate(), started
    if wanted <= started.partitions and started is record:
        return TxnUpdate(), None
    return TxnUpdate(replace(started, partitions=started.partitions | wanted,
                             update_ms=now_ms)), None


def check_group_member(
    group: GroupSnapshot, group_id: str, member_id: str, generation: int
) -> CommitFailedError | None:
    """KIP-447: offsets sent with a consumer's member id and generation are accepted only from
    a member of the group's current generation. Without them (``""``, -1) nothing is checked."""
    if not member_id and generation == NO_GENERATION:
        return None
    member = group.member(member_id)
    current = group.group.generation if group.group is not None else None
    if member is None or generation != current or member.join_generation != current:
        return CommitFailedError(
            f"member {member_id!r} generation {generation} is not a current member of group "
            f"{group_id!r} (generation {current}): its offsets are not accepted"
        )
    return None


def add_offsets(
    record: TransactionRecord | None,
    tid: str,
    producer_id: int,
    epoch: int,
    group_id: str,
    offsets: Mapping[TopicPartition, CommittedOffset],
    now_ms: int,
    *,
    group: GroupSnapshot | None = None,
    member_id: str = "",
    generation: int = NO_GENERATION,
) -> tuple[TxnUpdate, LogstoreError | None]:
    """Add a group's offsets to the transaction (later ones win per partition), starting a
    transaction if none is ongoing. ``group`` is the group as read just before (needed only
    with ``member_id``/``generation``). A ``commit_ms`` of 0 is set to ``now_ms``."""
    check_identity(producer_id, epoch)
    check_group_id(group_id)
    wanted = check_offsets(offsets)
    started = _ongoing(record, tid, producer_id, epoch, now_ms)
    if isinstance(started, LogstoreError):
        return TxnUpdate(), started
    fenced = check_group_member(group or GroupSnapshot(None), group_id, member_id, generation)
    if fenced is not None:
        return TxnUpdate(), fenced
    pending = {g: dict(o) for g, o in started.pending_offsets.items()}
    merged = pending.setdefault(group_id, {})
    for tp, committed in wanted.items():
        merged[tp] = committed if committed.commit_ms else replace(committed, commit_ms=now_ms)
    return TxnUpdate(replace(started, pending_offsets=pending, update_ms=now_ms)), None


def _ongoing(
    record: TransactionRecord | None, tid: str, producer_id: int, epoch: int, now_ms: int
) -> TransactionRecord | LogstoreError:
    """The record with a transaction ongoing (``record`` itself if one already was), or the
    error for a caller that may not add to it."""
    checked = _caller(record, tid, producer_id, epoch)
    if isinstance(checked, LogstoreError):
        return checked
    current, caller = checked
    if caller == _TIMED_OUT:
        return _aborted(tid)
    if caller == _ENDED:
        return _ended(tid, producer_id, epoch)
    if current.state in PREPARE_STATES:
        return ConcurrentTransactionsError(
            f"the previous transaction of {tid!r} is still completing: retry")
    if current.state == ONGOING:
        return current
    return _begin(current, now_ms)


def end_transaction(
    record: TransactionRecord | None,
    tid: str,
    producer_id: int,
    epoch: int,
    commit: bool,
    now_ms: int,
    allocate: ProducerIdAllocator,
    *,
    bump: bool = True,
) -> tuple[TxnUpdate, ProducerIdAndEpoch | Completion | LogstoreError]:
    """Commit or abort the ongoing transaction; ``bump`` False for a classic end (the
    producer keeps its epoch).

    Returns the :class:`Completion` to finish (markers, then :func:`complete`; its ``result``
    is the identity the producer uses next), or that identity directly when there is nothing
    left to do (aborting with no transaction ongoing; a retry of a completed end).
    """
    check_identity(producer_id, epoch)
    if not isinstance(commit, bool):
        raise InvalidArgumentError(f"commit must be a bool, got {commit!r}")
    checked = _caller(record, tid, producer_id, epoch)
    if isinstance(checked, LogstoreError):
        return TxnUpdate(), checked
    record, caller = checked
    decision = "commit" if commit else "abort"
    if caller in (_ENDED, _TIMED_OUT):
        if caller == _TIMED_OUT and commit:
            return TxnUpdate(), _aborted(tid)
        if record.state not in ((PREPARE_COMMIT, COMPLETE_COMMIT) if commit
                                else (PREPARE_ABORT, COMPLETE_ABORT)):
            return TxnUpdate(), InvalidTxnStateError(
                f"cannot {decision} the transaction of {tid!r}: it is already {record.state}")
        return TxnUpdate(), _outcome(record)
    if record.state == ONGOING:
        prepared = _prepare(record, commit, BUMP_END, now_ms, allocate, bump=bump)
        return TxnUpdate(prepared), _claimed(prepared)
    if not bump and record.state in PREPARE_STATES + COMPLETE_STATES:
        # A classic client retrying its end (its answer was lost, or the markers failed):
        # the same decision finishes the work or finds it done, as Kafka answers it.
        if record.state not in ((PREPARE_COMMIT, COMPLETE_COMMIT) if commit
                                else (PREPARE_ABORT, COMPLETE_ABORT)):
            return TxnUpdate(), InvalidTxnStateError(
                f"cannot {decision} the transaction of {tid!r}: it is already {record.state}")
        return TxnUpdate(), _outcome(record)
    if record.state in PREPARE_STATES:
        return TxnUpdate(), ConcurrentTransactionsError(
            f"the previous transaction of {tid!r} is still completing: retry")
    if commit:
        return TxnUpdate(), InvalidTxnStateError(
            f"cannot commit: no transaction of {tid!r} is ongoing (it is {record.state})")
    return TxnUpdate(), record.identity


def _still_prepared(record: TransactionRecord | None, completion: Completion) -> bool:
    """``record`` is still in the Prepare state and identity of ``completion``."""
    prepared = PREPARE_COMMIT if completion.commit else PREPARE_ABORT
    return record is not None and record.state == prepared and record.identity == (
        ProducerIdAndEpoch(completion.producer_id, completion.producer_epoch))


def claim(
    record: TransactionRecord | None, tid: str, completion: Completion
) -> tuple[TxnUpdate, Completion | None]:
    """Take a new claim on finishing a prepared transaction (every claim before it can no
    longer complete it); None if it is no longer prepared (someone completed it)."""
    if record is None or not _still_prepared(record, completion):
        return TxnUpdate(), None
    return TxnUpdate(record), _claimed(record)


def complete(
    record: TransactionRecord | None, tid: str, completion: Completion, now_ms: int
) -> tuple[TxnUpdate, bool]:
    """Prepare* -> Complete* once the markers are written; True if this call completed it.

    A no-op (False) unless the record is still in the Prepare state and identity of
    ``completion`` and at the version of its claim: someone else completed it already, or
    claimed it since (and completes it).
    """
    if record is None or not _still_prepared(record, completion) or (
            record.version != completion.claim):
        return TxnUpdate(), False
    after = record.identity_after_completion
    completed = replace(
        record,
        producer_id=after.producer_id,
        producer_epoch=after.epoch,
        next_producer_id=NO_PRODUCER_ID,
        state=COMPLETE_COMMIT if completion.commit else COMPLETE_ABORT,
        partitions=frozenset(),
        pending_offsets={},
        start_ms=-1,
        update_ms=now_ms,
    )
    offsets = record.pending_offsets if completion.commit else {}
    return TxnUpdate(completed, offsets), True


def abort(
    record: TransactionRecord | None,
    tid: str,
    now_ms: int,
    allocate: ProducerIdAllocator,
    *,
    force: bool = False,
) -> tuple[TxnUpdate, Completion | LogstoreError | None]:
    """The coordinator aborts an Ongoing transaction that timed out (or any Ongoing one with
    ``force``, for operators), bumping the epoch with reason "timeout" so its producer can
    adopt it. With ``force`` a prepared transaction is finished as decided. None: nothing to do.
    """
    if record is None:
        return TxnUpdate(), (
            TransactionalIdNotFoundError(f"transactional id {tid!r} does not exist")
            if force else None)
    if record.state == ONGOING and (force or record.timed_out(now_ms)):
        prepared = _prepare(record, False, BUMP_TIMEOUT, now_ms, allocate)
        return TxnUpdate(prepared), _claimed(prepared)
    if force and record.state in PREPARE_STATES:
        return TxnUpdate(), completion_of(record)
    return TxnUpdate(), None
