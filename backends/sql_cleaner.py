"""Leases and cleaner checkpoints of :class:`~logstore.backends.sql_metadata.SqlMetadataStore`.

Leases (table ``leases``, values :class:`~logstore.backends.cleaner_records.Lease`):

* :func:`acquire_lease` reads the row and then writes it with a compare-and-swap on its
  ``version`` (or inserts it, when there is none), in one write transaction. On SQLite the write
  transaction (``BEGIN IMMEDIATE``) already serializes every writer; on PostgreSQL two acquirers
  may read the same row, and then exactly one CAS matches (the other's ``UPDATE`` waits for the
  winner's commit, then finds a new version) or exactly one ``INSERT`` succeeds (the other hits
  the primary key). The loser reads again, sees the winner's live lease and gets None. So at most
  one holder wins a given epoch, across threads, processes and hosts.
* Acquiring a lease that is absent, released (``holder`` NULL) or expired (``expires_ms <=
  now_ms``) takes it with the next epoch (1 for a new row). Acquiring a lease the same
  ``holder`` still holds (unexpired) is a re-acquire: it keeps the epoch and ``acquired_ms`` and
  extends ``expires_ms`` like a renewal, so an idempotent retry of a lost acknowledgement does
  not fence the caller's own work. A holder string therefore names one incarnation of one
  worker (e.g. ``host/pid/uuid4``): two workers sharing a holder string share the lease.
* :func:`renew_lease` and :func:`release_lease` are single ``UPDATE`` statements matching
  name, holder and epoch; renewing a lease whose row no longer matches raises
  :class:`~logstore.errors.LeaseLostError`, releasing it does nothing. Renewals keep the epoch.
  Lease rows are never deleted, so an epoch never goes back.

Cleaner checkpoints (table ``cleaner_checkpoints``, values
:class:`~logstore.backends.cleaner_records.CleanerCheckpoint`, each with the earliest delete
horizon the cleaner left in the log) are upserted by :func:`set_cleaner_checkpoint`, in a
transaction that first checks that the topic incarnation and partition exist (so no checkpoint
outlives its topic: ``delete_topic`` deletes them, see :func:`delete_checkpoints`) and, when a
lease is given, that the lease row still has the lease's holder and epoch. On PostgreSQL those
rows are read ``FOR SHARE`` / ``FOR KEY SHARE``: a takeover of the lease or a delete of the
topic waits until the checkpoint is committed, or the checkpoint write sees it and fails. A
checkpoint may move backwards (e.g. after a truncation); ordering is the caller's rule.

Every function is thread-safe: each call runs in one transaction on a connection checked out of
the store's pool. Times are the caller's milliseconds; nothing here reads a clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from logstore.backends.cleaner_records import (
    LEASE_HOLDER_MAX_LENGTH,
    LEASE_NAME_MAX_LENGTH,
    TOPIC_ID_MAX_LENGTH,
    CleanerCheckpoint,
    Lease,
)
from logstore.backends.schema import cleaner_checkpoints as checkpoints_table
from logstore.backends.schema import leases, topics
from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from logstore.errors import (
    InvalidArgumentError,
    LeaseLostError,
    StaleVersionError,
    UnknownTopicOrPartitionError,
)

if TYPE_CHECKING:
    from logstore.backends.sql_metadata import SqlMetadataStore

#: Largest value of a BIGINT column (offsets, times, epochs) and of an INTEGER one (partitions).
_MAX_BIGINT = (1 << 63) - 1
_MAX_INT = (1 << 31) - 1

# How often acquire_lease reads again after losing a race. Each lost race means another
# acquirer won and, unless its lease is already expired at ``now_ms``, the next read returns
# None; so more than a couple of rounds only happen under pathological clocks.
_ACQUIRE_ATTEMPTS = 8


# --- validation --------------------------------------------------------------------------------


def _check_int(value: object, what: str, *, minimum: int, maximum: int = _MAX_BIGINT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidArgumentError(
            f"{what} must be an int from {minimum} to {maximum}, got {value!r}"
        )
    return value


def _check_text(value: object, what: str, max_length: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise InvalidArgumentError(
            f"{what} must be a string of 1 to {max_length} characters, got {value!r}"
        )
    return value


def _check_lease(lease: object) -> Lease:
    if not isinstance(lease, Lease):
        raise InvalidArgumentError(f"lease must be a Lease, got {type(lease).__name__}")
    _check_text(lease.name, "lease name", LEASE_NAME_MAX_LENGTH)
    _check_text(lease.holder, "lease holder", LEASE_HOLDER_MAX_LENGTH)
    _check_int(lease.epoch, "lease epoch", minimum=1)
    return lease


def _expiry(now_ms: object, duration_ms: object) -> tuple[int, int]:
    """``(now_ms, now_ms + duration_ms)``, both validated to fit a BIGINT column."""
    now = _check_int(now_ms, "now_ms", minimum=0)
    duration = _check_int(duration_ms, "duration_ms", minimum=1)
    if now + duration > _MAX_BIGINT:
        raise InvalidArgumentError(f"now_ms + duration_ms must not exceed {_MAX_BIGINT}")
    return now, now + duration


# --- leases ------------------------------------------------------------------------------------


def acquire_lease(
    store: SqlMetadataStore, name: str, holder: str, *, now_ms: int, duration_ms: int
) -> Lease | None:
    _check_text(name, "lease name", LEASE_NAME_MAX_LENGTH)
    _check_text(holder, "lease holder", LEASE_HOLDER_MAX_LENGTH)
    now, expires_ms = _expiry(now_ms, duration_ms)
    with store._operation(f"acquiring lease {name!r} for {holder!r}"):
        for _ in range(_ACQUIRE_ATTEMPTS):
            try:
                with store._write_engine.begin() as conn:
                    decided, lease = _try_acquire(conn, name, holder, now, expires_ms)
            except sa_exc.IntegrityError as exc:
                if _is_unique_violation(exc):
                    continue  # another acquirer inserted the row first: read it
                raise
            if decided:
                return lease
    raise StaleVersionError(
        f"lease {name!r} changed {_ACQUIRE_ATTEMPTS} times while {holder!r} tried to acquire it"
    )


def _is_unique_violation(exc: sa_exc.IntegrityError) -> bool:
    # Imported here: sql_metadata imports the sql_* modules, so a module-level import would
    # make this module unimportable on its own (a cycle through sql_manifest).
    from logstore.backends.sql_metadata import _is_unique_violation as is_unique_violation

    return is_unique_violation(exc)


def _try_acquire(
    conn: Connection, name: str, holder: str, now_ms: int, expires_ms: int
) -> tuple[bool, Lease | None]:
    """One attempt: ``(True, lease or None)`` when decided, ``(False, None)`` when the CAS lost."""
    row = conn.execute(select(leases).where(leases.c.name == name)).one_or_none()
    if row is None:
        conn.execute(
            insert(leases).values(
                name=name, holder=holder, epoch=1, acquired_ms=now_ms, expires_ms=expires_ms,
                version=1,
            )
        )
        return True, Lease(name, holder, 1, now_ms, expires_ms)
    if row.holder is not None and row.expires_ms > now_ms:
        if row.holder != holder:
            return True, None
        epoch, acquired_ms = row.epoch, row.acquired_ms  # re-acquire: same holder, live lease
    else:
        epoch, acquired_ms = row.epoch + 1, now_ms  # free, released or expired: next epoch
    result = conn.execute(
        update(leases)
        .where(leases.c.name == name, leases.c.version == row.version)
        .values(
            holder=holder, epoch=epoch, acquired_ms=acquired_ms, expires_ms=expires_ms,
            version=leases.c.version + 1,
        )
    )
    if result.rowcount != 1:
        return False, None
    return True, Lease(name, holder, epoch, acquired_ms, expires_ms)


def renew_lease(store: SqlMetadataStore, lease: Lease, *, now_ms: int, duration_ms: int) -> Lease:
    _check_lease(lease)
    _, expires_ms = _expiry(now_ms, duration_ms)
    statement = (
        update(leases)
        .where(*_held_by(lease))
        .values(expires_ms=expires_ms, version=leases.c.version + 1)
        .returning(leases.c.acquired_ms)
    )
    with store._operation(f"renewing lease {lease.name!r}"), store._write_engine.begin() as conn:
        row = conn.execute(statement).one_or_none()
        if row is None:
            raise LeaseLostError(_lost_message(conn, lease, "cannot be renewed"))
    return Lease(lease.name, lease.holder, lease.epoch, row.acquired_ms, expires_ms)


def release_lease(store: SqlMetadataStore, lease: Lease) -> None:
    _check_lease(lease)
    statement = update(leases).where(*_held_by(lease)).values(
        holder=None, version=leases.c.version + 1
    )
    with store._operation(f"releasing lease {lease.name!r}"), store._write_engine.begin() as conn:
        conn.execute(statement)


def read_lease(store: SqlMetadataStore, name: str) -> Lease | None:
    _check_text(name, "lease name", LEASE_NAME_MAX_LENGTH)
    query = select(leases).where(leases.c.name == name, leases.c.holder.is_not(None))
    with store._operation(f"reading lease {name!r}"), store._engine.begin() as conn:
        row = conn.execute(query).one_or_none()
    return None if row is None else _to_lease(row)


def list_leases(store: SqlMetadataStore, prefix: str = "") -> list[Lease]:
    if not isinstance(prefix, str) or len(prefix) > LEASE_NAME_MAX_LENGTH:
        raise InvalidArgumentError(
            f"lease prefix must be a string of at most {LEASE_NAME_MAX_LENGTH} characters, "
            f"got {prefix!r}"
        )
    query = select(leases).where(leases.c.holder.is_not(None))
    if prefix:
        # LIKE narrows the scan; it ignores ASCII case on SQLite, so the exact test is below.
        query = query.where(leases.c.name.startswith(prefix, autoescape=True))
    with store._operation(f"listing leases {prefix!r}*"), store._engine.begin() as conn:
        rows = conn.execute(query).all()
    # Sorted here, not by ORDER BY: PostgreSQL would order by its locale's collation.
    held = (_to_lease(row) for row in rows if row.name.startswith(prefix))
    return sorted(held, key=lambda lease: lease.name)


def _held_by(lease: Lease) -> tuple[Any, ...]:
    """The WHERE clauses of the row as ``lease`` holds it."""
    return (
        leases.c.name == lease.name,
        leases.c.holder == lease.holder,
        leases.c.epoch == lease.epoch,
    )


def _lost_message(conn: Connection, lease: Lease, what: str) -> str:
    row = conn.execute(
        select(leases.c.holder, leases.c.epoch).where(leases.c.name == lease.name)
    ).one_or_none()
    if row is None:
        now = "it does not exist"
    elif row.holder is None:
        now = f"it was released (epoch {row.epoch})"
    else:
        now = f"it is held by {row.holder!r} at epoch {row.epoch}"
    return (
        f"lease {lease.name!r} of {lease.holder!r} at epoch {lease.epoch} is lost and {what}: "
        f"{now}"
    )


def _to_lease(row: Row[Any]) -> Lease:
    return Lease(row.name, row.holder, row.epoch, row.acquired_ms, row.expires_ms)


# --- cleaner checkpoints -----------------------------------------------------------------------


def cleaner_checkpoints(store: SqlMetadataStore, topic_id: str) -> dict[int, CleanerCheckpoint]:
    _check_text(topic_id, "topic id", TOPIC_ID_MAX_LENGTH)
    query = select(checkpoints_table).where(checkpoints_table.c.topic_id == topic_id)
    action = f"reading cleaner checkpoints of topic id {topic_id!r}"
    with store._operation(action), store._engine.begin() as conn:
        rows = conn.execute(query).all()
    return {
        row.partition: CleanerCheckpoint(
            row.topic_id, row.partition, row.checkpoint_offset, row.updated_ms,
            row.delete_horizon_ms,
        )
        for row in sorted(rows, key=lambda r: r.partition)
    }


def set_cleaner_checkpoint(
    store: SqlMetadataStore,
    topic_id: str,
    partition: int,
    offset: int,
    *,
    updated_ms: int,
    lease: Lease | None = None,
    delete_horizon_ms: int | None = None,
) -> CleanerCheckpoint:
    _check_text(topic_id, "topic id", TOPIC_ID_MAX_LENGTH)
    _check_int(partition, "partition", minimum=0, maximum=_MAX_INT)
    _check_int(offset, "checkpoint offset", minimum=0)
    _check_int(updated_ms, "updated_ms", minimum=0)
    if delete_horizon_ms is not None:
        # A horizon may lie before the epoch (a batch timestamp + delete.retention.ms can).
        _check_int(delete_horizon_ms, "delete_horizon_ms", minimum=-_MAX_BIGINT - 1)
    if lease is not None:
        _check_lease(lease)
    checkpoint = CleanerCheckpoint(topic_id, partition, offset, updated_ms, delete_horizon_ms)
    action = f"writing the cleaner checkpoint of topic id {topic_id!r} partition {partition}"
    with store._operation(action), store._write_engine.begin() as conn:
        if lease is not None:
            _check_fence(conn, lease)
        _check_partition(conn, topic_id, partition)
        make_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        values = {"checkpoint_offset": offset, "updated_ms": updated_ms,
                  "delete_horizon_ms": delete_horizon_ms}
        conn.execute(
            make_insert(checkpoints_table)
            .values(topic_id=topic_id, partition=partition, **values)
            .on_conflict_do_update(index_elements=["topic_id", "partition"], set_=values)
        )
    return checkpoint


def delete_checkpoints(conn: Connection, topic_id: str) -> None:
    """Delete every cleaner checkpoint of a topic incarnation, in the caller's transaction
    (``delete_topic``'s, after it deleted the topic row)."""
    conn.execute(delete(checkpoints_table).where(checkpoints_table.c.topic_id == topic_id))


def _check_fence(conn: Connection, lease: Lease) -> None:
    """Raise LeaseLostError unless the lease row still has ``lease``'s holder and epoch.

    ``FOR SHARE`` on PostgreSQL (nothing on SQLite, whose write lock is already held): an
    acquirer's takeover ``UPDATE`` waits for this transaction, and if a takeover committed
    first, the locking read returns its row.
    """
    row = conn.execute(
        select(leases.c.holder, leases.c.epoch)
        .where(leases.c.name == lease.name)
        .with_for_update(read=True)
    ).one_or_none()
    if row is None or row.holder != lease.holder or row.epoch != lease.epoch:
        raise LeaseLostError(_lost_message(conn, lease, "fences no more writes"))


def _check_partition(conn: Connection, topic_id: str, partition: int) -> None:
    """Raise UnknownTopicOrPartitionError unless the topic incarnation has the partition.

    ``FOR KEY SHARE`` on PostgreSQL: a concurrent ``delete_topic`` waits for this transaction
    (and then deletes the checkpoint too), while config changes and partition growth do not.
    """
    count = conn.execute(
        select(topics.c.partition_count)
        .where(topics.c.topic_id == topic_id)
        .with_for_update(read=True, key_share=True)
    ).scalar_one_or_none()
    if count is None:
        raise UnknownTopicOrPartitionError(f"no topic has the topic id {topic_id!r}")
    if partition >= count:
        raise UnknownTopicOrPartitionError(
            f"topic id {topic_id!r} has {count} partitions, no partition {partition}"
        )
