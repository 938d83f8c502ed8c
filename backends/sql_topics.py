"""Topics of :class:`~logstore.backends.sql_metadata.SqlMetadataStore` (table ``topics``,
values :class:`~logstore.backends.metadata.TopicRecord`) and the ``metadata_changes`` counter.

Invariants:

* Every topic write (create, update, delete) bumps the one-row ``metadata_changes`` counter in
  the same transaction (:func:`_bump_changes`), so :func:`change_counter` changes exactly when
  the topic set may have; reads never change it, and it never decreases.
* Every update and delete is a compare-and-swap on the row's ``version`` (a conditional
  ``UPDATE``/``DELETE ... RETURNING``); when it matches no row, :func:`_raise_cas_failure` reads
  the row again to tell a vanished topic from a stale version. A create that loses a race for
  the name hits the primary key and becomes :class:`~logstore.errors.TopicAlreadyExistsError`.
* :func:`delete_topic` deletes the topic's cleaner checkpoints and manifest rows in the same
  transaction (see :func:`.sql_cleaner.delete_checkpoints` and
  :func:`.sql_manifest.delete_segments`), so none outlives its topic incarnation.
* ``topics.configs`` holds the config overrides as canonical JSON (sorted keys, no spaces) of a
  string-to-string object; anything else read back is a damaged database.

Every function is thread-safe: each call runs in one transaction on a connection checked out of
the store's pool. Times are the caller's milliseconds; nothing here reads a clock.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

# sql_metadata first, and only as a module (attributes are read at call time): it imports this
# module, sql_cleaner and sql_manifest itself. Importing sql_cleaner first would fail whenever
# this module is the first of them to be imported (sql_cleaner -> sql_metadata -> sql_manifest,
# which from-imports names sql_cleaner has not defined yet).
from logstore.backends import sql_metadata

# isort: split
from logstore.backends import sql_cleaner, sql_manifest
from logstore.backends.metadata import TopicRecord
from logstore.backends.schema import (
    CHANGES_ROW_ID,
    TOPIC_NAME_MAX_LENGTH,
    metadata_changes,
    topics,
)
from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy import exc as sa_exc

from logstore.errors import (
    InvalidArgumentError,
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidTopicError,
    MetadataStoreError,
    StaleVersionError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

if TYPE_CHECKING:
    from logstore.backends.sql_metadata import SqlMetadataStore


_TOPIC_ID = re.compile(r"[0-9a-fA-F-]{1,36}")


def create_topic(
    store: SqlMetadataStore,
    name: str,
    partition_count: int,
    configs: Mapping[str, str],
    *,
    created_ms: int,
    topic_id: str | None = None,
) -> TopicRecord:
    """Insert a topic with a fresh uuid4 topic id (or the given one, adopting a directory) and
    version 1.

    Raises TopicAlreadyExistsError if the name is taken (also when another process wins a race
    for the same name).
    """
    _check_name(name)
    _check_partition_count(partition_count)
    configs_json = _encode_configs(configs)
    if isinstance(created_ms, bool) or not isinstance(created_ms, int) or created_ms < 0:
        raise InvalidArgumentError(f"created_ms must be a non-negative int, got {created_ms!r}")
    if topic_id is not None and (not isinstance(topic_id, str)
                                 or not _TOPIC_ID.fullmatch(topic_id)):
        raise InvalidArgumentError(f"topic_id must be a uuid in text form, got {topic_id!r}")
    record = TopicRecord(
        name=name,
        topic_id=topic_id or str(uuid.uuid4()),
        partition_count=partition_count,
        configs=dict(configs),
        version=1,
        created_ms=created_ms,
    )
    with store._operation(f"creating topic {name!r}"):
        try:
            with store._write_engine.begin() as conn:
                conn.execute(
                    insert(topics).values(
                        name=record.name,
                        topic_id=record.topic_id,
                        partition_count=record.partition_count,
                        configs=configs_json,
                        version=record.version,
                        created_ms=record.created_ms,
                    )
                )
                _bump_changes(conn)
        except sa_exc.IntegrityError as exc:
            if sql_metadata._is_unique_violation(exc):
                raise TopicAlreadyExistsError(f"topic {name!r} already exists") from None
            raise
    return record


def get_topic(store: SqlMetadataStore, name: str) -> TopicRecord | None:
    """The topic, or None if it does not exist."""
    _check_name(name)
    with store._operation(f"reading topic {name!r}"), store._engine.begin() as conn:
        row = conn.execute(select(topics).where(topics.c.name == name)).one_or_none()
    return None if row is None else _to_record(row)


def list_topics(store: SqlMetadataStore) -> list[TopicRecord]:
    """Every topic, sorted by name (code point order, the same on every database)."""
    with store._operation("listing topics"), store._engine.begin() as conn:
        rows = conn.execute(select(topics)).all()
    # Sorted here rather than by ORDER BY: PostgreSQL orders by its locale collation,
    # which would make the order depend on the backend.
    return sorted((_to_record(row) for row in rows), key=lambda record: record.name)


def update_topic(
    store: SqlMetadataStore,
    name: str,
    *,
    expected_version: int,
    partition_count: int | None = None,
    configs: Mapping[str, str] | None = None,
) -> TopicRecord:
    """Replace the partition count and/or the whole config-override map; bumps the version.

    Raises UnknownTopicOrPartitionError if the topic is gone, StaleVersionError if its version
    is not ``expected_version`` and InvalidArgumentError if nothing is to change. Whether a
    partition count may change (Kafka: only grow) is the caller's rule.
    """
    _check_name(name)
    _check_version(expected_version)
    values: dict[str, Any] = {"version": topics.c.version + 1}
    if partition_count is not None:
        _check_partition_count(partition_count)
        values["partition_count"] = partition_count
    if configs is not None:
        values["configs"] = _encode_configs(configs)
    if len(values) == 1:
        raise InvalidArgumentError("update_topic needs partition_count and/or configs")
    statement = (
        update(topics)
        .where(topics.c.name == name, topics.c.version == expected_version)
        .values(**values)
        .returning(*topics.c)
    )
    with store._operation(f"updating topic {name!r}"), store._write_engine.begin() as conn:
        row = conn.execute(statement).one_or_none()
        if row is None:
            _raise_cas_failure(conn, name, expected_version)
        _bump_changes(conn)
    return _to_record(row)


def delete_topic(
    store: SqlMetadataStore, name: str, *, expected_version: int | None = None
) -> TopicRecord:
    """Delete the topic row, and its cleaner checkpoints and manifest rows in the same
    transaction; return what was deleted.

    Raises UnknownTopicOrPartitionError if it does not exist, StaleVersionError if
    ``expected_version`` is given and differs.
    """
    _check_name(name)
    statement = delete(topics).where(topics.c.name == name)
    if expected_version is not None:
        _check_version(expected_version)
        statement = statement.where(topics.c.version == expected_version)
    with store._operation(f"deleting topic {name!r}"), store._write_engine.begin() as conn:
        row = conn.execute(statement.returning(*topics.c)).one_or_none()
        if row is None:
            _raise_cas_failure(conn, name, expected_version)
        sql_cleaner.delete_checkpoints(conn, row.topic_id)
        sql_manifest.delete_segments(conn, row.topic_id)
        _bump_changes(conn)
    return _to_record(row)


def change_counter(store: SqlMetadataStore) -> int:
    """A number bumped in the same transaction as every topic create, update and delete.

    Reads never change it; it never decreases.
    """
    query = select(metadata_changes.c.counter).where(metadata_changes.c.id == CHANGES_ROW_ID)
    with store._operation("reading the change counter"), store._engine.begin() as conn:
        value = conn.execute(query).scalar_one_or_none()
    if value is None:
        raise _missing_changes_row()
    return int(value)


# --- helpers -----------------------------------------------------------------------------------


def _bump_changes(conn: Connection) -> None:
    result = conn.execute(
        update(metadata_changes)
        .where(metadata_changes.c.id == CHANGES_ROW_ID)
        .values(counter=metadata_changes.c.counter + 1)
    )
    if result.rowcount != 1:
        raise _missing_changes_row()


def _missing_changes_row() -> MetadataStoreError:
    return MetadataStoreError(
        "the metadata_changes row is missing: the metadata database is damaged",
        retriable=False,
    )


def _raise_cas_failure(conn: Connection, name: str, expected_version: int | None) -> NoReturn:
    """Explain a write that matched no row: the topic is gone, or its version moved on."""
    current = conn.execute(
        select(topics.c.version).where(topics.c.name == name)
    ).scalar_one_or_none()
    if current is None:
        raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
    raise StaleVersionError(
        f"topic {name!r} is at version {current}, not the expected {expected_version}"
    )


def _to_record(row: Row[Any]) -> TopicRecord:
    try:
        configs = json.loads(row.configs)
    except ValueError:
        configs = None
    if not isinstance(configs, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in configs.items()
    ):
        raise MetadataStoreError(
            f"topic {row.name!r} has unreadable configs in the metadata database",
            retriable=False,
        )
    return TopicRecord(
        name=row.name,
        topic_id=row.topic_id,
        partition_count=row.partition_count,
        configs=configs,
        version=row.version,
        created_ms=row.created_ms,
    )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= TOPIC_NAME_MAX_LENGTH:
        raise InvalidTopicError(
            f"topic name must be a string of 1 to {TOPIC_NAME_MAX_LENGTH} characters, "
            f"got {name!r}"
        )


def _check_partition_count(count: object) -> None:
    # The partition_count column is a 32-bit INTEGER (as in Kafka): sql_cleaner._MAX_INT.
    if (
        isinstance(count, bool)
        or not isinstance(count, int)
        or not 1 <= count <= sql_cleaner._MAX_INT
    ):
        raise InvalidPartitionsError(f"partition count must be an int >= 1, got {count!r}")


def _check_version(version: object) -> None:
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidArgumentError(f"expected_version must be an int, got {version!r}")


def _encode_configs(configs: Mapping[str, str]) -> str:
    if not isinstance(configs, Mapping):
        raise InvalidConfigurationError(f"configs must be a mapping, got {type(configs).__name__}")
    for key, value in configs.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidConfigurationError(
                f"config overrides must map strings to strings, got {key!r}: {value!r}"
            )
    return json.dumps(dict(configs), sort_keys=True, separators=(",", ":"))
