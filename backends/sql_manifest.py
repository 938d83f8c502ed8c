"""The tiered-segment manifest of :class:`~logstore.backends.sql_metadata.SqlMetadataStore`
(table ``remote_segments``, values :class:`~logstore.backends.manifest_records.RemoteSegment`;
the states and the lifecycle are explained in :mod:`logstore.backends.manifest_records`).

Invariant: the live (copy-finished) segments of a partition never overlap. Only
:func:`finish_remote_copy` makes a segment live, and it checks for an overlapping live segment
and flips the state in one transaction, serialized per partition:

* SQLite: the write transaction (``BEGIN IMMEDIATE``) already serializes every writer.
* PostgreSQL: the check is a read followed by a write, so under READ COMMITTED (the engine's
  isolation level) two finishers of overlapping copies could both read "no overlap" and both
  commit. :func:`_lock_partition` takes a transaction-level advisory lock keyed by the
  partition first; the second finisher waits for the first's commit and its overlap query,
  a new statement with a new snapshot, then sees the first's live segment.

:func:`begin_remote_copy` runs the same check (under the same lock) so that a copy of a range
that is already live is refused before anything is uploaded; the check at finish is the one
that decides. Moving a segment out of the live state (:func:`begin_remote_delete`) and
removing a delete-started row (:func:`delete_remote_segment`) cannot create an overlap and
are plain compare-and-swaps on the row.

When a lease is given, the lease row's holder and epoch are checked in the same transaction
(``sql_cleaner._check_fence``: on PostgreSQL a takeover waits for the write, or the write sees
the takeover). :func:`begin_remote_copy` also checks that the topic incarnation has the
partition (``sql_cleaner._check_partition``, ``FOR KEY SHARE`` on PostgreSQL): a concurrent
``delete_topic`` waits for the insert and then deletes the new row too (see
:func:`delete_segments`), so no manifest row outlives its topic.

Every function is thread-safe: each call runs in one transaction on a connection checked out of
the store's pool. Times are the caller's milliseconds; nothing here reads a clock.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from logstore.backends import sql_metadata
from logstore.backends.cleaner_records import TOPIC_ID_MAX_LENGTH, Lease
from logstore.backends.manifest_records import (
    COPY_FINISHED,
    COPY_STARTED,
    DELETE_STARTED,
    NO_LEADER_EPOCH,
    NO_TIMESTAMP,
    OBJECT_KEY_MAX_LENGTH,
    REMOTE_SEGMENT_STATES,
    SEGMENT_ID_MAX_LENGTH,
    RemoteSegment,
    RemoteSegmentState,
)
from logstore.backends.schema import TOPIC_NAME_MAX_LENGTH, remote_segments
from logstore.backends.sql_cleaner import (
    _MAX_BIGINT,
    _MAX_INT,
    _check_fence,
    _check_int,
    _check_lease,
    _check_partition,
    _check_text,
)
from sqlalchemy import Connection, Row, delete, insert, select, text, update
from sqlalchemy import exc as sa_exc

from logstore.errors import InvalidArgumentError, StaleVersionError

if TYPE_CHECKING:
    from logstore.backends.sql_metadata import SqlMetadataStore

_FIELDS = tuple(field.name for field in dataclasses.fields(RemoteSegment))


# --- writes ------------------------------------------------------------------------------------


def begin_remote_copy(
    store: SqlMetadataStore, segment: RemoteSegment, *, lease: Lease | None = None
) -> RemoteSegment:
    _check_segment(segment)
    if lease is not None:
        _check_lease(lease)
    stored = dataclasses.replace(segment, state=COPY_STARTED, version=1)
    action = f"starting the copy of remote segment {segment.segment_id!r}"
    with store._operation(action):
        try:
            with store._write_engine.begin() as conn:
                if lease is not None:
                    _check_fence(conn, lease)
                _check_partition(conn, stored.topic_id, stored.partition)
                _lock_partition(conn, stored.topic_id, stored.partition)
                _check_no_live_overlap(conn, stored)
                conn.execute(insert(remote_segments).values(dataclasses.asdict(stored)))
        except sa_exc.IntegrityError as exc:
            if sql_metadata._is_unique_violation(exc):
                raise StaleVersionError(
                    f"a remote segment with the id {segment.segment_id!r} already exists"
                ) from None
            raise
    return stored


def finish_remote_copy(
    store: SqlMetadataStore,
    segment: RemoteSegment,
    *,
    updated_ms: int,
    lease: Lease | None = None,
) -> RemoteSegment:
    _check_reference(segment)
    _check_int(updated_ms, "updated_ms", minimum=0)
    if lease is not None:
        _check_lease(lease)
    segment_id, version = segment.segment_id, segment.version
    statement = (
        update(remote_segments)
        .where(
            remote_segments.c.segment_id == segment_id,
            remote_segments.c.state == COPY_STARTED,
            remote_segments.c.version == version,
        )
        .values(state=COPY_FINISHED, updated_ms=updated_ms, version=remote_segments.c.version + 1)
        .returning(*remote_segments.c)
    )
    what = "finish the copy of"
    action = f"finishing the copy of remote segment {segment_id!r}"
    with store._operation(action), store._write_engine.begin() as conn:
        if lease is not None:
            _check_fence(conn, lease)
        # Read first: the partition to lock and the range to check are the stored ones.
        current = _expect(_read(conn, segment_id), segment, COPY_STARTED, what)
        _lock_partition(conn, current.topic_id, current.partition)
        _check_no_live_overlap(conn, current)
        row = conn.execute(statement).one_or_none()
        if row is None:  # PostgreSQL: the row changed between the read and the update
            _expect(_read(conn, segment_id), segment, COPY_STARTED, what)
            raise StaleVersionError(f"cannot {what} remote segment {segment_id!r}: it changed")
    return _to_segment(row)


def begin_remote_delete(
    store: SqlMetadataStore, segment: RemoteSegment, *, updated_ms: int
) -> RemoteSegment | None:
    _check_reference(segment)
    _check_int(updated_ms, "updated_ms", minimum=0)
    segment_id = segment.segment_id
    statement = (
        update(remote_segments)
        .where(
            remote_segments.c.segment_id == segment_id,
            remote_segments.c.state.in_((COPY_STARTED, COPY_FINISHED)),
            remote_segments.c.version == segment.version,
        )
        .values(state=DELETE_STARTED, updated_ms=updated_ms, version=remote_segments.c.version + 1)
        .returning(*remote_segments.c)
    )
    action = f"starting the deletion of remote segment {segment_id!r}"
    with store._operation(action), store._write_engine.begin() as conn:
        row = conn.execute(statement).one_or_none()
        if row is not None:
            return _to_segment(row)
        current = _read(conn, segment_id)
    if current is None or current.state == DELETE_STARTED:
        return current  # gone: the deletion already completed; delete-started: a retry
    raise StaleVersionError(
        f"cannot start deleting remote segment {segment_id!r}: it is at version "
        f"{current.version}, not the expected {segment.version}"
    )


def delete_remote_segment(store: SqlMetadataStore, segment_id: str) -> None:
    _check_text(segment_id, "segment id", SEGMENT_ID_MAX_LENGTH)
    statement = delete(remote_segments).where(
        remote_segments.c.segment_id == segment_id, remote_segments.c.state == DELETE_STARTED
    )
    action = f"deleting remote segment {segment_id!r}"
    with store._operation(action), store._write_engine.begin() as conn:
        if conn.execute(statement).rowcount == 1:
            return
        found = conn.execute(
            select(remote_segments.c.state).where(remote_segments.c.segment_id == segment_id)
        ).scalar_one_or_none()
        if found == DELETE_STARTED:
            # PostgreSQL: begin_remote_delete committed between the two statements.
            conn.execute(statement)
        elif found is not None:
            raise StaleVersionError(
                f"cannot delete remote segment {segment_id!r}: it is {found}, not "
                f"{DELETE_STARTED} (begin_remote_delete first, so readers stop using it)"
            )


def delete_segments(conn: Connection, topic_id: str) -> None:
    """Delete every manifest row of a topic incarnation, in the caller's transaction
    (``delete_topic``'s, after it deleted the topic row). Their objects become orphans."""
    conn.execute(delete(remote_segments).where(remote_segments.c.topic_id == topic_id))


# --- reads -------------------------------------------------------------------------------------


def list_remote_segments(
    store: SqlMetadataStore,
    topic_id: str | None = None,
    partition: int | None = None,
    *,
    states: Iterable[str] | None = None,
) -> list[RemoteSegment]:
    query = select(remote_segments)
    if topic_id is not None:
        _check_text(topic_id, "topic id", TOPIC_ID_MAX_LENGTH)
        query = query.where(remote_segments.c.topic_id == topic_id)
    if partition is not None:
        _check_int(partition, "partition", minimum=0, maximum=_MAX_INT)
        query = query.where(remote_segments.c.partition == partition)
    if states is not None:
        wanted = _check_states(states)
        if not wanted:
            return []
        query = query.where(remote_segments.c.state.in_(wanted))
    with store._operation("listing remote segments"), store._engine.begin() as conn:
        rows = conn.execute(query).all()
    # Sorted here, not by ORDER BY: PostgreSQL would order the text columns by its collation.
    return sorted(
        (_to_segment(row) for row in rows),
        key=lambda s: (s.topic_id, s.partition, s.base_offset, s.segment_id),
    )


# --- helpers -----------------------------------------------------------------------------------


def _lock_partition(conn: Connection, topic_id: str, partition: int) -> None:
    """Serialize, until this transaction ends, the writes that check a partition for overlaps.

    Nothing on SQLite (the write transaction holds the database's write lock). On PostgreSQL a
    transaction-level advisory lock keyed by a hash of the partition (see the module
    docstring); a hash collision only makes two unrelated partitions wait for each other.
    """
    if conn.dialect.name != "postgresql":
        return
    name = f"logstore.remote_segments/{topic_id}/{partition}".encode()
    key = int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _check_no_live_overlap(conn: Connection, segment: RemoteSegment) -> None:
    """Raise StaleVersionError if a live segment of the partition shares an offset with
    ``segment`` (adjacent ranges do not: the ranges are half-open)."""
    c = remote_segments.c
    row = conn.execute(
        select(c.segment_id, c.base_offset, c.next_offset)
        .where(
            c.topic_id == segment.topic_id,
            c.partition == segment.partition,
            c.state == COPY_FINISHED,
            c.base_offset < segment.next_offset,
            c.next_offset > segment.base_offset,
            c.segment_id != segment.segment_id,
        )
        .limit(1)
    ).first()
    if row is not None:
        raise StaleVersionError(
            f"remote segment {segment.segment_id!r} (offsets [{segment.base_offset}, "
            f"{segment.next_offset}) of topic id {segment.topic_id!r} partition "
            f"{segment.partition}) overlaps the live remote segment {row.segment_id!r} "
            f"(offsets [{row.base_offset}, {row.next_offset}))"
        )


def _read(conn: Connection, segment_id: str) -> RemoteSegment | None:
    row = conn.execute(
        select(remote_segments).where(remote_segments.c.segment_id == segment_id)
    ).one_or_none()
    return None if row is None else _to_segment(row)


def _expect(
    current: RemoteSegment | None, segment: RemoteSegment, state: str, what: str
) -> RemoteSegment:
    """``current`` if it is in ``state`` at ``segment.version``, else StaleVersionError saying
    what was found instead."""
    prefix = f"cannot {what} remote segment {segment.segment_id!r}"
    if current is None:
        raise StaleVersionError(f"{prefix}: it is gone")
    if current.state != state:
        raise StaleVersionError(f"{prefix}: it is {current.state}, not {state}")
    if current.version != segment.version:
        raise StaleVersionError(
            f"{prefix}: it is at version {current.version}, not the expected {segment.version}"
        )
    return current


def _to_segment(row: Row[Any]) -> RemoteSegment:
    mapping = row._mapping
    return RemoteSegment(**{name: mapping[name] for name in _FIELDS})


def _check_reference(segment: object) -> RemoteSegment:
    """Validate what a state transition reads of ``segment``: its id and version."""
    if not isinstance(segment, RemoteSegment):
        raise InvalidArgumentError(
            f"segment must be a RemoteSegment, got {type(segment).__name__}"
        )
    _check_text(segment.segment_id, "segment id", SEGMENT_ID_MAX_LENGTH)
    _check_int(segment.version, "segment version", minimum=1, maximum=_MAX_INT)
    return segment


def _check_segment(segment: object) -> RemoteSegment:
    """Validate every stored field of a new segment except ``state`` and ``version`` (which
    :func:`begin_remote_copy` sets), mirroring the table's check constraints."""
    if not isinstance(segment, RemoteSegment):
        raise InvalidArgumentError(
            f"segment must be a RemoteSegment, got {type(segment).__name__}"
        )
    _check_text(segment.segment_id, "segment id", SEGMENT_ID_MAX_LENGTH)
    _check_text(segment.topic_id, "topic id", TOPIC_ID_MAX_LENGTH)
    _check_text(segment.topic, "topic", TOPIC_NAME_MAX_LENGTH)
    _check_text(segment.object_key, "object key", OBJECT_KEY_MAX_LENGTH)
    _check_int(segment.partition, "partition", minimum=0, maximum=_MAX_INT)
    base = _check_int(segment.base_offset, "base_offset", minimum=0, maximum=_MAX_BIGINT - 1)
    last = _check_int(segment.last_offset, "last_offset", minimum=base - 1, maximum=_MAX_BIGINT - 1)
    _check_int(segment.next_offset, "next_offset", minimum=last + 1)
    data = _check_int(segment.data_bytes, "data_bytes", minimum=0)
    _check_int(segment.size_bytes, "size_bytes", minimum=data)
    _check_int(segment.max_timestamp, "max_timestamp", minimum=NO_TIMESTAMP)
    _check_int(segment.batch_count, "batch_count", minimum=0, maximum=_MAX_INT)
    _check_int(segment.aborted_count, "aborted_count", minimum=0, maximum=_MAX_INT)
    _check_int(segment.leader_epoch, "leader_epoch", minimum=NO_LEADER_EPOCH, maximum=_MAX_INT)
    _check_int(segment.created_ms, "created_ms", minimum=0)
    _check_int(segment.updated_ms, "updated_ms", minimum=0)
    return segment


def _check_states(states: object) -> tuple[str, ...]:
    # A bare string is iterable too (its characters): refuse it rather than match nothing.
    if isinstance(states, str) or not isinstance(states, Iterable):
        raise InvalidArgumentError(
            f"states must be an iterable of state names, got {states!r}"
        )
    wanted = []
    for state in states:
        try:
            wanted.append(RemoteSegmentState(state).value)  # also takes the enum's members
        except (ValueError, TypeError):
            raise InvalidArgumentError(
                f"unknown remote segment state {state!r}: expected one of "
                f"{', '.join(REMOTE_SEGMENT_STATES)}"
            ) from None
    return tuple(wanted)
