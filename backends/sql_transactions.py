"""Transaction storage of :class:`~logstore.backends.sql_metadata.SqlMetadataStore`.

One primitive writes transactional ids: :func:`update_transaction` opens a write transaction,
takes the id's lock, reads the :class:`TransactionRecord`, calls the coordinator's pure step
function and writes the :class:`TxnUpdate` it returns, all in that transaction. The lock is the
SQLite write lock (``BEGIN IMMEDIATE``), or on PostgreSQL a transaction-scoped advisory lock
keyed by the transactional id, so different ids never wait for each other (mirrors
:mod:`logstore.backends.sql_groups`).

A commit's offsets are written through the consumer-group tables in the same database
transaction, under each group's lock (taken after the transactional id's, in group id order;
``update_group`` only ever holds one group lock, so the lock order has no cycle).

:func:`delete_transaction` removes a transactional id (the coordinator's expiry of ids unused for
``transactional.id.expiration.ms``): it takes the same lock, and deletes the row only at the
version the caller read, so it never removes an id that a producer wrote meanwhile.

Producer ids come from the one-row ``producer_ids`` counter: an ``UPDATE ... RETURNING`` that
increments it, so two allocations, in any processes or hosts, never return the same id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from logstore.backends import sql_groups
from logstore.backends.group_records import CommittedOffset, GroupRecord
from logstore.backends.schema import (
    PRODUCER_IDS_ROW_ID,
    consumer_groups,
    producer_ids,
    transactions,
)
from logstore.backends.txn_records import (
    BUMP_REASONS,
    TRANSACTIONAL_ID_MAX_LENGTH,
    TXN_STATES,
    PendingOffsets,
    ProducerIdAllocator,
    TransactionRecord,
    TxnUpdate,
)
from sqlalchemy import Connection, Row, delete, insert, select, text, update

from logstore.errors import (
    InvalidArgumentError,
    MetadataStoreError,
    StaleVersionError,
    TransactionalIdNotFoundError,
)
from logstore.types import TopicPartition

if TYPE_CHECKING:
    from logstore.backends.sql_metadata import SqlMetadataStore

T = TypeVar("T")

# Advisory-lock namespace (the first key of pg_advisory_xact_lock(int, int)) for transactional
# ids; groups use 0x4C47 ("LG").
_TXN_LOCK_NAMESPACE = 0x4C54  # "LT"

TxnStep = Callable[[TransactionRecord | None, ProducerIdAllocator], tuple[TxnUpdate, T]]


def check_transactional_id(transactional_id: object) -> str:
    if not isinstance(transactional_id, str) or not (
        1 <= len(transactional_id) <= TRANSACTIONAL_ID_MAX_LENGTH
    ):
        raise InvalidArgumentError(
            f"transactional id must be a string of 1 to {TRANSACTIONAL_ID_MAX_LENGTH} "
            f"characters, got {transactional_id!r}"
        )
    return transactional_id


def update_transaction(store: SqlMetadataStore, transactional_id: str, step: TxnStep[T]) -> T:
    check_transactional_id(transactional_id)
    action = f"updating transactional id {transactional_id!r}"
    with store._operation(action), store._write_engine.begin() as conn:
        _lock(conn, transactional_id)
        current = _read(conn, transactional_id)
        change, result = step(current, lambda: _allocate(conn))
        _apply(conn, transactional_id, current, change)
    return result


def delete_transaction(
    store: SqlMetadataStore, transactional_id: str, *, expected_version: int
) -> TransactionRecord:
    check_transactional_id(transactional_id)
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise InvalidArgumentError(
            f"expected_version must be an int, got {expected_version!r}")
    action = f"deleting transactional id {transactional_id!r}"
    with store._operation(action), store._write_engine.begin() as conn:
        _lock(conn, transactional_id)
        current = _read(conn, transactional_id)
        if current is None:
            raise TransactionalIdNotFoundError(
                f"transactional id {transactional_id!r} does not exist")
        if current.version != expected_version:
            raise StaleVersionError(
                f"transactional id {transactional_id!r} is at version {current.version}, not "
                f"{expected_version}: it was written since it was read, and is kept")
        conn.execute(
            delete(transactions).where(transactions.c.transactional_id == transactional_id,
                                       transactions.c.version == expected_version)
        )
    return current


def _lock(conn: Connection, transactional_id: str) -> None:
    """Take the transactional id's lock for the rest of the write transaction (SQLite's
    ``BEGIN IMMEDIATE`` already holds the database's write lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:id))"),
            {"namespace": _TXN_LOCK_NAMESPACE, "id": transactional_id},
        )


