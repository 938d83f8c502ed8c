"""Error translation, input validation, lifecycle and SQLite engine settings of SqlMetadataStore.

Nothing from SQLAlchemy, sqlite3 or psycopg may reach a caller: every failure must arrive as a
:mod:`logstore.errors` exception with the right ``retriable`` flag.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from logstore.backends import open_metadata_store
from logstore.backends.sql_metadata import (
    SqlMetadataStore,
    begin_write,
    create_metadata_engine,
    translate_error,
)
from sqlalchemy import exc as sa_exc

from logstore.errors import (
    DatabaseLockedError,
    IllegalStateError,
    InvalidArgumentError,
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidTopicError,
    LogstoreError,
    MetadataStoreError,
)

# --- bad URLs and unreachable servers --------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "nonsense",
        "",
        "://",
        "mysql://user@localhost/db",
        "oracle+cx_oracle://scott@host/db",
        "sqlite+aiosqlite:///x.db",
        "postgresql+psycopg2://postgres@127.0.0.1/test",
        "sqlite://",
        "sqlite:///:memory:",
    ],
)
def test_a_bad_url_raises_a_clear_non_retriable_error(url: str) -> None:
    with pytest.raises(MetadataStoreError) as info:
        open_metadata_store(url)

    assert info.value.retriable is False
    assert "\n" not in str(info.value)
    assert "sqlite:///" in str(info.value) or "postgresql+psycopg://" in str(info.value)


def test_an_unreachable_postgresql_fails_promptly_and_retriably() -> None:
    url = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/test"
    started = time.monotonic()

    with pytest.raises(MetadataStoreError) as info:
        open_metadata_store(url, connect_timeout_s=2)

    assert time.monotonic() - started < 5
    assert info.value.retriable is True
    assert "127.0.0.1" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert not isinstance(info.value.__cause__, LogstoreError)


def test_a_missing_postgresql_database_is_not_retriable(postgresql_admin: Any) -> None:
    url = postgresql_admin.url.set(database="logstore_no_such_database")

    with pytest.raises(MetadataStoreError) as info:
        open_metadata_store(url.render_as_string(hide_password=False))

    assert info.value.retriable is False
    assert "logstore_no_such_database" in str(info.value)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    path.write_bytes(b"this is not a SQLite database, just some bytes " * 100)

    with pytest.raises(MetadataStoreError) as info:
        open_metadata_store(f"sqlite:///{path}")

    assert info.value.retriable is False


def test_a_locked_sqlite_database_raises_database_locked(sqlite_url: str) -> None:
    with SqlMetadataStore(sqlite_url, busy_timeout_ms=200) as store:
        holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with pytest.raises(DatabaseLockedError) as info:
                store.create_topic("t", 1, {}, created_ms=0)
            waited = time.monotonic() - started
        finally:
            holder.execute("ROLLBACK")
            holder.close()

        assert info.value.retriable is True
        assert waited >= 0.15, "the busy timeout must be waited out before giving up"
        assert store.create_topic("t", 1, {}, created_ms=0).name == "t"


def test_corrupt_configs_in_the_database_raise_a_store_error(sqlite_url: str) -> None:
    with SqlMetadataStore(sqlite_url) as store:
        store.create_topic("t", 1, {}, created_ms=0)
        plain = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
        with plain:
            plain.execute("UPDATE topics SET configs = '[1, 2'")
        plain.close()

        with pytest.raises(MetadataStoreError, match="configs") as info:
            store.get_topic("t")
    assert info.value.retriable is False


class _FakeDriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "retriable"),
    [("40001", True), ("40P01", True), ("08006", True), ("57P01", True), ("55P03", True),
     ("42P01", False), ("23505", False), ("3D000", False)],
)
def test_postgresql_sqlstates_decide_retriability(sqlstate: str, retriable: bool) -> None:
    error = sa_exc.OperationalError("SELECT 1", {}, _FakeDriverError("boom\ndetail", sqlstate))

    translated = translate_error(error, action="testing")

    assert type(translated) is MetadataStoreError
    assert translated.retriable is retriable
    assert str(translated) == "testing failed: boom"


@pytest.mark.parametrize(
    ("message", "retriable"),
    [
        ('connection to server at "10.0.0.9", port 5432 failed: Connection refused', True),
        ("connection timeout expired", True),
        ('FATAL:  password authentication failed for user "x"', False),
        ('FATAL:  database "nope" does not exist', False),
        ("FATAL:  the database system is starting up", True),
        ("FATAL:  sorry, too many clients already", True),
    ],
)
def test_connection_failures_without_sqlstate(message: str, retriable: bool) -> None:
    error = sa_exc.OperationalError(None, None, _FakeDriverError(message, None))

    assert translate_error(error, action="connecting").retriable is retriable


def test_sqlite_busy_translates_to_database_locked() -> None:
    orig = sqlite3.OperationalError("database is locked")
    orig.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]

    translated = translate_error(sa_exc.OperationalError("BEGIN", {}, orig), action="writing")

    assert isinstance(translated, DatabaseLockedError)
    assert translated.retriable is True


# --- input validation ------------------------------------------------------------------------


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Any:
    with SqlMetadataStore(sqlite_url) as opened:
        yield opened


@pytest.mark.parametrize("name", ["", "x" * 250, None, 7])
def test_bad_topic_names_are_rejected(sqlite_store: SqlMetadataStore, name: Any) -> None:
    with pytest.raises(InvalidTopicError):
        sqlite_store.create_topic(name, 1, {}, created_ms=0)
    with pytest.raises(InvalidTopicError):
        sqlite_store.get_topic(name)


def test_the_longest_legal_name_is_accepted(sqlite_store: SqlMetadataStore) -> None:
    name = "x" * 249

    assert sqlite_store.create_topic(name, 1, {}, created_ms=0).name == name


@pytest.mark.parametrize("count", [0, -1, True, "3", 1.0, 1 << 31])
def test_bad_partition_counts_are_rejected(sqlite_store: SqlMetadataStore, count: Any) -> None:
    with pytest.raises(InvalidPartitionsError):
        sqlite_store.create_topic("t", count, {}, created_ms=0)
    assert sqlite_store.list_topics() == []


@pytest.mark.parametrize("configs", [{"retention.ms": 1000}, {1: "x"}, ["a"]])
def test_non_string_configs_are_rejected(sqlite_store: SqlMetadataStore, configs: Any) -> None:
    with pytest.raises(InvalidConfigurationError):
        sqlite_store.create_topic("t", 1, configs, created_ms=0)


def test_bad_update_arguments_are_rejected(sqlite_store: SqlMetadataStore) -> None:
    sqlite_store.create_topic("t", 1, {}, created_ms=0)

    with pytest.raises(InvalidArgumentError, match="partition_count and/or configs"):
        sqlite_store.update_topic("t", expected_version=1)
    wrong_type: Any = "1"
    with pytest.raises(InvalidArgumentError):
        sqlite_store.update_topic("t", expected_version=wrong_type, partition_count=2)
    with pytest.raises(InvalidPartitionsError):
        sqlite_store.update_topic("t", expected_version=1, partition_count=0)
    with pytest.raises(InvalidArgumentError):
        sqlite_store.create_topic("u", 1, {}, created_ms=-1)
    assert sqlite_store.get_topic("t").version == 1  # type: ignore[union-attr]


# --- lifecycle -------------------------------------------------------------------------------


def test_close_is_idempotent_and_later_calls_raise(sqlite_url: str) -> None:
    store = SqlMetadataStore(sqlite_url)
    store.create_topic("t", 1, {}, created_ms=0)

    store.close()
    store.close()

    with pytest.raises(IllegalStateError):
        store.get_topic("t")
    with pytest.raises(IllegalStateError):
        store.create_topic("u", 1, {}, created_ms=0)


def test_url_hides_the_password() -> None:
    with pytest.raises(MetadataStoreError) as info:
        SqlMetadataStore("postgresql://user:s3cret@127.0.0.1:1/db")

    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)


# --- SQLite engine settings ------------------------------------------------------------------


def test_sqlite_database_is_in_wal_mode(sqlite_url: str) -> None:
    SqlMetadataStore(sqlite_url).close()

    plain = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        plain.close()


def test_sqlite_connections_get_durability_and_busy_timeout(tmp_path: Path) -> None:
    engine = create_metadata_engine(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout_ms=1234)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    finally:
        engine.dispose()


def test_sqlite_write_transactions_take_the_write_lock_at_begin(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    engine = create_metadata_engine(f"sqlite:///{path}", busy_timeout_ms=0)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        with begin_write(engine), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        with engine.begin():
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
    finally:
        other.close()
        engine.dispose()


def test_sqlite_reads_see_one_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.execute("CREATE TABLE t (v INTEGER)")
    setup.close()
    engine = create_metadata_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as reader:
            assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
            with begin_write(engine) as writer:
                writer.exec_driver_sql("INSERT INTO t VALUES (1)")
            assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
    finally:
        engine.dispose()
