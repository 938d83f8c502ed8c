"""The transaction coordinator: runs the steps of ``txn_state`` inside the metadata store and
writes the commit/abort markers between them.

Embedded logstore has no coordinator process: every producer runs these operations itself,
each database step an atomic read-modify-write of its transactional id in the metadata store
(SQLite or PostgreSQL), and every process's maintenance runs the recovery
(:meth:`TransactionCoordinator.abort_timed_out`, :meth:`TransactionCoordinator.complete_pending`)
and removes transactional ids unused for ``transactional.id.expiration.ms``
(:meth:`TransactionCoordinator.expire_transactional_ids`).
The operations mirror Kafka's APIs (InitProducerId, AddPartitionsToTxn, TxnOffsetCommit,
EndTxn, ListTransactions, DescribeTransactions), so the Kafka-protocol broker can serve the
same stored state.

Ending a transaction takes three steps, never holding a database lock across I/O:

1. one database transaction moves it to PrepareCommit/PrepareAbort with the epoch bumped (a
   classic end, for Kafka clients before EndTxn v5, keeps it), which is also the first claim
   on writing its markers;
2. ``write_markers`` appends the COMMIT/ABORT control batches to each of its partitions,
   carrying the claim;
3. one database transaction moves it to CompleteCommit (making its pending offsets the groups'
   committed offsets in that same transaction) or CompleteAbort.

A crash or a failed ``write_markers`` between 1 and 3 leaves the Prepare state, which anyone
finishes by taking a new claim (a database write) and repeating 2 and 3: ``write_markers``
must be idempotent. Step 3 is a compare-and-swap on the claim, so racing finishers complete it
once and only the latest claimant does (see ``txn_state``).

Time comes from the injected clock (transaction timeouts, expiry). Stateless apart from its
store, clock, marker writer and settings: thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from logstore.backends.group_records import CommittedOffset
from logstore.backends.metadata import MetadataStore
from logstore.backends.txn_records import (
    ONGOING,
    PREPARE_STATES,
    ProducerIdAndEpoch,
    TransactionRecord,
)
from logstore.clock import Clock
from logstore.coordinator import txn_state
from logstore.coordinator.txn_state import Completion
from logstore.errors import (
    ConcurrentTransactionsError,
    InvalidArgumentError,
    LogstoreError,
    StaleVersionError,
    TransactionalIdNotFoundError,
)
from logstore.records.control import coordinator_epoch_for
from logstore.types import TopicPartition

T = TypeVar("T")

WriteMarkers = Callable[[list[TopicPartition], int, int, bool, int], None]
"""``write_markers(partitions, producer_id, producer_epoch, commit, claim)``: append a COMMIT
(or ABORT) control batch of that producer identity to every partition, with ``claim`` as its
coordinator epoch. Idempotent; raises a (retriable) LogstoreError if it could not write them
all."""

# init_producer_id finishes at most this many transactions before it gives up: more means
# other instances of the same transactional id keep starting new ones.
_MAX_INIT_ROUNDS = 8
#: The largest ``transactional_id_expiration_ms`` (Kafka's config is an int32).
MAX_TRANSACTIONAL_ID_EXPIRATION_MS = (1 << 31) - 1


def _raised(result: T | LogstoreError) -> T:
    """Steps return protocol outcomes as exceptions (see txn_state): raise them here."""
    if isinstance(result, LogstoreError):
        raise result
    return result


class TransactionCoordinator:
    """Transaction operations over a metadata store (see the module docstring).

    ``transactional_id_expiration_ms``: how long a transactional id with no transaction in
    progress may stay unused before :meth:`expire_transactional_ids` removes it (Kafka's
    ``transactional.id.expiration.ms``, default 7 days). Raises InvalidArgumentError for a
    value outside 1 to 2**31 - 1.
    """

    def __init__(
        self,
        store: MetadataStore,
        clock: Clock,
        write_markers: WriteMarkers,
        *,
        transactional_id_expiration_ms: int = txn_state.DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS,
    ) -> None:
        expiration = transactional_id_expiration_ms
        if isinstance(expiration, bool) or not isinstance(expiration, int) or not (
            1 <= expiration <= MAX_TRANSACTIONAL_ID_EXPIRATION_MS
        ):
            raise InvalidArgumentError(
                "transactional_id_expiration_ms must be an int of 1 to "
                f"{MAX_TRANSACTIONAL_ID_EXPIRATION_MS}, got {expiration!r}")
        self._store = store
        self._clock = clock
        self._write_markers = write_markers
        self.transactional_id_expiration_ms = expiration

    # --- producers ---------------------------------------------------------------------------

    def init_producer_id(
        self, transactional_id: str | None, transaction_timeout_ms: int
    ) -> ProducerIdAndEpoch:
        """A producer identity. Without a transactional id: a fresh producer id, epoch 0 (the
        timeout is ignored). With one: the id's next epoch, which fences every earlier
        instance; a transaction it left Ongoing is aborted and a prepared one finished first.
        Raises InvalidArgumentError for a bad id or timeout (1 to 900,000 ms), and what
        ``write_markers`` raises (retry the call)."""
        if transactional_id is None:
            return ProducerIdAndEpoch(self._store.allocate_producer_id(), 0)
        tid = transactional_id
        txn_state.check_timeout(transaction_timeout_ms)
        for _ in range(_MAX_INIT_ROUNDS):
            result = self._store.update_transaction(
                tid, lambda r, allocate: txn_state.init_producer_id(
                    r, tid, transaction_timeout_ms, self._clock.time_ms(), allocate)
            )
            if isinstance(result, ProducerIdAndEpoch):
                return result
            self._finish(result)
        raise ConcurrentTransactionsError(
            f"transactional id {tid!r} keeps starting transactions: retry init_producer_id")

    def add_partitions(
        self, transactional_id: str, producer_id: int, epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> None:
        """Add partitions to the producer's transaction, beginning one if none is ongoing.

        Raises ProducerFencedError, TransactionAbortedError (timed out: abort, then go on),
        ConcurrentTransactionsError (the previous one is still completing: retry),
        TransactionalIdNotFoundError."""
        wanted = txn_state.check_partitions(partitions)
        _raised(self._store.update_transaction(
            transactional_id, lambda r, _: txn_state.add_partitions(
                r, transactional_id, producer_id, epoch, wanted, self._clock.time_ms())
        ))

    def add_offsets(
        self, transactional_id: str, producer_id: int, epoch: int, group_id: str,
        offsets: Mapping[TopicPartition, CommittedOffset], *,
        member_id: str = "", generation: int = txn_state.NO_GENERATION,
    ) -> None:
        """Send a group's offsets to the transaction: they become the group's committed
        offsets only if it commits (later ones win per partition).

        With ``member_id``/``generation`` (KIP-447) they are accepted only from a member of the
        group's current generation, else CommitFailedError and nothing is stored. Raises the
        errors of :meth:`add_partitions` too."""
        txn_state.check_group_id(group_id)
        wanted = txn_state.check_offsets(offsets)
        if not isinstance(member_id, str) or isinstance(generation, bool) or not isinstance(
            generation, int
        ):
            raise InvalidArgumentError(
                f"member_id must be a str and generation an int, got {member_id!r}, "
                f"{generation!r}")
        fencing = member_id != "" or generation != txn_state.NO_GENERATION
        # Read before the step: a member's generation is checked as of now, as Kafka checks a
        # TxnOffsetCommit when it arrives.
        group = self._store.read_group(group_id) if fencing else None
        _raised(self._store.update_transaction(
            transactional_id, lambda r, _: txn_state.add_offsets(
                r, transactional_id, producer_id, epoch, group_id, wanted,
                self._clock.time_ms(), group=group, member_id=member_id, generation=generation)
        ))

    def end_transaction(
        self, transactional_id: str, producer_id: int, epoch: int, commit: bool, *,
        bump: bool = True,
    ) -> ProducerIdAndEpoch:
        """Commit or abort the producer's transaction; returns the identity the producer must
        use from now on (the epoch is bumped by every transaction; past epoch 32766 the
        producer id changes). ``bump`` False: a classic end, for clients that cannot learn a
        new epoch (Kafka's EndTxn before v5): the producer keeps its identity.

        Idempotent: a retry by the same identity with the same decision returns the same
        result, finishing the work if a previous attempt failed. Aborting with no transaction
        ongoing returns the current identity. Raises InvalidTxnStateError (commit with none
        ongoing, or the other decision was taken), TransactionAbortedError (commit after a
        timeout abort; abort instead, which adopts the bumped epoch), ProducerFencedError,
        ConcurrentTransactionsError, and what ``write_markers`` raises (then retry: the
        decision is recorded and will be completed)."""
        result = _raised(self._store.update_transaction(
            transactional_id, lambda r, allocate: txn_state.end_transaction(
                r, transactional_id, producer_id, epoch, commit, self._clock.time_ms(),
                allocate, bump=bump)
        ))
        if isinstance(result, Completion):
            self._finish(result)
            return result.result
        return result

    # --- recovery (every process's maintenance) ------------------------------------------------

    def abort_timed_out(self) -> list[str]:
        """Abort every Ongoing transaction older than its timeout; returns the ids this call
        aborted. Safe to run concurrently anywhere: each abort is decided under the id's lock.

        Every transaction is tried; one whose markers could not be written stays PrepareAbort
        (for :meth:`complete_pending`) and the first such error is raised at the end."""
        aborted: list[str] = []
        errors: list[LogstoreError] = []
        now_ms = self._clock.time_ms()
        for record in self._store.list_transactions([ONGOING]):
            if not record.timed_out(now_ms):
                continue
            tid = record.transactional_id
            completion = self._store.update_transaction(
                tid, lambda r, allocate, tid=tid: txn_state.abort(
                    r, tid, self._clock.time_ms(), allocate)
            )
            if not isinstance(completion, Completion):
                continue  # it ended or was aborted meanwhile
            aborted.append(tid)
            try:
                self._finish(completion)
            except LogstoreError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return aborted

    def complete_pending(self) -> list[str]:
        """Finish every PrepareCommit/PrepareAbort transaction (markers, then completion);
        returns the ids this call completed (a racing finisher may have completed others).

        Every transaction is tried; the first error is raised at the end."""
        completed: list[str] = []
        errors: list[LogstoreError] = []
        for listed in self._store.list_transactions(PREPARE_STATES):
            tid = listed.transactional_id
            # Read again right before writing markers, so a transaction that a racing process
            # completed since the listing is not given duplicate markers needlessly.
            record = self._store.read_transaction(tid)
            if record is None or record.state not in PREPARE_STATES:
                continue
            try:
                if self._finish(txn_state.completion_of(record)):
                    completed.append(tid)
            except LogstoreError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return completed

    def expire_transactional_ids(self) -> list[str]:
        """Remove every transactional id that has no transaction in progress (Empty,
        CompleteCommit, CompleteAbort) and whose record was not written for
        ``transactional_id_expiration_ms``; returns the ids this call removed.

        Each removal is a compare-and-swap on the version that was judged expired, under the
        id's lock, so an id that a producer initialises or uses at the same moment is kept (it
        is judged again by the next pass), and racing processes remove an id once. A producer
        that uses a removed id again starts afresh: init_producer_id gives it a new producer
        id at epoch 0."""
        expiration_ms = self.transactional_id_expiration_ms
        now_ms = self._clock.time_ms()
        removed: list[str] = []
        for record in self._store.list_transactions(
            txn_state.EXPIRABLE_STATES, updated_before_ms=now_ms - expiration_ms + 1
        ):
            if not txn_state.expired(record, now_ms, expiration_ms):
                continue
            try:
                self._store.delete_transaction(
                    record.transactional_id, expected_version=record.version)
            except (StaleVersionError, TransactionalIdNotFoundError):
                continue  # used (or removed by another process) since it was listed
            removed.append(record.transactional_id)
        return removed

    # --- administration ----------------------------------------------------------------------

    def list_transactions(self) -> list[TransactionRecord]:
        """Every transactional id's record, sorted by id."""
        return self._store.list_transactions()

    def describe_transaction(self, transactional_id: str) -> TransactionRecord:
        """The record of a transactional id. Raises TransactionalIdNotFoundError."""
        record = self._store.read_transaction(transactional_id)
        if record is None:
            raise TransactionalIdNotFoundError(
                f"transactional id {transactional_id!r} does not exist")
        return record

    def force_abort(self, transactional_id: str) -> TransactionRecord:
        """Abort the id's Ongoing transaction as a timeout would (its producer gets
        TransactionAbortedError and may go on after aborting); finish a prepared one as
        decided; leave a completed one alone. Returns the record afterwards. Raises
        TransactionalIdNotFoundError and what ``write_markers`` raises."""
        tid = transactional_id
        completion = _raised(self._store.update_transaction(
            tid, lambda r, allocate: txn_state.abort(
                r, tid, self._clock.time_ms(), allocate, force=True)
        ))
        if completion is not None:
            self._finish(completion)
        return self.describe_transaction(tid)

    # --- internals ---------------------------------------------------------------------------

    def _finish(self, completion: Completion) -> bool:
        """Claim (unless ``completion`` holds a claim already), write the markers, then
        complete; True if this call made the completion."""
        tid = completion.transactional_id
        if completion.claim is None:
            unclaimed = completion
            claimed = self._store.update_transaction(
                tid, lambda r, _: txn_state.claim(r, tid, unclaimed))
            if claimed is None:
                return False  # completed meanwhile
            completion = claimed
        if completion.partitions:
            self._write_markers(
                list(completion.partitions), completion.producer_id, completion.producer_epoch,
                completion.commit, coordinator_epoch_for(completion.claim_number),
            )
        finished = completion
        return self._store.update_transaction(
            tid, lambda r, _: txn_state.complete(r, tid, finished, self._clock.time_ms())
        )