def read_transaction(store: SqlMetadataStore, transactional_id: str) -> TransactionRecord | None:
    check_transactional_id(transactional_id)
    action = f"reading transactional id {transactional_id!r}"
    with store._operation(action), store._engine.begin() as conn:
        return _read(conn, transactional_id)


def list_transactions(
    store: SqlMetadataStore, states: Iterable[str] | None = None, *,
    updated_before_ms: int | None = None,
) -> list[TransactionRecord]:
    query = select(transactions)
    if updated_before_ms is not None:
        if isinstance(updated_before_ms, bool) or not isinstance(updated_before_ms, int):
            raise InvalidArgumentError(
                f"updated_before_ms must be an int, got {updated_before_ms!r}")
        query = query.where(transactions.c.update_ms < updated_before_ms)
    if states is not None:
        wanted = list(states)
        unknown = sorted(set(wanted) - set(TXN_STATES))
        if unknown:
            raise InvalidArgumentError(f"unknown transaction states {unknown}")
        query = query.where(transactions.c.state.in_(wanted))
    with store._operation("listing transactions"), store._engine.begin() as conn:
        rows = conn.execute(query).all()
    # Sorted here, not by ORDER BY: PostgreSQL would order by its locale's collation.
    return sorted((_record(row) for row in rows), key=lambda r: r.transactional_id)


def allocate_producer_id(store: SqlMetadataStore) -> int:
    with store._operation("allocating a producer id"), store._write_engine.begin() as conn:
        return _allocate(conn)


def _allocate(conn: Connection) -> int:
    row = conn.execute(
        update(producer_ids)
        .where(producer_ids.c.id == PRODUCER_IDS_ROW_ID)
        .values(next_producer_id=producer_ids.c.next_producer_id + 1)
        .returning(producer_ids.c.next_producer_id)
    ).one_or_none()
    if row is None:
        raise MetadataStoreError(
            "the producer_ids row is missing: the metadata database is damaged", retriable=False
        )
    return int(row[0]) - 1


# --- reading -----------------------------------------------------------------------------------


def _read(conn: Connection, transactional_id: str) -> TransactionRecord | None:
    row = conn.execute(
        select(transactions).where(transactions.c.transactional_id == transactional_id)
    ).one_or_none()
    return None if row is None else _record(row)


def _record(row: Row[Any]) -> TransactionRecord:
    tid = row.transactional_id
    if row.state not in TXN_STATES or row.last_bump not in BUMP_REASONS:
        raise MetadataStoreError(
            f"transactional id {tid!r} has unknown state {row.state!r} or bump reason "
            f"{row.last_bump!r}",
            retriable=False,
        )
    try:
        partitions = frozenset(
            TopicPartition(_str(topic), _int(partition))
            for topic, partition in json.loads(row.partitions)
        )
        pending = {
            _str(group_id): {
                TopicPartition(_str(topic), _int(partition)): CommittedOffset(
                    _int(offset), _str(metadata), _int(leader_epoch), _int(commit_ms)
                )
                for topic, partition, offset, leader_epoch, metadata, commit_ms in entries
            }
            for group_id, entries in json.loads(row.pending_offsets).items()
        }
    except (ValueError, TypeError, AttributeError):
        raise MetadataStoreError(
            f"transactional id {tid!r} has unreadable partitions or pending offsets",
            retriable=False,
        ) from None
    return TransactionRecord(
        transactional_id=tid,
        producer_id=row.producer_id,
        producer_epoch=row.producer_epoch,
        state=row.state,
        timeout_ms=row.timeout_ms,
        partitions=partitions,
        pending_offsets=pending,
        start_ms=row.start_ms,
        update_ms=row.update_ms,
        last_bump=row.last_bump,
        previous_producer_id=row.previous_producer_id,
        previous_epoch=row.previous_epoch,
        next_producer_id=row.next_producer_id,
        version=row.version,
    )


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(value)
    return value


