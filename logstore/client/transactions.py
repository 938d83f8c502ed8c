"""A producer's transactional state (Kafka's client-side TransactionManager).

States::

    uninitialized --init_transactions--> ready --begin--> in_transaction
    in_transaction --commit/abort--> ready
    in_transaction --a send or the coordinator failed it--> abortable --abort--> ready
    in_transaction --the transactional id is gone--> abortable --abort (InitProducerId)--> ready
    any --another instance took over (ProducerFencedError)--> fenced (every call raises)

The first send to a partition in a transaction registers the partition with the coordinator
(AddPartitionsToTxn) before the record is queued. Committing flushes every record of the
transaction, refuses to commit if any of them failed (the transaction becomes abortable), and
asks the coordinator to commit; the coordinator bumps the producer epoch at the end of every
transaction (KIP-890), so the producer takes the identity it returns for the next one. A batch
that a partition refuses because it no longer knows the producer (UnknownProducerIdError: the
topic was deleted and re-created) fails like any other: the transaction becomes abortable, and
after ``abort_transaction()`` the next one starts at sequence 0 everywhere (see ``sender``).

The transactional id gone (TransactionalIdNotFoundError: the coordinator expired it after
``transactional_id_expiration_ms`` unused while this producer stayed idle) is abortable too, as
Kafka's INVALID_PRODUCER_ID_MAPPING: ``abort_transaction()`` first tries to end the transaction
with the old identity, and if the id is still gone, initialises it again (InitProducerId with
this producer's transaction timeout) and adopts that identity: a new producer id at epoch 0.
Fencing: once this producer has initialised the id again, a zombie of an earlier instance is
fenced (ProducerFencedError, for good) at its next AddPartitionsToTxn or EndTxn, and every
transactional write begins with one of them. But the expired id kept no memory of the epoch
that had fenced that zombie: if the zombie comes back first, its own ``abort_transaction()``
re-creates the id and this producer is the one fenced. Whichever instance initialises the id
last owns it, as with ``init_transactions()``, and Kafka accepts the same; only one of them
can write at a time either way. (Kafka's InitProducerId also names the identity it replaces,
KIP-360, which closes the moment between the EndTxn that found the id gone and the new
InitProducerId; this coordinator's does not take one.)

Thread-safety: the transactional calls (init/begin/commit/abort/send_offsets) are meant for one
thread, as in Kafka; ``register`` is called from ``send`` under the manager's lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from logstore.backends.group_records import CommittedOffset
from logstore.client.sender import Sender
from logstore.clock import Clock
from logstore.coordinator.transaction_coordinator import TransactionCoordinator
from logstore.errors import (
    IllegalStateError,
    LogstoreError,
    ProducerFencedError,
    TransactionAbortedError,
    TransactionalIdNotFoundError,
)
from logstore.types import ConsumerGroupMetadata, OffsetAndMetadata, TopicPartition

UNINITIALIZED = "uninitialized"
READY = "ready"
IN_TRANSACTION = "in_transaction"
ABORTABLE = "abortable"
FENCED = "fenced"


class TransactionManager:
    """The transactional half of a producer (see the module docstring)."""

    def __init__(
        self,
        coordinator: TransactionCoordinator,
        sender: Sender,
        clock: Clock,
        *,
        transactional_id: str,
        timeout_ms: int,
    ) -> None:
        self._coordinator = coordinator
        self._sender = sender
        self._clock = clock
        self.transactional_id = transactional_id
        self._timeout_ms = timeout_ms
        self._lock = threading.Lock()
        self.state = UNINITIALIZED
        self.producer_id = -1
        self.epoch = -1
        self._partitions: set[TopicPartition] = set()
        self._offsets_sent = False
        self._error: LogstoreError | None = None

    def init(self) -> None:
        """Get this transactional id's next epoch, fencing earlier instances."""
        with self._lock:
            if self.state == FENCED:
                raise self._fenced()
            if self.state == IN_TRANSACTION:
                raise IllegalStateError("init_transactions() during a transaction")
        identity = self._coordinator.init_producer_id(self.transactional_id, self._timeout_ms)
        self._adopt(identity.producer_id, identity.epoch)

    def begin(self) -> None:
        with self._lock:
            self._require(READY, "begin_transaction()")
            self.state = IN_TRANSACTION
            self._partitions = set()
            self._offsets_sent = False
            self._error = None
        self._sender.take_failures()

    def register(self, tp: TopicPartition) -> None:
        """Before a record of the transaction is queued for ``tp``."""
        with self._lock:
            if self.state != IN_TRANSACTION:
                self._require(IN_TRANSACTION, "send()")
            if tp in self._partitions:
                return
            self._call(lambda: self._coordinator.add_partitions(
                self.transactional_id, self.producer_id, self.epoch, [tp]))
            self._partitions.add(tp)

    def send_offsets(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata],
        group: str | ConsumerGroupMetadata,
    ) -> None:
        """Offsets that become the group's committed offsets if the transaction commits."""
        now = self._clock.time_ms()
        stored = {TopicPartition(*tp): CommittedOffset(o.offset, o.metadata, o.leader_epoch, now)
                  for tp, o in offsets.items()}
        if isinstance(group, ConsumerGroupMetadata):
            group_id, member_id, generation = group.group_id, group.member_id, group.generation_id
        else:
            group_id, member_id, generation = group, "", -1
        with self._lock:
            self._require(IN_TRANSACTION, "send_offsets_to_transaction()")
            self._call(lambda: self._coordinator.add_offsets(
                self.transactional_id, self.producer_id, self.epoch, group_id, stored,
                member_id=member_id, generation=generation))
            self._offsets_sent = True

    def commit(self, flush: Callable[[], None]) -> None:
        with self._lock:
            if self.state == ABORTABLE and self._error is not None:
                raise TransactionAbortedError(
                    f"the transaction cannot commit: {self._error} (abort it)") from self._error
            self._require(IN_TRANSACTION, "commit_transaction()")
        flush()
        failures = self._sender.take_failures()
        with self._lock:
            if failures:
                self.state = ABORTABLE
                self._error = failures[0] if isinstance(failures[0], LogstoreError) else None
                raise TransactionAbortedError(
                    f"{len(failures)} batch(es) of the transaction failed ({failures[0]}): abort "
                    "the transaction") from failures[0]
            if not self._partitions and not self._offsets_sent:
                self.state = READY  # nothing was written: nothing to commit
                return
            identity = self._call(lambda: self._coordinator.end_transaction(
                self.transactional_id, self.producer_id, self.epoch, commit=True))
        self._adopt(identity.producer_id, identity.epoch)

    def abort(self, discard: Callable[[], None], flush: Callable[[], None]) -> None:
        with self._lock:
            if self.state not in (IN_TRANSACTION, ABORTABLE):
                self._require(IN_TRANSACTION, "abort_transaction()")
        discard()  # records not appended yet fail with TransactionAbortedError
        flush()  # and those being appended finish (the markers cover them)
        self._sender.take_failures()
        try:
            identity = self._call(lambda: self._coordinator.end_transaction(
                self.transactional_id, self.producer_id, self.epoch, commit=False))
        except TransactionalIdNotFoundError:
            # The id expired: nothing of this identity is left to abort at the coordinator
            # (an expired id had no transaction in progress), so start it afresh.
            identity = self._coordinator.init_producer_id(self.transactional_id, self._timeout_ms)
        self._adopt(identity.producer_id, identity.epoch)

    def _adopt(self, producer_id: int, epoch: int) -> None:
        self._sender.set_identity(producer_id, epoch, transactional=True)
        with self._lock:
            self.producer_id, self.epoch = producer_id, epoch
            self.state = READY
            self._partitions = set()
            self._offsets_sent = False
            self._error = None

    def _call(self, operation: Callable[[], object]):  # type: ignore[no-untyped-def]
        """Run a coordinator call; move to fenced/abortable on the errors that mean so."""
        try:
            return operation()
        except ProducerFencedError:
            self.state = FENCED
            raise
        except TransactionAbortedError as exc:
            self.state = ABORTABLE
            self._error = exc
            raise
        except TransactionalIdNotFoundError as exc:
            self.state = ABORTABLE
            self._error = TransactionalIdNotFoundError(
                f"transactional id {self.transactional_id!r} is gone (unused for "
                "transactional_id_expiration_ms, it expired): abort_transaction() to go on, "
                "which initialises it again")
            raise self._error from exc

    def _require(self, state: str, call: str) -> None:
        if self.state == FENCED:
            raise self._fenced()
        if self.state != state:
            hints = {UNINITIALIZED: "call init_transactions() first",
                     READY: "call begin_transaction() first",
                     IN_TRANSACTION: "a transaction is open",
                     ABORTABLE: "the transaction failed: abort_transaction()"}
            raise IllegalStateError(f"{call} is not allowed now: {hints.get(self.state, '')}")

    def _fenced(self) -> ProducerFencedError:
        return ProducerFencedError(
            f"transactional id {self.transactional_id!r} is used by a newer producer instance")
