"""Consumer-group storage of :class:`~logstore.backends.sql_metadata.SqlMetadataStore`.

One primitive writes groups: :func:`update_group` opens a write transaction, takes the group's
lock, reads the :class:`GroupSnapshot`, calls the coordinator's pure step function and writes
the :class:`GroupUpdate` it returns, all in that transaction. The lock is the SQLite write lock
(``BEGIN IMMEDIATE``), or on PostgreSQL a transaction-scoped advisory lock keyed by the group id,
so different groups never wait for each other.

``group_members.protocols`` holds a JSON list of ``[name, base64(metadata)]`` pairs.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from logstore.backends.group_records import (
    GROUP_ID_MAX_LENGTH,
    GROUP_STATES,
    CommittedOffset,
    GroupRecord,
    GroupSnapshot,
    GroupUpdate,
    MemberRecord,
)
from logstore.backends.schema import committed_offsets, consumer_groups, group_members
from sqlalchemy import Connection, Row, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from logstore.errors import InvalidGroupIdError, MetadataStoreError, StaleVersionError
from logstore.types import TopicPartition

if TYPE_CHECKING:
    from logstore.backends.sql_metadata import SqlMetadataStore

T = TypeVar("T")

# Advisory-lock namespace (the first key of pg_advisory_xact_lock(int, int)) for group locks.
_GROUP_LOCK_NAMESPACE = 0x4C47  # "LG"


def check_group_id(group_id: object) -> str:
    if not isinstance(group_id, str) or not 1 <= len(group_id) <= GROUP_ID_MAX_LENGTH:
        raise InvalidGroupIdError(
            f"group id must be a string of 1 to {GROUP_ID_MAX_LENGTH} characters, got {group_id!r}"
        )
    return group_id


def update_group(
    store: SqlMetadataStore, group_id: str,
    step: Callable[[GroupSnapshot], tuple[GroupUpdate, T]],
) -> T:
    check_group_id(group_id)
    with store._operation(f"updating group {group_id!r}"), store._write_engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:group_id))"),
                {"namespace": _GROUP_LOCK_NAMESPACE, "group_id": group_id},
            )
        snapshot = _read(conn, group_id)
        change, result = step(snapshot)
        _apply(conn, group_id, snapshot, change)
    return result


def read_group(store: SqlMetadataStore, group_id: str) -> GroupSnapshot:
    check_group_id(group_id)
    with store._operation(f"reading group {group_id!r}"), store._engine.begin() as conn:
        return _read(conn, group_id)


def list_groups(store: SqlMetadataStore) -> list[GroupRecord]:
    with store._operation("listing groups"), store._engine.begin() as conn:
        rows = conn.execute(select(consumer_groups)).all()
    return sorted((_group(row) for row in rows), key=lambda g: g.group_id)


def fetch_offsets(
    store: SqlMetadataStore, group_id: str, partitions: Iterable[TopicPartition] | None
) -> dict[TopicPartition, CommittedOffset]:
    check_group_id(group_id)
    wanted = None if partitions is None else set(partitions)
    query = select(committed_offsets).where(committed_offsets.c.group_id == group_id)
    with store._operation(f"reading offsets of group {group_id!r}"), store._engine.begin() as conn:
        rows = conn.execute(query).all()
    result = {}
    for row in rows:
        tp = TopicPartition(row.topic, row.partition)
        if wanted is None or tp in wanted:
            result[tp] = CommittedOffset(
                row.committed_offset, row.metadata, row.leader_epoch, row.commit_ms
            )
    return result


# --- reading -----------------------------------------------------------------------------------


def _read(conn: Connection, group_id: str) -> GroupSnapshot:
    row = conn.execute(
        select(consumer_groups).where(consumer_groups.c.group_id == group_id)
    ).one_or_none()
    if row is None:
        return GroupSnapshot(None, ())
    members = conn.execute(
        select(group_members).where(group_members.c.group_id == group_id)
    ).all()
    return GroupSnapshot(
        _group(row), tuple(sorted((_member(m) for m in members), key=lambda m: m.member_id))
    )


def _group(row: Row[Any]) -> GroupRecord:
    if row.state not in GROUP_STATES:
        raise MetadataStoreError(
            f"group {row.group_id!r} has unknown state {row.state!r}", retriable=False
        )
    return GroupRecord(
        group_id=row.group_id,
        generation=row.generation,
        state=row.state,
        protocol_type=row.protocol_type,
        protocol=row.protocol,
        leader_id=row.leader_id,
        state_since_ms=row.state_since_ms,
        rebalance_deadline_ms=row.rebalance_deadline_ms,
        version=row.version,
    )


def _member(row: Row[Any]) -> MemberRecord:
    try:
        protocols = tuple(
            (str(name), base64.b64decode(metadata, validate=True))
            for name, metadata in json.loads(row.protocols)
        )
    except (ValueError, TypeError, binascii.Error):
        raise MetadataStoreError(
            f"member {row.member_id!r} of group {row.group_id!r} has unreadable protocols",
            retriable=False,
        ) from None
    return MemberRecord(
        member_id=row.member_id,
        group_instance_id=row.group_instance_id,
        client_id=row.client_id,
        session_timeout_ms=row.session_timeout_ms,
        rebalance_timeout_ms=row.rebalance_timeout_ms,
        protocols=protocols,
        join_generation=row.join_generation,
        assignment=row.assignment,
        last_heartbeat_ms=row.last_heartbeat_ms,
    )


# --- writing -----------------------------------------------------------------------------------


def _apply(conn: Connection, group_id: str, snapshot: GroupSnapshot, change: GroupUpdate) -> None:
    if change.delete_group:
        for table in (committed_offsets, group_members, consumer_groups):
            conn.execute(delete(table).where(table.c.group_id == group_id))
        return
    if change.group is not None:
        _write_group(conn, group_id, snapshot.group, change.group)
    if change.delete_members:
        conn.execute(
            delete(group_members).where(
                group_members.c.group_id == group_id,
                group_members.c.member_id.in_(change.delete_members),
            )
        )
    existing = {m.member_id for m in snapshot.members} - set(change.delete_members)
    for member in change.upsert_members:
        values = _member_values(member)
        if member.member_id in existing:
            conn.execute(
                update(group_members)
                .where(group_members.c.group_id == group_id,
                       group_members.c.member_id == member.member_id)
                .values(**values)
            )
        else:
            conn.execute(insert(group_members).values(group_id=group_id, **values))
            existing.add(member.member_id)
    if change.commit_offsets:
        _upsert_offsets(conn, group_id, change.commit_offsets)
    if change.delete_offsets:
        for tp in change.delete_offsets:
            conn.execute(
                delete(committed_offsets).where(
                    committed_offsets.c.group_id == group_id,
                    committed_offsets.c.topic == tp.topic,
                    committed_offsets.c.partition == tp.partition,
                )
            )


def _write_group(
    conn: Connection, group_id: str, current: GroupRecord | None, new: GroupRecord
) -> None:
    values = {
        "generation": new.generation,
        "state": new.state,
        "protocol_type": new.protocol_type,
        "protocol": new.protocol,
        "leader_id": new.leader_id,
        "state_since_ms": new.state_since_ms,
        "rebalance_deadline_ms": new.rebalance_deadline_ms,
    }
    if current is None:
        conn.execute(insert(consumer_groups).values(group_id=group_id, version=1, **values))
        return
    result = conn.execute(
        update(consumer_groups)
        .where(consumer_groups.c.group_id == group_id,
               consumer_groups.c.version == current.version)
        .values(version=consumer_groups.c.version + 1, **values)
    )
    if result.rowcount != 1:  # cannot happen under the group lock; guard all the same
        raise StaleVersionError(f"group {group_id!r} changed under its lock")


def _member_values(member: MemberRecord) -> dict[str, Any]:
    return {
        "member_id": member.member_id,
        "group_instance_id": member.group_instance_id,
        "client_id": member.client_id,
        "session_timeout_ms": member.session_timeout_ms,
        "rebalance_timeout_ms": member.rebalance_timeout_ms,
        "protocols": json.dumps(
            [[name, base64.b64encode(metadata).decode("ascii")]
             for name, metadata in member.protocols]
        ),
        "join_generation": member.join_generation,
        "assignment": member.assignment,
        "last_heartbeat_ms": member.last_heartbeat_ms,
    }


def _upsert_offsets(
    conn: Connection, group_id: str,
    offsets: tuple[tuple[TopicPartition, CommittedOffset], ...],
) -> None:
    make_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for tp, committed in offsets:
        values = {
            "committed_offset": committed.offset,
            "leader_epoch": committed.leader_epoch,
            "metadata": committed.metadata,
            "commit_ms": committed.commit_ms,
        }
        statement = make_insert(committed_offsets).values(
            group_id=group_id, topic=tp.topic, partition=tp.partition, **values
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["group_id", "topic", "partition"], set_=values
            )
        )