# --- writing -----------------------------------------------------------------------------------


def _apply(
    conn: Connection, transactional_id: str, current: TransactionRecord | None, change: TxnUpdate
) -> None:
    if change.record is not None:
        _write(conn, transactional_id, current, change.record)
    if change.commit_offsets:
        now_ms = change.record.update_ms if change.record is not None else 0
        for group_id in sorted(change.commit_offsets):
            _commit_group_offsets(conn, group_id, change.commit_offsets[group_id], now_ms)


def _write(
    conn: Connection, transactional_id: str, current: TransactionRecord | None,
    new: TransactionRecord,
) -> None:
    values = {
        "producer_id": new.producer_id,
        "producer_epoch": new.producer_epoch,
        "state": new.state,
        "timeout_ms": new.timeout_ms,
        "partitions": _encode_partitions(new.partitions),
        "pending_offsets": _encode_offsets(new.pending_offsets),
        "start_ms": new.start_ms,
        "update_ms": new.update_ms,
        "last_bump": new.last_bump,
        "previous_producer_id": new.previous_producer_id,
        "previous_epoch": new.previous_epoch,
        "next_producer_id": new.next_producer_id,
    }
    if current is None:
        conn.execute(
            insert(transactions).values(transactional_id=transactional_id, version=1, **values)
        )
        return
    result = conn.execute(
        update(transactions)
        .where(transactions.c.transactional_id == transactional_id,
               transactions.c.version == current.version)
        .values(version=transactions.c.version + 1, **values)
    )
    if result.rowcount != 1:  # cannot happen under the id's lock; guard all the same
        raise StaleVersionError(f"transactional id {transactional_id!r} changed under its lock")


def _commit_group_offsets(
    conn: Connection, group_id: str, offsets: Mapping[TopicPartition, CommittedOffset],
    now_ms: int,
) -> None:
    """Make ``offsets`` the group's committed offsets, creating the group row if missing."""
    if conn.dialect.name == "postgresql":
        # The group's own lock, as update_group takes it: serializes with group steps that
        # could otherwise insert the same group row concurrently.
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:group_id))"),
            {"namespace": sql_groups._GROUP_LOCK_NAMESPACE, "group_id": group_id},
        )
    exists = conn.execute(
        select(consumer_groups.c.group_id).where(consumer_groups.c.group_id == group_id)
    ).first()
    if exists is None:
        sql_groups._write_group(
            conn, group_id, None, GroupRecord(group_id=group_id, state_since_ms=now_ms)
        )
    sql_groups._upsert_offsets(conn, group_id, tuple(sorted(offsets.items())))


def _encode_partitions(partitions: Iterable[TopicPartition]) -> str:
    return json.dumps(sorted([tp.topic, tp.partition] for tp in partitions),
                      separators=(",", ":"))


def _encode_offsets(pending: PendingOffsets) -> str:
    return json.dumps(
        {
            group_id: sorted(
                [tp.topic, tp.partition, o.offset, o.leader_epoch, o.metadata, o.commit_ms]
                for tp, o in offsets.items()
            )
            for group_id, offsets in pending.items()
        },
        sort_keys=True,
        separators=(",", ":"),
    )
