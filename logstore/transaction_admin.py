"""Transaction administration for the embedded API and the CLI: list, describe and abort
transactions (like kafka-transactions), the upkeep pass that aborts timed-out transactions,
finishes prepared ones and expires unused transactional ids, and the COMMIT/ABORT markers the
transaction coordinator has written (:func:`write_markers`).

The state lives in the metadata store, behind the
:class:`~logstore.coordinator.transaction_coordinator.TransactionCoordinator`; this module turns
its records into :class:`~logstore.types.TransactionDescription` values and sequences its
upkeep. Thread-safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from logstore.backends.txn_records import TransactionRecord
from logstore.clock import Clock
from logstore.coordinator.transaction_coordinator import TransactionCoordinator
from logstore.errors import LogstoreError, ProducerFencedError, UnknownTopicOrPartitionError
from logstore.log.partition_log import PartitionLog
from logstore.records.control import ControlType, build_control_batch
from logstore.types import TopicPartition, TransactionDescription

_log = logging.getLogger("logstore")


class TransactionAdmin:
    """Transaction operations over one coordinator."""

    def __init__(self, coordinator: TransactionCoordinator) -> None:
        self._coordinator = coordinator

    def list_transactions(self) -> list[TransactionDescription]:
        return [describe(r) for r in self._coordinator.list_transactions()]

    def describe_transaction(self, transactional_id: str) -> TransactionDescription:
        return describe(self._coordinator.describe_transaction(transactional_id))

    def abort_transaction(self, transactional_id: str) -> TransactionDescription:
        return describe(self._coordinator.force_abort(transactional_id))

    def run_maintenance(self) -> list[str]:
        """Abort transactions open past their timeout, finish prepared ones and expire unused
        transactional ids; return the transactional ids aborted. Each pass tries all three:
        one failing does not skip the others (the first error is raised after them)."""
        try:
            aborted = self._coordinator.abort_timed_out()
        finally:
            try:
                self._coordinator.complete_pending()
            finally:
                self._coordinator.expire_transactional_ids()
        return aborted

    def recover(self) -> None:
        """At open: finish prepared transactions (a producer that crashed mid-commit) and expire
        unused ids. A failure is only logged: the maintenance thread and producers retry."""
        try:
            self._coordinator.complete_pending()
            self._coordinator.expire_transactional_ids()
        except LogstoreError as exc:
            _log.warning("could not finish prepared transactions or expire ids: %s", exc)


def write_markers(
    partition_log: Callable[[str, int], PartitionLog],
    clock: Clock,
    partitions: list[TopicPartition],
    producer_id: int,
    epoch: int,
    commit: bool,
    coordinator_epoch: int,
) -> None:
    """The transaction coordinator's marker writer: append a COMMIT/ABORT control batch to
    each partition, carrying the coordinator's claim as its ``coordinator_epoch``.
    Idempotent: a marker that reaches a partition again ends nothing more there."""
    marker = build_control_batch(
        ControlType.COMMIT if commit else ControlType.ABORT, producer_id=producer_id,
        producer_epoch=epoch, coordinator_epoch=coordinator_epoch,
        timestamp_ms=clock.time_ms())
    for tp in partitions:
        try:
            log = partition_log(tp.topic, tp.partition)
            log.append(marker, verify_records=True)
        except UnknownTopicOrPartitionError:
            continue  # the topic was deleted: nothing left to mark
        except ProducerFencedError:
            continue  # a newer epoch already wrote here: this transaction was completed


def describe(record: TransactionRecord) -> TransactionDescription:
    """The public description of a transactional id's record."""
    return TransactionDescription(
        transactional_id=record.transactional_id,
        producer_id=record.producer_id,
        producer_epoch=record.producer_epoch,
        state=record.state,
        timeout_ms=record.timeout_ms,
        start_ms=record.start_ms,
        last_update_ms=record.update_ms,
        partitions=frozenset(record.partitions),
        pending_offsets={group: {tp: o.offset for tp, o in offsets.items()}
                         for group, offsets in record.pending_offsets.items()},
    )
